"""Figures of imitation versus back-propagation (P3–P5), read from a saved ``compare.json``.

- ``compare_width``: RMS output deviation against thin width n at fixed depth: the subsampled
  start, teacher-forced and progressive imitation (deviation from the wide net), the
  stability bound of the teacher-forced net, and back-propagation from scratch (deviation
  from its own width limit, at the final training time).
- ``compare_depth``: the same against depth L at fixed width.
- ``compare_efficiency``: test loss against particle-gradient evaluations for each route in
  the efficiency setting, with the target loss; the teacher's own cost is in the legend.

    python -m figures.fig_compare RESULTS/compare.json --out figures/out
"""

from __future__ import annotations

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

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    route_style = {"backprop": (COLORS["backprop"], "back-prop from scratch"),
                   "imitation": (COLORS["imitation"], "imitation (teacher-forced)"),
                   "imitation_finetune": ("#2ca02c", "imitation + back-prop fine-tune")}
    for i, e in enumerate(results["raw"]["efficiency"]):
        for route, (color, label) in route_style.items():
            curve = e["routes"][route].get("curve") or []
            if curve:
                c = np.asarray(curve, dtype=float)
                ax.plot(c[:, 0], c[:, 2], "o-", color=color, lw=1.2, ms=3, alpha=0.8,
                        label=label if i == 0 else None)
        ax.axhline(e["target_loss"], color="k", lw=0.6, ls="--", alpha=0.5,
                   label="target" if i == 0 else None)
    teacher = results["efficiency"]["teacher"]["particle_gradients"]["mean"]
    setting = results["efficiency"]["setting"]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"particle-gradient evaluations (teacher alone: {teacher:.2g})")
    ax.set_ylabel("thin net test loss")
    ax.set_title(f"P5: n = {setting['width']}, L = {setting['depth']}; one line per seed; "
                 "dots are the checks", fontsize=9)
    ax.legend(fontsize=7)
    paths += save(fig, out_dir, "compare_efficiency")
    return paths


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, draw, argv, relpath="meanfield/compare/compare.json")


if __name__ == "__main__":
    raise SystemExit(main())
