"""The shared look of every figure, and saving in both raster and vector form."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gowide.atomic import save_figure  # noqa: E402

FORMATS = ("png", "pdf")
COLORS = {
    "init": "#1f77b4",
    "trained": "#d62728",
    "depth": "#2ca02c",
    "imitation": "#9467bd",
    "backprop": "#ff7f0e",
    "bound": "#7f7f7f",
}

plt.rcParams.update({
    "figure.figsize": (4.6, 3.4),
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
})


def save(fig, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically into ``out_dir``; close the figure."""
    out_dir = Path(out_dir)
    paths = [save_figure(fig, out_dir / f"{stem}.{fmt}", bbox_inches="tight") for fmt in FORMATS]
    plt.close(fig)
    return paths
