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
the highest block in the loss. The output imitated is the block's output after its final
ReLU (``target = "post"``) or its input (``"pre"``, the pre-activation output; no dead zone
where the thin value is negative and the wide one positive). Each block of the progressive
schedule has a fresh optimizer with ``warmup`` and cosine decay over its cap, and stops at
the cap or earlier by :class:`StoppingRule` on its thin-mode :func:`relative_error`
(per-feature centred) measured every ``check_every`` steps. At the end, BatchNorm running
statistics are re-estimated (:func:`recalibrate_batchnorm`), every block's relative error is
recorded with thin and teacher-forced inputs, and a linear output head is taken from the wide
model where that is exact (:func:`transfer_head`; ``head = "own"`` keeps the thin one). Under
several processes stage 2 averages gradients with one
all-reduce per parameter (its forward passes stop part-way through the model, which DDP's
bookkeeping does not allow); stages 1 and 3 use DDP.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from empirical.capture import FeatureCapture, InputOverride, block_names, unwrap
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


def relative_error(student: torch.Tensor, target: torch.Tensor, feature_dim: int = 1) -> float:
    """‖s − z‖² / Σ_f ‖z_f − mean(z_f)‖²: the imitation error as a fraction of the target's
    variance, each feature ``f`` (along ``feature_dim``) centred on its own mean over every
    other dimension (examples, positions, pixels). 0 is a perfect imitation; 1 is what the
    best constant per feature (its mean) achieves. Shapes: (B, C, H, W) with feature_dim 1,
    (B, T, H) with feature_dim -1."""
    s, z = student.float(), target.float()
    dims = [d for d in range(z.ndim) if d != feature_dim % z.ndim]
    centred = z - z.mean(dim=dims, keepdim=True)  # each feature minus its own mean
    return float(((s - z) ** 2).sum() / (centred ** 2).sum().clamp_min(1e-12))


def error_floor(target: torch.Tensor, rank: int, feature_dim: int = 1) -> float:
    """The least :func:`relative_error` any ``rank``-dimensional representation mapped
    linearly into the target's space can reach: the share of the target's per-feature-centred
    variance outside its top ``rank`` principal components,
    ``1 − Σ_{i ≤ rank} λ_i / Σ_i λ_i`` with ``λ`` the eigenvalues of the ``C × C`` feature
    covariance (features along ``feature_dim``, every other dimension a sample). A thin block
    of width ``c`` imitating a wide one of width ``C > c`` through ``P`` cannot go below it
    (it can reach it only if it also produces the target's feature means); 0 when
    ``rank ≥ C``."""
    z = target.float().movedim(feature_dim, -1)
    z = z.reshape(-1, z.shape[-1])  # (samples, C)
    if rank >= z.shape[1]:
        return 0.0
    z = z - z.mean(dim=0, keepdim=True)
    eig = torch.linalg.eigvalsh((z.T @ z).double())  # ascending, (C,)
    total = float(eig.sum())
    return float(eig[: z.shape[1] - rank].sum() / total) if total > 0 else 0.0


def _predecessors(model: nn.Module) -> dict[str, str | None]:
    names = block_names(model)
    return {n: (names[i - 1] if i > 0 else None) for i, n in enumerate(names)}


def teacher_outputs(wide, task, batch, names: list[str], ctx: Context,
                    stop_after: str | None = None,
                    pre_names: list[str] = ()) -> dict[str, torch.Tensor]:
    """The wide model's outputs of the blocks ``names`` on ``batch`` (no grad, detached), its
    forward pass stopped after ``stop_after`` (default: the last of ``names``). With
    ``pre_names``, the pre-activation outputs of those blocks too, under ``"<name>:pre"``
    (one forward pass for both)."""
    stop_after = stop_after or (list(names) + list(pre_names))[-1]
    with torch.no_grad(), ctx.autocast(), contextlib.ExitStack() as stack:
        post = stack.enter_context(FeatureCapture(wide, names, detach=True))
        pre = stack.enter_context(FeatureCapture(wide, pre_names, detach=True,
                                                 stop_after=stop_after, pre_activation=True))
        pre.run(task.forward, wide, batch)
    return post.outputs | {f"{b}:pre": t for b, t in pre.outputs.items()}


