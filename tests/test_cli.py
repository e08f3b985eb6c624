"""The gowide command line: help everywhere, one-line errors, and the quick runs end to end."""

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gowide.cli import build_parser, main


def _subcommand_paths(parser, prefix=()):
    paths = [prefix]
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                paths += _subcommand_paths(sub, prefix + (name,))
    return paths


def _run(argv, capsys):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_top_level_help_lists_subcommands(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    for name in ("meanfield", "reproduce", "figures", "empirical"):
        assert name in out


@pytest.mark.parametrize("path", _subcommand_paths(build_parser()))
def test_every_subcommand_has_help(path, capsys):
    code, out, _ = _run(list(path) + ["--help"], capsys)
    assert code == 0
    assert "usage: gowide" in out


BAD = [
    [],
    ["nonsense"],
    ["--bogus"],
    ["meanfield"],
    ["meanfield", "limits"],
    ["meanfield", "limits", "--out"],
    ["meanfield", "limits", "--out", "x", "--seeds", "0"],
    ["meanfield", "limits", "--out", "x", "--seeds", "two"],
    ["meanfield", "limits", "--out", "x", "--seeds", "-3"],
    ["meanfield", "limits", "--out", "x", "--activation", "sigmoid"],
    ["meanfield", "limits", "--out", "x", "--dtype", "float16"],
    ["meanfield", "limits", "--out", "x", "--device", "tpu"],
    ["meanfield", "limits", "--out", "x", "--quick", "--wat"],
    ["meanfield", "compare"],
    ["meanfield", "compare", "--out", "x", "--task", "nope"],
    ["meanfield", "compare", "--out", "x", "--threads", "0"],
    ["meanfield", "clouds"],
    ["meanfield", "clouds", "--out", "x", "--seed", "-1"],
    ["meanfield", "clouds", "--out", "x", "--seed", "one"],
    ["meanfield", "clouds", "--out", "x", "--threads", "0"],
    ["meanfield", "clouds", "--out", "x", "--seeds", "3"],
    ["meanfield", "clouds", "--out", "x", "--quick", "--wat"],
    ["reproduce", "--quick", "--out"],
    ["reproduce", "--frobnicate"],
    ["figures", "--bogus"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) or "<empty>" for a in BAD])
def test_bad_input_gives_one_line_and_exit_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir()), "nothing may be written on bad input"


@pytest.mark.parametrize("job", ["limits", "clouds"])
def test_output_path_that_is_a_file_is_a_usage_error(capsys, tmp_path, job):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    code, _, err = _run(["meanfield", job, "--quick", "--out", str(target)], capsys)
    assert code == 2 and "not a directory" in err and len(err.strip().splitlines()) == 1
    assert target.read_text() == "keep me"


