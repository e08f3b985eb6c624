"""The masked-LM loss of ``ours_no_ft`` (tiny BERT) with the thin masked-LM head taken from
the teacher (``transfer.transfer_mlm_head``, sqrt or linear rescale) or left as initialised.

    python scripts/measure_bert_head.py --out DIR            # tiny preset, seeds 0 and 1
    python scripts/measure_bert_head.py --out DIR --quick    # a smoke test, seconds

Each variant trains its own copy of the seed's teacher (training is deterministic on CPU, so
the copies are identical; the stage cache cannot tell the patched variants apart). Writes
``DIR/head.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from unittest import mock

import torch

QUICK = ["model.layers=2", "model.hidden=16", "model.ffn=32", "model.heads=2", "wide_mult=2.0",
         "data.max_mlm_sequences=300", "data.max_len=32", "wide.steps=6", "wide.batch_size=16",
         "imitate.steps_per_block=2", "imitate.batch_size=16", "finetune.batch_size=16",
         "downstream.batch_size=16"]


def main(argv: list[str] | None = None) -> int:
    from empirical import imitation
    from empirical.presets import build_config
    from empirical.runner import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    real = imitation.transfer_mlm_head
    rows = {}
    for seed in range(args.seeds):
        for name, head, rescale in (("own", "own", None), ("wide_sqrt", "wide", "sqrt"),
                                    ("wide_linear", "wide", "linear")):
            extra = (QUICK if args.quick else []) + ["downstream.steps=1",
                                                     f'imitate.head="{head}"']
            cfg = build_config("bert", "ours_no_ft", "tiny", extra, seed=seed, device="cpu")

            def transfer(*a, rescale=rescale, **k):
                return real(*a, **(k | {"rescale": rescale}))

            with mock.patch.object(imitation, "transfer_mlm_head", transfer):
                r = run(cfg, args.out / f"{name}-{seed}", progress=False)
            rows[f"{name}-{seed}"] = {
                "mlm_loss": r["metrics"]["mlm"]["val"]["mlm_loss"],
                "teacher_mlm_loss": r["stages"]["wide"]["eval"]["val"]["mlm_loss"],
                "head": r["stages"]["imitate"]["head"], "vocab_size": r["data"]["vocab_size"]}
            print(name, seed, rows[f"{name}-{seed}"], flush=True)
    (args.out / "head.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
