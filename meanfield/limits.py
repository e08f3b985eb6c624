"""The two limits a finite mean-field ResNet approximates.

Holds:
- the **width limit** of an L-layer network whose layer-l particles are drawn from the
  Gaussian law ρ_{t_l} (``particles.GaussianParticleLaw``): the block becomes the exact
  expectation E_ρ f(x; θ), computed by one-dimensional quadrature (closed forms for relu
  and identity, a spectrally accurate trapezoid rule for tanh and gelu): no wide network,
  no sampling error;
- the **depth limit** of a depth-indexed particle family: the ODE dx/dt = g_t(x), t ∈ [0, 1],
  solved by scipy's ``solve_ivp`` (DOP853, rtol 1e-10, atol 1e-12 by default);
- the **closed form** for the identity activation with the same particles in every layer:
  dx/dt = A x + c, A = (1/N) Σ_i a_i w_iᵀ, c = (1/N) Σ_i a_i b_i, so
  x(1) = e^A x_0 + (∫_0^1 e^{sA} ds) c, read off the exponential of the augmented matrix.
Does not hold: the width limit of a *trained* network (no closed form: the package uses a
much wider network trained by the same dynamics, see ``experiments``).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.integrate
import scipy.linalg
import torch

from meanfield.activations import get_activation
from meanfield.checks import check_array
from meanfield.particles import GaussianParticleLaw

Tensor = torch.Tensor

QUADRATURE_SPACING = 0.35  # grid step in z is this over max(std, 1)


def gaussian_expectations(activation: str, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
    """E[σ(U)] and E[σ'(U)] for U ~ N(mean, std²), elementwise over tensors of equal shape."""
    if activation == "identity":
        return mean, torch.ones_like(mean)
    if activation == "relu":
        r = mean / std
        cdf = 0.5 * (1.0 + torch.erf(r / math.sqrt(2.0)))
        pdf = torch.exp(-0.5 * r * r) / math.sqrt(2.0 * math.pi)
        return mean * cdf + std * pdf, cdf
    # Trapezoid rule in z over [-12, 12], U = mean + std·z. For σ analytic in a strip of
    # half-width ≥ π/2 (tanh's nearest poles; gelu is entire) the integrand is analytic in a
    # z-strip of half-width π/(2·std), so the error is about exp(-π²/(std·h)): with
    # h = 0.35/std it is below 1e-12, and the Gaussian tail beyond |z| = 12 is below 1e-31.
    act = get_activation(activation)
    s_max = float(std.max()) if std.numel() else 1.0
    h = QUADRATURE_SPACING / max(s_max, 1.0)
    n = int(math.ceil(24.0 / h)) + 1
    z = torch.linspace(-12.0, 12.0, n, dtype=mean.dtype, device=mean.device)
    wts = (24.0 / (n - 1)) * torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    u = mean[..., None] + std[..., None] * z  # (..., n)
    return (act.fn(u) * wts).sum(-1), (act.prime(u) * wts).sum(-1)


class WidthLimit:
    """The infinite-width L-layer network for particles drawn from a ``GaussianParticleLaw``.

    Layer l uses ρ_{t_l} with t_l = l/L, as ``ParticleFamily.network`` and
    ``GaussianParticleLaw.sample_layers`` do, so a width-N draw converges to this as N → ∞.
    """

    def __init__(self, law: GaussianParticleLaw, activation: str = "tanh", readout=None):
        self.law = law
        self.activation = activation
        get_activation(activation)  # validate
        self.readout = None if readout is None else np.asarray(readout, dtype=np.float64)

    def block(self, t: float, x: Tensor) -> Tensor:
        """E_{ρ_t} f(x; θ), x (B, d) -> (B, d)."""
        law, m = self.law, self.law.at(t)
        d = law.dim
        as_t = lambda v: torch.as_tensor(v, dtype=x.dtype, device=x.device)  # noqa: E731
        mean = x @ as_t(m["mu_w"]) + float(m["mu_b"])  # (B,)
        std = torch.sqrt(law.s_w**2 * (x * x).sum(-1) / d + law.s_b**2)  # (B,)
        e_sigma, e_prime = gaussian_expectations(self.activation, mean, std)
        return e_sigma[:, None] * as_t(m["m_a"]) + (law.s_w**2 / d) * e_prime[:, None] * (
            x @ as_t(m["M"]).T
        )

    def states(self, x, depth: int) -> Tensor:
        """States x_0 … x_L of the infinite-width depth-L net; x (B, d) -> (L+1, B, d)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        xs = [x]
        for layer in range(depth):
            xs.append(xs[-1] + self.block(layer / depth, xs[-1]) / depth)
        return torch.stack(xs)

    def __call__(self, x, depth: int) -> Tensor:
        xL = self.states(x, depth)[-1]
        if self.readout is None:
            return xL
        return xL @ torch.as_tensor(self.readout, dtype=xL.dtype)


def solve_depth_limit(field, x0, rtol: float = 1e-10, atol: float = 1e-12,
                      method: str = "DOP853") -> np.ndarray:
    """Solve dx/dt = field(t, x) on [0, 1] for a batch of initial states.

    ``field(t, x)`` maps a float64 tensor (B, d) to (B, d). Returns x(1) as a numpy array
    (B, d). Raises RuntimeError when the solver fails.
    """
    check_array("x0", x0, integers=True, finite=True)
    x0 = np.asarray(x0, dtype=np.float64)
    shape = x0.shape

    def rhs(t, y):
        x = torch.from_numpy(y.reshape(shape))
        with torch.no_grad():
            return field(t, x).numpy().ravel()

    sol = scipy.integrate.solve_ivp(rhs, (0.0, 1.0), x0.ravel(), method=method,
                                    rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"ODE solver failed: {sol.message}")
    return sol.y[:, -1].reshape(shape)


def linear_ode_solution(a, w, b, x0) -> np.ndarray:
    """x(1) for dx/dt = A x + c with A = mean_i a_i w_iᵀ, c = mean_i a_i b_i.

    a, w (N, d); b (N,); x0 (B, d). Uses exp([[A, c], [0, 0]]) = [[e^A, (∫e^{sA}ds) c], [0, 1]].
    """
    for name, v in (("a", a), ("w", w), ("b", b)):
        check_array(name, v, finite=True)
    check_array("x0", x0, integers=True, finite=True)
    a, w, b, x0 = (np.asarray(v, dtype=np.float64) for v in (a, w, b, x0))
    if a.ndim != 2 or w.shape != a.shape or b.shape != a.shape[:1]:
        raise ValueError(f"a and w must have shape (N, d) and b (N,); got {a.shape}, "
                         f"{w.shape} and {b.shape}")
    n, d = a.shape
    if n < 1:
        raise ValueError("no particles (N = 0): the mean over particles is undefined")
    A = a.T @ w / n  # (d, d)
    c = a.T @ b / n  # (d,)
    aug = np.zeros((d + 1, d + 1))
    aug[:d, :d] = A
    aug[:d, d] = c
    E = scipy.linalg.expm(aug)
    return x0 @ E[:d, :d].T + E[:d, d]
