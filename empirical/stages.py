"""The three stages of *go wide, then narrow*, as small objects a method strings together.

* stage 1, ``wide`` — train the wide member of the family on labels
  (:func:`empirical.train.train_supervised`);
* ``subsample`` — the mean-field warm start: the thin model becomes a rescaled seeded
  subsample of the wide model's neurons (``subsample.py``), before imitation or instead of it;
* stage 2, ``imitate`` — layerwise imitation of the wide model's block outputs
  (:func:`imitate`), with linear pairs where widths differ, merged at the end
  (``connectors.py``);
* stage 3, ``finetune`` — train the thin model end to end on labels, with output-level
  distillation from the wide model when ``kd_weight`` > 0. Baselines trained from scratch
  are the same stage on a freshly initialised model.

Stage 2, per block ``l`` with output ``h_l`` (thin) and ``z_l`` (wide)::

    loss_l = mean((P_l h_l - z_l)²)            [/ var_feature(z_l) with normalize = true]

Schedules: ``progressive`` trains blocks bottom to top, ``steps_per_block`` steps each, with
lower blocks ``frozen`` (loss of block ``l`` only) or ``trainable`` (mean loss of blocks
``≤ l``, every block up to ``l`` trainable, as in FitNets' hint stage when only one block is
imitated); ``simultaneous`` trains every block at once on the mean loss. Inputs: ``thin``
(block ``l`` reads the thin network's own state, passed through ``Q_{l-1}·P_{l-1}``) or
``teacher`` (teacher-forced: block ``l`` reads ``Q_{l-1} z_{l-1}``). Forward passes stop at
the highest block in the loss. At the end, a linear output head is taken from the wide
model where that is exact (:func:`transfer_head`; ``head = "own"`` keeps the thin one). Under
several processes stage 2 averages gradients with one
all-reduce per parameter (its forward passes stop part-way through the model, which DDP's
bookkeeping does not allow); stages 1 and 3 use DDP.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from empirical.capture import FeatureCapture, InputOverride, block_names
from empirical.config import ImitateConfig, SupervisedConfig
from empirical.connectors import Connectors, merge, merge_error
from empirical.flops import ComputeLedger, count_flops
from empirical.subsample import subsample_init
from empirical.train import (
    Context,
    LossLog,
    check_finite,
    make_optimizer,
    to_device,
    train_supervised,
)
from gowide.errors import UsageError


@dataclass
class Stage:
    """One step of a method: ``kind`` is wide | subsample | imitate | finetune; ``role`` the
    model it trains (wide | thin | deeper); ``teacher`` the role it learns from, if any."""

    name: str
    kind: str
    role: str
    config: SupervisedConfig | ImitateConfig | None = None
    teacher: str | None = None


@dataclass
class RunState:
    """What stages share: the models by role, the compute ledger and the seeds."""

    models: dict[str, nn.Module] = field(default_factory=dict)
    ledger: ComputeLedger = field(default_factory=ComputeLedger)


def feature_var(z: torch.Tensor, feature_dim: int) -> torch.Tensor:
    """Variance of each feature over every other dimension, shaped to broadcast against z."""
    dims = [d for d in range(z.ndim) if d != feature_dim % z.ndim]
    return z.var(dim=dims, unbiased=False, keepdim=True)


def imitation_loss(student: torch.Tensor, target: torch.Tensor, feature_dim: int,
                   normalize: bool = False) -> torch.Tensor:
    """Mean squared error between a (mapped) thin block output and the wide one."""
    diff = (student.float() - target.float()) ** 2
    if normalize:
        diff = diff / (feature_var(target.float(), feature_dim) + 1e-6)
    return diff.mean()


def relative_error(student: torch.Tensor, target: torch.Tensor) -> float:
    """‖s − z‖² / ‖z − mean(z)‖²: the imitation error as a fraction of the target's variance."""
    s, z = student.float(), target.float()
    return float(((s - z) ** 2).sum() / ((z - z.mean()) ** 2).sum().clamp_min(1e-12))


def _predecessors(model: nn.Module) -> dict[str, str | None]:
    names = block_names(model)
    return {n: (names[i - 1] if i > 0 else None) for i, n in enumerate(names)}


def teacher_outputs(wide, task, batch, names: list[str], ctx: Context,
                    stop_after: str | None = None) -> dict[str, torch.Tensor]:
    """The wide model's outputs of the blocks ``names`` on ``batch`` (no grad, detached), its
    forward pass stopped after ``stop_after`` (default: the last of ``names``)."""
    with torch.no_grad(), ctx.autocast():
        with FeatureCapture(wide, names, detach=True,
                            stop_after=stop_after or names[-1]) as wc:
            wc.run(task.forward, wide, batch)
    return wc.outputs


