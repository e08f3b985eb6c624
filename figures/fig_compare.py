"""Figures of imitation versus back-propagation (P3–P5), read from a saved ``compare.json``.

- ``compare_width``: RMS output deviation against thin width n at fixed depth: the subsampled
  start, teacher-forced and progressive imitation (deviation from the wide net), the
  stability bound of the teacher-forced net, and back-propagation from scratch (deviation
  from its own width limit, at the final training time).
- ``compare_depth``: the same against depth L at fixed width.
- ``compare_efficiency``: left, test loss against particle-gradient evaluations for each route
  of the efficiency setting (median over seeds, range as a band, starts as dots) with the
  target losses; right, each imitation route's cost ratio to back-propagation from the
  centred law per target, with 95% intervals, without and with the teacher's training.

    python -m figures.fig_compare RESULTS/compare.json --out figures/out
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from figures.style import COLORS, plt, save, script_main

SERIES = (
    ("subsampled start", lambda r: r["subsample_deviation"], "#bcbd22", "o:"),
    ("imitation, teacher-forced", lambda r: r["teacher_forced"]["deviation"],
     COLORS["imitation"], "o-"),
    ("imitation, progressive", lambda r: r["progressive"]["deviation"], "#8c564b", "s-"),
    ("stability bound (teacher-forced)", lambda r: r["teacher_forced"]["bound"],
     COLORS["bound"], "--"),
    ("back-prop: deviation from own limit",
     lambda r: r["backprop"]["deviation_from_own_limit"][-1], COLORS["backprop"], "^-"),
)


def _sweep(ax, configs, key, fixed_key, fixed, xs):
    seeds = sorted({r["seed"] for r in configs})
    for label, get, color, style in SERIES:
        ys = np.array([[get(next(r for r in configs if r["seed"] == s and r[key] == x
                                 and r[fixed_key] == fixed)) for x in xs] for s in seeds])
        gmean = np.exp(np.log(np.clip(ys, 1e-300, None)).mean(0))
        ax.plot(xs, gmean, style, color=color, lw=1.5, ms=3.5, label=label)
        if len(seeds) > 1:
            ax.fill_between(xs, ys.min(0), ys.max(0), color=color, alpha=0.12, lw=0)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_ylabel("RMS output deviation")


def draw(results: dict, out_dir: str | Path) -> list[Path]:
    grid, configs = results["grid"], results["raw"]["configs"]
    paths = []
    sweeps = (
        ("width", "depth", grid["width_depth"], grid["widths"],
         f"thin width n (depth L = {grid['width_depth']})", "width"),
        ("depth", "width", grid["depth_width"], grid["depths"],
         f"depth L (thin width n = {grid['depth_width']})", "depth"),
    )
    for key, fixed_key, fixed, xs, xlabel, name in sweeps:
        fig, ax = plt.subplots(figsize=(5.2, 3.8))
        _sweep(ax, configs, key, fixed_key, fixed, xs)
        ax.set_xlabel(f"{xlabel}; band = range over seeds")
        ax.set_title(f"P3 vs P4 against {name}", fontsize=9)
        ax.legend(fontsize=7)
        paths += save(fig, out_dir, f"compare_{name}")

    paths += save(_efficiency(results), out_dir, "compare_efficiency")
    return paths


ROUTE_STYLE = {
    "backprop_shared": ("#d62728", "back-prop, teacher's law"),
    "backprop_centred": ("#ff7f0e", "back-prop, centred law"),
    "imitation": ("#1f77b4", "imitation from subsample"),
    "imitation_fresh": ("#17becf", "imitation from a fresh draw"),
    "imitation_finetune": ("#2ca02c", "imitation + back-prop fine-tune"),
}


def _f(x) -> float:
    """A stored number; JSON keeps NaN as null."""
    return math.nan if x is None else float(x)


def _efficiency(results: dict):
    """Left: test loss against particle-gradient evaluations, median over seeds on a common
    grid (band: range), with the target losses. Right: cost ratio per target against
    back-propagation from the centred law, with 95% intervals, in both framings."""
    eff, per_seed = results["efficiency"], results["raw"]["efficiency"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.9))
    for route, (color, label) in ROUTE_STYLE.items():
        curves = [np.asarray(e["routes"][route]["curve"], dtype=float) for e in per_seed]
        lo = max(c[1, 1] for c in curves if len(c) > 1)
        hi = min(c[-1, 1] for c in curves)
        grid = np.geomspace(lo, hi, 60)
        ys = np.array([np.interp(grid, c[1:, 1], c[1:, 3]) for c in curves])
        ax.plot(grid, np.median(ys, 0), color=color, lw=1.5, label=label)
        ax.fill_between(grid, ys.min(0), ys.max(0), color=color, alpha=0.12, lw=0)
        start = np.median([c[0, 3] for c in curves])
        ax.plot([grid[0] * 0.6], [start], "o", color=color, ms=4)
    for t in eff["target_losses"]:
        ax.axhline(t["value"], color="k", lw=0.5, ls="--", alpha=0.5)
    ax.axhline(eff["wide_test_loss"]["value"], color="k", lw=1.0, label="wide teacher")
    teacher = eff["teacher_cost"]["particle_gradients"]["value"]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"particle-gradient evaluations (teacher's training: {teacher:.2g})")
    ax.set_ylabel("thin net test loss")
    s = eff["setting"]
    ax.set_title(f"P5: n = {s['width']}, L = {s['depth']}; median over seeds, band = range; "
                 "dots: starts; dashed: targets", fontsize=8)
    ax.legend(fontsize=6.5)

    fractions = s["fractions"]
    x = np.arange(len(fractions))
    challengers = ("imitation", "imitation_fresh", "imitation_finetune")
    for j, ch in enumerate(challengers):
        for framing, marker in (("wide_net_exists", "o"), ("wide_net_trained_first", "s")):
            rows = [next(v for v in eff["table"] if v["target_fraction"] == f
                         and v["challenger"] == ch and v["baseline"] == "backprop_centred"
                         and v["framing"] == framing and v["unit"] == "particle_gradients")
                    for f in fractions]
            r = np.array([_f(v["ratio"]) for v in rows])
            lo = np.array([_f(v["ratio_ci"][0]) for v in rows])
            hi = np.array([_f(v["ratio_ci"][1]) for v in rows])
            xs = x + (j - 1) * 0.22 + (0.06 if marker == "s" else -0.06)
            ok = np.isfinite(r)
            color = ROUTE_STYLE[ch][0]
            bx.errorbar(xs[ok], r[ok], yerr=[r[ok] - lo[ok], hi[ok] - r[ok]], fmt=marker,
                        color=color, ms=4, lw=1, mfc="none" if marker == "s" else color,
                        label=f"{ROUTE_STYLE[ch][1]}" + (" (+ teacher)" if marker == "s"
                                                        else ""))
            for xi, v in zip(xs, rows, strict=True):
                if v["gate_failed"] or not math.isfinite(_f(v["ratio"])):
                    bx.annotate("n.d." if v["gate_failed"] else "never", (xi, 1.0),
                                fontsize=5, rotation=90, color=color, ha="center")
    bx.axhline(1.0, color="k", lw=0.8)
    bx.set_yscale("log")
    bx.set_xticks(x, [f"f = {f:g}" for f in fractions])
    bx.set_ylabel("cost ratio to back-prop (centred law)")
    bx.set_title("cost to target over back-propagation's; 95% intervals over seeds; "
                 "n.d.: not judged (gate)", fontsize=8)
    bx.legend(fontsize=5.5, ncol=2)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, draw, argv, relpath="meanfield/compare/compare.json")


if __name__ == "__main__":
    raise SystemExit(main())
