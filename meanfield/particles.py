"""Depth-indexed particle distributions ρ_t and particle families θ_i(t).

Holds the Gaussian particle law used throughout the package: at depth t ∈ [0, 1],

    w = μ_w(t) + (s_w/√d) ξ,        ξ ~ N(0, I_d)
    b = μ_b(t) + s_b ζ,             ζ ~ N(0, 1)
    a = m_a(t) + M(t) (w − μ_w(t)) + s_a ε,   ε ~ N(0, I_d)

with every mean (μ_w, μ_b, m_a, M) affine in t. The coupling M makes the output weight a
depend on w, so the infinite-width block E_ρ f(x; θ) is a genuinely nonlinear function of x;
by Gaussian integration by parts (Stein's lemma) it reduces to one-dimensional integrals:

    E_ρt f(x; θ) = m_a(t) E[σ(U)] + M(t) (s_w²/d) x E[σ'(U)],
    U ~ N(μ_w(t)·x + μ_b(t), s_w²‖x‖²/d + s_b²),

which ``limits`` evaluates by quadrature to give the exact width limit.

A *particle family* fixes the noises (ξ_i, ζ_i, ε_i) of N particles once; particle i then
follows the smooth path θ_i(t) in depth (the Lagrangian view of the continuous-depth
mean-field ResNet of Lu et al., 2020). ``ParticleFamily.network(L)`` evaluates it at
t_l = l/L, l = 0 … L-1, which is the explicit Euler discretisation of dx/dt = g_t(x).
Does not hold: trained (non-Gaussian) distributions; those are represented by particles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from meanfield.checks import check_count
from meanfield.network import MeanFieldResNet

Tensor = torch.Tensor


@dataclass
class GaussianParticleLaw:
    """The law ρ_t above; arrays are (start, slope) pairs: value(t) = start + t·slope.

    Shapes: mu_w, m_a (2, d); mu_b (2,); M (2, d, d); scalars s_w, s_b, s_a.
    """

    mu_w: np.ndarray
    mu_b: np.ndarray
    m_a: np.ndarray
    M: np.ndarray
    s_w: float
    s_b: float
    s_a: float

    @property
    def dim(self) -> int:
        return self.mu_w.shape[1]

    @classmethod
    def random(
        cls,
        dim: int,
        scale: float = 1.0,
        amplitude: float = 1.0,
        depth_varying: bool = True,
        seed: int = 0,
    ) -> GaussianParticleLaw:
        """A random law. ``scale`` sets the size of pre-activations (the nonlinearity: near 0
        every σ is almost linear), ``amplitude`` the size of the residual updates."""
        rng = np.random.default_rng(seed)
        d = dim
        vary = 1.0 if depth_varying else 0.0
        mu_w = scale * rng.normal(size=(2, d)) / np.sqrt(d)
        mu_w[1] *= vary
        mu_b = 0.5 * scale * rng.normal(size=2)
        mu_b[1] *= vary
        m_a = amplitude * rng.normal(size=(2, d))
        m_a[1] *= vary
        M = amplitude * rng.normal(size=(2, d, d)) / np.sqrt(d)
        M[1] *= vary
        return cls(mu_w, mu_b, m_a, M, s_w=scale, s_b=0.5 * scale, s_a=0.5 * amplitude)

    def at(self, t: float) -> dict[str, np.ndarray]:
        """The means at depth t."""
        return {
            "mu_w": self.mu_w[0] + t * self.mu_w[1],
            "mu_b": self.mu_b[0] + t * self.mu_b[1],
            "m_a": self.m_a[0] + t * self.m_a[1],
            "M": self.M[0] + t * self.M[1],
        }

    def sample_family(self, n: int, generator: np.random.Generator) -> ParticleFamily:
        """n particles with i.i.d. noises (ξ, ζ, ε); each follows its own path θ_i(t)."""
        n = check_count("n (particles)", n)
        d = self.dim
        return ParticleFamily(
            law=self,
            xi=generator.normal(size=(n, d)),
            zeta=generator.normal(size=n),
            eps=generator.normal(size=(n, d)),
        )

    def sample_layers(self, depth: int, n: int, generator: np.random.Generator):
        """Particles drawn independently in every layer at t_l = l/L: a, w (L, n, d), b (L, n)."""
        depth = check_count("depth", depth)
        layers = [self.sample_family(n, generator).at(l / depth) for l in range(depth)]
        return tuple(np.stack([layer[k] for layer in layers]) for k in range(3))


@dataclass
class ParticleFamily:
    """N particles with fixed noises following θ_i(t) under a ``GaussianParticleLaw``."""

    law: GaussianParticleLaw
    xi: np.ndarray  # (N, d)
    zeta: np.ndarray  # (N,)
    eps: np.ndarray  # (N, d)

    @property
    def width(self) -> int:
        return self.xi.shape[0]

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Particles at depth t: a (N, d), w (N, d), b (N,)."""
        law, m = self.law, self.law.at(t)
        dw = law.s_w / np.sqrt(law.dim) * self.xi  # (N, d): w − μ_w(t)
        w = m["mu_w"] + dw
        b = m["mu_b"] + law.s_b * self.zeta
        a = m["m_a"] + dw @ m["M"].T + law.s_a * self.eps
        return a, w, b

    def network(
        self, depth: int, activation: str = "tanh", readout=None, dtype=torch.float64, device=None
    ) -> MeanFieldResNet:
        """The L-layer network with layer l at t_l = l/L."""
        depth = check_count("depth", depth)
        layers = [self.at(l / depth) for l in range(depth)]
        a, w, b = (np.stack([layer[k] for layer in layers]) for k in range(3))
        return MeanFieldResNet.from_arrays(a, w, b, activation, readout, dtype=dtype, device=device)

    def field(self, activation: str = "tanh", dtype=torch.float64, device=None):
        """The continuous-depth vector field (t, x) -> g_t(x) = (1/N) Σ_i f(x; θ_i(t))."""

        def g(t: float, x: Tensor) -> Tensor:
            a, w, b = self.at(t)
            net = MeanFieldResNet.from_arrays(
                a[None], w[None], b[None], activation, dtype=dtype, device=device
            )
            return net.block(0, x)

        return g