def imitation_forward(thin, wide, connectors: Connectors, task, batch, loss_blocks: list[str],
                      inputs: str, ctx: Context, z: dict[str, torch.Tensor] | None = None):
    """One forward pass of stage 2: wide block outputs (no grad) and thin ones.
    Returns ({block: thin output mapped to the wide space}, {block: wide output}).
    ``z``: the wide block outputs of this batch when they are already at hand (precomputed,
    ``precompute.py``); the wide model then does not run."""
    pred = _predecessors(thin)
    last = loss_blocks[-1]
    if z is None:
        wide_needed = list(dict.fromkeys(
            loss_blocks
            + [pred[b] for b in loss_blocks if pred[b] is not None and inputs == "teacher"]
        ))
        z = teacher_outputs(wide, task, batch, wide_needed, ctx, stop_after=last)
    overrides = {}
    if inputs == "teacher":
        for b in loss_blocks:
            p = pred[b]
            if p is not None:
                overrides[b] = lambda p=p: connectors.to_thin(p, z[p])
    with contextlib.ExitStack() as stack, ctx.autocast():
        tc = stack.enter_context(FeatureCapture(thin, loss_blocks, stop_after=last))
        if inputs == "thin":
            stack.enter_context(connectors.insert(thin))
        stack.enter_context(InputOverride(thin, overrides))
        tc.run(task.forward, thin, batch)
    mapped = {b: connectors.to_wide(b, tc.outputs[b]) for b in loss_blocks}
    return mapped, z


@torch.no_grad()
def block_errors(thin, wide, connectors, task, ctx, names, inputs: str, size: int = 256) -> dict:
    """Relative imitation error of every block on a fixed validation batch (eval mode)."""
    batch = to_device(task.sample_batch(size), ctx.device)
    was = thin.training
    thin.eval()
    mapped, z = imitation_forward(thin, wide, connectors, task, batch, names, inputs, ctx)
    thin.train(was)
    return {b: relative_error(mapped[b], z[b]) for b in names}