def imitation_forward(thin, wide, connectors: Connectors, task, batch, loss_blocks: list[str],
                      inputs: str, ctx: Context, z: dict[str, torch.Tensor] | None = None,
                      target: str = "post"):
    """One forward pass of stage 2: wide block outputs (no grad) and thin ones.
    Returns ({block: thin output mapped to the wide space}, {block: wide output}), the
    outputs taken after the block's final activation (``target = "post"``) or before it
    (``"pre"``, see :class:`~empirical.capture.FeatureCapture`); a teacher-forced input is
    always a post-activation output. ``z``: the wide (post-activation) block outputs of this
    batch when they are already at hand (precomputed, ``precompute.py``); the wide model then
    does not run."""
    pred = _predecessors(thin)
    last = loss_blocks[-1]
    pre = target == "pre"
    if z is None:
        forced = [pred[b] for b in loss_blocks if pred[b] is not None and inputs == "teacher"]
        wide_needed = list(dict.fromkeys(forced + ([] if pre else loss_blocks)))
        z = teacher_outputs(wide, task, batch, wide_needed, ctx, stop_after=last,
                            pre_names=loss_blocks if pre else ())
    elif pre:
        raise UsageError("precomputed teacher features hold post-activation block outputs; "
                         "use imitate.target = \"post\" with them")
    overrides = {}
    if inputs == "teacher":
        for b in loss_blocks:
            p = pred[b]
            if p is not None:
                overrides[b] = lambda p=p: connectors.to_thin(p, z[p])
    with contextlib.ExitStack() as stack, ctx.autocast():
        tc = stack.enter_context(FeatureCapture(thin, loss_blocks, stop_after=last,
                                                pre_activation=pre))
        if inputs == "thin":
            stack.enter_context(connectors.insert(thin))
        stack.enter_context(InputOverride(thin, overrides))
        tc.run(task.forward, thin, batch)
    mapped = {b: connectors.to_wide(b, tc.outputs[b]) for b in loss_blocks}
    return mapped, ({b: z[f"{b}:pre"] for b in loss_blocks} if pre else z)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """``model`` in eval mode inside the block; every submodule's own mode restored after
    (``model.train(was)`` would not do: stage 2 keeps frozen blocks in eval mode)."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, was in modes.items():
            m.training = was


@torch.no_grad()
def block_errors(thin, wide, connectors, task, ctx, names, inputs: str, size: int = 256,
                 target: str = "post") -> dict:
    """Relative imitation error (:func:`relative_error`) of every block on a fixed
    validation batch of ``size`` examples, thin model in eval mode."""
    batch = to_device(task.sample_batch(size), ctx.device)
    with eval_mode(thin):
        mapped, z = imitation_forward(thin, wide, connectors, task, batch, names, inputs, ctx,
                                      target=target)
    return {b: relative_error(mapped[b], z[b], thin.feature_dim) for b in names}


@torch.no_grad()
def error_floors(thin, wide, connectors, task, ctx, names, target: str = "post",
                 size: int = 256) -> dict:
    """:func:`error_floor` of every block with a linear pair (thin width below the wide one)
    on the validation batch of :func:`block_errors`: the relative error its width allows."""
    batch = to_device(task.sample_batch(size), ctx.device)
    pre = [b for b in names if connectors.pair(b) is not None] if target == "pre" else []
    post = [b for b in names if connectors.pair(b) is not None] if target == "post" else []
    if not pre and not post:
        return {}
    z = teacher_outputs(wide, task, batch, post, ctx, stop_after=(pre or post)[-1],
                        pre_names=pre)
    widths = unwrap(thin).block_widths()
    return {b: error_floor(z[f"{b}:pre" if pre else b], widths[b], thin.feature_dim)
            for b in pre or post}


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, task, ctx: Context, batches: int, batch_size: int,
                          seed: int) -> int:
    """Re-estimate the running statistics of every BatchNorm layer of ``model`` as the plain
    average over ``batches`` training batches (train-mode forward passes, no gradient, no
    weight change), so eval mode matches the weights as they are now: after a subsample warm
    start (whose statistics are the wide model's, subsampled) or after imitation (whose
    frozen blocks changed under the statistics of the blocks above). Returns the number of
    batches used (0 when the model has no BatchNorm layer)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not batches:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    data = task.train_batches(batch_size, torch.Generator().manual_seed(seed), ctx.rank,
                              ctx.world)
    try:
        with ctx.autocast():
            for _ in range(batches):
                task.forward(model, to_device(next(data), ctx.device))
    finally:
        for m, was in modes.items():
            m.training = was
        for m, momentum in momenta.items():
            m.momentum = momentum
    return batches


