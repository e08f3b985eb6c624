"""``gowide reproduce``: compute the results that are missing, then draw every figure and
write ``REPORT.md``.

Quick mode (``make reproduce``) keeps its results under ``OUT/results/`` so it never touches
the committed full results; the full mode reads and fills ``results/`` in the working
directory. A result file already present is reused unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUT = Path("figures/out")


@dataclass
class Job:
    """One experiment: where its result lives, how to compute it and how to draw it.

    ``compute(quick, progress, path)`` returns the results to be written at ``path``, or
    ``None`` when it wrote ``path`` itself (the empirical comparisons, whose directory also
    holds every run); ``draw(results, out, path)`` returns the figure files."""

    name: str
    relpath: str  # under the results directory
    compute: Callable[[bool, bool, Path], dict | None]
    draw: Callable[[dict, Path, Path], list]
    report: Callable[[dict], list[str]]


def _limits(quick: bool, progress: bool, path: Path) -> dict:
    from meanfield.experiments import LimitsConfig, run_limits

    return run_limits(LimitsConfig.quick() if quick else LimitsConfig.full(), progress=progress)


def _compare(quick: bool, progress: bool, path: Path) -> dict:
    from meanfield.compare import CompareConfig, run_compare

    return run_compare(CompareConfig.quick() if quick else CompareConfig.full(),
                       progress=progress)


def _draw_limits(results, out, path):
    from figures.fig_limits import draw

    return draw(results, out)


def _draw_compare(results, out, path):
    from figures.fig_compare import draw

    return draw(results, out)


def _depth(quick: bool, progress: bool, path: Path) -> dict:
    from meanfield.depth import DepthConfig, run_depth

    return run_depth(DepthConfig.quick() if quick else DepthConfig.full(), progress=progress)


def _draw_depth(results, out, path):
    from figures.fig_depth import draw

    return draw(results, out)


def _report_depth(res: dict) -> list[str]:
    from meanfield.report import depth_markdown

    return [
        "## Depth and the residual scaling",
        "",
        *depth_markdown(res),
        "",
        "![deviation against depth](depth_deviation.png)",
        "",
        "![ratio](depth_ratio.png)",
        "",
        "![width needed](depth_width_needed.png)",
        "",
    ]


def _clouds(quick: bool, progress: bool, path: Path) -> dict:
    from meanfield.clouds import CloudsConfig, run_clouds

    return run_clouds(CloudsConfig.quick() if quick else CloudsConfig.full(), progress=progress)


def _draw_clouds(results, out, path):
    from figures.fig_clouds import draw

    return draw(results, out)


def _report_clouds(res: dict) -> list[str]:
    d = res["distances"]
    rows = [f"| {label} | {v['init']:.3f} | {v['imitation']:.3f} | {v['backprop']:.3f} | "
            f"{v['floor']:.3f} |"
            for key, label in (("mean_energy_distance", "energy distance of the particles"),
                               ("mean_block_error", "block error δ_l"))
            for v in [d[key]]]
    return [
        "## Particle clouds before and after imitation",
        "",
        "Distances of the thin net's layers to the wide teacher's, mean over layers: at "
        "initialisation, after layerwise imitation, after back-propagation from scratch with "
        "the same number of particle-gradient evaluations, and the floor of n particles drawn "
        "from the teacher itself.",
        "",
        "| distance | init | imitation | back-prop | floor |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "![particle clouds](clouds.png)",
        "",
    ]


# The quick empirical comparisons: the tiny preset (a smoke test, too small to separate the
# methods), two seeds, the methods the claims need plus the teacher, and BERT with shortened
# stages, so that both fit in a few minutes. The full mode runs every method of the small
# preset on three seeds.
EMPIRICAL_QUICK = {
    "resnet": [],
    "bert": ["wide.steps=100", "finetune.steps=100", "imitate.steps_per_block=15",
             "downstream.steps=150", "data.max_mlm_sequences=2000"],
}
EMPIRICAL_QUICK_METHODS = ["ours", "scratch", "scratch_long", "deeper", "kd", "teacher"]


def _empirical(task: str):
    def compute(quick: bool, progress: bool, path: Path) -> None:
        from empirical.compare import run_compare

        if quick:
            run_compare(task, "tiny", [0, 1], path.parent, methods=EMPIRICAL_QUICK_METHODS,
                        overrides=EMPIRICAL_QUICK[task], progress=progress, device="cpu")
        else:
            run_compare(task, "small", [0, 1, 2], path.parent, progress=progress,
                        device="cpu")

    return compute


def _draw_empirical(results, out, path):
    from figures.fig_empirical import draw

    return draw(path.parent, out)


def _report_empirical(res: dict) -> list[str]:
    from empirical.compare import markdown

    task = res["task"]
    note = ([f"The {res['preset']} preset is a smoke test of the pipeline, too small to separate "
             "the methods: its verdicts say nothing about the claims. They are tested with the "
             "small preset (`gowide reproduce` without --quick, or `gowide empirical compare "
             "--preset small`).", ""] if res["preset"] == "tiny" else [])
    return [
        f"## Empirical claims: {task} ({res['preset']} preset)",
        "",
        *note,
        markdown(res),
        f"![{task}: metric against compute](empirical_{task}_compute.png)",
        "",
        f"![{task}: per-block imitation error](empirical_{task}_blocks.png)",
        "",
        f"![{task}: training curves](empirical_{task}_curves.png)",
        "",
    ]


def _interval(s: dict) -> str:
    def f(x):
        return "n/a" if x is None else f"{x:+.3f}"

    return f"{f(s['value'])} [{f(s['ci_low'])}, {f(s['ci_high'])}]"


def _report_limits(limits: dict) -> list[str]:
    names = {
        "width_slope": ("P1 width rate, at initialisation",
                        "log-log slope of mean squared deviation vs N"),
        "width_slope_trained": ("P1 width rate, after training",
                                "same, after mean-field gradient descent for a fixed time"),
        "depth_slope": ("P2 depth rate", "log-log slope of RMS error vs L against the ODE"),
    }
    rows = []
    for key, (name, what) in names.items():
        s = limits[key]
        held = {True: "yes", False: "**no**", None: "undecided"}[s["held"]]
        rows.append(f"| {name} | {what} | {s['predicted']:+.1f} ± {s['tolerance']} | "
                    f"{_interval(s)} | {held} |")
    return [
        "## Mean-field limits (P1, P2)",
        "",
        "Each rate is the across-seed mean of per-seed log-log slopes with a 95% Student-t "
        "interval. A prediction is held when the interval lies within the stated tolerance, "
        "not held when it lies wholly outside, undecided otherwise.",
        "",
        "| prediction | measured quantity | predicted | measured [95% CI] | held |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "![width limit](limits_width.png)",
        "",
        "![depth limit](limits_depth.png)",
        "",
    ]


def _report_compare(res: dict) -> list[str]:
    from meanfield.report import compare_markdown

    tasks = "; ".join(
        f"seed {t.get('seed')}: {t.get('name', '?')}, best linear fit {t['linear_loss']:.3f} "
        f"vs constant {t['constant_loss']:.3f}" for t in res.get("tasks", [])[:1])
    return [
        "## Imitation versus back-propagation (P3–P5)",
        "",
        f"Task (test losses are (1/2)·MSE on standardised targets; one task for all seeds): "
        f"{tasks}.",
        "",
        *compare_markdown(res),
        "",
        "![deviation against width](compare_width.png)",
        "",
        "![deviation against depth](compare_depth.png)",
        "",
        "![efficiency](compare_efficiency.png)",
        "",
    ]


JOBS = (
    Job("mean-field limit checks (P1, P2)", "meanfield/limits/limits.json", _limits,
        _draw_limits, _report_limits),
    Job("imitation versus back-propagation (P3-P5)", "meanfield/compare/compare.json",
        _compare, _draw_compare, _report_compare),
    Job("depth and the residual scaling", "meanfield/depth/depth.json", _depth, _draw_depth,
        _report_depth),
    Job("particle clouds before and after imitation", "meanfield/clouds/clouds.json",
        _clouds, _draw_clouds, _report_clouds),
    Job("empirical claims, ResNet family (C1-C3)", "empirical/resnet/compare.json",
        _empirical("resnet"), _draw_empirical, _report_empirical),
    Job("empirical claims, BERT family (C1, C3, C4)", "empirical/bert/compare.json",
        _empirical("bert"), _draw_empirical, _report_empirical),
)


def register(sub) -> None:
    from gowide.argtypes import threads_int

    parser = sub.add_parser(
        "reproduce",
        help="compute missing results, draw all figures, write REPORT.md",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _locations(parser, "quick presets (minutes on 2 CPU cores)")
    parser.add_argument("--force", action="store_true", help="recompute results that exist")
    parser.add_argument("--threads", type=threads_int, default=1,
                        help="torch CPU threads for the simulations, 1..1024")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=reproduce_command)

    figs = sub.add_parser(
        "figures",
        help="redraw every figure and REPORT.md from results on disk (computes nothing)",
        description="Redraw every figure and REPORT.md from the result files on disk.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _locations(figs, "read the quick results (OUT/results) instead of results/")
    figs.set_defaults(func=figures_command)


def _locations(parser, quick_help: str) -> None:
    parser.add_argument("--quick", action="store_true", help=quick_help)
    from gowide.argtypes import path_arg

    parser.add_argument("--out", type=path_arg, default=DEFAULT_OUT,
                        help="where figures and REPORT.md go (not empty)")
    parser.add_argument("--results", type=path_arg, default=None,
                        help="results directory; default OUT/results with --quick, else results/")


def figures_command(args) -> int:
    return _run(args, compute=False)


def reproduce_command(args) -> int:
    return _run(args, compute=True)


def _malformed(path: Path, exc: Exception):
    from gowide.errors import UsageError

    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    return UsageError(f"results file {str(path)!r} is malformed or from another version "
                      f"({type(exc).__name__}: {reason}); recompute it with --force")


# What a damaged result file can raise while it is reported or drawn (OSError: a file of
# an empirical comparison's runs that is a directory or cannot be read).
MALFORMED = (KeyError, TypeError, IndexError, ValueError, AttributeError, ArithmeticError,
             RecursionError, OSError)


def _check_dir(path: Path, what: str, writable: bool = True) -> None:
    """UsageError unless ``path`` is a directory or can be created as one."""
    from gowide.paths import check_output_path

    check_output_path(path, what, writable)


def _run(args, compute: bool) -> int:
    from gowide.errors import UsageError
    from gowide.paths import output_dir, read_json

    start = time.perf_counter()
    results_dir = args.results or (args.out / "results" if args.quick else Path("results"))
    preset = "quick" if args.quick else "full"
    _check_dir(args.out, "output directory")
    _check_dir(results_dir, "results directory", writable=compute)
    if not compute:
        missing = [str(results_dir / j.relpath) for j in JOBS
                   if not (results_dir / j.relpath).exists()]
        if missing:
            raise UsageError(f"missing result files: {', '.join(missing)}; "
                             "run 'gowide reproduce' to compute them")
    # Every result file that is reused is read and checked before anything is computed or
    # written.
    reused = {}
    for job in JOBS:
        path = results_dir / job.relpath
        if path.exists() and not (compute and args.force):
            reused[job.relpath] = results = read_json(path, job.name)
            try:
                job.report(results)
            except MALFORMED as exc:
                raise _malformed(path, exc) from None
    created = not args.out.exists()
    out = output_dir(args.out)
    # Figures, REPORT.md and the manifest are drawn into a temporary directory under OUT and
    # moved into place only once all of them are drawn: a result file that fails while it is
    # drawn leaves every earlier figure as it was.
    staging = Path(tempfile.mkdtemp(prefix=".drawing-", dir=out))
    try:
        done = _draw_all(args, compute, results_dir, reused, staging, out, start, preset)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: nothing of anyone else's is removed
        raise
    figures, report = done
    print(f"\nDone in {time.perf_counter() - start:.0f} s.")
    print(f"Report:  {report}")
    print(f"Figures: {out}/ ({len(figures)} files)")
    print(f"Results: {results_dir}/")
    return 0


def _draw_all(args, compute, results_dir, reused, staging, out, start, preset):
    """Compute what is missing, draw into ``staging``, then move everything into ``out``."""
    from gowide.atomic import write_json, write_text
    from gowide.paths import output_dir, read_json
    from gowide.provenance import provenance

    if compute:
        import torch

        torch.set_num_threads(args.threads)
    steps = len(JOBS) + 1
    loaded, figures, sections = {}, [], []
    for i, job in enumerate(JOBS, 1):
        path = results_dir / job.relpath
        print(f"[{i}/{steps}] {job.name} ({preset} preset)")
        if job.relpath in reused:
            print(f"      reading {path}")
            results = reused[job.relpath]
        else:
            output_dir(path.parent)
            results = job.compute(args.quick, not args.no_progress, path)
            if results is None:
                results = read_json(path, job.name)
            else:
                results["preset"] = preset
                results["provenance"] = provenance("cpu")
                write_json(path, results, compact=len(str(results)) > 200_000)
            print(f"      wrote {path}")
        loaded[job.relpath] = path
        try:
            drawn = job.draw(results, staging, path)
            sections += job.report(results)
            machine = results.get("provenance", {})
            machine = machine if isinstance(machine, dict) else {}
        except MALFORMED as exc:
            raise _malformed(path, exc) from None
        figures += [out / Path(p).relative_to(staging) for p in drawn]

    print(f"[{steps}/{steps}] report")
    report = out / "REPORT.md"
    try:
        text = render_report(sections, loaded, machine, preset)
    except MALFORMED as exc:
        raise _malformed(path, exc) from None
    write_text(staging / "REPORT.md", text)
    write_json(staging / "manifest.json", {
        "preset": preset,
        "results": {k: str(v) for k, v in loaded.items()},
        "figures": [str(p) for p in figures],
        "report": str(report),
        "seconds": time.perf_counter() - start,
    })
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        dest = out / src.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return figures, report


def render_report(sections: list[str], loaded: dict, prov: dict, preset: str) -> str:
    machine = prov.get("machine", {})
    sources = ", ".join(f"`{p}`" for p in loaded.values())
    return "\n".join([
        "# gowide — reproduction report",
        "",
        f"Preset: **{preset}**. Machine: {machine.get('cpu', '?')} "
        f"({machine.get('cpu_count', '?')} cores), device {prov.get('device', '?')}, "
        f"torch {prov.get('versions', {}).get('torch', '?')}. Results: {sources}.",
        "",
        *sections,
    ])
