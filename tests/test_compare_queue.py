"""scripts/compare_queue.py: the job split of a comparison, and one small queue end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("compare_queue", ROOT / "scripts" /
                                              "compare_queue.py")
queue = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(queue)


def test_jobs_put_the_teacher_first_and_wait_for_it():
    jobs = queue.jobs_for(3, ["teacher", "scratch", "ours", "ours_no_ft", "deeper", "kd"])
    assert jobs[0] == (3, ["teacher"], False)
    assert (3, ["ours", "ours_no_ft"], True) in jobs and (3, ["kd"], True) in jobs
    assert (3, ["scratch"], False) in jobs and (3, ["deeper"], False) in jobs
    # every method is in exactly one job
    names = [m for _, g, _ in jobs for m in g]
    assert sorted(names) == sorted(["teacher", "scratch", "ours", "ours_no_ft", "deeper", "kd"])
    # without a teacher job nothing waits (each run then trains its own teacher)
    assert all(not w for _, _, w in queue.jobs_for(0, ["ours", "scratch"]))


def test_late_methods_wait_for_every_seeds_other_jobs():
    core = ["teacher", "scratch", "ours", "kd"]
    for block in (1, 2, 5):
        jobs = queue.ordered_jobs(3, core, ["scratch_2x"], block)
        late = [i for i, (_, g, _) in enumerate(jobs) if g == ["scratch_2x"]]
        assert late == [len(jobs) - 3, len(jobs) - 2, len(jobs) - 1]
        assert [s for s, _, _ in jobs[-3:]] == [0, 1, 2]
    # within a block: the teachers, then what waits for them, then the baselines
    jobs = queue.ordered_jobs(2, core, [], 2)
    assert [(s, g) for s, g, _ in jobs] == [(0, ["teacher"]), (1, ["teacher"]),
                                             (0, ["ours"]), (0, ["kd"]), (1, ["ours"]),
                                             (1, ["kd"]), (0, ["scratch"]), (1, ["scratch"])]
    # blocks of one seed finish seed 0's core jobs before seed 1's teacher
    jobs = queue.ordered_jobs(2, core, [], 1)
    assert jobs.index((0, ["scratch"], False)) < jobs.index((1, ["teacher"], False))


@pytest.mark.slow
def test_a_small_queue_writes_the_comparison_of_its_runs(tmp_path):
    out = tmp_path / "q"
    cmd = [sys.executable, str(ROOT / "scripts" / "compare_queue.py"), "--task", "resnet",
           "--preset", "tiny", "--seeds", "2", "--workers", "2", "--device", "cpu",
           "--methods", "teacher,scratch,ours,kd", "--late", "", "--out", str(out),
           "--set", "wide.steps=10", "--set", "finetune.steps=10",
           "--set", "imitate.steps_per_block=2"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=600)
    summary = json.loads((out / "compare.json").read_text())
    assert summary["seeds"] == [0, 1] and set(summary["methods"]) == {"teacher", "scratch",
                                                                       "ours", "kd"}
    kd = json.loads((out / "runs" / "kd" / "seed1" / "result.json").read_text())
    assert kd["stages"]["wide"]["cached"]  # the seed's teacher job trained it
    assert json.loads((out / "queue.json").read_text())["seeds_complete"] == 2
