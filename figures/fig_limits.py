"""Figures of the width and depth limits (P1, P2), read from a saved ``limits.json``.

Two panels: mean squared deviation from the width limit against N, at initialisation and
after training; RMS error against the continuous-depth solution against L. Thin lines are
seeds, thick lines their geometric mean, dashed lines the predicted slope −1.

    python -m figures.fig_limits RESULTS/limits.json --out figures/out
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.style import COLORS, plt, save, script_main


def _panel(ax, runs, xkey, ykey, color, label, slope_key):
    xs = np.asarray(runs[0][xkey], dtype=float)
    ys = np.asarray([r[ykey] for r in runs], dtype=float)  # (seeds, sizes)
    for y in ys:
        ax.plot(xs, y, color=color, alpha=0.25, lw=0.8)
    gmean = np.exp(np.log(np.clip(ys, 1e-300, None)).mean(0))
    ax.plot(xs, gmean, "o-", color=color, lw=1.8, ms=3.5, label=f"{label} (slope {slope_key})")
    ref = gmean[0] * (xs / xs[0]) ** -1.0
    ax.plot(xs, ref, "--", color="k", lw=0.8, alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")


def _fmt(s: dict) -> str:
    if s.get("ci_low") is None or not np.isfinite(s.get("ci_low", np.nan)):
        return f"{s['value']:.2f}"
    return f"{s['value']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"


def draw(results: dict, out_dir: str | Path) -> list[Path]:
    raw = results["raw"]
    paths = []
    fig, ax = plt.subplots()
    _panel(ax, raw["width_init"], "widths", "msd", COLORS["init"], "at initialisation",
           _fmt(results["width_slope"]))
    _panel(ax, raw["width_trained"], "widths", "msd", COLORS["trained"],
           f"after training (T = {raw['width_trained'][0]['training_time']:g})",
           _fmt(results["width_slope_trained"]))
    ax.set_xlabel("width N (particles per layer)")
    ax.set_ylabel("mean squared deviation from width limit")
    ax.set_title("Width limit (P1): dashed = slope −1", fontsize=9)
    ax.legend()
    paths += save(fig, out_dir, "limits_width")

    fig, ax = plt.subplots()
    _panel(ax, raw["depth"], "depths", "rms", COLORS["depth"], "L-layer net vs ODE",
           _fmt(results["depth_slope"]))
    ax.set_xlabel("depth L (layers)")
    ax.set_ylabel("RMS error against depth limit")
    ax.set_title("Depth limit (P2): dashed = slope −1", fontsize=9)
    ax.legend()
    paths += save(fig, out_dir, "limits_depth")
    return paths


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, draw, argv, relpath="meanfield/limits/limits.json")


if __name__ == "__main__":
    raise SystemExit(main())
