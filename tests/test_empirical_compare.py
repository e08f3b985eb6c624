"""``gowide empirical compare``: claims and intervals, compute matching, the stage cache."""

import json
import math

import pytest
from empirical_helpers import FAST_RESNET, fast_config

from empirical.claims import improvement, summarise
from empirical.runner import run
from gowide.cli import main
from gowide.report.empirical import compare_markdown


def _fake_result(task, method, seed, acc, flops=1e9, teacher=0):
    metrics = ({"test": {"accuracy": acc}, "val": {"accuracy": acc}} if task == "resnet" else
               {"downstream": {"test": {"accuracy": acc}},
                "mlm": {"val": {"mlm_loss": math.log(100 * (1.5 - acc)), "mlm_accuracy": acc}}})
    return {"task": task, "method": method, "seed": seed, "metrics": metrics,
            "config": {"method": method, "seed": seed, "task": task}, "data": {},
            "provenance": {}, "final_model": "thin", "params": {"thin": 10},
            "compute": {"train_flops": flops, "teacher_flops": teacher,
                        "student_flops": flops - teacher, "train_wall_s": 1.0,
                        "teacher_wall_s": 0.0}}


def _results(task, table):
    return {(m, s): _fake_result(task, m, s, acc) for m, accs in table.items()
            for s, acc in enumerate(accs)}


def test_claims_follow_the_paired_interval():
    table = {"ours": [0.90, 0.91, 0.92], "scratch": [0.85, 0.86, 0.88],
             "deeper": [0.902, 0.913, 0.921], "kd": [0.91, 0.90, 0.93]}
    s = summarise("resnet", "x", [0, 1, 2], list(table), _results("resnet", table))
    claims = {c["claim"]: c for c in s["claims"]}
    c1 = claims["C1"]
    assert c1["per_seed"] == pytest.approx([0.05, 0.05, 0.04])
    assert c1["measured"] == pytest.approx(0.14 / 3)
    lo, hi = c1["interval"]
    assert 0 < lo < c1["measured"] < hi and c1["held"] is True and c1["wins"] == 3
    # C2 is non-inferiority: ours is slightly behind deeper, but within the margin of 0.01
    assert claims["C2"]["measured"] < 0 and claims["C2"]["margin"] == 0.01
    assert claims["C2"]["interval"][0] == pytest.approx(-0.002 - 4.3027 * 0.001 / 3 ** 0.5,
                                                        abs=1e-6)
    assert claims["C2"]["held"] is True
    # C3: ours ahead on one seed, behind on two: the interval covers 0, not held
    assert claims["C3"]["interval"][0] < 0 and claims["C3"]["held"] is False
    assert s["methods"]["ours"]["mean"]["test_accuracy"] == pytest.approx(0.91)
    assert s["methods"]["ours"]["std"]["test_accuracy"] == pytest.approx(0.01)
    text = compare_markdown(s)
    assert "| C1 ours beats the thin net trained normally (vs `scratch`)" in text
    assert "**no**" in text


def test_perplexity_improvement_is_relative_and_lower_is_better():
    assert improvement(90.0, 100.0, "perplexity") == pytest.approx(0.1)
    assert improvement(0.8, 0.7, "accuracy") == pytest.approx(0.1)
    table = {"ours": [0.8, 0.8], "scratch": [0.7, 0.72], "kd": [0.8, 0.8], "deeper": [0.8, 0.8]}
    s = summarise("bert", "x", [0, 1], list(table), _results("bert", table))
    by = {(c["claim"], c["metric"]): c for c in s["claims"]}
    assert set(by) == {(c, m) for c in ("C1", "C3", "C4")
                       for m in ("mlm_perplexity", "downstream_accuracy")}
    assert all(d > 0 for d in by[("C1", "mlm_perplexity")]["per_seed"])
    assert by[("C3", "downstream_accuracy")]["measured"] == 0.0


def test_one_seed_or_a_missing_method_gives_no_verdict():
    table = {"ours": [0.9], "scratch": [0.8]}
    s = summarise("resnet", "x", [0], list(table), _results("resnet", table))
    claims = {c["claim"]: c for c in s["claims"]}
    assert claims["C1"]["held"] is None and "two seeds" in claims["C1"]["note"]
    assert claims["C2"]["held"] is None and "deeper" in claims["C2"]["note"]
    assert "n/a" in compare_markdown(s)


def test_scratch_long_gets_the_flops_of_ours_with_its_teacher(tmp_path):
    ours = run(fast_config("resnet", "ours"), tmp_path / "ours", progress=False)
    long = run(fast_config("resnet", "scratch_long"), tmp_path / "long", progress=False)
    matched = long["compute"]["matched_to"]
    assert matched["budget_flops"] == ours["compute"]["train_flops"]
    per_step = matched["flops_per_step"]
    assert 0 <= long["compute"]["train_flops"] - ours["compute"]["train_flops"] < per_step
    scratch = run(fast_config("resnet", "scratch"), tmp_path / "scratch", progress=False)
    thin_steps = (ours["stages"]["finetune"]["steps"]
                  + sum(p["steps"] for p in ours["stages"]["imitate"]["phases"]))
    assert scratch["stages"]["scratch"]["steps"] == thin_steps < matched["steps"]


