"""The same `empirical run` twice with the same seed on CPU: bit-identical results."""

import json
import os
import subprocess
import sys

import pytest
from empirical_helpers import FAST_BERT, FAST_RESNET, TEST_CACHE


def _start(out, task: str, overrides: list[str]) -> subprocess.Popen:
    argv = [sys.executable, "-m", "gowide.cli", "empirical", "run", "--task", task,
            "--method", "ours", "--preset", "tiny", "--seed", "5", "--device", "cpu",
            "--quiet", "--out", str(out)]
    for item in overrides:
        argv += ["--set", item]
    env = dict(os.environ, GOWIDE_CACHE=TEST_CACHE, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(argv, env=env, cwd=out.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen, out) -> dict:
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return json.loads((out / "result.json").read_text())


def _untimed(obj):
    """``obj`` without its wall-clock times."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if not k.endswith("wall_s")}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


@pytest.mark.parametrize("task", ["resnet", "bert"])
def test_same_seed_gives_bit_identical_results(task, tmp_path):
    overrides = FAST_RESNET if task == "resnet" else FAST_BERT
    # The two runs at once, each in its own one-thread process (a core each on 2 cores); they
    # share nothing but the tokenizer cache, whose file either writes whole and alike.
    outs = [tmp_path / f"run{i}" for i in (1, 2)]
    procs = [_start(out, task, overrides) for out in outs]
    first, second = (_result(proc, out) for proc, out in zip(procs, outs, strict=True))
    assert first["seed"] == second["seed"] == 5
    # JSON floats round-trip exactly, so equality here is equality of the bits
    assert first["metrics"] == second["metrics"]
    assert first["imitation_block_errors"] == second["imitation_block_errors"]
    assert _untimed(first["stages"]) == _untimed(second["stages"])  # losses, evaluations
    assert first["compute"]["by_stage"] == second["compute"]["by_stage"]
