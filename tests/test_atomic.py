"""Atomic writes: complete files with the usual permissions, nothing left on failure."""

import json
import os
import stat

import pytest

from gowide.atomic import write_json, write_text


def test_written_files_are_complete_and_have_the_usual_mode(tmp_path):
    path = write_json(tmp_path / "sub" / "r.json", {"a": [1, 2.5], "b": float("nan")})
    assert json.loads(path.read_text()) == {"a": [1, 2.5], "b": None}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text(tmp_path / "r.txt", "old")

    with pytest.raises(TypeError):  # fails inside the write, after the temporary exists
        write_text(path, 123)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]
