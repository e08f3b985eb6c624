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


def script_main(doc: str, draw, argv: list[str] | None = None,
                relpath: str | None = None) -> int:
    """The command line of a figure script::

        python -m figures.fig_X [RESULTS.json] [--quick] [--out DIR]

    Without a path it reads ``results/<relpath>`` (the committed full results), or with
    ``--quick`` the quick results that ``gowide reproduce --quick`` leaves in
    ``figures/out/results/<relpath>``. Bad paths end with a one-line error (exit 2)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=None,
                        help="path to the results JSON file"
                             + (f" (default results/{relpath})" if relpath else ""))
    parser.add_argument("--quick", action="store_true",
                        help="read the quick results under figures/out/results/")
    parser.add_argument("--out", type=Path, default=Path("figures/out"))
    args = parser.parse_args(argv)
    path = args.results
    if path is None:
        if relpath is None:
            parser.error("give the path to a results file")
        path = (Path("figures/out/results") if args.quick else Path("results")) / relpath
    try:
        with open(path, encoding="utf-8") as fh:
            results = json.load(fh)
    except FileNotFoundError:
        parser.error(f"{path} not found (run 'gowide reproduce{' --quick' * args.quick}')")
    except (OSError, json.JSONDecodeError) as exc:
        parser.error(f"{path} cannot be read as JSON ({exc})")
    for p in draw(results, args.out):
        print(p)
    return 0
