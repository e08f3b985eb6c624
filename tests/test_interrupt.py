"""`empirical run` killed at any point resumes to the result of an uninterrupted run; damaged
checkpoints are trained again, stale temporary files removed; a diverging run stops with exit
code 1 and keeps the last good checkpoint."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from empirical.checkpoints import BadCheckpoint, load_checkpoint, save_checkpoint

# Stages long enough for a kill to land inside them; one run takes a few seconds on one core.
STEPS = ["model.blocks_per_stage=1", "model.base_width=4", "wide_mult=2.0",
         "wide.steps=150", "wide.batch_size=32", "wide.log_every=10",
         "imitate.steps_per_block=30", "imitate.batch_size=32", "imitate.log_every=5",
         "finetune.steps=150", "finetune.batch_size=32", "finetune.log_every=10"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
# The files a run writes, in order (each by a rename, so each write makes a new inode).
WRITTEN = ["checkpoints/1-wide.pt", "checkpoints/2-imitate.pt", "checkpoints/3-finetune.pt",
           "model.pt", "result.json"]
KILLED = -signal.SIGKILL


def _command(out: Path, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "gowide.cli", "empirical", "run", "--task", "resnet",
            "--method", "ours", "--preset", "tiny", "--out", str(out), "--quiet",
            "--device", "cpu"]
    for item in STEPS:
        argv += ["--set", item]
    return argv + list(extra)


def _identity(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _check_result_json(out: Path) -> None:
    try:
        text = (out / "result.json").read_text()
    except FileNotFoundError:
        return
    json.loads(text)  # whenever it exists, it is complete


def _check_files(out: Path) -> None:
    """Every checkpoint there is loads (and matches its checksum); result.json is JSON."""
    for path in [*sorted((out / "checkpoints").glob("*.pt")), out / "model.pt"]:
        if path.exists():
            load_checkpoint(path)
    _check_result_json(out)


def launch(out: Path, *extra: str, after: list[str] | None = None, delay: float | None = None):
    """Run the command. With ``delay``, SIGKILL it ``delay`` s after it (re)writes one of the
    files ``after`` (relative to ``out``), or after its start when ``after`` is empty.
    Returns (exit code, stderr, {file: seconds from the start until this process wrote it})."""
    before = {name: _identity(out / name) for name in WRITTEN}
    start = time.monotonic()
    proc = subprocess.Popen(_command(out, *extra), env=ENV, cwd=out.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kill_at = start + delay if delay is not None and not after else None
    written = {}
    try:
        while proc.poll() is None:
            now = time.monotonic()
            for name in WRITTEN:
                if name not in written and _identity(out / name) not in (None, before[name]):
                    written[name] = now - start
                    if kill_at is None and delay is not None and name in (after or []):
                        kill_at = now + delay
            _check_result_json(out)
            if kill_at is not None and now >= kill_at:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, written


def in_process(out: Path, capsys, *extra: str) -> tuple[int, str]:
    """The command of ``launch``, run by ``gowide.cli.main`` in this process (no start-up of
    Python and torch), for the checks that kill nothing: (exit code, stderr)."""
    from gowide.cli import main

    capsys.readouterr()
    code = main(_command(out, *extra)[3:])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its result, when it wrote each file, and its directory."""
    out = tmp_path_factory.mktemp("interrupt") / "reference"
    code, err, written = launch(out)
    assert code == 0, err
    return json.loads((out / "result.json").read_text()), written, out


