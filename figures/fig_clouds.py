"""Particle clouds of a thin net's layers against the teacher's, read from a saved ``clouds.json``.

One row per stored layer, one column per stage of the thin net: as drawn (init), after
layerwise imitation of the teacher, after back-propagation from scratch with the same number
of particle-gradient evaluations. Grey dots are the teacher's particles, coloured dots the
thin net's n particles; from the second column on, thin lines join each thin particle to its
initial position (hollow circles). Axes are the two leading principal directions of the
teacher's particles θ = (a, w, b) of that layer. Panel titles give the energy distance E to
the teacher's cloud (θ-space) and the block error δ (what the layers compute); the row label
gives the floor, the same distances for n particles drawn from the teacher itself.

    python -m figures.fig_clouds RESULTS/clouds.json --out figures/out
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.style import COLORS, plt, save, script_main

STAGE_STYLE = {  # colour, legend label, panel title
    "init": (COLORS["init"], "thin net at initialisation", "at initialisation"),
    "imitation": (COLORS["imitation"], "thin net after imitation", "after imitation"),
    "backprop": (COLORS["backprop"], "thin net after back-propagation", "after back-prop"),
}
TEACHER_COLOR = "#8c8c8c"


def _xy(cloud: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(cloud["x"], dtype=float), np.asarray(cloud["y"], dtype=float)


def _limits(values: list[np.ndarray]) -> tuple[float, float]:
    v = np.concatenate(values)
    lo, hi = float(v.min()), float(v.max())
    pad = 0.06 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def draw(results: dict, out_dir: str | Path) -> list[Path]:
    layers = results["layers"]
    stages = results["stages"]
    n = results["config"]["thin_width"]
    fig, axes = plt.subplots(len(layers), len(stages), squeeze=False,
                             figsize=(3.3 * len(stages), 3.0 * len(layers)))
    for row, entry in zip(axes, layers, strict=True):
        tx, ty = _xy(entry["teacher"])
        clouds = {s: _xy(entry["thin"][s]) for s in stages}
        xlim = _limits([tx] + [c[0] for c in clouds.values()])
        ylim = _limits([ty] + [c[1] for c in clouds.values()])
        x0, y0 = clouds["init"]
        for ax, stage in zip(row, stages, strict=True):
            color, label, title = STAGE_STYLE[stage]
            ax.scatter(tx, ty, s=4, color=TEACHER_COLOR, alpha=0.35, lw=0,
                       label=f"teacher ({len(tx)} particles shown)")
            x, y = clouds[stage]
            if stage != "init":
                ax.plot(np.stack([x0, x]), np.stack([y0, y]), color=color, lw=0.5, alpha=0.4)
                ax.scatter(x0, y0, s=16, facecolors="none", edgecolors=color, lw=0.6,
                           alpha=0.6)
            ax.scatter(x, y, s=22, color=color, edgecolors="k", lw=0.4, zorder=3,
                       label=f"{label} (n = {n})")
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            e, d = entry["energy_distance"][stage], entry["block_error"][stage]
            ax.set_title(f"{title}: E = {e:.3f}, δ = {d:.3f}", fontsize=9)
            if entry is layers[-1]:
                ax.set_xlabel("PC 1 of teacher")
        ev = entry["projection"]["explained_variance"]
        floor_e, floor_d = entry["energy_distance"]["floor"], entry["block_error"]["floor"]
        row[0].set_ylabel(f"layer {entry['layer']}: PC 2 of teacher\n"
                          f"(PCs: {ev[0]:.0%} + {ev[1]:.0%} of variance)\n"
                          f"floor E = {floor_e:.3f}, δ = {floor_d:.3f}")
    handles = [h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in axes[0] for lab in ax.get_legend_handles_labels()[1]]
    seen = {}
    for h, lab in zip(handles, labels, strict=True):
        seen.setdefault(lab, h)
    fig.legend(seen.values(), seen.keys(), loc="lower center", ncol=len(seen), fontsize=8,
               bbox_to_anchor=(0.5, -0.01))
    mean_e = results["distances"]["mean_energy_distance"]
    fig.suptitle(
        f"Particle clouds, thin net (n = {n}) against the teacher "
        f"(N = {results['config']['wide_width']}); E: energy distance in θ-space, "
        f"δ: block error.\nMean over all {results['config']['depth']} layers: E init "
        f"{mean_e['init']:.3f}, imitation {mean_e['imitation']:.3f}, back-prop "
        f"{mean_e['backprop']:.3f}, floor {mean_e['floor']:.3f}", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, out_dir, "clouds")


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, draw, argv, relpath="meanfield/clouds/clouds.json")


if __name__ == "__main__":
    raise SystemExit(main())
