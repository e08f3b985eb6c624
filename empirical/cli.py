"""``gowide empirical ...``: run one method of the three-stage recipe on a real model.

    gowide empirical run --task resnet --method ours --preset tiny --out runs/resnet-ours
    gowide empirical run --task bert --method kd --set finetune.kd_weight=0.7 --out DIR
    gowide empirical run ... --resume        # skip the stages whose checkpoints exist
    torchrun --nproc_per_node 2 -m gowide.cli empirical run ...   # several processes
    gowide empirical methods                 # the list of methods

Results go to ``DIR/result.json`` (metrics, per-stage losses, per-block imitation errors,
compute, config, seed, versions, device).
"""

from __future__ import annotations

import sys


def _run(args) -> int:
    from empirical.config import build_config
    from empirical.methods import get_method, run
    from empirical.train import Diverged

    get_method(args.method)
    fields = {"seed": args.seed, "device": args.device, "threads": args.threads}
    if args.data_dir is not None:
        args.overrides = list(args.overrides) + [f"data.data_dir={_toml_string(args.data_dir)}"]
    cfg = build_config(args.task, args.method, args.preset, args.overrides, **fields)
    try:
        result = run(cfg, args.out, resume=args.resume, progress=not args.quiet,
                     preset=args.preset)
    except Diverged as exc:
        print(f"gowide: {exc}", file=sys.stderr)
        return 1
    if not args.quiet and result is not None:
        print(_summary(result, args.out))
    return 0


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


def _methods(args) -> int:
    from empirical.methods import METHODS

    for m in METHODS.values():
        print(f"{m.name:22s} {m.description}")
    return 0


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
    run_p.add_argument("--preset", default="tiny",
                       help="tiny | small | path to a TOML file (default tiny)")
    run_p.add_argument("--out", required=True, help="output directory")
    run_p.add_argument("--seed", type=int, default=None, help="seed (default: the preset's, 0)")
    run_p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                       help="default auto: CUDA when present, else CPU")
    run_p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="SECTION.KEY=VALUE",
                       help="override a config entry, e.g. imitate.steps_per_block=50 "
                            "(repeatable; the value is TOML)")
    run_p.add_argument("--data-dir", default=None,
                       help="directory with the Fashion-MNIST IDX files (dataset 'fashion')")
    run_p.add_argument("--resume", action="store_true",
                       help="reuse the checkpoints of finished stages in --out")
    run_p.add_argument("--threads", type=int, default=None,
                       help="CPU threads for torch (default: the preset's; 0 = one per core)")
    run_p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    run_p.set_defaults(func=_run)

    list_p = sub.add_parser("methods", help="list the training methods")
    list_p.set_defaults(func=_methods)
