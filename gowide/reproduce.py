"""``gowide reproduce``: compute the results that are missing, then draw every figure and
write ``REPORT.md``.

Quick mode (``make reproduce``) keeps its results under ``OUT/results/`` so it never touches
the committed full results; the full mode reads and fills ``results/`` in the working
directory. A result file already present is reused unless ``--force`` is given.

The experiments are ``gowide.jobs.JOBS``; ``REPORT.md`` is rendered by
``gowide.report.document``. This module holds the command: arguments, checks before any
write, and the staged writing of figures, ``REPORT.md`` and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from gowide.jobs import JOBS

DEFAULT_OUT = Path("figures/out")


def register(sub) -> None:
    from gowide.argtypes import threads_int

    parser = sub.add_parser(
        "reproduce",
        help="compute missing results, draw all figures, write REPORT.md",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _locations(parser, "quick presets (minutes on 2 CPU cores)")
    parser.add_argument("--force", action="store_true", help="recompute results that exist")
    parser.add_argument("--threads", type=threads_int, default=1,
                        help="torch CPU threads for the simulations, 1..1024")
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
    from gowide.argtypes import path_arg

    parser.add_argument("--out", type=path_arg, default=DEFAULT_OUT,
                        help="where figures and REPORT.md go (not empty)")
    parser.add_argument("--results", type=path_arg, default=None,
                        help="results directory; default OUT/results with --quick, else results/")


def figures_command(args) -> int:
    return _run(args, compute=False)


def reproduce_command(args) -> int:
    return _run(args, compute=True)


def _malformed(path: Path, exc: Exception):
    from gowide.errors import UsageError

    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    return UsageError(f"results file {str(path)!r} is malformed or from another version "
                      f"({type(exc).__name__}: {reason}); recompute it with --force")


# What a damaged result file can raise while it is reported or drawn (OSError: a file of
# an empirical comparison's runs that is a directory or cannot be read).
MALFORMED = (KeyError, TypeError, IndexError, ValueError, AttributeError, ArithmeticError,
             RecursionError, OSError)


def _check_dir(path: Path, what: str, writable: bool = True) -> None:
    """UsageError unless ``path`` is a directory or can be created as one."""
    from gowide.paths import check_output_path

    check_output_path(path, what, writable)


def _run(args, compute: bool) -> int:
    from gowide.errors import UsageError
    from gowide.paths import output_dir, read_json

    start = time.perf_counter()
    results_dir = args.results or (args.out / "results" if args.quick else Path("results"))
    preset = "quick" if args.quick else "full"
    _check_dir(args.out, "output directory")
    _check_dir(results_dir, "results directory", writable=compute)
    if not compute:
        missing = [str(results_dir / j.relpath) for j in JOBS
                   if not (results_dir / j.relpath).exists()]
        if missing:
            raise UsageError(f"missing result files: {', '.join(missing)}; "
                             "run 'gowide reproduce' to compute them")
    # Every result file that is reused is read and checked before anything is computed or
    # written.
    reused = {}
    for job in JOBS:
        path = results_dir / job.relpath
        if path.exists() and not (compute and args.force):
            reused[job.relpath] = results = read_json(path, job.name)
            _render(job, path, results)
    created = not args.out.exists()
    out = output_dir(args.out)
    # Figures, REPORT.md and the manifest are drawn into a temporary directory under OUT and
    # moved into place only once all of them are drawn: a result file that fails while it is
    # drawn leaves every earlier figure as it was.
    staging = Path(tempfile.mkdtemp(prefix=".drawing-", dir=out))
    try:
        done = _draw_all(args, compute, results_dir, reused, staging, out, start, preset)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: nothing of anyone else's is removed
        raise
    figures, report = done
    print(f"\nDone in {time.perf_counter() - start:.0f} s.")
    print(f"Report:  {report}")
    print(f"Figures: {out}/ ({len(figures)} files)")
    print(f"Results: {results_dir}/")
    return 0


def _draw_all(args, compute, results_dir, reused, staging, out, start, preset):
    """Compute what is missing, draw into ``staging``, then move everything into ``out``."""
    from gowide.atomic import write_json, write_text
    from gowide.paths import output_dir, read_json
    from gowide.provenance import provenance
    from gowide.report.document import render_report

    if compute:
        import torch

        torch.set_num_threads(args.threads)
    steps = len(JOBS) + 1
    loaded, figures, sections, machines = {}, [], [], []
    for i, job in enumerate(JOBS, 1):
        path = results_dir / job.relpath
        print(f"[{i}/{steps}] {job.name} ({preset} preset)")
        if job.relpath in reused:
            print(f"      reading {path}")
            results = reused[job.relpath]
        else:
            output_dir(path.parent)
            results = job.compute(args.quick, not args.no_progress, path)
            if results is None:
                results = read_json(path, job.name)
            else:
                results["preset"] = preset
                results["provenance"] = provenance("cpu")
                write_json(path, results, compact=len(str(results)) > 200_000)
            print(f"      wrote {path}")
        loaded[job.relpath] = path
        try:
            drawn = job.draw(results, staging, path)
        except MALFORMED as exc:
            raise _malformed(path, exc) from None
        section, machine = _render(job, path, results)
        sections += section
        machines.append(machine)
        figures += [out / Path(p).relative_to(staging) for p in drawn]

    print(f"[{steps}/{steps}] report")
    report = out / "REPORT.md"
    write_text(staging / "REPORT.md", render_report(sections, machines, preset))
    write_json(staging / "manifest.json", {
        "preset": preset,
        "results": {k: str(v) for k, v in loaded.items()},
        "figures": [str(p) for p in figures],
        "report": str(report),
        "seconds": time.perf_counter() - start,
    })
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        dest = out / src.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return figures, report


def _render(job, path: Path, results: dict) -> tuple[list[str], str]:
    """A result's section of ``REPORT.md`` and its row of the machine table; a result that
    cannot be rendered is a UsageError naming its file."""
    from gowide.report.document import provenance_row

    try:
        return job.report(results), provenance_row(path, results)
    except MALFORMED as exc:
        raise _malformed(path, exc) from None