def test_cuda_without_a_device_is_a_usage_error(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, _, err = _run(["meanfield", "limits", "--quick", "--device", "cuda", "--out",
                         str(tmp_path / "o")], capsys)
    assert code == 2 and "CUDA" in err
    assert not (tmp_path / "o").exists()


def test_malformed_results_file_is_a_usage_error(capsys, tmp_path):
    results = tmp_path / "res" / "meanfield" / "limits"
    results.mkdir(parents=True)
    (results / "limits.json").write_text("{not json")
    code, _, err = _run(["reproduce", "--out", str(tmp_path / "out"), "--results",
                         str(tmp_path / "res")], capsys)
    assert code == 2 and "not valid JSON" in err


# A limits preset small enough for the default suite (seconds): the command's path (parsing,
# preset, run, JSON, figures, summary) is the quick preset's; its rates are test_limits'.
TINY_LIMITS = dict(widths=(16, 32, 64), draws=4, train_widths=(16, 32), train_draws=2,
                   reference_width=256, train_steps=20, n_points=64, n_train=64,
                   depths=(16, 32, 64), family_width=16)


@pytest.fixture(scope="module")
def quick_limits(tmp_path_factory):
    """`gowide meanfield limits --quick --seeds 2` with the quick preset shrunk to TINY_LIMITS."""
    from meanfield.experiments import LimitsConfig

    out = tmp_path_factory.mktemp("limits")
    quick = LimitsConfig.quick
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setattr(LimitsConfig, "quick", classmethod(
            lambda cls, **kw: quick.__func__(cls, **{**TINY_LIMITS, **kw})))
        assert main(["meanfield", "limits", "--quick", "--seeds", "2", "--out", str(out),
                     "--no-progress"]) == 0
    return out, stdout.getvalue()


def _check_limits_output(out, stdout, sane_rates):
    data = json.loads((out / "limits.json").read_text())
    for key in ("width_slope", "width_slope_trained", "depth_slope"):
        s = data[key]
        assert set(s) >= {"value", "ci_low", "ci_high", "predicted", "seeds"}
        assert s["predicted"] == -1.0 and s["seeds"] == [0, 1]
        assert s["ci_low"] <= s["value"] <= s["ci_high"]
        if sane_rates:
            assert -1.5 < s["value"] < -0.5  # a sanity range; the rate tests are in test_limits
    assert data["config"]["seeds"] == [0, 1] and data["preset"] == "quick"
    assert data["provenance"]["versions"]["torch"]
    assert data["provenance"]["device"] == "cpu"
    for stem in ("limits_width", "limits_depth"):
        assert (out / f"{stem}.png").stat().st_size > 1000
        assert (out / f"{stem}.pdf").stat().st_size > 1000
    assert "| P2 depth rate |" in stdout and "results:" in stdout
    assert not list(out.glob(".*.tmp")), "no temporary files may be left behind"


def test_quick_limits_writes_results_and_figures(quick_limits):
    out, stdout = quick_limits
    assert json.loads((out / "limits.json").read_text())["config"]["widths"] == [16, 32, 64]
    _check_limits_output(out, stdout, sane_rates=False)


@pytest.mark.slow  # the quick preset itself, in its own process: about 40-80 s on 2 cores
def test_quick_limits_as_a_user_runs_it(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gowide", "meanfield", "limits", "--quick", "--seeds", "2",
         "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    _check_limits_output(tmp_path, proc.stdout, sane_rates=True)


def test_reproduce_reuses_results_and_writes_report(quick_limits, tiny_compare, tiny_depth,
                                                   quick_clouds, tmp_path, monkeypatch):
    out, _ = quick_limits
    results = tmp_path / "results"
    (results / "meanfield" / "limits").mkdir(parents=True)
    shutil.copy(out / "limits.json", results / "meanfield" / "limits" / "limits.json")
    # The meanfield results are the session's tiny runs (conftest), as run_* returns them.
    from gowide.atomic import write_json

    write_json(results / "meanfield" / "compare" / "compare.json", tiny_compare)
    write_json(results / "meanfield" / "depth" / "depth.json", tiny_depth)
    (results / "meanfield" / "clouds").mkdir(parents=True)
    shutil.copy(quick_clouds[0] / "clouds.json", results / "meanfield" / "clouds" / "clouds.json")
    from empirical_helpers import FAST_BERT, FAST_RESNET, TEST_CACHE

    import empirical.compare

    monkeypatch.setenv("GOWIDE_CACHE", TEST_CACHE)
    for task, fast in (("resnet", FAST_RESNET), ("bert", FAST_BERT)):
        empirical.compare.run_compare(task, "tiny", [0, 1], results / "empirical" / task,
                                      methods=["ours", "scratch"], overrides=fast,
                                      progress=False, device="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "gowide", "reproduce", "--quick", "--out", str(tmp_path / "fig"),
         "--results", str(results)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "reading" in proc.stdout
    report = (tmp_path / "fig" / "REPORT.md").read_text()
    assert "P1 width rate" in report and "P2 depth rate" in report and "P5" in report
    assert "limits_width.png" in report
    assert "## Empirical claims: resnet" in report and "| C4 " in report
    for stem in ("limits_depth", "compare_width", "compare_depth", "compare_efficiency",
                 "depth_deviation", "clouds", "empirical_resnet_compute", "empirical_bert_curves"):
        assert (tmp_path / "fig" / f"{stem}.png").exists()
    assert Path(tmp_path / "fig" / "manifest.json").exists()

    # `gowide figures` redraws from the same results without computing anything
    (tmp_path / "fig2").mkdir()
    code = main(["figures", "--out", str(tmp_path / "fig2"), "--results", str(results)])
    assert code == 0
    assert (tmp_path / "fig2" / "compare_width.pdf").exists()
    assert (tmp_path / "fig2" / "REPORT.md").exists()


def test_report_records_the_machine_of_every_result(capsys, tmp_path, monkeypatch):
    """REPORT.md names the machine each result file was computed on, every one of them (not
    only the last job's)."""
    import gowide.reproduce
    from gowide.atomic import write_json
    from gowide.jobs import Job

    results, jobs = tmp_path / "results", []
    for i, cpu in enumerate(("first CPU", "second CPU", "third CPU")):
        rel = f"job{i}/result.json"
        write_json(results / rel, {"provenance": {
            "device": "cpu", "created": f"day {i}", "versions": {"torch": f"torch {i}"},
            "machine": {"cpu": cpu, "cpu_count": i + 1}}})
        jobs.append(Job(f"job {i}", rel, compute=None, draw=lambda res, out, path: [],
                        report=lambda res: ["## a section", ""]))
    monkeypatch.setattr(gowide.reproduce, "JOBS", tuple(jobs))
    code, _, err = _run(["figures", "--out", str(tmp_path / "o"), "--results", str(results)],
                        capsys)
    assert code == 0, err
    report = (tmp_path / "o" / "REPORT.md").read_text()
    for i, cpu in enumerate(("first CPU", "second CPU", "third CPU")):
        row = f"| `{results / f'job{i}/result.json'}` | {cpu} ({i + 1} cores) | cpu | torch {i} |"
        assert row in report, report


def test_figures_with_missing_results_is_a_usage_error(capsys, tmp_path):
    code, _, err = _run(["figures", "--out", str(tmp_path / "o"), "--results",
                         str(tmp_path / "none")], capsys)
    assert code == 2 and "missing result files" in err and "gowide reproduce" in err
    assert not (tmp_path / "o").exists()


def test_result_file_missing_fields_is_a_usage_error(capsys, tmp_path):
    res = tmp_path / "res"
    for rel in ("meanfield/limits/limits.json", "meanfield/compare/compare.json",
                "meanfield/depth/depth.json", "meanfield/clouds/clouds.json",
                "empirical/resnet/compare.json", "empirical/bert/compare.json"):
        (res / rel).parent.mkdir(parents=True)
        (res / rel).write_text("{}")
    code, _, err = _run(["figures", "--out", str(tmp_path / "o"), "--results", str(res)], capsys)
    assert code == 2 and "malformed" in err and len(err.strip().splitlines()) == 1