def imitation_step(thin, wide, connectors: Connectors, task, batch, loss_blocks: list[str],
                   cfg: ImitateConfig, ctx: Context, opt,
                   z: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Forward and backward pass of one stage-2 step (the optimizer step is the caller's);
    returns the loss, the mean of the per-block imitation losses."""
    mapped, z = imitation_forward(thin, wide, connectors, task, batch, loss_blocks, cfg.inputs,
                                  ctx, z, cfg.target)
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
    the BERT heads have a hidden layer of the interface width (see :func:`transfer_mlm_head`
    for the masked-LM one; the classification head keeps its own weights). Returns what was
    done: ``"wide"`` or ``"own"``."""
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


@torch.no_grad()
def transfer_mlm_head(thin: nn.Module, wide: nn.Module, connectors: Connectors, last: str,
                      seed: int, rescale: str = "linear") -> str:
    """Give the thin BERT model a masked-LM head taken from the wide one's, so that the
    output of stage 2 predicts tokens at all (a random head guesses uniformly).

    The head is ``W2 · LN(gelu(W1 z + b1)) + b2`` with a hidden layer of the interface width
    ``H`` (wide) or ``c`` (thin), so it cannot be taken over exactly when they differ. Its
    input is mapped as the ResNet head's is (``z = P h``: ``W1 P``), and its hidden layer is a
    seeded subsample of ``c`` of the wide head's ``H`` hidden units (``subsample.py``): rows
    of ``W1 P`` and of ``b1``, the layer norm's gain and bias, columns of ``W2`` rescaled by
    ``H/c`` (``rescale = "linear"``, the default) or ``sqrt(H/c)``. Exact when ``c = H``.
    Returns ``"wide-subsampled"``, or ``"own"`` when the models have no such head.

    Measured on the tiny preset (BERT 3×32 from a 3×64 teacher, vocabulary 2000, seeds 0 and
    1), masked-LM validation loss of ``ours_no_ft``: the thin model's own random head 7.607
    and 7.608 nats (uniform guessing is 7.601), this head with the sqrt rule 6.481 and 6.503,
    with the linear rule 6.400 and 6.405 (its teachers: 6.338 and 6.385). Stage 2 uses the
    linear rule.

    Pre-LN models (``norm = "pre"``) put a final layer norm between the last block and the
    head. When the widths are equal it is copied with the head (exact). When they differ it
    cannot be mapped through ``P`` (a layer norm of ``P h`` is not ``P`` of one of ``h``): the
    thin model keeps its own final norm, and the head is mapped as above, an approximation;
    the return value then ends in ``"+own-final-norm"``.

    Tied embeddings (``tie_embeddings``): the head's output weight is the thin model's token
    embedding matrix, which stage 2 trained as part of the ``embeddings`` block, and it is
    left alone; a subsampled hidden layer of the wide head would then feed coordinates that
    do not match it, so the thin head's hidden layer stays its own too, and only the output
    bias (the wide model's token log-prior) is copied. Returns ``"own+wide-bias"``."""
    from empirical.subsample import _factor, _pick

    t, w = getattr(thin, "mlm_head", None), getattr(wide, "mlm_head", None)
    layout = (nn.Linear, nn.GELU, nn.LayerNorm, nn.Linear)
    if not all(isinstance(h, nn.Sequential) and len(h) == 4
               and all(isinstance(m, k) for m, k in zip(h, layout, strict=True))
               for h in (t, w)):
        return "own"
    if thin.config.tie_embeddings or wide.config.tie_embeddings:
        if w[3].bias.shape != t[3].bias.shape:
            return "own"
        t[3].bias.copy_(w[3].bias)
        return "own+wide-bias"
    pair = connectors.pair(last)
    w1 = w[0].weight if pair is None else w[0].weight @ pair.up  # (H, H) @ (H, c) -> (H, c)
    n_wide, n_thin = w[0].out_features, t[0].out_features
    if w1.shape[1] != t[0].in_features or w[3].out_features != t[3].out_features:
        return "own"
    idx = _pick(n_wide, n_thin, torch.Generator().manual_seed(seed))  # (c,) hidden units
    t[0].weight.copy_(w1[idx])
    t[0].bias.copy_(w[0].bias[idx])
    t[2].weight.copy_(w[2].weight[idx])
    t[2].bias.copy_(w[2].bias[idx])
    t[3].weight.copy_(w[3].weight[:, idx] * _factor(n_wide / n_thin, rescale))  # (V, c)
    t[3].bias.copy_(w[3].bias)
    t_norm, w_norm = getattr(thin, "final_norm", None), getattr(wide, "final_norm", None)
    if t_norm is None or w_norm is None:
        return "wide-subsampled"
    if pair is None:
        t_norm.load_state_dict(w_norm.state_dict())
        return "wide-subsampled"
    return "wide-subsampled+own-final-norm"


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
        if cfg.target == "pre":
            raise UsageError("precomputed teacher features hold post-activation block "
                             "outputs; use imitate.target = \"post\" with them")
        features.check_covers(names if cfg.inputs == "thin" else below)
        batches = features.batches(cfg.batch_size, generator, ctx.rank, ctx.world)
        ledger.add(stage, "teacher_features", features.flops * ctx.world, 1)
    phase_records = []
    for phase, train_blocks, loss_blocks, steps in phases:
        params = _set_trainable(thin, connectors, train_blocks)
        for b in all_names:  # frozen blocks keep their normalisation statistics
            thin.get_submodule(b).train(b in train_blocks)
        opt, sched = make_optimizer(params, cfg.lr, cfg.weight_decay, steps, cfg.warmup)
        log = LossLog(cfg.log_every)
        label = f"{stage}[{phase}]"
        rule = StoppingRule(cfg)
        flops_per_step, steps_run = 0, 0
        bar = tqdm(range(steps), desc=label, disable=ctx.quiet_bars, leave=False)
        for step in bar:
            batch, z = next(batches)
            batch = to_device(batch, ctx.device)
            z = None if z is None else to_device(z, ctx.device)

            def one_step(batch=batch, z=z, loss_blocks=loss_blocks, opt=opt):
                return imitation_step(thin, wide, connectors, task, batch, loss_blocks, cfg,
                                      ctx, opt, z)

            if step == 0:
                loss, flops_per_step = count_flops(one_step)
            else:
                loss = one_step()
            ctx.average_gradients(params)
            value = ctx.mean_across(loss)
            check_finite(value, label, step)
            opt.step()
            sched.step()
            log.add(step, value)
            steps_run = step + 1
            if cfg.check_every and (steps_run % cfg.check_every == 0 or steps_run == steps):
                errs = block_errors(thin, wide, connectors, task, ctx, loss_blocks, "thin",
                                    target=cfg.target)
                error = ctx.mean_across(torch.tensor(max(errs.values())))
                bar.set_postfix_str(f"rel. error {error:.3f}")
                if rule.check(steps_run, error):
                    break
        ledger.add(stage, phase, flops_per_step * ctx.world, steps_run)
        phase_records.append({"phase": phase, "blocks": loss_blocks, "steps": steps_run,
                              "steps_cap": steps, "final_loss": log.last(),
                              "loss_curve": log.curve} | rule.record(steps_run, steps))
    for p in list(thin.parameters()) + list(connectors.parameters()):
        p.requires_grad_(True)
    thin.train()
    # The statistics of the blocks trained early were estimated under the lower blocks as
    # they were then; re-estimate them all under the final weights (BatchNorm only).
    recalibrated = recalibrate_batchnorm(thin, task, ctx, cfg.bn_recalibration,
                                         cfg.batch_size, seed + 1)
    errors = {mode: block_errors(thin, wide, connectors, task, ctx, names, mode,
                                 target=cfg.target)
              for mode in ("thin", "teacher")}
    extra = {}
    if connectors.pairs:  # the floor a narrower interface leaves (thin-mode targets)
        extra["block_error_floors"] = error_floors(thin, wide, connectors, task, ctx, names,
                                                   cfg.target)
    if cfg.target == "pre":  # what the next block reads: the output after the activation
        extra["post_activation_block_errors"] = {
            "thin": block_errors(thin, wide, connectors, task, ctx, names, "thin")}
    head = "own"
    if cfg.head == "wide" and names[-1] == all_names[-1]:  # the top block was imitated
        head = transfer_head(thin, wide, connectors, names[-1])
        if head == "own":
            head = transfer_mlm_head(thin, wide, connectors, names[-1], seed + 3)
    diff = merge_error(thin, connectors, task.forward, to_device(task.sample_batch(), ctx.device))
    n_pairs = len(connectors.pairs)
    merge(thin, connectors)
    return {"schedule": cfg.schedule, "inputs": cfg.inputs, "lower_blocks": cfg.lower_blocks,
            "target": cfg.target, "normalize": cfg.normalize, "init": cfg.init, "blocks": names,
            "phases": phase_records, "block_errors": errors, **extra,
            "bn_recalibration_batches": recalibrated, "linear_pairs": n_pairs,
            "merge_max_abs_diff": diff, "head": head, "wall_s": time.perf_counter() - start}


class StoppingRule:
    """Stage 2's per-block stopping rule (:class:`~empirical.config.ImitateConfig`): given
    the block's thin-mode relative error at each check, say when to stop: at ``stop_error``
    (when > 0), or once the error has not fallen below ``(1 - stop_min_delta)`` times its
    best value for ``stop_patience`` checks in a row (when > 0)."""

    def __init__(self, cfg: ImitateConfig):
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


def run_stage(stage: Stage, state: RunState, task, ctx: Context, seed: int) -> dict:
    """Run one stage on the models in ``state`` (which must already hold its role)."""
    model = state.models[stage.role]
    teacher = state.models.get(stage.teacher) if stage.teacher else None
    if stage.kind == "finetune" and getattr(stage.config, "mode", "finetune") == "probe":
        from empirical.probe import linear_probe

        return linear_probe(model, task, ctx.device, state.ledger, stage.name)
    if stage.kind in ("wide", "finetune"):
        return train_supervised(model, task, stage.config, ctx, stage.name, seed, state.ledger,
                                teacher=teacher)
    if stage.kind == "subsample":
        start = time.perf_counter()
        cfg = stage.config
        subsample_init(model, teacher, seed, cfg.subsample_rescale)
        recalibrated = recalibrate_batchnorm(model, task, ctx, cfg.bn_recalibration,
                                             cfg.batch_size, seed + 1)
        names = block_names(model)
        connectors = Connectors(model, teacher, names, seed=seed).to(ctx.device)
        errors = (block_errors(model, teacher, connectors, task, ctx, names, "thin",
                               target=cfg.target) if not connectors.pairs else None)
        return {"block_errors": {"thin": errors} if errors else None, "target": cfg.target,
                "bn_recalibration_batches": recalibrated, "wall_s": time.perf_counter() - start}
    if stage.kind == "imitate":
        if stage.config.init == "subsample":
            subsample_init(model, teacher, seed, stage.config.subsample_rescale)
            # the subsampled statistics are the wide model's: stale for the thin one
            recalibrate_batchnorm(model, task, ctx, stage.config.bn_recalibration,
                                  stage.config.batch_size, seed + 2)
        return imitate(model, teacher, task, stage.config, ctx, stage.name, seed, state.ledger)
    raise ValueError(f"unknown stage kind {stage.kind!r}")
