"""Anytime curves (empirical/anytime.py), the configuration match of finished runs, the
precision option and compare --only-finished."""

from __future__ import annotations

import json
import math

import pytest

from empirical.anytime import curve, summarise
from empirical.config import RunConfig, same_config
from empirical.presets import build_config
from empirical.runtime import setup_runtime
from gowide.cli import main
from gowide.errors import UsageError
from gowide.report.empirical import reach_cell


def _run(method, evals, entries, final_model="thin", val=None, selected=None):
    stages = {}
    for name, steps_values in evals.items():
        ev = [{"step": st, "accuracy": v} for st, v in steps_values]
        stages[name] = {"evaluations": ev}
        if selected is not None:
            stages[name]["selected"] = {"accuracy": selected}
    return {"task": "resnet", "method": method, "final_model": final_model,
            "stages": stages, "metrics": {"val": {"accuracy": val}},
            "compute": {"entries": [{"stage": st, "phase": ph, "flops_per_step": f,
                                     "steps": n, "flops": f * n}
                                    for st, ph, f, n in entries]}}


def test_curve_counts_the_stages_before_it_and_the_teacher_apart():
    r = _run("ours", {"wide": [(10, 0.9)], "finetune": [(5, 0.7), (10, 0.8)]},
             [("wide", "train", 10, 10), ("imitate", "stem", 2, 5), ("imitate", "b0", 4, 5),
              ("finetune", "train", 3, 10)])
    c = curve(r)
    # before stage 3: 100 (teacher) + 10 + 20; then 3 per step
    assert c["flops_with_teacher"] == [145, 160]
    assert c["flops_teacher_exists"] == [45, 60]
    assert c["value"] == [0.7, 0.8] and c["stage"] == ["finetune", "finetune"]
    teacher = _run("teacher", {"wide": [(5, 0.6), (10, 0.9)]}, [("wide", "train", 10, 10)],
                   final_model="wide")
    assert curve(teacher)["flops_with_teacher"] == [50, 100]
    no_ft = _run("ours_no_ft", {}, [("wide", "train", 10, 10), ("imitate", "stem", 2, 5)],
                 val=0.5)
    assert curve(no_ft) | {} == {"stage": ["final"], "step": [None],
                                  "flops_with_teacher": [110], "flops_teacher_exists": [10],
                                  "value": [0.5]}


def test_reach_and_paired_ratio_to_scratch():
    results = {}
    for s in (0, 1):
        results[("scratch", s)] = _run("scratch", {"scratch": [(5, 0.8), (10, 0.9)]},
                                       [("scratch", "train", 1, 10)], selected=0.9)
        results[("deeper", s)] = _run("deeper", {"scratch": [(5, 0.9), (10, 0.95)]},
                                      [("scratch", "train", 4 * (s + 1), 10)])
        results[("kd", s)] = _run("kd", {"finetune": [(10, 0.85)]},
                                  [("wide", "train", 10, 10), ("finetune", "train", 1, 10)])
    a = summarise("resnet", results, ["scratch", "deeper", "kd"], [0, 1])
    assert a["target"]["per_seed"] == {0: 0.9, 1: 0.9}
    d = a["methods"]["deeper"]["reach"]
    assert d["reached"] == 2 and d["flops_with_teacher_mean"] == pytest.approx((20 + 40) / 2)
    ratio = d["flops_with_teacher_ratio_to_scratch"]  # 20/10 and 40/10
    assert ratio["geometric_mean"] == pytest.approx(math.sqrt(2 * 4))
    assert a["methods"]["kd"]["reach"]["reached"] == 0
    assert reach_cell(a["methods"]["kd"]["reach"], "flops_with_teacher") == "never (0 of 2)"
    assert a["methods"]["kd"]["reach"]["flops_with_teacher_ratio_to_scratch"] is None


def test_a_setting_added_later_at_its_default_keeps_runs_finished():
    cfg = build_config("resnet", "ours", "tiny", [], seed=0, device="cpu", threads=1)
    stored = cfg.to_dict()
    assert same_config(stored, cfg)
    del stored["precision"]  # a run written before the setting existed
    del stored["downstream"]["mode"]
    assert same_config(stored, cfg)
    other = build_config("resnet", "ours", "tiny", ['precision="fp32"'], seed=0, device="cpu",
                         threads=1)
    assert not same_config(stored, other)  # not the default: the old run is stale
    changed = cfg.to_dict() | {"seed": 1}
    assert not same_config(changed, cfg)
    assert same_config(cfg.to_dict() | {"device": "cuda"}, cfg)  # the device aside


def test_precision_option():
    assert RunConfig().precision == "auto"
    with pytest.raises(UsageError, match="bf16"):
        build_config("resnet", "ours", "tiny", ['precision="bf16"'], seed=0, device="cpu")
    with pytest.raises(UsageError, match="precision"):
        build_config("resnet", "ours", "tiny", ['precision="fp16"'], seed=0, device="cpu")
    assert setup_runtime("cpu", progress=False, precision="fp32").amp is False


def test_only_finished_compares_what_finished_and_trains_nothing(tmp_path):
    out = tmp_path / "cmp"
    base = ["empirical", "compare", "--task", "resnet", "--out", str(out), "--quiet",
            "--device", "cpu", "--set", "wide.steps=5", "--set", "finetune.steps=5",
            "--set", "imitate.steps_per_block=2"]
    assert main(base + ["--seeds", "2", "--methods", "scratch"]) == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    assert main(base + ["--seeds", "2", "--methods", "scratch,ours", "--only-finished"]) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert list(summary["methods"]) == ["scratch"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == stamps
    assert not (out / "runs" / "ours").exists()
