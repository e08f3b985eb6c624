"""Layerwise imitation of a wide mean-field ResNet by a thin one, and the subsampled start.

Holds the stage-2 dynamics of docs/theory.md §1.4. Let z_l(x) be the wide network's states and
g^W_l its blocks. Thin layer l (n particles) minimises

    teacher-forced:  J_l = E_x ‖ g_l(z_l(x)) − g^W_l(z_l(x)) ‖²
    progressive:     J_l = E_x ‖ g_l(x_l(x)) − (z_{l+1}(x) − x_l(x))/α_L ‖²,

where x_l is the thin network's own state (its lower layers already imitated) and α_L the
residual factor both nets share (``MeanFieldResNet.residual_scale``: 1/L by default, when the
progressive target is L·(z_{l+1} − x_l); 1/√L; or 1). Each J_l
depends on layer l alone and is a convex function of that layer's particle distribution
(a convex quadratic of the linear map ρ_l ↦ E_ρl f). The particles move by
θ ← θ − η · n · ∂J_l/∂θ_{l,i} (mean-field scaling of a two-layer net), under every residual
scaling: J_l is a loss on the block function g_l itself, whose targets are O(1) whatever α_L
(the residual factor enters only through the states z_l, x_l), so this step moves g_l by O(η)
per step at every depth and scaling, as back-propagation's step S of ``dynamics`` does for the
network function. Teacher-forced
layers are independent, so all of them are trained at once with one batched computation;
progressive imitation goes from the bottom layer to the top, ``steps`` steps per layer.

Also here: ``subsample`` (warm start of each thin layer from n of the wide layer's
particles: its block then differs from the wide one by O(n^{-1/2}) by the Monte Carlo rate)
and ``block_errors`` (δ_l, the per-layer imitation error at the wide states, RMS over data,
the quantity that enters the stability bound).
Does not hold: the stability bound itself, and the comparisons with back-propagation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from meanfield.checks import check_count
from meanfield.dynamics import check_schedule
from meanfield.network import MeanFieldResNet

Tensor = torch.Tensor

MODES = ("teacher_forced", "progressive")


@dataclass
class ImitationConfig:
    # Gradient steps each layer takes, in both modes: teacher-forced updates all layers
    # together (steps in all), progressive one layer after another (L·steps in all).
    steps: int = 200
    lr: float = 0.5
    mode: str = "teacher_forced"
    batch_size: int | None = None
    eval_every: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        check_schedule(self.steps, self.lr, self.batch_size)


@dataclass
class ImitationHistory:
    config: dict
    eval_steps: list[int] = field(default_factory=list)
    layer_loss: list[list[float]] = field(default_factory=list)  # per eval: J_l for every l
    particle_gradients: int = 0
    flops: float = 0.0


def subsample(wide: MeanFieldResNet, n: int, generator: np.random.Generator,
              replace: bool = False) -> MeanFieldResNet:
    """A thin net whose layer l holds n particles drawn from the wide layer l (no rescaling is
    needed: both layers are averages over their particles). Same activation, readout and
    embedding as the wide net."""
    n = check_count("n (particles)", n)
    L, N = wide.depth, wide.width
    if not replace and n > N:
        raise ValueError(f"cannot draw n = {n} particles without replacement from N = {N}")
    idx = np.stack([generator.choice(N, size=n, replace=replace) for _ in range(L)])  # (L, n)
    idx_t = torch.as_tensor(idx, device=wide.device)
    rows = torch.arange(L, device=wide.device)[:, None]
    return MeanFieldResNet(
        wide.a[rows, idx_t].clone(), wide.w[rows, idx_t].clone(), wide.b[rows, idx_t].clone(),
        wide.act,
        None if wide.readout is None else wide.readout.clone(),
        None if wide.embedding is None else wide.embedding.clone(),
        wide.residual_scale,
    )


def _layer_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of squared errors, per layer: (L, B, d) -> (L,)."""
    return ((pred - target) ** 2).sum(-1).mean(-1)


def block_errors(thin: MeanFieldResNet, wide: MeanFieldResNet, X) -> np.ndarray:
    """δ_l = ( E_x ‖g_l(z_l(x)) − g^W_l(z_l(x))‖² )^{1/2} at the wide states z_l; shape (L,)."""
    with torch.no_grad():
        X = torch.as_tensor(X, dtype=wide.dtype, device=wide.device)
        z = wide._states(X)[:-1]  # (L, B, d)
        diff = thin.blocks_at(z.to(thin.dtype)) - wide.blocks_at(z)
        return torch.sqrt(_layer_loss(diff, torch.zeros_like(diff))).cpu().numpy()


