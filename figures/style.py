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

    from gowide.argtypes import path_arg
    from gowide.errors import UsageError
    from gowide.paths import read_json

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=None,
                        help="path to the results JSON file"
                             + (f" (default results/{relpath})" if relpath else ""))
    parser.add_argument("--quick", action="store_true",
                        help="read the quick results under figures/out/results/")
    parser.add_argument("--out", type=path_arg, default=Path("figures/out"))
    args = parser.parse_args(argv)
    path = args.results
    if path is None:
        if relpath is None:
            parser.error("give the path to a results file")
        path = (Path("figures/out/results") if args.quick else Path("results")) / relpath
    if not path.exists():
        parser.error(f"{path} not found (run 'gowide reproduce{' --quick' * args.quick}')")
    try:
        results = read_json(path)
    except UsageError as exc:
        parser.error(str(exc))
    for p in draw_staged(lambda out: draw(results, out), args.out, path, parser.error):
        print(p)
    return 0


def draw_staged(draw, out: Path, source: Path, fail) -> list[Path]:
    """``draw(directory)`` into a temporary directory under ``out``, then move the files into
    ``out``: a result file that fails half way replaces no earlier figure. ``fail(message)``
    reports a malformed ``source`` (a path, or a function giving the one being drawn) in
    one line and does not return."""
    import os
    import shutil
    import tempfile

    from gowide.errors import UsageError
    from gowide.paths import check_output_path

    try:
        check_output_path(out)
    except UsageError as exc:
        fail(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".drawing-", dir=out))
    try:
        try:
            drawn = draw(staging)
        except MALFORMED as exc:
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            where = source() if callable(source) else source
            fail(f"{where} is malformed or from another version ({type(exc).__name__}: "
                 f"{reason})")
        final = []
        for src in drawn:
            dest = out / Path(src).relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            final.append(dest)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# What a damaged result file can raise while it is drawn.
MALFORMED = (KeyError, TypeError, IndexError, ValueError, AttributeError, ArithmeticError,
             RecursionError, OSError)
