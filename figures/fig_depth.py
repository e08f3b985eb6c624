"""Figures of the depth experiment (docs/theory.md §8), read from a saved ``depth.json``.

- ``depth_deviation``: one panel per residual scaling (1/L, 1/√L, 1): the thin net's RMS
  output deviation from the wide net, relative to the wide net's output RMS, against depth L,
  for imitation (solid) and back-propagation from scratch (dashed) at the smallest, a middle
  and the largest thin width; geometric mean over seeds, band = range over seeds.
- ``depth_ratio``: D_backprop / D_imitation against L, per scaling, at every thin width
  (geometric mean over seeds); above 1, imitation tracks the wide net more closely.
- ``depth_width_needed``: the smallest thin width of the grid within the tolerance on at least
  half of the seeds, against L: top row relative deviation, bottom row relative loss gap,
  one panel per scaling, one line per route and tolerance; points above the dotted line
  were not reached within the grid (or are undefined).

    python -m figures.fig_depth RESULTS/depth.json --out figures/out
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.style import COLORS, plt, save, script_main

ROUTE_STYLE = {"imitation": (COLORS["imitation"], "-", "o"),
               "backprop": (COLORS["backprop"], "--", "^")}
ROUTE_LABEL = {"imitation": "imitation", "backprop": "back-prop from scratch"}


def _values(configs, scale, route, key, depths, width, seeds):
    """(seeds, depths) array of ``route[key]``; NaN where missing."""
    table = {(r["seed"], r["depth"]): r for r in configs
             if r["scale"] == scale and r["width"] == width}
    out = np.full((len(seeds), len(depths)), np.nan)
    for i, s in enumerate(seeds):
        for j, L in enumerate(depths):
            r = table.get((s, L))
            if r is not None and r[route][key] is not None:
                out[i, j] = r[route][key]
    return out


def _gmean(ys):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.exp(np.nanmean(np.log(np.clip(ys, 1e-300, None)), axis=0))


def _panels(n, height=3.2):
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, height), sharey=True, squeeze=False)
    return fig, axes[0]


def draw(results: dict, out_dir: str | Path) -> list[Path]:
    grid, configs, seeds = results["grid"], results["raw"]["configs"], results["seeds"]
    scales, depths, widths = grid["scales"], grid["depths"], grid["widths"]
    shown = sorted({widths[0], widths[len(widths) // 2], widths[-1]})
    paths = []

    fig, axes = _panels(len(scales))
    for ax, scale in zip(axes, scales, strict=True):
        for k, n in enumerate(shown):
            alpha = 0.45 + 0.55 * (k + 1) / len(shown)
            for route, (color, ls, marker) in ROUTE_STYLE.items():
                ys = _values(configs, scale, route, "rel_deviation", depths, n, seeds)
                ax.plot(depths, _gmean(ys), ls, marker=marker, color=color, alpha=alpha,
                        lw=1.3, ms=3, label=f"{ROUTE_LABEL[route]}, n = {n}")
                if len(seeds) > 1:
                    ax.fill_between(depths, np.nanmin(ys, 0), np.nanmax(ys, 0), color=color,
                                    alpha=0.06, lw=0)
        s = results["slopes"][scale]
        im, bp = (s[r]["mean_over_widths"]["value"] for r in ("imitation", "backprop"))
        ax.set_title(f"α = {scale}: slope imitation {im:+.2f}, back-prop {bp:+.2f}", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("depth L")
    axes[0].set_ylabel("RMS deviation from the wide net / RMS(wide output)")
    axes[-1].legend(fontsize=6)
    paths += save(fig, out_dir, "depth_deviation")

    fig, axes = _panels(len(scales))
    cmap = plt.get_cmap("viridis")
    for ax, scale in zip(axes, scales, strict=True):
        for k, n in enumerate(widths):
            bp = _values(configs, scale, "backprop", "deviation", depths, n, seeds)
            im = _values(configs, scale, "imitation", "deviation", depths, n, seeds)
            ax.plot(depths, _gmean(bp / im), "o-", color=cmap(k / max(1, len(widths) - 1)),
                    lw=1.2, ms=3, label=f"n = {n}")
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        r = results["slopes"][scale]["ratio"]["mean_over_widths"]
        ax.set_title(f"α = {scale}: slope of the ratio {r['value']:+.2f}", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("depth L")
    axes[0].set_ylabel("D_backprop / D_imitation")
    axes[-1].legend(fontsize=6)
    paths += save(fig, out_dir, "depth_ratio")

    need = results["width_needed"]
    fig, axes = plt.subplots(2, len(scales), figsize=(3.6 * len(scales), 5.8), sharex=True,
                             sharey=True, squeeze=False)
    top = 2 * widths[-1]
    for row, metric in enumerate(("rel_deviation", "rel_loss_gap")):
        for col, scale in enumerate(scales):
            ax = axes[row, col]
            for route, (color, ls, marker) in ROUTE_STYLE.items():
                by_eps = need[scale][route][metric]
                for k, (eps, by_depth) in enumerate(by_eps.items()):
                    ys = [by_depth[str(L)]["half_of_seeds"] for L in depths]
                    ys = [y if isinstance(y, int) else top for y in ys]
                    shift = 1.0 + 0.04 * (k - 1) + (0.02 if route == "backprop" else 0.0)
                    ax.plot(np.asarray(depths) * shift, ys, ls, marker=marker, color=color,
                            alpha=0.4 + 0.6 * (k + 1) / len(by_eps), lw=1.2, ms=3.5,
                            label=f"{ROUTE_LABEL[route]}, ε = {eps}")
            ax.axhline(widths[-1] * 1.4, color="k", lw=0.6, ls=":")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_yticks(widths + [top])
            ax.set_yticklabels([str(n) for n in widths] + ["none"])
            if row == 0:
                ax.set_title(f"α = {scale}", fontsize=8)
            else:
                ax.set_xlabel("depth L")
        label = ("width needed: relative deviation ≤ ε" if metric == "rel_deviation"
                 else "width needed: relative loss gap ≤ ε")
        axes[row, 0].set_ylabel(label, fontsize=8)
        axes[row, -1].legend(fontsize=5.5)
    paths += save(fig, out_dir, "depth_width_needed")
    return paths


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, draw, argv, relpath="meanfield/depth/depth.json")


if __name__ == "__main__":
    raise SystemExit(main())