def test_compare_cli_reuses_finished_runs_and_shares_stages(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["empirical", "compare", "--task", "resnet", "--seeds", "2", "--out", str(out),
            "--methods", "ours,ours_no_ft,scratch,kd", "--quiet", "--device", "cpu"]
    for item in FAST_RESNET:
        argv += ["--set", item]
    assert main(argv) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["seeds"] == [0, 1] and set(summary["methods"]) == {
        "ours", "ours_no_ft", "scratch", "kd"}
    assert {c["claim"] for c in summary["claims"]} == {"C1", "C2", "C3"}
    for c in summary["claims"]:
        assert set(c) >= {"claim", "measured", "interval", "held"}
    assert summary["overrides"] == FAST_RESNET  # the --set items, as given
    assert f"`{FAST_RESNET[0]}`" in (out / "compare.md").read_text()
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == [
        "empirical_resnet_anytime.png", "empirical_resnet_blocks.png",
        "empirical_resnet_compute.png", "empirical_resnet_curves.png"]
    assert not (out / "cache").exists() and not list(out.rglob("checkpoints/*.pt"))
    # ours_no_ft took the wide and imitation stages of ours from the cache, unchanged
    no_ft = json.loads((out / "runs" / "ours_no_ft" / "seed1" / "result.json").read_text())
    assert no_ft["stages"]["wide"].get("cached") and no_ft["stages"]["imitate"].get("cached")
    alone = run(fast_config("resnet", "ours_no_ft", seed=1), tmp_path / "alone",
                progress=False)
    assert alone["metrics"] == no_ft["metrics"]
    assert alone["compute"]["train_flops"] == no_ft["compute"]["train_flops"]
    # a second call reuses every finished run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == stamps


@pytest.mark.parametrize("bad", [["--methods", "ours,nope"], ["--seeds", "0"],
                                 ["--set", "wide.steps=-1"], ["--threads", "-2"]])
def test_compare_bad_input_is_one_line(tmp_path, capsys, bad):
    out = tmp_path / "cmp"
    code = None
    try:
        code = main(["empirical", "compare", "--task", "resnet", "--out", str(out)] + bad)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def _gated(task="resnet", teacher=(0.95, 0.96), scratch=(0.93, 0.94), converged=(True, True),
           errors=(0.03, 0.04)):
    table = {"ours": [0.95, 0.96], "scratch": list(scratch), "deeper": [0.9, 0.9],
             "kd": [0.9, 0.91], "teacher": list(teacher)}
    results = _results(task, table)
    for s in (0, 1):
        results[("scratch", s)]["convergence"] = {"scratch": {"converged": converged[s]}}
        results[("ours", s)]["imitation_block_errors"] = {
            "thin": {"stem": errors[s] / 2, "blocks.0": errors[s]}}
    return summarise(task, "x", [0, 1], list(table), results)


def test_gates_pass_and_the_claims_are_judged():
    s = _gated()
    gates = {g["gate"]: g for g in s["gates"]}
    assert gates["teacher_margin"]["measured"] == pytest.approx(0.02)
    assert gates["teacher_margin"]["per_seed"] == pytest.approx([0.02, 0.02])
    assert gates["scratch_converged"]["passed"] is True
    assert gates["block_error"]["measured"] == pytest.approx(0.04)
    assert all(g["passed"] is True for g in s["gates"]) and s["gates_failed"] == []
    assert all(c["held"] is not None for c in s["claims"])


@pytest.mark.parametrize("change,failed", [
    # +0.005 < 0.01 on both seeds, so on the pilot seed too
    (dict(teacher=(0.935, 0.945)), ["teacher_margin", "pilot teacher_margin"]),
    (dict(converged=(True, False)), ["scratch_converged"]),
    (dict(errors=(0.03, 0.06)), ["block_error"]),
])
def test_a_failed_gate_leaves_every_claim_unjudged(change, failed):
    s = _gated(**change)
    assert s["gates_failed"] == failed
    for c in s["claims"]:
        assert c["held"] is None and c["note"] == f"gate failed: {', '.join(failed)}"
        assert c["measured"] is not None  # the numbers are still reported
    assert f"A gate failed ({', '.join(failed)})" in compare_markdown(s)


def test_block_error_gate_counts_from_each_blocks_floor():
    table = {"ours": [0.95, 0.96], "scratch": [0.93, 0.94], "teacher": [0.95, 0.96]}
    results = _results("resnet", table)
    for s in (0, 1):
        results[("ours", s)]["imitation_block_errors"] = {
            "thin": {"stem": 0.30, "blocks.0": 0.04}}
        results[("ours", s)]["stages"] = {"imitate": {
            "block_errors": {}, "block_error_floors": {"stem": 0.27 if s else 0.20}}}
    gates = {g["gate"]: g for g in summarise("resnet", "x", [0, 1], list(table),
                                             results)["gates"]}
    g = gates["block_error"]
    assert g["per_seed"] == pytest.approx([0.10, 0.04])  # 0.30 − 0.20 and max(0.03, 0.04)
    assert g["max_error_per_seed"] == [0.30, 0.30] and g["floor_per_seed"] == [0.20, 0.27]
    assert g["passed"] is False


def test_a_pilot_gate_that_fails_leaves_the_claims_unjudged():
    s = _gated(teacher=(0.935, 0.96))  # seed 0: +0.005; mean over seeds +0.0125 passes
    assert [g["passed"] for g in s["gates"]] == [True, True, True]
    assert s["gates_failed"] == ["pilot teacher_margin"]
    assert all(c["held"] is None for c in s["claims"])
    md = compare_markdown(s)
    assert "pilot seed" in md
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| gate |"))
    head, rule, *rows = lines[start:lines.index("", start)]
    assert rule.count("|---") == 5 and len(rows) == 3  # every row fills the header's 5 cells
    assert {ln.count(" | ") + 1 for ln in [head, *rows]} == {5}


def test_gates_that_cannot_be_checked_judge_nothing():
    table = {"ours": [0.9, 0.91], "scratch": [0.85, 0.86]}
    s = summarise("resnet", "x", [0, 1], list(table), _results("resnet", table))
    assert [g["passed"] for g in s["gates"]] == [None, None, None]
    assert "needs methods teacher and scratch" in s["gates"][0]["note"]
    assert s["gates_failed"] == [] and {c["claim"]: c["held"] for c in s["claims"]}["C1"]
    assert "not checked" in compare_markdown(s)


def test_bert_teacher_margin_is_in_nats():
    s = _gated("bert", teacher=(0.8, 0.8), scratch=(0.7, 0.7))
    g = next(g for g in s["gates"] if g["gate"] == "teacher_margin")
    # _fake_result: mlm_loss = log(100 (1.5 - acc))
    assert g["measured"] == pytest.approx(math.log(80) - math.log(70))
    assert g["threshold"] == 0.1 and g["passed"] is True


def test_pilot_seed_stops_the_comparison_when_a_gate_fails(tmp_path):
    out = tmp_path / "cmp"
    argv = ["empirical", "compare", "--task", "resnet", "--seeds", "2", "--out", str(out),
            "--methods", "ours,teacher", "--quiet", "--device", "cpu", "--pilot"]
    for item in FAST_RESNET:
        argv += ["--set", item]
    assert main(argv) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["seeds"] == [0] and "block_error" in summary["stopped"]
    assert "stopped after the pilot seed 0" in (out / "compare.md").read_text()
    for claim in summary["claims"]:
        assert claim["held"] is None and claim["note"].startswith("gate failed: ")
    assert not (out / "runs" / "ours" / "seed1").exists()
    block = next(g for g in summary["gates"] if g["gate"] == "block_error")
    assert block["passed"] is False and block["measured"] > 0.05  # 4 steps per block


def test_parallel_jobs_give_the_numbers_of_one_process(tmp_path):
    common = ["empirical", "compare", "--task", "resnet", "--seeds", "2", "--methods",
              "scratch", "--quiet", "--device", "cpu"]
    for item in FAST_RESNET:
        common += ["--set", item]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    assert main(common + ["--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    one, two = (json.loads((tmp_path / d / "compare.json").read_text()) for d in ("one", "two"))
    assert two["jobs"] == 2
    assert [r["metrics"] for r in one["methods"]["scratch"]["per_seed"]] == [
        r["metrics"] for r in two["methods"]["scratch"]["per_seed"]]


def test_jobs_need_one_thread_per_process(tmp_path, capsys):
    code = main(["empirical", "compare", "--task", "resnet", "--out", str(tmp_path / "o"),
                 "--jobs", "2", "--threads", "0", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--jobs > 1 runs one-thread processes" in err


@pytest.mark.parametrize("doubled,passed", [((0.932, 0.942), True),   # +0.2 point
                                            ((0.936, 0.946), False),  # +0.6 point
                                            ((0.925, 0.935), False)])  # −0.5 point
def test_doubling_scratch_steps_is_the_convergence_check_where_it_ran(doubled, passed):
    table = {"ours": [0.95, 0.96], "scratch": [0.93, 0.94], "scratch_2x": list(doubled),
             "teacher": [0.95, 0.96]}
    results = _results("resnet", table)  # no convergence records: the doubling alone decides
    s = summarise("resnet", "x", [0, 1], list(table), results)
    gate = next(g for g in s["gates"] if g["gate"] == "scratch_converged")
    assert gate["doubling_change"] == pytest.approx(sum(doubled) / 2 - 0.935)
    assert gate["passed"] is passed and ("rule_per_seed" not in gate)
    assert ("scratch_converged" in s["gates_failed"]) is not passed


def test_scratch_2x_trains_twice_the_steps_of_scratch(tmp_path):
    extra = ["scratch.steps=12"]
    r = run(fast_config("resnet", "scratch_2x", extra=extra), tmp_path, progress=False)
    assert r["stages"]["scratch"]["steps"] == 24
