"""FLOP matching: the budget of ``scratch_long``, the compute-matched baseline.

``scratch_long`` trains the thin model from scratch on labels with the training FLOPs of
``ours``, the wide teacher's included. Those FLOPs are counted, not estimated: every phase
of the stages of ``ours`` runs one step on throwaway models under the FLOP counter
(``flops.py``), times its steps (stage 2 at its cap); the steps of ``scratch_long`` are that
budget over the counted FLOPs of one step of the thin model on labels.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from empirical.config import RunConfig
from empirical.methods import ours_stages, scratch_stage
from empirical.run import Run
from empirical.runtime import Runtime
from empirical.stages import Stage, run_stage


def _one_step(c: RunConfig) -> RunConfig:
    """``c`` with every stage cut to one step (one per block in stage 2), without
    evaluations, stopping rules or BatchNorm recalibration (FLOP counting only)."""
    one = {"steps": 1, "eval_every": 0, "early_stop": False}
    return replace(c, wide=replace(c.wide, **one), finetune=replace(c.finetune, **one),
                   scratch=c.scratch | one, deeper=c.deeper | one,
                   imitate=replace(c.imitate, steps=1, steps_per_block=1, check_every=0,
                                   stop_error=0.0, stop_patience=0, bn_recalibration=0))


def ours_flops(cfg: RunConfig, task, runtime: Runtime,
               names: list[str]) -> tuple[int, list[dict]]:
    """Training FLOPs of ``ours`` under ``cfg``, the wide teacher's included: every phase of
    its stages runs one step on throwaway models under the FLOP counter, times its steps."""
    run = Run(task, runtime, cfg=cfg)
    real_steps = {"wide": cfg.wide.steps, "finetune": cfg.finetune.steps,
                  "imitate": (cfg.imitate.steps_per_block if cfg.imitate.schedule == "progressive"
                              else cfg.imitate.steps)}
    for i, stage in enumerate(ours_stages(_one_step(cfg), len(names))):
        for role in (stage.role, stage.teacher):
            if role is not None:
                run.model(role)
        torch.manual_seed(cfg.seed * 1000 + i + 1)
        run_stage(stage, run, cfg.seed * 1000 + i + 1)
    rows = [e | {"steps": real_steps[e["stage"]],
                 "flops": e["flops_per_step"] * real_steps[e["stage"]]}
            for e in run.ledger.entries]
    return sum(r["flops"] for r in rows), rows


def matched_steps(cfg: RunConfig, task, runtime: Runtime, names: list[str]) -> dict:
    """Steps of ``scratch_long``: the FLOPs of ``ours`` (teacher included) over the counted
    FLOPs of one step of the thin model on labels; the record stored in ``result.json``
    under ``compute.matched_to``."""
    budget, rows = ours_flops(cfg, task, runtime, names)
    run = Run(task, runtime, cfg=cfg)
    run.model("thin")
    run_stage(scratch_stage(_one_step(cfg)), run, cfg.seed * 1000 + 1)
    per_step = run.ledger.entries[0]["flops_per_step"]
    return {"method": "ours", "budget_flops": budget, "budget_by_phase": rows,
            "flops_per_step": per_step, "steps": max(1, math.ceil(budget / per_step))}


def matched_stage(cfg: RunConfig, steps: int) -> Stage:
    """The stage of ``scratch_long``: ``scratch``'s settings, the matched steps."""
    stage = scratch_stage(cfg)
    return replace(stage, config=replace(stage.config, steps=steps))
