"""Stage 2, layerwise imitation: the thin model learns the wide model's block outputs.

The loss, the forward pass that feeds it and the errors it is judged by are in
:mod:`empirical.imitation_loss`; this module is the loop around them.

Schedules: ``progressive`` trains blocks bottom to top, ``steps_per_block`` steps each, with
lower blocks ``frozen`` (loss of block ``l`` only) or ``trainable`` (mean loss of blocks
``≤ l``, every block up to ``l`` trainable, as in FitNets' hint stage when only one block is
imitated); ``simultaneous`` trains every block at once on the mean loss. Each block of the
progressive schedule has a fresh optimizer with ``warmup`` and cosine decay over its cap, and
stops at the cap or earlier by :class:`StoppingRule` on its thin-mode relative error measured
every ``check_every`` steps.

Linear pairs connect thin and wide blocks whose widths differ (``connectors.py``); they live
on the run (``run.connectors``) while the stage runs and are merged away at its end, leaving
the thin model with exactly its own architecture. Before that, BatchNorm running statistics
are re-estimated, every block's relative error is recorded with thin and teacher-forced
inputs, and a linear output head is taken from the wide model where that is exact
(:mod:`empirical.transfer`), or, for a masked-LM head tied to the embeddings, imitated
(:mod:`empirical.head_imitation`, ``head_steps``). Under several processes stage 2 averages
gradients with one all-reduce per parameter (its forward passes stop part-way through the
model, which DDP's bookkeeping does not allow).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from tqdm import tqdm

from empirical.config import ImitationConfig
from empirical.connectors import Connectors, merge_error, remove_pairs
from empirical.head_imitation import imitate_mlm_head
from empirical.imitation_loss import (
    error_floors,
    feature_var,
    imitation_forward,
    imitation_loss,
    relative_block_errors,
)
from empirical.precompute import precompute_features
from empirical.run import Run
from empirical.runtime import to_device
from empirical.train import LossLog, make_optimizer, optimizer_step
from empirical.transfer import recalibrate_batchnorm, transfer_head, transfer_mlm_head
from gowide.errors import UsageError


def imitate(run: Run, cfg: ImitationConfig, seed: int, stage: str = "imitate",
            features=None, partial=None) -> dict:
    """Stage 2 on ``run.thin`` and ``run.wide`` (see the module docstring); returns its
    record, and adds its FLOPs to ``run.ledger`` under ``stage``.

    ``features``: the wide model's block outputs on the whole training set, computed once
    (:class:`empirical.precompute.TeacherFeatures`; computed here when ``cfg.precompute``);
    the steps then read them instead of running the wide model, on the same batches.
    ``partial`` (:class:`empirical.checkpoints.Partial`): save the stage's state after each
    phase but the last, and take it up from there: the thin weights, the linear pairs, the
    random state, the phases' records and FLOPs; the batches already used are drawn again and
    skipped, so the stage ends as if it had never stopped."""
    start = time.perf_counter()
    thin, wide, runtime = run.thin, run.wide, run.runtime
    all_names = run.blocks
    names = _imitated(cfg, all_names, thin)
    # Pairs for every block up to the highest imitated one: an imitated block's predecessor
    # needs its pair to feed it a teacher-forced input.
    below = all_names[: all_names.index(names[-1]) + 1]
    run.connectors = Connectors(thin, wide, below, seed=seed).to(runtime.device)
    wide.eval()
    thin.train()
    # the wide outputs the steps read: the imitated blocks', and with teacher-forced inputs
    # those of every block below the highest one
    read = names if cfg.inputs == "thin" else below
    if features is None and cfg.precompute:
        features = precompute_features(wide, run.task, runtime, read)
    generator = torch.Generator().manual_seed(seed)
    if features is None:
        batches = ((b, None) for b in run.task.train_batches(cfg.batch_size, generator,
                                                             runtime.rank, runtime.world))
    else:
        if cfg.target == "pre":
            raise UsageError("precomputed teacher features hold post-activation block "
                             "outputs; use imitate.target = \"post\" with them")
        features.check_covers(read)
        batches = features.batches(cfg.batch_size, generator, runtime.rank, runtime.world)
        run.ledger.add(stage, "teacher_features", features.flops * runtime.world, 1)
    plan = _phases(cfg, names, all_names)
    phases, ledger_from = [], len(run.ledger.entries)
    resumed = (partial.load_blocks(stage, thin, run.connectors, len(plan))
               if partial is not None else None)
    if resumed is not None:
        thin.load_state_dict(resumed["model"])
        run.connectors.load_state_dict(resumed["connectors"])
        torch.set_rng_state(resumed["rng"])
        if runtime.device.type == "cuda":
            torch.cuda.set_rng_state(resumed["rng_cuda"], runtime.device)
        phases = resumed["phases"]
        run.ledger.extend(resumed["ledger"])
        for _ in range(sum(p["steps"] for p in phases)):  # one batch a step, drawn again
            next(batches)
        start -= resumed["wall_s"]
        runtime.note(f"{stage} resumed after {len(phases)} of its {len(plan)} phases")
    for phase in plan[len(phases):]:
        phases.append(_train_phase(run, cfg, stage, batches, all_names, *phase))
        if partial is not None and runtime.is_main and len(phases) < len(plan):
            partial.save({"stage": stage, "phases": phases, "model": thin.state_dict(),
                          "connectors": run.connectors.state_dict(),
                          "ledger": run.ledger.entries[ledger_from:],
                          "rng": torch.get_rng_state(),
                          "rng_cuda": (torch.cuda.get_rng_state(runtime.device)
                                       if runtime.device.type == "cuda" else None),
                          "wall_s": time.perf_counter() - start})
    for p in list(thin.parameters()) + list(run.connectors.parameters()):
        p.requires_grad_(True)
    thin.train()
    return _finish(run, cfg, seed, names, all_names, phases, stage) | {
        "wall_s": time.perf_counter() - start}


def _imitated(cfg: ImitationConfig, all_names: list[str], thin: nn.Module) -> list[str]:
    """The blocks stage 2 imitates, bottom to top."""
    names = list(cfg.blocks) if cfg.blocks else all_names
    missing = [n for n in names if n not in all_names]
    if missing:
        raise UsageError(f"imitate.blocks: {missing[0]!r} is not a block of "
                         f"{type(thin).__name__}; its blocks are: {', '.join(all_names)}")
    return sorted(names, key=all_names.index)


def _phases(cfg: ImitationConfig, names: list[str], all_names: list[str]) -> list[tuple]:
    """Stage 2's phases: (name, blocks trained, blocks in the loss, steps cap)."""
    if cfg.schedule != "progressive":
        return [("all", all_names[: all_names.index(names[-1]) + 1], names, cfg.steps)]
    phases = []
    for i, b in enumerate(names):
        if cfg.lower_blocks == "trainable":  # every block up to b trains; loss on names ≤ b
            phases.append((b, all_names[: all_names.index(b) + 1], names[: i + 1],
                           cfg.steps_per_block))
        else:
            phases.append((b, [b], [b], cfg.steps_per_block))
    return phases


