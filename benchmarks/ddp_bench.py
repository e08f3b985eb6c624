"""Data-parallel throughput: 1 and 2 processes under ``torchrun --nproc_per_node N``.

Each configuration is a fresh launch of ``python -m torch.distributed.run --standalone``
running :mod:`benchmarks.ddp_worker` (as tests/test_empirical_ddp.py launches the project's
runs), with ``OMP_NUM_THREADS`` and torch's intra-op threads set to ``threads`` per process.
The figure is examples (images; for BERT also tokens) of the global batch per second, the
global batch fixed (the tiny preset's stage-1 batch), so two processes each take half of
it; the ratio of 2 to 1 processes is 2 for perfect scaling. On CPU the processes use gloo.
With CUDA, one process per GPU with NCCL; two processes need two GPUs, and what cannot run
is recorded as skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.timing import env

ROOT = Path(__file__).resolve().parents[1]

FULL = {"tasks": "resnet,bert", "steps": 20, "warmup": 5, "windows": 3}
QUICK = {"tasks": "resnet,bert", "steps": 5, "warmup": 2, "windows": 2}


def launch(nproc: int, device: str, plan: dict, threads: int, timeout: float = 600) -> dict:
    """One torchrun launch; returns what rank 0 wrote."""
    with tempfile.TemporaryDirectory(prefix="gowide-ddp-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(nproc), "-m", "benchmarks.ddp_worker",
               "--out", str(out), "--device", device, "--tasks", plan["tasks"],
               "--steps", str(plan["steps"]), "--warmup", str(plan["warmup"]),
               "--windows", str(plan["windows"]), "--threads", str(threads)]
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        run_env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=path)
        done = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"torchrun with {nproc} process(es) on {device} failed "
                               f"(exit {done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def _ratios(one: dict, two: dict) -> dict:
    return {name: two["tasks"][name]["examples_per_s"] / one["tasks"][name]["examples_per_s"]
            for name in one["tasks"]}


def ddp_2proc_over_1proc(quick: bool, threads: int = 1, progress=print) -> dict:
    plan = QUICK if quick else FULL
    cpu = {}
    runs = {n: launch(n, "cpu", plan, threads) for n in (1, 2)}
    for name in runs[1]["tasks"]:
        cpu[name] = {"1": runs[1]["tasks"][name], "2": runs[2]["tasks"][name],
                     "ratio": _ratios(runs[1], runs[2])[name]}
        progress(f"  ddp cpu {name}: 1 proc {cpu[name]['1']['examples_per_s']:.0f}/s, "
                 f"2 procs {cpu[name]['2']['examples_per_s']:.0f}/s, "
                 f"ratio {cpu[name]['ratio']:.2f}")
    gpu: dict = {}
    if not torch.cuda.is_available():
        gpu = {"skipped": "no CUDA device"}
    else:
        one = launch(1, "cuda", plan, threads)
        gpu = {name: {"1": one["tasks"][name]} for name in one["tasks"]}
        if torch.cuda.device_count() >= 2:
            two = launch(2, "cuda", plan, threads)
            for name, r in _ratios(one, two).items():
                gpu[name] |= {"2": two["tasks"][name], "ratio": r}
        else:
            gpu["skipped_2proc"] = "one CUDA device: 2 processes need 2 GPUs"
        gpu["env"] = env(threads=threads, device="cuda")
    headline = cpu["resnet"]["ratio"] if "resnet" in cpu else next(iter(cpu.values()))["ratio"]
    return {"value": headline,
            "goal": "2 is perfect scaling (examples/s of 2 processes over 1, CPU, gloo, resnet)",
            "met": None,
            "cpu": cpu, "gpu": gpu,
            "what": "stage-1 training steps of the tiny preset's wide model under torchrun "
                    "--standalone; the global batch fixed, split across processes; "
                    f"{plan['windows']} windows of {plan['steps']} steps after "
                    f"{plan['warmup']} warm-up steps, median window",
            "env": env(threads=threads, device="cpu", processes=[1, 2])}
