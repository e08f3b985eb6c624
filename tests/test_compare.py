"""The imitation-versus-back-propagation runner on a tiny grid: structure and invariants."""

import math

import pytest

from meanfield.compare import CompareConfig, run_compare


@pytest.fixture(scope="module")
def tiny():
    cfg = CompareConfig(n_train=64, n_test=64, wide_width=64, wide_steps=40, widths=(4, 8),
                        width_depth=2, depths=(2, 4), depth_width=4, imitation_steps=20,
                        bp_steps=30, bp_reference_width=64, eff_width=4, eff_depth=4,
                        eff_max_steps=100, seeds=(0, 1))
    return run_compare(cfg, progress=False)


def test_record_has_every_field_the_interface_promises(tiny):
    for key in ("imitation_width_slope", "backprop_width_slope"):
        assert set(tiny[key]) >= {"value", "ci_low", "ci_high", "predicted", "seeds"}
        assert tiny[key]["seeds"] == [0, 1]
    assert {"backprop", "imitation", "imitation_finetune", "teacher"} <= set(tiny["efficiency"])
    for route in ("backprop", "imitation", "imitation_finetune"):
        entry = tiny["efficiency"][route]
        assert entry["particle_gradients"] is not None or entry["reason"]
    assert all(set(v) == {"prediction", "predicted", "measured", "held"}
               for v in tiny["verdicts"])
    assert len(tiny["raw"]["configs"]) == 2 * 3  # seeds × the union of the two sweeps


def test_stability_bound_holds_everywhere(tiny):
    """The bound is computed on the same inputs as the deviation: a violation is a bug."""
    assert tiny["bound_holds_fraction"] == 1.0
    for rec in tiny["raw"]["configs"]:
        for mode in ("teacher_forced", "progressive"):
            assert rec[mode]["deviation"] <= rec[mode]["bound"] * (1 + 1e-9)
            assert rec[mode]["bound"] <= rec[mode]["bound_exp"] * (1 + 1e-9)


def test_costs_are_counted_consistently(tiny):
    for e in tiny["raw"]["efficiency"]:
        bp = e["routes"]["backprop"]
        if bp.get("curve"):
            pg = [c[0] for c in bp["curve"]]
            assert all(b > a for a, b in zip(pg, pg[1:], strict=False))
            # one back-propagation step costs (examples) × (particles) × (layers)
            assert pg[0] == 25 * 64 * 4 * 4
        assert e["teacher_cost"]["particle_gradients"] == 40 * 64 * 64 * 4
        assert math.isfinite(e["target_loss"])


def test_figure_script_draws_from_saved_results(tiny, tmp_path):
    from figures.fig_compare import main
    from gowide.atomic import write_json

    path = write_json(tmp_path / "compare.json", tiny)
    assert main([str(path), "--out", str(tmp_path / "fig")]) == 0
    for stem in ("compare_width", "compare_depth", "compare_efficiency"):
        assert (tmp_path / "fig" / f"{stem}.png").stat().st_size > 1000
        assert (tmp_path / "fig" / f"{stem}.pdf").exists()
