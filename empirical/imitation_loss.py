"""One forward pass of stage 2 and what it measures.

Per block ``l`` with output ``h_l`` (thin) and ``z_l`` (wide), the thin output is mapped
into the wide space by the block's linear pair (``P_l``, the identity where the widths
agree; ``connectors.py``)::

    loss_l = mean((P_l h_l - z_l)²)            [/ var_feature(z_l) with normalize = true]

:func:`imitation_forward` runs the wide model (no grad) and the thin one on a batch and
returns both sides: the thin block reads the thin network's own state (``inputs = "thin"``,
passed through ``Q_{l-1}·P_{l-1}``) or the wide one's (``"teacher"``, teacher-forced:
``Q_{l-1} z_{l-1}``); forward passes stop at the highest block in the loss; the output is
taken after the block's final ReLU (``target = "post"``) or before it (``"pre"``). A block
whose final module has parameters (a BERT embeddings block's layer norm) is imitated on both
sides of it under ``"pre"``, its loss the sum of the two (:func:`learned_final_modules`).

The error of a block (:func:`relative_error`, per-feature centred) and the least error a
narrower interface allows (:func:`error_floor`) are measured on a fixed validation batch
(:func:`relative_block_errors`, :func:`error_floors`). The thin model, the wide one and the linear
pairs are the run's (:class:`~empirical.run.Run`).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from empirical.capture import (
    FeatureCapture,
    InputOverride,
    block_names,
    pre_activation_module,
    resolve_block,
    unwrap,
)
from empirical.run import Run
from empirical.runtime import Runtime, to_device
from gowide.errors import UsageError


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


def teacher_outputs(wide, task, batch, names: list[str], runtime: Runtime,
                    stop_after: str | None = None,
                    pre_names: list[str] = ()) -> dict[str, torch.Tensor]:
    """The wide model's outputs of the blocks ``names`` on ``batch`` (no grad, detached), its
    forward pass stopped after ``stop_after`` (default: the last of ``names``). With
    ``pre_names``, the pre-activation outputs of those blocks too, under ``"<name>:pre"``
    (one forward pass for both)."""
    stop_after = stop_after or (list(names) + list(pre_names))[-1]
    with torch.no_grad(), runtime.autocast(), contextlib.ExitStack() as stack:
        post = stack.enter_context(FeatureCapture(wide, names, detach=True))
        pre = stack.enter_context(FeatureCapture(wide, pre_names, detach=True,
                                                 stop_after=stop_after, pre_activation=True))
        pre.run(task.forward, wide, batch)
    return post.outputs | {f"{b}:pre": t for b, t in pre.outputs.items()}


def imitation_forward(run: Run, batch, loss_blocks: list[str], inputs: str,
                      z: dict[str, torch.Tensor] | None = None, target: str = "post"):
    """One forward pass of stage 2: wide block outputs (no grad) and thin ones.
    Returns ({block: thin output mapped to the wide space}, {block: wide output}), the
    outputs taken after the block's final activation (``target = "post"``) or before it
    (``"pre"``, see :class:`~empirical.capture.FeatureCapture`); a teacher-forced input is
    always a post-activation output. ``z``: the wide (post-activation) block outputs of this
    batch when they are already at hand (precomputed, ``precompute.py``); the wide model then
    does not run."""
    thin, wide, connectors, task = run.thin, run.wide, run.connectors, run.task
    pred = _predecessors(thin)
    last = loss_blocks[-1]
    pre = target == "pre"
    both = learned_final_modules(thin, loss_blocks) if pre else []
    if z is None:
        forced = [pred[b] for b in loss_blocks if pred[b] is not None and inputs == "teacher"]
        wide_needed = list(dict.fromkeys(forced + (both if pre else loss_blocks)))
        z = teacher_outputs(wide, task, batch, wide_needed, run.runtime, stop_after=last,
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
    with contextlib.ExitStack() as stack, run.runtime.autocast():
        # entered first, so that its hooks run before the stop after the last block
        out = stack.enter_context(FeatureCapture(thin, both))
        tc = stack.enter_context(FeatureCapture(thin, loss_blocks, stop_after=last,
                                                pre_activation=pre))
        if inputs == "thin":
            stack.enter_context(connectors.insert(thin))
        stack.enter_context(InputOverride(thin, overrides))
        tc.run(task.forward, thin, batch)
    mapped = {b: connectors.to_wide(b, tc.outputs[b]) for b in loss_blocks}
    if not pre:
        return mapped, z
    mapped |= {f"{b}:out": connectors.to_wide(b, out.outputs[b]) for b in both}
    return mapped, {b: z[f"{b}:pre"] for b in loss_blocks} | {f"{b}:out": z[b] for b in both}


def learned_final_modules(model: nn.Module, names: list[str]) -> list[str]:
    """The blocks among ``names`` whose final module has parameters (the layer norm of a BERT
    embeddings block): with the pre-activation target, their output after that module is
    imitated too (under ``"<name>:out"``), or its parameters would get no gradient."""
    finals = {b: pre_activation_module(resolve_block(model, b)) for b in names}
    return [b for b, m in finals.items() if m is not None and list(m.parameters())]


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
def relative_block_errors(run: Run, names: list[str], inputs: str, size: int = 256,
                 target: str = "post") -> dict:
    """Relative imitation error (:func:`relative_error`) of every block on a fixed
    validation batch of ``size`` examples, thin model in eval mode."""
    batch = to_device(run.task.sample_batch(size), run.runtime.device)
    with eval_mode(run.thin):
        mapped, z = imitation_forward(run, batch, names, inputs, target=target)
    return {b: relative_error(mapped[b], z[b], run.thin.feature_dim) for b in names}


@torch.no_grad()
def error_floors(run: Run, names: list[str], target: str = "post", size: int = 256) -> dict:
    """:func:`error_floor` of every block with a linear pair (thin width below the wide one)
    on the validation batch of :func:`relative_block_errors`: the relative error its width
    allows."""
    thin, connectors = run.thin, run.connectors
    batch = to_device(run.task.sample_batch(size), run.runtime.device)
    pre = [b for b in names if connectors.pair(b) is not None] if target == "pre" else []
    post = [b for b in names if connectors.pair(b) is not None] if target == "post" else []
    if not pre and not post:
        return {}
    z = teacher_outputs(run.wide, run.task, batch, post, run.runtime,
                        stop_after=(pre or post)[-1], pre_names=pre)
    widths = unwrap(thin).block_widths()
    return {b: error_floor(z[f"{b}:pre" if pre else b], widths[b], thin.feature_dim)
            for b in pre or post}
