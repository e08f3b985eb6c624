"""Empirical comparison figures, from the files of ``gowide empirical compare --out DIR``.

* ``empirical_<task>_compute`` — each method's metric (mean ± std over seeds) against its
  training FLOPs; for methods with a wide teacher, a hollow marker joined to the filled one
  shows the FLOPs without the teacher;
* ``empirical_<task>_blocks`` — relative imitation error of every block after stage 2
  (thin-network inputs), per method that imitates, mean over seeds;
* ``empirical_<task>_curves`` — training loss on labels against cumulative training FLOPs
  (first seed), and the imitation loss of every block of ``ours`` during stage 2;
* ``empirical_<task>_anytime`` — validation metric against cumulative training FLOPs (mean ±
  std over seeds, ``empirical/anytime.py``) for ``ours``, ``scratch``, ``deeper``, ``kd``
  (and ``ours_no_ft``, one point), with the wide teacher's training counted (left) and with
  a teacher that already exists (right); the dashed line is scratch's converged quality.
  Drawn when ``compare.json`` has anytime curves.

Reads ``DIR/compare.json`` and ``DIR/runs/<method>/seed<s>/result.json``; trains nothing.

    python -m figures.fig_empirical results/empirical/resnet --out figures/out
    python -m figures.fig_empirical --quick     # both tasks, from gowide reproduce --quick
"""

from __future__ import annotations

import json
from pathlib import Path

from figures.style import plt, save

PALETTE = {
    "ours": "#d62728", "ours_no_ft": "#ff9896", "ours_simultaneous": "#e377c2",
    "ours_labels_only": "#8c564b", "ours_teacher_forced": "#c49c94",
    "subsample_init": "#9467bd", "teacher": "#7f7f7f", "scratch": "#1f77b4",
    "scratch_long": "#17becf", "scratch_2x": "#aec7e8", "deeper": "#2ca02c", "kd": "#ff7f0e",
    "fitnets": "#bcbd22",
}
LABEL_LOSS_METHODS = ("ours", "scratch", "scratch_long", "deeper", "kd")


def _color(name: str) -> str:
    return PALETTE.get(name, "#333333")


def load_runs(results_dir: Path, summary: dict) -> dict[str, list[dict]]:
    """Per method, the result files of its seeds that are present."""
    runs = {}
    for m in summary["methods"]:
        found = []
        for s in summary["seeds"]:
            path = results_dir / "runs" / m / f"seed{s}" / "result.json"
            if path.exists():
                found.append(json.loads(path.read_text(encoding="utf-8")))
        runs[m] = found
    return runs


