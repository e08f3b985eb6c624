"""``gowide empirical ...``: run one method of the three-stage recipe on a real model.

    gowide empirical run --task resnet --method ours --preset tiny --out runs/resnet-ours
    gowide empirical run --task bert --method kd --set finetune.kd_weight=0.7 --out DIR
    gowide empirical run ... --resume        # skip the stages whose checkpoints exist
    torchrun --nproc_per_node 2 -m gowide.cli empirical run ...   # several processes
    gowide empirical methods                 # the list of methods
    gowide empirical compare --task resnet --preset small --seeds 3 --out results/empirical/resnet
    gowide empirical compare --task resnet --preset regime --seeds 5 --jobs 2 --pilot --out DIR

Results go to ``DIR/result.json`` (metrics, per-stage losses, per-block imitation errors,
compute, config, seed, versions, device); ``compare`` writes ``DIR/compare.json``,
``DIR/compare.md`` (``gowide.report.empirical``) and figures (see :mod:`empirical.compare`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gowide.argtypes import jobs_int, path_text, seed_int, seeds_count, threads_or_default
from gowide.errors import UsageError


def _run(args) -> int:
    from empirical.methods import get_method
    from empirical.presets import build_config
    from empirical.runner import check_out, run
    from empirical.train import Diverged

    get_method(args.method)
    fields = {"seed": args.seed, "device": args.device, "threads": args.threads}
    cfg = build_config(args.task, args.method, args.preset, _overrides(args), **fields)
    check_out(args.out)
    try:
        result = run(cfg, args.out, resume=args.resume, progress=not args.quiet,
                     preset=args.preset)
    except Diverged as exc:
        print(f"gowide: {exc}", file=sys.stderr)
        return 1
    if not args.quiet and result is not None:
        print(_summary(result, args.out))
    return 0


def _overrides(args) -> list[str]:
    """The --set overrides, with --data-dir as one more."""
    extra = [] if args.data_dir is None else [f"data.data_dir={_toml_string(args.data_dir)}"]
    return list(args.overrides) + extra


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _summary(result: dict, out) -> str:
    m = result["metrics"]
    if result["task"] == "bert":
        main = (f"downstream test accuracy {m['downstream']['test']['accuracy']:.4f}, "
                f"masked-LM val loss {m['mlm']['val']['mlm_loss']:.3f}")
    else:
        main = f"test accuracy {m['test']['accuracy']:.4f}, val accuracy {m['val']['accuracy']:.4f}"
    flops = result["compute"]["train_flops"]
    return (f"{result['task']}/{result['method']}: {main}; training compute {flops:.3g} FLOPs; "
            f"{result['wall_s']:.1f} s -> {out}/result.json")


def _compare(args) -> int:
    from empirical.compare import parse_methods, run_compare
    from empirical.presets import build_config
    from empirical.runner import check, check_out
    from empirical.train import Diverged

    methods = parse_methods(args.methods)
    fields = {"device": args.device, "threads": args.threads}
    overrides = _overrides(args)
    # Every method's input is checked before the first run starts.
    cfgs = [build_config(args.task, m, args.preset, overrides, seed=0, **fields)
            for m in methods]
    check_out(args.out)
    check(cfgs)
    try:
        summary = run_compare(args.task, args.preset, list(range(args.seeds)), args.out,
                              methods=methods, overrides=overrides, progress=not args.quiet,
                              jobs=args.jobs, pilot=args.pilot,
                              keep_checkpoints=args.keep_checkpoints,
                              only_finished=args.only_finished, **fields)
    except Diverged as exc:
        print(f"gowide: {exc}", file=sys.stderr)
        return 1
    from figures.fig_empirical import draw
    from figures.style import draw_staged
    from gowide.report.empirical import compare_markdown, write_compare_markdown

    write_compare_markdown(summary, args.out)

    def fail(message: str):
        raise UsageError(message)

    # drawn into a temporary folder and moved into place: no figure replaced half way
    draw_staged(lambda staging: draw(args.out, staging), Path(args.out) / "figures",
                Path(args.out) / "compare.json", fail)
    if not args.quiet:
        print(compare_markdown(summary))
        print(f"-> {args.out}/compare.json, compare.md, figures/")
    return 0


def _methods(args) -> int:
    from empirical.methods import METHODS

    for m in METHODS.values():
        print(f"{m.name:22s} {m.description}")
    return 0


def _common(p) -> None:
    p.add_argument("--preset", default="tiny",
                   help="tiny | small | path to a TOML file (default tiny)")
    p.add_argument("--out", type=path_text, required=True,
                   help="output directory (not empty; a symbolic link must point somewhere)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="default auto: CUDA when present, else CPU")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="override a config entry, e.g. imitate.steps_per_block=50 "
                        "(repeatable; the value is TOML)")
    p.add_argument("--data-dir", type=path_text, default=None,
                   help="directory with the Fashion-MNIST IDX files (dataset 'fashion')")
    p.add_argument("--threads", type=threads_or_default, default=None,
                   help="CPU threads for torch, 0..1024 (default: the preset's; 0 = one per "
                        "core)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "empirical", help="three-stage training of real models (ResNet, BERT-style)",
        description="Go wide, then narrow on small real models: wide training, layerwise "
                    "imitation, fine-tuning, and the baselines.",
    )
    sub = parser.add_subparsers(dest="empirical_command", metavar="SUBCOMMAND", required=True)

    run_p = sub.add_parser("run", help="train one method end to end and write DIR/result.json")
    run_p.add_argument("--task", required=True, choices=("resnet", "bert"))
    run_p.add_argument("--method", default="ours", help="method name (see 'empirical methods')")
    _common(run_p)
    run_p.add_argument("--seed", type=seed_int, default=None,
                       help="seed, 0..2**32-1 (default: the preset's, 0)")
    run_p.add_argument("--resume", action="store_true",
                       help="reuse the checkpoints of finished stages in --out")
    run_p.set_defaults(func=_run)

    cmp_p = sub.add_parser(
        "compare", help="every method on several seeds; the paper's claims with intervals",
        description="Run the methods on seeds 0..N-1 (finished runs in --out are reused), "
                    "then write DIR/compare.json, DIR/compare.md and DIR/figures/.")
    cmp_p.add_argument("--task", required=True, choices=("resnet", "bert"))
    cmp_p.add_argument("--seeds", type=seeds_count, default=3,
                       help="number of seeds N, 1..1000: seeds 0..N-1 (default 3)")
    cmp_p.add_argument("--methods", default=None,
                       help="comma-separated subset of methods (default: all)")
    _common(cmp_p)
    cmp_p.add_argument("--jobs", type=jobs_int, default=1,
                       help="seeds run at once (1..256), each in a one-thread process (needs "
                            "--threads 1 or the preset's threads = 1; default 1)")
    cmp_p.add_argument("--pilot", action="store_true",
                       help="run seed 0 first and stop after it when a gate fails "
                            "(teacher margin, scratch converged, block errors)")
    cmp_p.add_argument("--keep-checkpoints", action="store_true",
                       help="keep stage checkpoints and the shared-stage cache")
    cmp_p.add_argument("--only-finished", action="store_true",
                       help="train nothing: compare the runs already finished in --out (a "
                            "method is reported on the seeds where it finished)")
    cmp_p.set_defaults(func=_compare)

    list_p = sub.add_parser("methods", help="list the training methods")
    list_p.set_defaults(func=_methods)
