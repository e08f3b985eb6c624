"""Figure scripts: each draws from saved results only, from its default location or a path."""

import importlib
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = {
    "figures.fig_limits": ("meanfield/limits/limits.json", ["limits_width", "limits_depth"]),
    "figures.fig_compare": ("meanfield/compare/compare.json",
                            ["compare_width", "compare_depth", "compare_efficiency"]),
    "figures.fig_clouds": ("meanfield/clouds/clouds.json", ["clouds"]),
    "figures.fig_depth": ("meanfield/depth/depth.json",
                          ["depth_deviation", "depth_ratio", "depth_width_needed"]),
}


@pytest.mark.parametrize("module", sorted(COMMITTED))
def test_figure_scripts_draw_the_committed_results(module, tmp_path):
    rel, stems = COMMITTED[module]
    main = importlib.import_module(module).main
    assert main([str(ROOT / "results" / rel), "--out", str(tmp_path)]) == 0
    for stem in stems:
        assert (tmp_path / f"{stem}.png").stat().st_size > 1000
        assert (tmp_path / f"{stem}.pdf").stat().st_size > 1000


@pytest.mark.parametrize("module", sorted(COMMITTED) + ["figures.fig_empirical"])
def test_quick_mode_reads_the_quick_results_or_says_what_is_missing(module, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no figures/out/results here
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main(["--quick", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "figures/out/results" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_default_location_is_the_committed_results(tmp_path, monkeypatch):
    rel, _ = COMMITTED["figures.fig_clouds"]
    (tmp_path / "results" / rel).parent.mkdir(parents=True)
    shutil.copy(ROOT / "results" / rel, tmp_path / "results" / rel)
    monkeypatch.chdir(tmp_path)
    from figures.fig_clouds import main

    assert main(["--out", "o"]) == 0 and (tmp_path / "o" / "clouds.png").exists()


def test_gate_figure_draws_every_design_present_from_the_committed_results(tmp_path):
    import json

    from empirical.gates import GATES
    from figures.fig_gates import main, points, present

    found = present(ROOT / "results")
    assert {row[0] for row in found} == {"resnet", "bert"}
    assert main([str(ROOT / "results"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "gates.png").stat().st_size > 1000
    rows = points(ROOT / "results")
    assert len(rows) == len(found)
    for row, (family, _, _, run_path, scratch_path, _) in zip(rows, found, strict=True):
        run = json.loads(run_path.read_text(encoding="utf-8"))
        scratch = json.loads(scratch_path.read_text(encoding="utf-8"))["metrics"]
        if family == "bert":  # nats, lower is better
            margin = (scratch["mlm"]["val"]["mlm_loss"]
                      - run["stages"]["wide"]["selected"]["mlm_loss"])
        else:  # accuracy points
            margin = 100 * (run["stages"]["wide"]["selected"]["accuracy"]
                            - scratch["val"]["accuracy"])
        floors = run["stages"]["imitate"].get("block_error_floors", {})
        excess = max(e - floors.get(b, 0.0)
                     for b, e in run["imitation_block_errors"]["thin"].items())
        assert row["margin"] == pytest.approx(margin) and row["excess"] == pytest.approx(excess)
        # the lines drawn are the package's gates (read from the family's compare.json)
        scale = 1.0 if family == "bert" else 100.0
        assert row["margin_gate"] == pytest.approx(GATES["teacher_margin"][family] * scale)
        assert row["excess_gate"] == GATES["block_error"]


def test_gate_figure_reads_a_design_only_when_both_its_files_are_there(tmp_path):
    from figures.fig_gates import DESIGNS, GATE_SOURCES, present

    family, design, width, run_dir, scratch_dir = DESIGNS[0]
    needed = [f"{run_dir}/result.json", f"{scratch_dir}/result.json", GATE_SOURCES[family]]
    for rel in needed:
        dest = tmp_path / "empirical" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "results" / "empirical" / rel, dest)
    assert [row[:3] for row in present(tmp_path)] == [(family, design, width)]
    for rel in needed:  # any one missing: the design is not drawn
        (tmp_path / "empirical" / rel).rename(tmp_path / "gone")
        assert present(tmp_path) == []
        (tmp_path / "gone").rename(tmp_path / "empirical" / rel)
