"""The same `empirical run` twice with the same seed on CPU: bit-identical results."""

import json
import os
import subprocess
import sys

import pytest
from empirical_helpers import FAST_BERT, FAST_RESNET, TEST_CACHE


def _run(out, task: str, overrides: list[str]) -> dict:
    argv = [sys.executable, "-m", "gowide.cli", "empirical", "run", "--task", task,
            "--method", "ours", "--preset", "tiny", "--seed", "5", "--device", "cpu",
            "--quiet", "--out", str(out)]
    for item in overrides:
        argv += ["--set", item]
    env = dict(os.environ, GOWIDE_CACHE=TEST_CACHE, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(argv, env=env, cwd=out.parent, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
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
    first, second = (_run(tmp_path / f"run{i}", task, overrides) for i in (1, 2))
    assert first["seed"] == second["seed"] == 5
    # JSON floats round-trip exactly, so equality here is equality of the bits
    assert first["metrics"] == second["metrics"]
    assert first["imitation_block_errors"] == second["imitation_block_errors"]
    assert _untimed(first["stages"]) == _untimed(second["stages"])  # losses, evaluations
    assert first["compute"]["by_stage"] == second["compute"]["by_stage"]
