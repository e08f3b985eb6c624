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