def teacher_targets(wide: MeanFieldResNet, X) -> dict:
    """The wide net's states z_0 … z_L (L+1, B, d) and blocks g^W_l(z_l) (L, B, d) on X."""
    with torch.no_grad():
        X = torch.as_tensor(X, dtype=wide.dtype, device=wide.device)
        z = wide._states(X)
        return {"states": z, "blocks": wide.blocks_at(z[:-1])}


def imitate(
    thin: MeanFieldResNet,
    wide: MeanFieldResNet,
    X,
    config: ImitationConfig,
    progress: bool = False,
    teacher: dict | None = None,
) -> tuple[MeanFieldResNet, ImitationHistory]:
    """Train a copy of ``thin`` to imitate ``wide`` layer by layer on inputs X (B, d_in).

    ``teacher``: the wide net's states and blocks on X from ``teacher_targets`` (computed here
    when None); pass it to imitate in several calls without recomputing them."""
    if thin.depth != wide.depth or thin.dim != wide.dim:
        raise ValueError(
            f"thin and wide nets must share depth and state dimension; got (L, d) = "
            f"{(thin.depth, thin.dim)} and {(wide.depth, wide.dim)}"
        )
    if thin.residual_scale != wide.residual_scale:
        raise ValueError(f"thin and wide nets must share the residual scale; got "
                         f"{thin.residual_scale!r} and {wide.residual_scale!r}")
    thin = thin.clone()
    dtype, device = thin.dtype, thin.device
    X = torch.as_tensor(X, dtype=dtype, device=device)
    if teacher is None:
        teacher = teacher_targets(wide.to(dtype=dtype, device=device), X)
    z = teacher["states"]  # (L+1, B, d)
    hist = ImitationHistory(config=asdict(config))
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    if config.mode == "teacher_forced":
        target = teacher["blocks"]  # (L, B, d)
        _fit(thin, z[:-1], target, range(thin.depth), config, gen, hist, progress)
    else:
        x = z[0]
        div = thin.residual_divisor  # 1/α_L: L, √L or 1
        for layer in tqdm(range(thin.depth), desc="imitate layers", disable=not progress,
                          leave=False):
            target = div * (z[layer + 1] - x)  # (z_{l+1} − x_l)/α_L, (B, d)
            _fit(thin, x[None], target[None], [layer], config, gen, hist, False,
                 offset=layer * config.steps)
            with torch.no_grad():
                x = x + thin.block(layer, x) / div
    return thin, hist


def _fit(thin: MeanFieldResNet, inputs: Tensor, target: Tensor, layers, config, gen, hist,
         progress: bool, offset: int = 0) -> None:
    """Gradient descent on the layers in ``layers`` (inputs, targets (k, B, d), k = len(layers))."""
    layers = list(layers)
    sel = torch.as_tensor(layers, device=thin.device)
    a, w, b = (p[sel].clone().requires_grad_(True) for p in thin.parameters())
    sub = MeanFieldResNet(a, w, b, thin.act)
    n, d = thin.width, thin.dim
    batch_total = inputs.shape[1]
    batch = batch_total if config.batch_size is None else min(config.batch_size, batch_total)

    def losses(inp, tgt):
        return _layer_loss(sub.blocks_at(inp), tgt)  # (k,)

    for step in tqdm(range(config.steps + 1), desc="imitate", disable=not progress, leave=False):
        if config.eval_every and (step % config.eval_every == 0 or step == config.steps):
            with torch.no_grad():
                per_layer = losses(inputs, target).cpu().tolist()
            hist.eval_steps.append(offset + step)
            if len(layers) == thin.depth:
                hist.layer_loss.append(per_layer)
            else:  # progressive: one layer at a time; keep a full row with NaN elsewhere
                row = [math.nan] * thin.depth
                for layer, v in zip(layers, per_layer, strict=True):
                    row[layer] = v
                hist.layer_loss.append(row)
        if step == config.steps:
            break
        if config.batch_size is None:
            inp, tgt = inputs, target
        else:
            idx = torch.randint(0, batch_total, (batch,), generator=gen).to(thin.device)
            inp, tgt = inputs[:, idx], target[:, idx]
        loss = losses(inp, tgt)
        if not torch.isfinite(loss).all():
            raise FloatingPointError(f"imitation diverged at step {step}")
        grads = torch.autograd.grad(loss.sum(), [a, w, b])
        with torch.no_grad():
            for p, g in zip((a, w, b), grads, strict=True):
                p.sub_(config.lr * n * g)
        hist.particle_gradients += batch * n * len(layers)
        hist.flops += 3.0 * len(layers) * batch * n * (4 * d + 4)
    with torch.no_grad():
        for p, q in zip(thin.parameters(), (a, w, b), strict=True):
            p[sel] = q.detach()
