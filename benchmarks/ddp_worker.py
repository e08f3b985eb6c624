"""One process of the data-parallel throughput benchmark; launched by ``benchmarks.ddp_bench``:

    python -m torch.distributed.run --standalone --nproc_per_node N \\
        -m benchmarks.ddp_worker --out FILE [--device cpu|cuda] [--tasks resnet,bert] ...

Each process joins the process group as every run of the project does
(``empirical.runtime.setup_runtime``: gloo on CPU, NCCL on GPU; no group with one process),
builds the wide model of the tiny preset (stage 1, the stage that trains under DDP) and
runs supervised steps as ``train_supervised`` does: its share of the global batch, forward
under the runtime's autocast, label loss, backward with DDP's gradient all-reduce, the loss
averaged over processes, the optimizer step. After warm-up steps and a barrier, ``windows``
windows of ``steps`` steps are timed, each between barriers; rank 0 writes the throughput
of each window (examples of the global batch per second; for BERT also tokens, batch ×
sequence length) to ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from empirical.presets import build_config
from empirical.runtime import prepare_model, setup_runtime, to_device
from empirical.tasks import make_task
from empirical.train import make_optimizer
from gowide.atomic import write_json

ROLE_SEED = 1  # the wide role's seed offset, as in the runs


def run_task(name: str, runtime, steps: int, warmup: int, windows: int) -> dict:
    cfg = build_config(name, "ours", "tiny", device=runtime.device.type)
    task = make_task(cfg)
    torch.manual_seed(cfg.seed * 7919 + ROLE_SEED)
    model = prepare_model(task.build("wide"), runtime)
    model.train()
    net = runtime.wrap(model)
    opt, _ = make_optimizer(model.parameters(), cfg.wide.lr, cfg.wide.weight_decay, 10**6)
    batch_size = cfg.wide.batch_size
    batches = task.train_batches(batch_size, torch.Generator().manual_seed(0), runtime.rank,
                                 runtime.world)
    sync = torch.cuda.synchronize if runtime.device.type == "cuda" else (lambda: None)

    def step():
        batch = to_device(next(batches), runtime.device)
        with runtime.autocast():
            loss = task.loss(task.forward(net, batch), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        runtime.mean_across(loss)
        opt.step()

    for _ in range(warmup):
        step()
    rates = []
    for _ in range(windows):
        sync()
        runtime.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        runtime.barrier()
        rates.append(batch_size * steps / (time.perf_counter() - start))
    out = {"examples_per_s": statistics.median(rates), "window_examples_per_s": rates,
           "global_batch": batch_size, "steps_per_window": steps, "warmup_steps": warmup,
           "model": "wide member of the tiny preset"}
    if name == "bert":
        out["tokens_per_s"] = out["examples_per_s"] * cfg.data.max_len
        out["sequence_length"] = cfg.data.max_len
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--tasks", default="resnet,bert")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    runtime = setup_runtime(args.device, progress=False)
    if runtime.device.type == "cpu":
        torch.set_num_threads(args.threads)
    results = {name: run_task(name, runtime, args.steps, args.warmup, args.windows)
               for name in args.tasks.split(",")}
    if runtime.is_main:
        write_json(args.out, {"world": runtime.world, "device": runtime.describe(),
                              "threads_per_process": torch.get_num_threads(),
                              "tasks": results})
    runtime.barrier()
    if runtime.distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
