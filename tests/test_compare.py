"""The imitation-versus-back-propagation runner on a tiny grid: structure and invariants."""

import math

import pytest
from conftest import tiny_compare_config

from gowide.stats import decide
from meanfield.compare import run_compare
from meanfield.efficiency import ROUTES, cost_to_target, eval_steps, paired_log_ratios
from meanfield.verdicts import subsample_prediction


@pytest.fixture(scope="module")
def tiny(tiny_compare):
    """The tiny grid's record (conftest: computed once, shared with test_cli)."""
    return tiny_compare


def test_an_interrupted_run_resumes_from_the_finished_seeds(tmp_path):
    cfg = tiny_compare_config(seeds=(0,))
    first = run_compare(cfg, progress=False, workdir=tmp_path)
    seed_file = tmp_path / "seed0.json"
    stamp = seed_file.stat().st_mtime_ns
    again = run_compare(cfg, progress=False, workdir=tmp_path)
    assert seed_file.stat().st_mtime_ns == stamp  # reused, not recomputed
    assert again["verdicts"] == first["verdicts"]
    # a changed setting is not served from the cache
    other = run_compare(tiny_compare_config(seeds=(0,), eff_max_steps=50), progress=False,
                        workdir=tmp_path)
    assert seed_file.stat().st_mtime_ns != stamp
    assert other["raw"]["efficiency"][0]["max_steps"] == 50


def test_every_verdict_carries_its_interval_and_held_follows_from_it(tiny):
    verdicts = tiny["verdicts"] + tiny["efficiency"]["table"] + tiny["efficiency"]["final_quality"]
    assert len(tiny["verdicts"]) == 4 and len(tiny["efficiency"]["table"]) == 4 * 3 * 2 * 2 * 2
    for v in verdicts:
        assert set(v) >= {"prediction", "value", "ci_low", "ci_high", "predicted", "rule",
                          "held"}
        if v["gate_failed"]:
            assert v["held"] is None
        elif "note" not in v:  # the note marks a loss on seeds with no finite ratio
            assert v["held"] == decide(v["rule"], v["ci_low"], v["ci_high"])
    assert len(tiny["raw"]["configs"]) == 2 * 3  # seeds × the union of the two sweeps


def test_stability_bound_is_a_check_with_its_looseness(tiny):
    """The bound is computed on the same inputs as the deviation: a violation is a bug."""
    check = tiny["stability_check"]
    assert check["holds"] == f"{check['configurations']} of {check['configurations']}"
    assert check["looseness_bound_over_measured"]["min"] >= 1.0
    for rec in tiny["raw"]["configs"]:
        for mode in ("teacher_forced", "progressive"):
            assert rec[mode]["deviation"] <= rec[mode]["bound"] * (1 + 1e-9)
            assert rec[mode]["bound"] <= rec[mode]["bound_exp"] * (1 + 1e-9)
    assert not any(v["prediction"].startswith("P3: measured deviation within")
                   for v in tiny["verdicts"])


def test_curves_start_at_step_zero_and_costs_are_counted_consistently(tiny):
    for e in tiny["raw"]["efficiency"]:
        assert set(e["routes"]) == set(ROUTES)
        for route, r in e["routes"].items():
            steps = [row[0] for row in r["curve"]]
            pg = [row[1] for row in r["curve"]]
            assert steps[0] == 0 and steps[-1] == 60
            assert all(b > a for a, b in zip(pg, pg[1:], strict=False)), route
        bp = e["routes"]["backprop_centred"]["curve"]
        # one back-propagation step costs (examples) × (particles) × (layers)
        assert bp[1][1] == bp[1][0] * 64 * 4 * 4
        assert bp[0][1] == 0.0
        imit = e["routes"]["imitation"]["curve"]
        assert imit[0][2] == e["teacher_forward_flops"]  # the teacher's forward, once
        assert e["teacher_cost"]["particle_gradients"] == e["teacher_cost"]["steps"] * 64 * 64 * 4
        assert e["teacher_curve"][-1][0] == e["teacher_cost"]["steps"]
        assert [t["fraction"] for t in e["targets"]] == [0.5, 0.25, 0.1, 0.05]
        assert all(math.isfinite(t["loss"]) for t in e["targets"])


def test_a_target_the_start_meets_is_not_a_win():
    rows = [[0, 0.0, 10.0, 0.1, 0.1], [5, 50.0, 60.0, 0.05, 0.05]]
    hit = cost_to_target(rows, 0.2)
    assert hit["reached"] and hit["at_start"] and hit["particle_gradients"] == 0.0
    miss = cost_to_target(rows, 0.01)
    assert not miss["reached"] and miss["particle_gradients"] == 50.0
    seed = {"teacher_cost": {"particle_gradients": 1000.0},
            "routes": {"imitation": {"to_target": [hit]},
                       "backprop_centred": {"to_target": [cost_to_target(
                           [[0, 0.0, 0.0, 1.0, 1.0], [9, 90.0, 90.0, 0.15, 0.15]], 0.2)]}}}
    p = paired_log_ratios([seed], "imitation", "backprop_centred", 0, "particle_gradients", False)
    assert p["counts"]["non_discriminating"] == 1 and p["log_ratios"] == []
    p = paired_log_ratios([seed], "imitation", "backprop_centred", 0, "particle_gradients", True)
    assert p["log_ratios"] == [pytest.approx(math.log(1000.0 / 90.0))]


def test_evaluation_grid_and_finite_population_prediction():
    steps = eval_steps(100, 1.5)
    assert steps[:4] == [0, 1, 2, 3] and steps[-1] == 100 and steps == sorted(set(steps))
    # sampling without replacement: steeper than -1, and -1 when N is huge
    assert subsample_prediction((4, 8, 16, 32, 64, 128), 512) < -1.05
    assert subsample_prediction((4, 8, 16), 10**9) == pytest.approx(-1.0, abs=1e-6)


def test_figure_script_draws_from_saved_results(tiny, tmp_path):
    from figures.fig_compare import main
    from gowide.atomic import write_json

    path = write_json(tmp_path / "compare.json", tiny)
    assert main([str(path), "--out", str(tmp_path / "fig")]) == 0
    for stem in ("compare_width", "compare_depth", "compare_efficiency"):
        assert (tmp_path / "fig" / f"{stem}.png").stat().st_size > 1000
        assert (tmp_path / "fig" / f"{stem}.pdf").exists()


def test_report_renders_every_table(tiny):
    from gowide.report.meanfield import compare_markdown

    text = "\n".join(compare_markdown(tiny))
    assert "| target f | route |" in text and "Stability bound" in text
    assert "of" in text and "gate `teacher_converged`" in text