def imitation_step(thin, wide, connectors: Connectors, task, batch, loss_blocks: list[str],
                   cfg: ImitateConfig, ctx: Context, opt,
                   z: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Forward and backward pass of one stage-2 step (the optimizer step is the caller's);
    returns the loss, the mean of the per-block imitation losses."""
    mapped, z = imitation_forward(thin, wide, connectors, task, batch, loss_blocks, cfg.inputs,
                                  ctx, z)
    per_block = {b: imitation_loss(mapped[b], z[b], thin.feature_dim, cfg.normalize)
                 for b in loss_blocks}
    loss = torch.stack(list(per_block.values())).mean()
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


@torch.no_grad()
def transfer_head(thin: nn.Module, wide: nn.Module, connectors: Connectors, last: str) -> str:
    """Give the thin model the wide model's output head where that is exact.

    Stage 2 imitates blocks only; a linear head on top of the last block can be taken from
    the wide model, with the last pair's ``P`` (thin→wide) merged into it:
    ``W_wide (P h) + b = (W_wide P) h + b``. The ResNet head (pool, then linear) allows it;
    the BERT heads have a hidden layer of the interface width and keep their own weights
    (stage 3 trains them). Returns what was done: ``"wide"`` or ``"own"``."""
    t_head, w_head = getattr(thin, "head", None), getattr(wide, "head", None)
    if not isinstance(t_head, nn.Linear) or not isinstance(w_head, nn.Linear):
        return "own"
    pair = connectors.pair(last)
    weight = w_head.weight if pair is None else w_head.weight @ pair.up  # (K, c)
    if weight.shape != t_head.weight.shape:
        return "own"
    t_head.weight.copy_(weight)
    t_head.bias.copy_(w_head.bias)
    return "wide"


def imitate(thin: nn.Module, wide: nn.Module, task, cfg: ImitateConfig, ctx: Context,
            stage: str, seed: int, ledger: ComputeLedger, features=None) -> dict:
    """Stage 2 (see the module docstring). Leaves ``thin`` with exactly its own architecture.

    ``features``: the wide model's block outputs on the whole training set, computed once
    (:class:`empirical.precompute.TeacherFeatures`); the steps then read them instead of
    running the wide model, on the same batches."""
    start = time.perf_counter()
    all_names = block_names(thin)
    names = list(cfg.blocks) if cfg.blocks else all_names
    order = {n: i for i, n in enumerate(all_names)}
    missing = [n for n in names if n not in order]
    if missing:
        raise UsageError(f"imitate.blocks: {missing[0]!r} is not a block of "
                         f"{type(thin).__name__}; its blocks are: {', '.join(all_names)}")
    names.sort(key=order.get)
    # Pairs for every block up to the highest imitated one: an imitated block's predecessor
    # needs its pair to feed it a teacher-forced input.
    below = all_names[: order[names[-1]] + 1]
    connectors = Connectors(thin, wide, below, seed=seed).to(ctx.device)
    wide.eval()
    thin.train()
    if cfg.schedule == "progressive":
        phases = []
        for i, b in enumerate(names):
            if cfg.lower_blocks == "trainable":  # every block up to b trains; loss on names ≤ b
                train = all_names[: order[b] + 1]
                phases.append((b, train, names[: i + 1], cfg.steps_per_block))
            else:
                phases.append((b, [b], [b], cfg.steps_per_block))
    else:
        phases = [("all", all_names[: order[names[-1]] + 1], names, cfg.steps)]
    generator = torch.Generator().manual_seed(seed)
    if features is None:
        batches = ((b, None) for b in task.train_batches(cfg.batch_size, generator, ctx.rank,
                                                         ctx.world))
    else:
        features.check_covers(names if cfg.inputs == "thin" else below)
        batches = features.batches(cfg.batch_size, generator, ctx.rank, ctx.world)
        ledger.add(stage, "teacher_features", features.flops * ctx.world, 1)
    phase_records = []
    for phase, train_blocks, loss_blocks, steps in phases:
        params = _set_trainable(thin, connectors, train_blocks)
        for b in all_names:  # frozen blocks keep their normalisation statistics
            thin.get_submodule(b).train(b in train_blocks)
        opt, sched = make_optimizer(params, cfg.lr, cfg.weight_decay, steps)
        log = LossLog(cfg.log_every)
        label = f"{stage}[{phase}]"
        for step in tqdm(range(steps), desc=label, disable=ctx.quiet_bars, leave=False):
            batch, z = next(batches)
            batch = to_device(batch, ctx.device)
            z = None if z is None else to_device(z, ctx.device)

            def one_step(batch=batch, z=z, loss_blocks=loss_blocks, opt=opt):
                return imitation_step(thin, wide, connectors, task, batch, loss_blocks, cfg,
                                      ctx, opt, z)

            if step == 0:
                loss, flops = count_flops(one_step)
                ledger.add(stage, phase, flops * ctx.world, steps)
            else:
                loss = one_step()
            ctx.average_gradients(params)
            value = ctx.mean_across(loss)
            check_finite(value, label, step)
            opt.step()
            sched.step()
            log.add(step, value)
        phase_records.append({"phase": phase, "blocks": loss_blocks, "steps": steps,
                              "final_loss": log.last(), "loss_curve": log.curve})
    for p in list(thin.parameters()) + list(connectors.parameters()):
        p.requires_grad_(True)
    thin.train()
    errors = {mode: block_errors(thin, wide, connectors, task, ctx, names, mode)
              for mode in ("thin", "teacher")}
    head = "own"
    if cfg.head == "wide" and names[-1] == all_names[-1]:  # the top block was imitated
        head = transfer_head(thin, wide, connectors, names[-1])
    diff = merge_error(thin, connectors, task.forward, to_device(task.sample_batch(), ctx.device))
    n_pairs = len(connectors.pairs)
    merge(thin, connectors)
    return {"schedule": cfg.schedule, "inputs": cfg.inputs, "lower_blocks": cfg.lower_blocks,
            "normalize": cfg.normalize, "init": cfg.init, "blocks": names,
            "phases": phase_records, "block_errors": errors, "linear_pairs": n_pairs,
            "merge_max_abs_diff": diff, "head": head, "wall_s": time.perf_counter() - start}


def run_stage(stage: Stage, state: RunState, task, ctx: Context, seed: int) -> dict:
    """Run one stage on the models in ``state`` (which must already hold its role)."""
    model = state.models[stage.role]
    teacher = state.models.get(stage.teacher) if stage.teacher else None
    if stage.kind in ("wide", "finetune"):
        return train_supervised(model, task, stage.config, ctx, stage.name, seed, state.ledger,
                                teacher=teacher)
    if stage.kind == "subsample":
        start = time.perf_counter()
        subsample_init(model, teacher, seed, stage.config.subsample_rescale)
        names = block_names(model)
        connectors = Connectors(model, teacher, names, seed=seed).to(ctx.device)
        errors = (block_errors(model, teacher, connectors, task, ctx, names, "thin")
                  if not connectors.pairs else None)
        return {"block_errors": {"thin": errors} if errors else None,
                "wall_s": time.perf_counter() - start}
    if stage.kind == "imitate":
        if stage.config.init == "subsample":
            subsample_init(model, teacher, seed, stage.config.subsample_rescale)
        return imitate(model, teacher, task, stage.config, ctx, stage.name, seed, state.ledger)
    raise ValueError(f"unknown stage kind {stage.kind!r}")
