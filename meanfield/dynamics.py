"""Back-propagation in the mean-field scaling: gradient descent on every particle.

Holds the training dynamics of docs/theory.md §1.3 for the square loss
R = (1/2) E_(x,y) ‖ŷ(x) − y‖²: each particle θ_{l,i} = (a, w, b) moves by

    θ ← θ − η · S · ∂R/∂θ_{l,i}  [− η λ θ]  [+ √(2 η τ) ξ],   ξ ~ N(0, I),

with the particle step scale S = N/(α_L² L) for the net's residual factor α_L
(``particle_step_scale``; docs/theory.md §8):

    residual_scale   α_L     S          a particle's velocity   a layer's residual term α_L·g_l
    "1/L"            1/L     N·L        ∇_θ V_l      (O(1))     moves O(1/L) per unit time
    "1/sqrt(L)"      1/√L    N          ∇_θ V_l/√L              moves O(1/L)
    "1"              1       N/L        ∇_θ V_l/L               moves O(1/L)

Why: ∂R/∂θ_{l,i} = (α_L/N) ∇_θ V_l(θ_{l,i}) with V_l(θ) = E[p_{l+1}·f(x_l; θ)] (p the adjoint),
so the step moves particle i of layer l by η ∇_θ V_l/(α_L L), its layer's residual term α_L g_l
by O(η/L), and the sum of the L residual terms (the network function, before the products
Π(I + α_L Dg_m) of the forward and adjoint passes) by O(η) whatever L and α_L. Training time
T = η · steps therefore means the same thing at every depth and scaling, and what is left of
the depth dependence is those products, the object of the depth experiment. Under 1/L this is
the classical step η·N·L (particle velocity O(1) whatever N and L): as N → ∞ the empirical
measure of the particles follows a Wasserstein gradient flow (McKean–Vlasov dynamics) and
training for time T has a limit. (The alternative S = N/α_L, every layer's own g_l moving O(1),
would move the function O(α_L L) per unit time: √L or L times faster than under 1/L, so equal
η would mix the step size into the comparison of scalings.)
λ is an optional L2 confinement (weight decay), τ an optional Langevin temperature. Full
batch when ``batch_size`` is None, otherwise mini-batches drawn with the run's own seeded
generator. Gradients come from torch autograd (checked against float64 finite differences
in the tests).
Records: the loss at every step, train/test losses every ``eval_every`` steps, particle
snapshots every ``record_every`` steps, and the compute spent (particle-gradient
evaluations and FLOPs).
Does not hold: training of the readout u or embedding E (fixed, as in the mean-field model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from meanfield.network import MeanFieldResNet

Tensor = torch.Tensor


def check_schedule(steps: int, lr: float, batch_size: int | None) -> None:
    """Validate the fields every gradient-descent config shares."""
    if steps < 0:
        raise ValueError(f"steps must be ≥ 0, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1 or None, got {batch_size}")


@dataclass
class TrainConfig:
    steps: int = 200
    lr: float = 0.05  # η; training time T = lr · steps
    batch_size: int | None = None  # None: full batch
    weight_decay: float = 0.0  # λ
    temperature: float = 0.0  # τ (Langevin noise)
    eval_every: int = 10
    record_every: int = 0  # particle snapshots; 0: none
    seed: int = 0

    def __post_init__(self):
        check_schedule(self.steps, self.lr, self.batch_size)
        if self.weight_decay < 0 or self.temperature < 0:
            raise ValueError("weight_decay and temperature must be ≥ 0")

    @property
    def time(self) -> float:
        return self.lr * self.steps


@dataclass
class History:
    """What a run records; ``eval_steps`` index ``train_loss`` and ``test_loss``."""

    config: dict
    step_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    snapshot_steps: list[int] = field(default_factory=list)
    snapshots: list[dict] = field(default_factory=list)  # {"a","w","b"} numpy arrays
    particle_gradients: int = 0  # Σ over steps of (examples in the batch) × (particles moved)
    flops: float = 0.0


def square_loss(pred: Tensor, y: Tensor) -> Tensor:
    """(1/2) mean over the batch of ‖pred − y‖²; pred and y (B,) or (B, k)."""
    diff = pred - y
    if diff.ndim == 1:
        return 0.5 * (diff * diff).mean()
    return 0.5 * (diff * diff).sum(-1).mean()


def forward_flops(batch: int, depth: int, width: int, dim: int) -> float:
    """FLOPs of one forward pass: per layer two (B,d)×(d,N)-sized products and the activation."""
    return float(depth) * batch * width * (4 * dim + 4)


def evaluate(net: MeanFieldResNet, X: Tensor, Y: Tensor) -> float:
    with torch.no_grad():
        return float(square_loss(net._forward(X), Y))


def particle_step_scale(net: MeanFieldResNet) -> float | int:
    """S = N/(α_L² L): N·L under "1/L", N under "1/sqrt(L)", N/L under "1" (module docstring)."""
    N, L = net.width, net.depth
    if net.residual_scale == "1/L":
        return N * L  # the int product: bit-identical to the step before scalings existed
    if net.residual_scale == "1/sqrt(L)":
        return N
    return N / L


def gradient_step(net: MeanFieldResNet, xb: Tensor, yb: Tensor, lr: float,
                  weight_decay: float = 0.0, noise_scale: float = 0.0,
                  generator: torch.Generator | None = None) -> Tensor:
    """One step of mean-field gradient descent on the batch (xb, yb), in place on the particles
    of ``net`` (which must require grad): θ ← θ − η·S·∂R/∂θ [− ηλθ] [+ noise_scale·ξ], with
    S = ``particle_step_scale(net)`` (N·L under the default 1/L scaling).
    Returns the loss before the step; a non-finite loss raises FloatingPointError and moves
    nothing."""
    params = net.parameters()
    loss = square_loss(net._forward(xb), yb)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss = {loss.item()}")
    grads = torch.autograd.grad(loss, params)
    scale = particle_step_scale(net)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p.sub_(lr * scale * g)
            if weight_decay:
                p.sub_(lr * weight_decay * p)
            if noise_scale:
                xi = torch.randn(p.shape, generator=generator, dtype=net.dtype).to(net.device)
                p.add_(noise_scale * xi)
    return loss


def train(
    net: MeanFieldResNet,
    X,
    Y,
    config: TrainConfig,
    X_test=None,
    Y_test=None,
    progress: bool = False,
    desc: str = "train",
) -> tuple[MeanFieldResNet, History]:
    """Train a copy of ``net`` by mean-field gradient descent; returns (trained net, history).

    X (n, d_in), Y (n,) or (n, k); numpy or torch. The input network is left unchanged.
    """
    net = net.clone()
    dtype, device = net.dtype, net.device
    X = torch.as_tensor(X, dtype=dtype, device=device)
    Y = torch.as_tensor(Y, dtype=dtype, device=device)
    have_test = X_test is not None
    if have_test:
        X_test = torch.as_tensor(X_test, dtype=dtype, device=device)
        Y_test = torch.as_tensor(Y_test, dtype=dtype, device=device)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    params = net.parameters()
    for p in params:
        p.requires_grad_(True)
    L, N, d = net.depth, net.width, net.dim
    n = X.shape[0]
    hist = History(config=asdict(config))
    batch = n if config.batch_size is None else min(config.batch_size, n)

    def record(step: int):
        if config.eval_every and step % config.eval_every == 0 or step == config.steps:
            hist.eval_steps.append(step)
            hist.train_loss.append(evaluate(net, X, Y))
            if have_test:
                hist.test_loss.append(evaluate(net, X_test, Y_test))
        if config.record_every and (step % config.record_every == 0 or step == config.steps):
            hist.snapshot_steps.append(step)
            hist.snapshots.append(net.numpy_params())

    noise_scale = math.sqrt(2.0 * config.lr * config.temperature)
    for step in tqdm(range(config.steps), desc=desc, disable=not progress, leave=False):
        record(step)
        if config.batch_size is None:
            xb, yb = X, Y
        else:
            idx = torch.randint(0, n, (batch,), generator=gen).to(device)
            xb, yb = X[idx], Y[idx]
        try:
            loss = gradient_step(net, xb, yb, config.lr, config.weight_decay, noise_scale, gen)
        except FloatingPointError as exc:
            raise FloatingPointError(f"training diverged at step {step}: {exc}") from None
        hist.step_loss.append(loss.item())
        hist.particle_gradients += batch * N * L
        hist.flops += 3.0 * forward_flops(batch, L, N, d)  # forward + backward ≈ 3 forwards
    record(config.steps)
    for p in params:
        p.requires_grad_(False)
    return net, hist