def test_killed_runs_resume_to_the_same_result(reference, tmp_path, capsys):
    ref, written, _ = reference
    t1, t2, t3 = (written[name] for name in WRITTEN[:3])
    rng = random.Random(7)
    # (kill after this process writes one of these files, delay): start-up, stage 1, inside
    # stage 2, inside stage 3, the final evaluation, around the result file. A file already
    # there from an earlier run is not written again, so the later ones serve as triggers.
    plan = [([], rng.uniform(0.2, 0.5) * t1),
            ([], rng.uniform(0.6, 0.95) * t1),
            (WRITTEN[0:], rng.uniform(0.1, 0.8) * (t2 - t1)),
            (WRITTEN[1:], rng.uniform(0.1, 0.8) * (t3 - t2)),
            (WRITTEN[2:], 0.0),
            (WRITTEN[3:], 0.0)]
    out = tmp_path / "run"
    out.mkdir()
    kills, states = 0, set()
    for after, delay in plan:
        code, err, _ = launch(out, "--resume", after=after, delay=delay)
        assert code in (0, KILLED), err
        kills += code == KILLED
        states.add(tuple(name for name in WRITTEN if (out / name).exists()))
        _check_files(out)
    assert kills >= 5
    assert len(states) >= 3, f"the kills did not spread over the run: {states}"

    # A writer killed in the middle of a write leaves its temporary file; make sure some exist.
    stale = [out / "checkpoints" / ".2-imitate.pt.999999.tmp", out / ".model.pt.999999.tmp",
             out / ".result.json.k1ll3d.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    code, err = in_process(out, capsys, "--resume")  # the last resume has nothing to kill
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["metrics"] == ref["metrics"]  # bit-identical: JSON floats round-trip
    assert result["imitation_block_errors"] == ref["imitation_block_errors"]
    assert result["compute"]["train_flops"] == ref["compute"]["train_flops"]
    assert not list(out.rglob("*.tmp"))
    _check_files(out)


def _models_equal(a: Path, b: Path) -> None:
    ma, mb = load_checkpoint(a)["models"], load_checkpoint(b)["models"]
    assert ma.keys() == mb.keys()
    for role in ma:
        assert ma[role].keys() == mb[role].keys()
        for key in ma[role]:
            assert torch.equal(ma[role][key], mb[role][key]), (role, key)


def test_a_damaged_checkpoint_is_trained_again_with_a_warning(reference, tmp_path, capsys):
    ref, _, ref_out = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out, out)
    damaged = out / "checkpoints" / "2-imitate.pt"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    code, err = in_process(out, capsys, "--resume")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1, err
    assert "2-imitate.pt cannot be used" in warnings[0] and "runs again" in warnings[0]
    result = json.loads((out / "result.json").read_text())
    assert "resumed" not in result["stages"]["imitate"]  # trained again ...
    assert result["stages"]["wide"]["resumed"] and result["stages"]["finetune"]["resumed"]
    _models_equal(damaged, ref_out / "checkpoints" / "2-imitate.pt")  # ... to the same weights
    assert result["metrics"] == ref["metrics"]


def test_a_changed_byte_in_the_weights_fails_the_checksum(tmp_path):
    weights = torch.arange(1000, dtype=torch.float32)
    path = save_checkpoint(tmp_path / "c.pt", {"models": {"thin": {"w": weights}}})
    assert torch.equal(load_checkpoint(path)["models"]["thin"]["w"], weights)
    data = bytearray(path.read_bytes())
    at = data.find(weights[500:502].numpy().tobytes())
    assert at > 0
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BadCheckpoint, match="checksum"):
        load_checkpoint(path)
    # the checksum is mandatory: a file written without one is damaged
    torch.save({"models": {"thin": {"w": weights}}}, tmp_path / "old.pt")
    with pytest.raises(BadCheckpoint, match="no checksum"):
        load_checkpoint(tmp_path / "old.pt")


def test_divergence_exits_1_naming_stage_and_step_and_keeps_the_last_good_checkpoint(
        reference, tmp_path, capsys):
    _, _, ref_out = reference
    out = tmp_path / "diverged"
    code, err = in_process(out, capsys, "--set", "finetune.lr=1e6")
    assert code == 1, err
    assert re.fullmatch(r"gowide: stage 'finetune' diverged at step \d+: loss is \S+; "
                        r"[^\n]*checkpoint[^\n]*\n", err), err
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["1-wide.pt", "2-imitate.pt"]
    # the last good checkpoint is whole: the weights of stage 2 of the stable run
    _models_equal(out / "checkpoints" / "2-imitate.pt", ref_out / "checkpoints" / "2-imitate.pt")
    assert not (out / "result.json").exists() and not (out / "model.pt").exists()
    assert not list(out.rglob("*.tmp"))
