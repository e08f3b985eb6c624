"""The depth experiment on a tiny grid: structure, verdicts decided by their interval, the
stability check under every scaling, width needed recomputed from the raw numbers, the figure
script and the command line."""

import json
import math

import pytest
from conftest import TINY_DEPTH as TINY
from test_cli import _run

from gowide.stats import decide
from meanfield.depth import DepthConfig, run_depth
from meanfield.depth_summary import NOT_REACHED
from meanfield.network import RESIDUAL_SCALES


@pytest.fixture(scope="module")
def tiny(tiny_depth):
    """``run_depth(DepthConfig(**TINY))`` (conftest: computed once, shared with test_cli)."""
    return tiny_depth


def test_record_has_every_field_the_interface_promises(tiny):
    assert tiny["grid"]["scales"] == list(RESIDUAL_SCALES)
    assert len(tiny["raw"]["wide"]) == 3 * 3 * 2  # seeds × scales × depths
    assert len(tiny["raw"]["configs"]) == 3 * 3 * 2 * 2  # … × widths
    for rec in tiny["raw"]["configs"]:
        for route in ("imitation", "backprop"):
            assert {"deviation", "rel_deviation", "test_loss", "loss_gap",
                    "rel_loss_gap"} <= set(rec[route])
            assert rec[route]["deviation"] >= 0
    for scale in RESIDUAL_SCALES:
        for series in ("imitation", "backprop", "ratio"):
            s = tiny["slopes"][scale][series]
            assert set(s["per_width"]) == {"4", "8"}
            assert len(s["mean_over_widths"]["per_seed"]) == 3
    assert len(tiny["verdicts"]) == 2 * len(RESIDUAL_SCALES)


def _held_from_record(v):
    lo = math.nan if v["ci_low"] is None else v["ci_low"]
    hi = math.nan if v["ci_high"] is None else v["ci_high"]
    return None if v["gate_failed"] else decide(v["rule"], lo, hi)


def test_every_verdict_is_decided_by_its_interval(tiny, tmp_path):
    from gowide.atomic import write_json

    for v in tiny["verdicts"]:
        assert {"value", "ci_low", "ci_high", "predicted", "rule", "held", "implied_by_theory",
                "basis", "scale"} <= set(v)
        assert v["held"] == _held_from_record(v)
        assert len(v["per_seed"]) == 3
    # and from the file, where non-finite numbers are stored as null
    saved = json.loads(write_json(tmp_path / "depth.json", tiny).read_text())
    for v in saved["verdicts"]:
        assert v["held"] == _held_from_record(v)
    implied = {v["scale"]: v["implied_by_theory"] for v in tiny["verdicts"]
               if v["prediction"].startswith("V1")}
    assert implied == {"1/L": True, "1/sqrt(L)": False, "1": False}


def test_stability_bound_holds_under_every_scaling(tiny):
    """The bound of Theorem 4 with α is computed on the same test inputs: a violation is a bug."""
    for scale in RESIDUAL_SCALES:
        assert tiny["checks"][scale]["stability_bound_holds_fraction"] == 1.0
    for rec in tiny["raw"]["configs"]:
        assert rec["imitation"]["deviation"] <= rec["imitation"]["bound"] * (1 + 1e-6)


def test_width_needed_is_recomputed_from_the_raw_numbers(tiny):
    cfg = DepthConfig(**TINY)
    raw = {(r["seed"], r["scale"], r["depth"], r["width"]): r for r in tiny["raw"]["configs"]}
    for scale in RESIDUAL_SCALES:
        for route in ("imitation", "backprop"):
            by_eps = tiny["width_needed"][scale][route]["rel_deviation"]
            assert set(by_eps) == {f"{e:g}" for e in cfg.tolerances}
            for eps_text, by_depth in by_eps.items():
                for L in cfg.depths:
                    entry = by_depth[str(L)]
                    for seed, got in zip(cfg.seeds, entry["per_seed"], strict=True):
                        within = [n for n in cfg.widths
                                  if raw[(seed, scale, L, n)][route]["rel_deviation"]
                                  <= float(eps_text)]
                        assert got == (within[0] if within else NOT_REACHED)
                    values = [v for v in entry["per_seed"] if isinstance(v, int)]
                    if len(values) == len(cfg.seeds):
                        assert entry["all_seeds"] == max(values)
                        assert entry["half_of_seeds"] <= entry["all_seeds"]
            gap = tiny["width_needed"][scale][route]["rel_loss_gap"]
            for by_depth in gap.values():
                for entry in by_depth.values():
                    for v in entry["per_seed"]:
                        assert isinstance(v, int) or isinstance(v, str)


def test_runs_are_reproducible_and_the_scalings_are_paired(tiny):
    """Paired design: the wide nets of the three scalings start from the same particles (their
    initial losses differ only through α); and a sub-run repeats the full run's numbers."""
    init = {(w["seed"], w["depth"], w["scale"]): w["initial_test_loss"]
            for w in tiny["raw"]["wide"]}
    for seed in (0, 1, 2):
        assert init[(seed, 2, "1/L")] != init[(seed, 2, "1")]
    again = run_depth(DepthConfig(**{**TINY, "seeds": (1,), "scales": ("1/L",),
                                     "depths": (2, 4)}), progress=False)
    first = [r for r in tiny["raw"]["configs"] if r["seed"] == 1 and r["scale"] == "1/L"]
    for a, b in zip(first, again["raw"]["configs"], strict=True):
        assert a["imitation"]["deviation"] == b["imitation"]["deviation"]
        assert a["backprop"]["deviation"] == b["backprop"]["deviation"]


def test_figure_script_draws_from_saved_results(tiny, tmp_path):
    from figures.fig_depth import main
    from gowide.atomic import write_json

    path = write_json(tmp_path / "depth.json", tiny)
    assert main([str(path), "--out", str(tmp_path / "fig")]) == 0
    for stem in ("depth_deviation", "depth_ratio", "depth_width_needed"):
        assert (tmp_path / "fig" / f"{stem}.png").stat().st_size > 1000
        assert (tmp_path / "fig" / f"{stem}.pdf").exists()


@pytest.mark.parametrize("kwargs", [dict(scales=("1/L^2",)), dict(widths=(8, 4)),
                                    dict(widths=(64,), wide_width=32), dict(depths=(4,)),
                                    dict(tolerances=(0.0,)), dict(dtype="float16"),
                                    dict(seeds=())])
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError):
        DepthConfig(**{**TINY, **kwargs}).validate()


@pytest.mark.parametrize("argv", [["meanfield", "depth"],
                                  ["meanfield", "depth", "--out", "x", "--seeds", "0"],
                                  ["meanfield", "depth", "--out", "x", "--threads", "0"],
                                  ["meanfield", "depth", "--out", "x", "--quick", "--wat"]])
def test_bad_command_line_gives_one_line_and_exit_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_command_line_quick_run_writes_results_and_figures(capsys, tmp_path):
    code, out, _ = _run(["meanfield", "depth", "--quick", "--seeds", "1", "--no-progress",
                         "--out", str(tmp_path / "o")], capsys)
    assert code == 0 and "V1 [1/L]" in out
    saved = json.loads((tmp_path / "o" / "depth.json").read_text())
    assert saved["preset"] == "quick" and saved["provenance"]["versions"]["torch"]
    assert saved["seeds"] == [0]
    assert (tmp_path / "o" / "depth_width_needed.png").exists()
