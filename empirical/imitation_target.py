"""Which block output should stage 2 imitate: before the block's final ReLU or after it?

For every seed one wide teacher is trained (stage 1), then the same freshly initialised thin
model goes through stage 2 twice from it, once per target (``imitate.target = "pre"`` and
``"post"``), each followed by the same stage 3. Measured per target: the thin-mode relative
error of every block *after* the activation (what the next block reads, so both targets are
compared on the same quantity) and on the trained target, the validation accuracy with no
fine-tuning (``ours_no_ft``) and after stage 3 (``ours``), and the wall time. The verdict
pairs the two targets by seed (differences ``pre − post``, 95% Student-t interval). Only
validation data is used: this chooses a default, it is not a reported result.

A post-activation target has no gradient wherever the thin pre-activation is negative while
the wide output is positive (the ReLU is flat there); the pre-activation target does not
have this dead zone, but it also asks the block to match values the next block never sees.

    python -m empirical.imitation_target --out DIR [--preset tiny] [--seeds 3] [--set k=v ...]
    python -m empirical.imitation_target --quick --out DIR     # a smoke test, seconds

This module does not change the default; it measures what the default should be (the
measurement behind ``imitate.target``'s default is stated in ``empirical/README.md``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from empirical.presets import build_config
from empirical.run import Run
from empirical.runtime import setup_runtime
from empirical.stages import Stage, run_stage
from empirical.tasks import make_task
from gowide.atomic import write_json
from gowide.stats import mean_interval

TARGETS = ("pre", "post")
QUICK = ["model.blocks_per_stage=1", "model.base_width=4", "wide_mult=2.0", "wide.steps=20",
         "wide.batch_size=32", "imitate.steps_per_block=4", "imitate.batch_size=32",
         "finetune.steps=10", "finetune.batch_size=32"]


def measure_seed(preset: str, overrides: list[str], seed: int, progress: bool = False) -> dict:
    """One teacher, then stage 2 (+ stage 3) once per target from the same thin start."""
    cfg = build_config("resnet", "ours", preset, overrides, seed=seed, device="cpu")
    runtime = setup_runtime("cpu", progress)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task = make_task(cfg)
    teacher = Run(task, runtime, cfg=cfg)
    teacher.model("wide")
    torch.manual_seed(seed * 1000 + 1)
    run_stage(Stage("wide", "wide", "wide", cfg.wide), teacher, seed * 1000 + 1)
    out = {"seed": seed, "teacher_val_accuracy": task.evaluate(teacher.wide, "val",
                                                               runtime.device)["accuracy"]}
    for target in TARGETS:
        start = time.perf_counter()
        run = Run(task, runtime, cfg=cfg, models={"wide": teacher.wide})
        run.model("thin")
        stage2 = Stage("imitate", "imitate", "thin", replace(cfg.imitate, target=target),
                       teacher="wide")
        torch.manual_seed(seed * 1000 + 2)
        record = run_stage(stage2, run, seed * 1000 + 2)
        no_ft = task.evaluate(run.thin, "val", runtime.device)["accuracy"]
        post = record.get("post_activation_block_errors", record["block_errors"])["thin"]
        torch.manual_seed(seed * 1000 + 3)
        run_stage(Stage("finetune", "finetune", "thin", cfg.finetune, teacher="wide"),
                  run, seed * 1000 + 3)
        out[target] = {"post_activation_errors": post,
                       "trained_target_errors": record["block_errors"]["thin"],
                       "mean_post_activation_error": sum(post.values()) / len(post),
                       "val_accuracy_no_ft": no_ft,
                       "val_accuracy_ours": task.evaluate(run.thin, "val",
                                                          runtime.device)["accuracy"],
                       "wall_s": time.perf_counter() - start}
    return out


def summarise(rows: list[dict]) -> dict:
    """Paired differences pre − post over seeds, with 95% intervals."""
    keys = ("mean_post_activation_error", "val_accuracy_no_ft", "val_accuracy_ours")
    out = {}
    for key in keys:
        diffs = [r["pre"][key] - r["post"][key] for r in rows]
        mean, lo, hi = mean_interval(diffs)
        out[key] = {"pre": sum(r["pre"][key] for r in rows) / len(rows),
                    "post": sum(r["post"][key] for r in rows) / len(rows),
                    "pre_minus_post": mean, "interval": [lo, hi], "per_seed": diffs}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for target.json")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--quick", action="store_true", help="a few steps, 2 seeds")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    overrides = (QUICK if args.quick else []) + args.overrides
    seeds = range(2 if args.quick else args.seeds)
    start = time.perf_counter()
    rows = [measure_seed(args.preset, overrides, s, progress=not args.quiet) for s in seeds]
    result = {"preset": args.preset, "overrides": overrides, "seeds": list(seeds),
              "per_seed": rows, "summary": summarise(rows),
              "wall_s": time.perf_counter() - start}
    write_json(args.out / "target.json", result)
    if not args.quiet:
        for key, s in result["summary"].items():
            lo, hi = s["interval"]
            print(f"{key:28s} pre {s['pre']:.4f}  post {s['post']:.4f}  "
                  f"pre-post {s['pre_minus_post']:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