def _train_phase(run: Run, cfg: ImitationConfig, stage: str, batches, all_names: list[str],
                 phase: str, train_blocks: list[str], loss_blocks: list[str],
                 steps: int) -> dict:
    """One phase of stage 2: its blocks trained for at most ``steps`` steps; its record."""
    thin, runtime = run.thin, run.runtime
    params = _set_trainable(thin, run.connectors, train_blocks)
    for b in all_names:  # frozen blocks keep their normalisation statistics
        thin.get_submodule(b).train(b in train_blocks)
    opt, sched = make_optimizer(params, cfg.lr, cfg.weight_decay, steps, cfg.warmup)
    log = LossLog(cfg.log_every)
    label = f"{stage}[{phase}]"
    rule = StoppingRule(cfg)
    flops_per_step, steps_run = 0, 0
    bar = tqdm(range(steps), desc=label, disable=runtime.quiet_bars, leave=False)
    for step in bar:
        batch, z = next(batches)
        batch = to_device(batch, runtime.device)
        z = None if z is None else to_device(z, runtime.device)

        def one_step(batch=batch, z=z):
            return imitation_step(run, batch, loss_blocks, cfg, opt, z)

        flops = optimizer_step(one_step, step, opt, sched, log, runtime, label, params)
        if step == 0:
            flops_per_step = flops
        steps_run = step + 1
        if cfg.check_every and (steps_run % cfg.check_every == 0 or steps_run == steps):
            errs = relative_block_errors(run, loss_blocks, "thin", target=cfg.target)
            error = runtime.mean_across(torch.tensor(max(errs.values())))
            bar.set_postfix_str(f"rel. error {error:.3f}")
            if rule.check(steps_run, error):
                break
    run.ledger.add(stage, phase, flops_per_step * runtime.world, steps_run)
    record = rule.record(steps_run, steps)
    error = record.get("final_relative_error")
    runtime.note(f"{label}: {steps_run}/{steps} steps" + (
        "" if error is None else f", thin-mode relative error {error:.4f}"))
    return {"phase": phase, "blocks": loss_blocks, "steps": steps_run, "steps_cap": steps,
            "final_loss": log.last(), "loss_curve": log.curve} | record


