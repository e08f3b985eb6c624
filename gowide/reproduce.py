"""``gowide reproduce``: compute the results that are missing, then draw every figure and
write ``REPORT.md``.

Quick mode (``make reproduce``) keeps its results under ``OUT/results/`` so it never touches
the committed full results; the full mode reads and fills ``results/`` in the working
directory. A result file already present is reused unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
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


# The quick empirical comparisons: the tiny preset (a smoke test of every method, too small to
# separate them), two seeds, BERT with shortened stages so that both fit in a few minutes.
EMPIRICAL_QUICK = {
    "resnet": [],
    "bert": ["wide.steps=120", "finetune.steps=120", "imitate.steps_per_block=20",
             "downstream.steps=200", "data.max_mlm_sequences=2000"],
}


def _empirical(task: str):
    def compute(quick: bool, progress: bool, path: Path) -> None:
        from empirical.compare import run_compare

        if quick:
            run_compare(task, "tiny", [0, 1], path.parent, overrides=EMPIRICAL_QUICK[task],
                        progress=progress, device="cpu")
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
    return [
        f"## Empirical claims: {task} ({res['preset']} preset)",
        "",
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
        held = "yes" if s["held"] else "**no**"
        rows.append(f"| {name} | {what} | {s['predicted']:+.1f} ± {s['tolerance']} | "
                    f"{_interval(s)} | {held} |")
    return [
        "## Mean-field limits (P1, P2)",
        "",
        "Each rate is the across-seed mean of per-seed log-log slopes with a 95% Student-t "
        "interval. A prediction is marked held when the mean lies within the stated tolerance.",
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
    tasks = "; ".join(
        f"seed {t.get('seed')}: {t.get('name', '?')}, best linear fit {t['linear_loss']:.3f} "
        f"vs constant {t['constant_loss']:.3f}" for t in res.get("tasks", []))
    rows = [f"| {v['prediction']} | {v['predicted']} | {v['measured']} | "
            f"{'yes' if v['held'] else '**no**'} |" for v in res["verdicts"]]
    return [
        "## Imitation versus back-propagation (P3–P5)",
        "",
        f"Tasks (test losses are (1/2)·MSE on standardised targets): {tasks}. Share of "
        f"configurations within the stability bound: {res['bound_holds_fraction']:.3f}.",
        "",
        "| prediction | predicted | measured | held |",
        "|---|---|---|---|",
        *rows,
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
    Job("empirical claims, ResNet family (C1-C3)", "empirical/resnet/compare.json",
        _empirical("resnet"), _draw_empirical, _report_empirical),
    Job("empirical claims, BERT family (C1, C3, C4)", "empirical/bert/compare.json",
        _empirical("bert"), _draw_empirical, _report_empirical),
)


def register(sub) -> None:
    from gowide.cli import positive_int

    parser = sub.add_parser(
        "reproduce",
        help="compute missing results, draw all figures, write REPORT.md",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _locations(parser, "quick presets (minutes on 2 CPU cores)")
    parser.add_argument("--force", action="store_true", help="recompute results that exist")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch CPU threads for the simulations")
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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where figures and REPORT.md go")
    parser.add_argument("--results", type=Path, default=None,
                        help="results directory; default OUT/results with --quick, else results/")


def figures_command(args) -> int:
    return _run(args, compute=False)


def reproduce_command(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    return _run(args, compute=True)


def _run(args, compute: bool) -> int:
    from gowide.atomic import write_json, write_text
    from gowide.errors import UsageError
    from gowide.paths import output_dir, read_json
    from gowide.provenance import provenance

    start = time.perf_counter()
    results_dir = args.results or (args.out / "results" if args.quick else Path("results"))
    preset = "quick" if args.quick else "full"
    if not compute:
        missing = [str(results_dir / j.relpath) for j in JOBS
                   if not (results_dir / j.relpath).exists()]
        if missing:
            raise UsageError(f"missing result files: {', '.join(missing)}; "
                             "run 'gowide reproduce' to compute them")
    out = output_dir(args.out)
    steps = len(JOBS) + 1
    loaded, figures, sections = {}, [], []
    for i, job in enumerate(JOBS, 1):
        path = results_dir / job.relpath
        print(f"[{i}/{steps}] {job.name} ({preset} preset)")
        if path.exists() and not (compute and args.force):
            print(f"      reading {path}")
            results = read_json(path, job.name)
        else:
            output_dir(path.parent)
            results = job.compute(args.quick, not args.no_progress, path)
            if results is None:
                results = read_json(path, job.name)
            else:
                results["preset"] = preset
                results["provenance"] = provenance("cpu")
                write_json(path, results)
            print(f"      wrote {path}")
        loaded[job.relpath] = path
        try:
            figures += job.draw(results, out, path)
            sections += job.report(results)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise UsageError(f"results file {str(path)!r} is malformed or from another version "
                             f"({type(exc).__name__}: {exc}); recompute it with --force") from None
        machine = results.get("provenance", {})

    print(f"[{steps}/{steps}] report")
    report = out / "REPORT.md"
    write_text(report, render_report(sections, loaded, machine, preset))
    write_json(out / "manifest.json", {
        "preset": preset,
        "results": {k: str(v) for k, v in loaded.items()},
        "figures": [str(p) for p in figures],
        "report": str(report),
        "seconds": time.perf_counter() - start,
    })
    print(f"\nDone in {time.perf_counter() - start:.0f} s.")
    print(f"Report:  {report}")
    print(f"Figures: {out}/ ({len(figures)} files)")
    print(f"Results: {results_dir}/")
    return 0


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
