"""What the regime comparison would cost on this CPU: every stage of every method timed on a
fraction of its steps (one torch thread), scaled to the preset's steps.

    python scripts/time_regime_cpu.py --out FILE [--task resnet] [--fraction 20]

Each method runs once (seed 0) with every step count divided by ``--fraction`` (stage 2:
its cap per block and its head-imitation steps divided likewise, no stopping rule) and one
validation evaluation per stage; a stage's CPU seconds per step (the process's CPU time,
shared among its stages by their wall times, so that other work on the machine does not
inflate it), times its steps in the preset, is its estimated time on one core.
Stage 2 is counted at its cap (an upper bound: its stopping rule can end blocks early).
Validation evaluations are left out (about once per epoch: a few percent of a stage). The
estimate for a comparison is the sum over its methods (the teacher and stage 2 once, as the
stage cache shares them) times the seeds, divided by the processes run at once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESET = str(ROOT / "empirical" / "configs" / "regime.toml")


def main() -> int:
    import torch

    from empirical.presets import build_config
    from empirical.runner import run
    from gowide.atomic import write_json
    from gowide.provenance import provenance

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--task", default="resnet", choices=("resnet", "bert"))
    p.add_argument("--fraction", type=int, default=20)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    torch.set_num_threads(1)
    full = build_config(args.task, "ours", PRESET, list(args.set), seed=0, device="cpu",
                        threads=1)
    k = args.fraction
    sections = {"wide": full.wide.steps, "finetune": full.finetune.steps,
                "scratch": full.scratch.get("steps", full.finetune.steps),
                "deeper": full.deeper.get("steps", full.scratch.get("steps"))}
    small = [f"wide.steps={max(1, sections['wide'] // k)}",
             f"wide.eval_every={max(1, sections['wide'] // k)}",
             f"finetune.steps={max(1, sections['finetune'] // k)}",
             f"finetune.eval_every={max(1, sections['finetune'] // k)}",
             f"imitate.steps_per_block={max(1, full.imitate.steps_per_block // k)}",
             "imitate.check_every=0", "imitate.stop_error=0", "imitate.stop_patience=0",
             f"scratch.steps={max(1, sections['scratch'] // k)}",
             f"scratch.eval_every={max(1, sections['scratch'] // k)}",
             f"deeper.steps={max(1, sections['deeper'] // k)}",
             f"deeper.eval_every={max(1, sections['deeper'] // k)}"]
    if full.imitate.head_steps:  # the tied head's imitation, part of stage 2: scaled likewise
        small.append(f"imitate.head_steps={max(1, full.imitate.head_steps // k)}")
    per_method = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("teacher", "scratch", "deeper", "ours", "kd"):
            cfg = build_config(args.task, method, PRESET, list(args.set) + small, seed=0,
                               device="cpu", threads=1)
            cpu0 = time.process_time()
            result = run(cfg, Path(tmp) / method, progress=False, preset=PRESET)
            cpu = time.process_time() - cpu0  # this process's CPU time: robust to sharing
            walls = {n: r["wall_s"] for n, r in result["stages"].items() if n != "downstream"}
            stages = {}
            for name, rec in result["stages"].items():
                if name == "downstream":
                    continue
                steps = sum(e["steps"] for e in result["compute"]["entries"]
                            if e["stage"] == name)
                share = cpu * rec["wall_s"] / sum(walls.values())
                stages[name] = {"steps_timed": steps, "wall_s": rec["wall_s"], "cpu_s": share,
                                "cpu_s_per_step": share / max(1, steps),
                                "estimated_s": share * k}
            per_method[method] = stages
            print(method, {n: round(v["estimated_s"]) for n, v in stages.items()}, flush=True)
    # ours and kd reuse the teacher of their seed; ours_no_ft reuses ours' stages
    per_seed = sum(v["estimated_s"] for m, st in per_method.items() for n, v in st.items()
                   if not (m in ("ours", "kd") and n == "wide"))
    report = {"task": args.task, "preset": PRESET, "fraction": k, "per_method": per_method,
              "per_seed_core_s": per_seed, "seeds": args.seeds, "workers": args.workers,
              "estimated_wall_s": per_seed * args.seeds / args.workers,
              "note": "stage 2 at its cap; validation evaluations not counted",
              "provenance": provenance()}
    write_json(Path(args.out), report)
    print(f"per seed {per_seed / 3600:.2f} core-hours; {args.seeds} seeds on {args.workers} "
          f"processes: {report['estimated_wall_s'] / 3600:.1f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
