"""``gowide meanfield ...``: the mean-field simulation commands."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from gowide.argtypes import jobs_int, path_arg, seed_int, seeds_count, threads_int
from gowide.errors import UsageError

ACTIVATION_NAMES = ("tanh", "relu", "gelu", "identity")


def register(sub) -> None:
    parser = sub.add_parser(
        "meanfield",
        help="mean-field residual network simulations",
        description="Particle simulations of mean-field residual networks.",
    )
    msub = parser.add_subparsers(dest="meanfield_command", metavar="COMMAND", required=True)
    lim = msub.add_parser(
        "limits",
        help="width and depth rate checks (P1, P2): writes limits.json and figures",
        description=(
            "Measure the log-log slopes of (1) the mean squared deviation of a width-N net from "
            "its width limit, at initialisation and after training, and (2) the RMS error of an "
            "L-layer net against the continuous-depth ODE; each predicted to be -1. Writes "
            "OUT/limits.json and figures into OUT. The full preset takes about 10 minutes on "
            "2 CPU cores; --quick well under 2 minutes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common_arguments(lim)
    lim.add_argument("--activation", choices=ACTIVATION_NAMES, default="tanh")
    lim.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    lim.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    lim.set_defaults(func=limits_command)

    cmp_ = msub.add_parser(
        "compare",
        help="imitation versus back-propagation (P3-P5): writes compare.json",
        description=(
            "Layerwise imitation of a trained wide net versus back-propagation from scratch: "
            "deviations against thin width and depth with the stability bound (P3), "
            "back-propagation's deviation from its own width limit (P4), and the compute each "
            "route needs to reach target test losses (P5), against back-propagation from the "
            "teacher's law and from a centred law. Writes OUT/compare.json with a verdict per "
            "prediction, decided by its 95% interval. --quick takes under a minute on one core."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common_arguments(cmp_)
    cmp_.add_argument("--task", choices=("ridge", "teacher"), default="ridge",
                      help="ridge: sum of 64 sharp ridges (thin nets are width-limited); "
                           "teacher: smooth mean-field teacher (thin nets fit it easily)")
    cmp_.add_argument("--jobs", type=jobs_int, default=1,
                      help="seeds run at once (1..256), each in its own one-thread process; each "
                           "finished seed is kept in OUT/work/ and reused if the run is "
                           "interrupted and started again with the same settings")
    cmp_.set_defaults(func=compare_command)

    depth = msub.add_parser(
        "depth",
        help="the three residual scalings against depth, and the width each route needs: "
             "writes depth.json",
        description=(
            "For each residual scaling (1/L, 1/sqrt(L), 1), depth L and thin width n: a wide net "
            "trained by back-propagation on the ridge task, then a thin net by layerwise "
            "imitation of it and by back-propagation from scratch. Reports the log-log slopes "
            "of each route's deviation from the wide net against L with a verdict per "
            "prediction, and the smallest width at which each route is within a tolerance. "
            "Writes OUT/depth.json and the figures into OUT. --quick takes under a minute on "
            "one CPU core; the full preset (10 seeds) about 20-27 minutes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common_arguments(depth)
    depth.set_defaults(func=depth_command)

    clouds = msub.add_parser(
        "clouds",
        help="particle clouds of a thin net before and after imitation: writes clouds.json",
        description=(
            "Train a wide teacher on the ridge task, then a thin net of n particles per layer "
            "by layerwise imitation of the teacher and, from the same start, by "
            "back-propagation from scratch. Stores, for a few layers, the particles projected "
            "on the teacher's two leading principal directions, and each stage's energy "
            "distance and block error to the teacher. Writes OUT/clouds.json and the figure "
            "into OUT. The full preset takes well under a minute on one CPU core; --quick a few "
            "seconds."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common_arguments(clouds, seeds=False)
    clouds.add_argument("--seed", type=seed_int, default=0,
                        help="seed of the nets, 0..2**32-1 (the task is fixed, as in compare)")
    clouds.set_defaults(func=clouds_command)


def _common_arguments(parser, seeds: bool = True) -> None:
    parser.add_argument("--quick", action="store_true", help="small preset for CI and laptops")
    parser.add_argument("--out", type=path_arg, required=True,
                        help="output directory (not empty)")
    if seeds:
        parser.add_argument("--seeds", type=seeds_count, default=None,
                            help="number of seeds N, 1..1000 (seeds 0..N-1); default: the "
                                 "preset's")
    parser.add_argument("--threads", type=threads_int, default=1,
                        help="torch CPU threads, 1..1024 (these simulations are many small "
                             "operations: one thread is usually fastest and never "
                             "oversubscribes the machine)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def check_device(device: str, threads: int = 1) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available")
    torch.set_num_threads(threads)


def _run_experiment(args, config_cls, overrides: dict, run, filename: str, draw,
                    device: str = "cpu", compact: bool = False):
    """Shared by the subcommands: preset + overrides, validation, run, atomic JSON, figures."""
    from gowide.atomic import write_json
    from gowide.paths import output_dir
    from gowide.provenance import provenance

    check_device(device, args.threads)
    if getattr(args, "seeds", None) is not None:
        overrides["seeds"] = tuple(range(args.seeds))
    cfg = (config_cls.quick if args.quick else config_cls.full)(**overrides)
    try:
        cfg.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = output_dir(args.out)
    results = run(cfg, progress=not args.no_progress)
    results["preset"] = "quick" if args.quick else "full"
    results["provenance"] = provenance(device)
    path = write_json(out / filename, results, compact=compact)
    figures = draw(results, out)
    return results, path, figures


def _show(markdown: list[str], path, figures) -> int:
    """Print a result's tables (the body of its section in REPORT.md) and where it went."""
    print("\n".join(markdown))
    print(f"results: {path}")
    print("figures: " + ", ".join(str(p) for p in figures))
    return 0


def limits_command(args) -> int:
    from figures.fig_limits import draw
    from gowide.report.meanfield import limits_markdown
    from meanfield.experiments import LimitsConfig, run_limits

    overrides = {"activation": args.activation, "dtype": args.dtype, "device": args.device}
    results, path, figures = _run_experiment(args, LimitsConfig, overrides, run_limits,
                                             "limits.json", draw, args.device)
    return _show(limits_markdown(results), path, figures)


def compare_command(args) -> int:
    from figures.fig_compare import draw
    from gowide.report.meanfield import compare_markdown
    from meanfield.compare import CompareConfig, run_compare

    if args.jobs > 64:
        raise UsageError(f"--jobs must be at most 64, got {args.jobs}")
    run = functools.partial(run_compare, workdir=Path(args.out) / "work", jobs=args.jobs)
    results, path, figures = _run_experiment(args, CompareConfig, {"task": args.task},
                                             run, "compare.json", draw, compact=True)
    return _show(compare_markdown(results), path, figures)


def depth_command(args) -> int:
    from figures.fig_depth import draw
    from gowide.report.meanfield import depth_markdown
    from meanfield.depth import DepthConfig, run_depth

    results, path, figures = _run_experiment(args, DepthConfig, {}, run_depth, "depth.json",
                                             draw, compact=True)
    return _show(depth_markdown(results), path, figures)


def clouds_command(args) -> int:
    from figures.fig_clouds import draw
    from gowide.report.meanfield import clouds_markdown
    from meanfield.clouds import CloudsConfig, run_clouds

    results, path, figures = _run_experiment(args, CloudsConfig, {"seed": args.seed},
                                             run_clouds, "clouds.json", draw)
    return _show(clouds_markdown(results), path, figures)