def _finish(run: Run, cfg: ImitationConfig, seed: int, names: list[str],
            all_names: list[str], phases: list[dict], stage: str) -> dict:
    """The end of stage 2: BatchNorm statistics re-estimated, the block errors recorded, the
    output head taken over, the linear pairs merged away; the stage's record."""
    thin, wide, connectors, runtime = run.thin, run.wide, run.connectors, run.runtime
    # The statistics of the blocks trained early were estimated under the lower blocks as
    # they were then; re-estimate them all under the final weights (BatchNorm only).
    recalibrated = recalibrate_batchnorm(thin, run.task, runtime, cfg.bn_recalibration,
                                         cfg.batch_size, seed + 1)
    errors = {mode: relative_block_errors(run, names, mode, target=cfg.target)
              for mode in ("thin", "teacher")}
    extra = {}
    if connectors.pairs:  # the floor a narrower interface leaves (thin-mode targets)
        extra["block_error_floors"] = error_floors(run, names, cfg.target)
    if cfg.target == "pre":  # what the next block reads: the output after the activation
        extra["post_activation_block_errors"] = {"thin": relative_block_errors(run, names, "thin")}
    head = "own"
    if cfg.head == "wide" and names[-1] == all_names[-1]:  # the top block was imitated
        head = transfer_head(thin, wide, connectors, names[-1])
        if head == "own":
            head = transfer_mlm_head(thin, wide, connectors, names[-1], seed + 3)
    sample = to_device(run.task.sample_batch(), runtime.device)
    diff = merge_error(thin, connectors, run.task.forward, sample)
    n_pairs = len(connectors.pairs)
    remove_pairs(thin, connectors)
    run.connectors = None
    if head == "own+wide-bias" and cfg.head_steps:  # a tied head: imitate it (see the module)
        extra["head_imitation"] = imitate_mlm_head(run, cfg.head_steps, cfg.batch_size, cfg.lr,
                                                   cfg.warmup, seed + 4, stage, cfg.log_every)
        head += "+imitated"
    return {"schedule": cfg.schedule, "inputs": cfg.inputs, "lower_blocks": cfg.lower_blocks,
            "target": cfg.target, "normalize": cfg.normalize, "init": cfg.init, "blocks": names,
            "phases": phases, "block_errors": errors, **extra,
            "bn_recalibration_batches": recalibrated, "linear_pairs": n_pairs,
            "merge_max_abs_diff": diff, "head": head}


def imitation_step(run: Run, batch, loss_blocks: list[str], cfg: ImitationConfig, opt,
                   z: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Forward and backward pass of one stage-2 step (the optimizer step is the caller's);
    returns the loss, the mean of the per-block imitation losses (a block imitated on both
    sides of its final module: the sum of the two, each relative to its target's variance)."""
    mapped, z = imitation_forward(run, batch, loss_blocks, cfg.inputs, z, cfg.target)
    dim = run.thin.feature_dim
    per_block = []
    for b in loss_blocks:
        if f"{b}:out" not in mapped:
            per_block.append(imitation_loss(mapped[b], z[b], dim, cfg.normalize))
            continue
        # both sides of a learned final module (learned_final_modules): each term relative to
        # its target's variance (already so with normalize), so neither scale drowns the other
        per_block.append(sum(
            imitation_loss(mapped[k], z[k], dim, cfg.normalize) / (
                1.0 if cfg.normalize else feature_var(z[k].float(), dim).mean().clamp_min(1e-12))
            for k in (b, f"{b}:out")))
    loss = torch.stack(per_block).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    return loss


def _set_trainable(thin: nn.Module, connectors: Connectors, blocks: list[str]) -> list:
    for p in list(thin.parameters()) + list(connectors.parameters()):
        p.requires_grad_(False)
    params = []
    for b in blocks:
        params += list(thin.get_submodule(b).parameters())
        pair = connectors.pair(b)
        if pair is not None:
            params += list(pair.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


class StoppingRule:
    """Stage 2's per-block stopping rule (:class:`~empirical.config.ImitationConfig`): given
    the block's thin-mode relative error at each check, say when to stop: at ``stop_error``
    (when > 0), or once the error has not fallen below ``(1 - stop_min_delta)`` times its
    best value for ``stop_patience`` checks in a row (when > 0)."""

    def __init__(self, cfg: ImitationConfig):
        self.target, self.patience = cfg.stop_error, cfg.stop_patience
        self.min_delta = cfg.stop_min_delta
        self.checks: list[dict] = []
        self.best = math.inf
        self.stale = 0
        self.reason: str | None = None

    def check(self, step: int, error: float) -> bool:
        self.checks.append({"step": step, "relative_error": error})
        if error < self.best * (1.0 - self.min_delta):
            self.best, self.stale = error, 0
        else:
            self.best, self.stale = min(self.best, error), self.stale + 1
        if self.target and error <= self.target:
            self.reason = "target"
        elif self.patience and self.stale >= self.patience:
            self.reason = "plateau"
        return self.reason is not None

    def record(self, steps_run: int, cap: int) -> dict:
        if not self.checks:
            return {"stopped": "cap"}
        return {"stopped": self.reason or "cap", "checks": self.checks,
                "final_relative_error": self.checks[-1]["relative_error"]}
