"""The experiments of ``gowide reproduce`` (``JOBS``): for each, where its result file lives
under the results directory, how to compute it, how to draw its figures and its section of
``REPORT.md`` (:mod:`gowide.report.document`).

Quick mode uses every experiment's quick preset; the full mode the presets behind the
committed results under ``results/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gowide.report import document


@dataclass
class Job:
    """One experiment: where its result lives, how to compute it and how to draw it.

    ``compute(quick, progress, path)`` returns the results to be written at ``path``, or
    ``None`` when it wrote ``path`` itself (the empirical comparisons, whose directory also
    holds every run); ``draw(results, out, path)`` returns the figure files; ``report(results)``
    the lines of its section of ``REPORT.md``."""

    name: str
    relpath: str  # under the results directory
    compute: Callable[[bool, bool, Path], dict | None]
    draw: Callable[[dict, Path, Path], list]
    report: Callable[[dict], list[str]]


def _limits(quick: bool, progress: bool, path: Path) -> dict:
    from meanfield.experiments import LimitsConfig, run_limits

    return run_limits(LimitsConfig.quick() if quick else LimitsConfig.full(), progress=progress)


def _compare(quick: bool, progress: bool, path: Path) -> dict:
    from meanfield.compare import CompareConfig, run_compare

    return run_compare(CompareConfig.quick() if quick else CompareConfig.full(),
                       progress=progress)


def _depth(quick: bool, progress: bool, path: Path) -> dict:
    from meanfield.depth import DepthConfig, run_depth

    return run_depth(DepthConfig.quick() if quick else DepthConfig.full(), progress=progress)


def _clouds(quick: bool, progress: bool, path: Path) -> dict:
    from meanfield.clouds import CloudsConfig, run_clouds

    return run_clouds(CloudsConfig.quick() if quick else CloudsConfig.full(), progress=progress)


def _draw_limits(results, out, path):
    from figures.fig_limits import draw

    return draw(results, out)


def _draw_compare(results, out, path):
    from figures.fig_compare import draw

    return draw(results, out)


def _draw_depth(results, out, path):
    from figures.fig_depth import draw

    return draw(results, out)


def _draw_clouds(results, out, path):
    from figures.fig_clouds import draw

    return draw(results, out)


# The quick empirical comparisons: the tiny preset (a smoke test, too small to separate the
# methods), two seeds, the methods the claims need plus the teacher, and BERT with shortened
# stages, so that both fit in a few minutes. The full mode runs every method of the small
# preset on three seeds.
EMPIRICAL_QUICK = {
    "resnet": [],
    "bert": ["wide.steps=100", "finetune.steps=100", "imitate.steps_per_block=15",
             "downstream.steps=150", "data.max_mlm_sequences=2000"],
}
EMPIRICAL_QUICK_METHODS = ["ours", "scratch", "scratch_long", "deeper", "kd", "teacher"]


def _empirical(task: str):
    def compute(quick: bool, progress: bool, path: Path) -> None:
        from empirical.compare import run_compare
        from gowide.report.empirical import write_compare_markdown

        if quick:
            summary = run_compare(task, "tiny", [0, 1], path.parent,
                                  methods=EMPIRICAL_QUICK_METHODS,
                                  overrides=EMPIRICAL_QUICK[task], progress=progress,
                                  device="cpu")
        else:
            summary = run_compare(task, "small", [0, 1, 2], path.parent, progress=progress,
                                  device="cpu")
        write_compare_markdown(summary, path.parent)

    return compute


def _draw_empirical(results, out, path):
    from figures.fig_empirical import draw

    return draw(path.parent, out)


JOBS = (
    Job("mean-field limit checks (P1, P2)", "meanfield/limits/limits.json", _limits,
        _draw_limits, document.limits_section),
    Job("imitation versus back-propagation (P3-P5)", "meanfield/compare/compare.json",
        _compare, _draw_compare, document.compare_section),
    Job("depth and the residual scaling", "meanfield/depth/depth.json", _depth,
        _draw_depth, document.depth_section),
    Job("particle clouds before and after imitation", "meanfield/clouds/clouds.json",
        _clouds, _draw_clouds, document.clouds_section),
    Job("empirical claims, ResNet family (C1-C3)", "empirical/resnet/compare.json",
        _empirical("resnet"), _draw_empirical, document.empirical_section),
    Job("empirical claims, BERT family (C1, C3, C4)", "empirical/bert/compare.json",
        _empirical("bert"), _draw_empirical, document.empirical_section),
)