def draw_compute(summary: dict, out_dir: Path) -> list[Path]:
    metrics = summary["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for name, rec in summary["methods"].items():
            c = rec["compute"]
            y, err = rec["mean"][metric["name"]], rec["std"][metric["name"]]
            color = _color(name)
            ax.errorbar(c["train_flops"], y, yerr=err, fmt="o", color=color, ms=5, capsize=2,
                        label=name)
            if c["teacher_flops"] > 0 and name != "teacher":
                ax.plot([c["student_flops"], c["train_flops"]], [y, y], color=color, lw=0.8,
                        alpha=0.6)
                ax.plot(c["student_flops"], y, "o", mfc="none", color=color, ms=5)
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs (filled: teacher included; hollow: without)")
        ax.set_ylabel(metric["label"])
        if metric["kind"] == "perplexity":
            ax.set_yscale("log")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    n = len(summary["seeds"])
    fig.suptitle(f"{summary['task']}, {summary['preset']} preset: metric against compute "
                 f"(mean ± std over {n} seeds)", fontsize=9)
    return save(fig, out_dir, f"empirical_{summary['task']}_compute")


def draw_blocks(summary: dict, runs: dict, out_dir: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    drawn = False
    order: list[str] = []  # every block name, in the order of the method imitating the most
    for results in runs.values():
        for r in results:
            errs = (r.get("imitation_block_errors") or {}).get("thin") or {}
            if len(errs) > len(order):
                order = list(errs)
    for name, results in runs.items():
        per_seed = [r["imitation_block_errors"]["thin"] for r in results
                    if r.get("imitation_block_errors") and r["imitation_block_errors"].get("thin")]
        if not per_seed or name in ("ours_no_ft", "ours_labels_only"):  # same stage 2 as ours
            continue
        blocks = list(per_seed[0])
        means = [sum(e[b] for e in per_seed) / len(per_seed) for b in blocks]
        style = "o-" if len(blocks) > 1 else "s"
        xs = [order.index(b) if b in order else i for i, b in enumerate(blocks)]
        ax.plot(xs, means, style, color=_color(name), label=name, ms=4)
        drawn = True
    if order:
        ax.set_xticks(range(len(order)), order, rotation=30, fontsize=7)
    if not drawn:
        ax.text(0.5, 0.5, "no method with an imitation stage in these results",
                transform=ax.transAxes, ha="center")
    ax.set_yscale("log")
    ax.set_ylabel("relative imitation error ‖Ph − z‖² / ‖z − z̄‖²")
    ax.set_title(f"{summary['task']}: per-block error after stage 2 (thin inputs)", fontsize=9)
    if drawn:
        ax.legend(fontsize=7)
    return save(fig, out_dir, f"empirical_{summary['task']}_blocks")


def _segments(result: dict):
    """(stage, phase, flops offset, flops per step, curve) for every phase, in order."""
    offset = 0
    stages = result["stages"]
    counts: dict[str, int] = {}
    for e in result["compute"]["entries"]:
        stage = stages.get(e["stage"], {})
        if "phases" in stage:
            i = counts.get(e["stage"], 0)
            counts[e["stage"]] = i + 1
            curve = stage["phases"][i]["loss_curve"] if i < len(stage["phases"]) else []
        else:
            curve = stage.get("loss_curve", [])
        yield e["stage"], e["phase"], offset, e["flops_per_step"], curve
        offset += e["flops"]


def draw_curves(summary: dict, runs: dict, out_dir: Path) -> list[Path]:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    teacher_drawn = False
    for name in LABEL_LOSS_METHODS:
        if not runs.get(name):
            continue
        r = runs[name][0]
        for stage, _phase, offset, per_step, curve in _segments(r):
            if stage in ("downstream", "imitate", "hint") or not curve:
                continue
            xs = [offset + p["step"] * per_step for p in curve]
            ys = [p["loss"] for p in curve]
            if stage == "wide":  # the same teacher for every method of this seed
                if not teacher_drawn:
                    ax.plot(xs, ys, color=_color("teacher"), lw=0.9, ls="--",
                            label="wide teacher (shared)")
                    teacher_drawn = True
                continue
            ax.plot(xs, ys, color=_color(name), lw=0.9, label=name)
    ax.set_xlabel("cumulative training FLOPs")
    ax.set_ylabel("training loss (labels; KD mixed in for ours, kd)")
    ax.set_yscale("log")
    ax.legend(fontsize=6.5)
    ax.set_title(f"seed {summary['seeds'][0]}", fontsize=9)
    ours = runs.get("ours")
    if ours:
        stage = ours[0]["stages"].get("imitate", {})
        for ph in stage.get("phases", []):
            curve = ph["loss_curve"]
            ax2.plot([p["step"] for p in curve], [p["loss"] for p in curve], lw=0.9,
                     label=ph["phase"])
        ax2.legend(fontsize=6.5, ncol=2)
    ax2.set_xlabel("step within the block's phase")
    ax2.set_ylabel("imitation loss (MSE)")
    ax2.set_yscale("log")
    ax2.set_title("ours, stage 2: each block in turn", fontsize=9)
    fig.suptitle(f"{summary['task']}, {summary['preset']} preset: training curves", fontsize=9)
    return save(fig, out_dir, f"empirical_{summary['task']}_curves")


ANYTIME_METHODS = ("scratch", "deeper", "kd", "ours", "ours_no_ft")


def draw_anytime(summary: dict, out_dir: Path) -> list[Path]:
    a = summary.get("anytime")
    if not a:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6), sharey=True)
    frames = (("flops_with_teacher", "teacher trained for this (its FLOPs counted)"),
              ("flops_teacher_exists", "teacher already exists (its training not counted)"))
    for ax, (frame, title) in zip(axes, frames, strict=True):
        for name in ANYTIME_METHODS:
            rec = a["methods"].get(name)
            if not rec:
                continue
            c = rec["curve"]
            xs, ys, sd = c[frame], c["value_mean"], c["value_std"]
            color = _color(name)
            if len(xs) == 1:  # labelled with its value: it may lie below the zoomed axis
                ax.errorbar(xs, ys, yerr=sd, fmt="D", color=color, ms=5, capsize=2,
                            label=f"{name} ({ys[0]:.4g})")
                continue
            ax.plot(xs, ys, "-", color=color, lw=1.0, label=name)
            ax.fill_between(xs, [y - e for y, e in zip(ys, sd, strict=True)],
                            [y + e for y, e in zip(ys, sd, strict=True)], color=color, alpha=0.15)
        if a.get("target"):
            ax.axhline(a["target"]["mean"], color=_color("scratch"), ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("cumulative training FLOPs")
        ax.set_title(title, fontsize=8.5)
    axes[0].set_ylabel(a["metric"])
    if a["mode"] == "max":  # zoom on the converged range; early evaluations fall below it
        values = [v for rec in a["methods"].values() for v in rec["curve"]["value_mean"]]
        top = max(values)
        axes[0].set_ylim(top - 4 * (top - sorted(values)[len(values) // 2]) - 0.01, top + 0.005)
    axes[1].legend(fontsize=7)
    n = len(summary["seeds"])
    preset = Path(summary["preset"]).stem
    fig.suptitle(f"{summary['task']}, {preset} preset: validation against compute "
                 f"(mean ± std over {n} seeds; dashed: scratch's converged quality)", fontsize=9)
    return save(fig, out_dir, f"empirical_{summary['task']}_anytime")


def draw(results_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Every empirical figure of one comparison directory."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    summary = json.loads((results_dir / "compare.json").read_text(encoding="utf-8"))
    runs = load_runs(results_dir, summary)
    return (draw_compute(summary, out_dir) + draw_blocks(summary, runs, out_dir)
            + draw_curves(summary, runs, out_dir) + draw_anytime(summary, out_dir))


def main(argv: list[str] | None = None) -> int:
    import argparse

    from figures.style import draw_staged
    from gowide.argtypes import path_arg
    from gowide.errors import UsageError
    from gowide.paths import read_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=None,
                        help="a 'gowide empirical compare' output directory "
                             "(default: every results/empirical/*/ holding a compare.json)")
    parser.add_argument("--quick", action="store_true",
                        help="read the quick results under figures/out/results/")
    parser.add_argument("--out", type=path_arg, default=Path("figures/out"))
    args = parser.parse_args(argv)
    base = Path("figures/out/results") if args.quick else Path("results")
    dirs = ([args.results] if args.results
            else sorted(p.parent for p in (base / "empirical").glob("*/compare.json")))
    if not dirs:
        parser.error(f"no {base / 'empirical'}/*/compare.json found")
    for d in dirs:
        if not (d / "compare.json").exists():
            parser.error(f"{d / 'compare.json'} not found")
        try:
            read_json(d / "compare.json", "comparison")
        except UsageError as exc:
            parser.error(str(exc))
    current = [dirs[0]]

    def draw_all(out: Path) -> list[Path]:  # every directory before any figure is moved
        paths = []
        for d in dirs:
            current[0] = d
            paths += draw(d, out)
        return paths

    for p in draw_staged(draw_all, args.out, lambda: current[0], parser.error):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
