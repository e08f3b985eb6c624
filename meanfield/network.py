"""The discrete mean-field residual network of docs/theory.md §1.2.

Holds: ``MeanFieldResNet``, L layers of N particles θ = (a, w, b) each, with

    x_0     = E · input                                   (identity when E is None)
    x_{l+1} = x_l + α_L · g_l(x_l),     g_l(x) = (1/N) Σ_i a_{l,i} σ(w_{l,i}·x + b_{l,i})
    ŷ       = u · x_L                                     (x_L itself when u is None)

for l = 0 … L-1. The 1/N factor is the mean-field scaling: a layer is an average over its
particles. The residual factor α_L is chosen by ``residual_scale`` (docs/theory.md §8):

    "1/L"        α_L = 1/L     (default) a residual step moves the state by O(1/L) and the net
                               has a continuous-depth limit (the Euler scheme of an ODE);
    "1/sqrt(L)"  α_L = 1/√L    the intermediate scaling: L steps of size 1/√L;
    "1"          α_L = 1       no depth factor: a plain residual net, x_{l+1} = x_l + g_l(x_l).

The state update is computed as g_l(x) / D_L with the divisor D_L = 1/α_L (L, √L or 1), so
the default is bit-identical to the network before the option existed.
Does not hold: training (see ``dynamics``), limits (see ``limits``), imitation.

Shapes: a, w (L, N, d); b (L, N); u (d,); E (d, d_in); inputs (B, d_in); states (L+1, B, d).
Computations run in torch (float32 or float64, CPU or CUDA); numpy inputs give numpy outputs.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from meanfield.activations import Activation, get_activation
from meanfield.checks import check_array

Tensor = torch.Tensor

RESIDUAL_SCALES = ("1/L", "1/sqrt(L)", "1")


def residual_divisor(scale: str, depth: int) -> float | int:
    """D_L = 1/α_L for a residual scale: L, √L or 1 (the int L keeps the default exact)."""
    if scale == "1/L":
        return depth
    if scale == "1/sqrt(L)":
        return math.sqrt(depth)
    if scale == "1":
        return 1
    raise ValueError(f"residual_scale must be one of {RESIDUAL_SCALES}, got {scale!r}")


def _numpy_io(method):
    """Convert a numpy input to the net's dtype/device, and the result back to numpy."""

    @functools.wraps(method)
    def wrapper(self, x, *args, **kwargs):
        check_array("x", x, integers=True, finite=True)
        is_numpy = isinstance(x, np.ndarray)
        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        out = method(self, x, *args, **kwargs)
        if is_numpy:
            return out.detach().cpu().numpy()
        return out

    return wrapper


def _as_tensor(x, dtype, device) -> Tensor | None:
    if x is None:
        return None
    return torch.as_tensor(x, dtype=dtype, device=device)


class MeanFieldResNet:
    """A depth-L, width-N mean-field ResNet; see the module docstring for the equations."""

    def __init__(
        self,
        a: Tensor,
        w: Tensor,
        b: Tensor,
        activation: str | Activation = "tanh",
        readout: Tensor | None = None,
        embedding: Tensor | None = None,
        residual_scale: str = "1/L",
    ):
        if residual_scale not in RESIDUAL_SCALES:
            raise ValueError(
                f"residual_scale must be one of {RESIDUAL_SCALES}, got {residual_scale!r}")
        for name, t in (("a", a), ("w", w), ("b", b), ("readout", readout),
                        ("embedding", embedding)):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a tensor (MeanFieldResNet.from_arrays takes "
                                f"arrays), got {type(t).__name__}")
            check_array(name, t)
        if a.ndim != 3 or w.shape != a.shape:
            raise ValueError(
                f"a and w must both have shape (L, N, d); got {tuple(a.shape)} and {tuple(w.shape)}"
            )
        L, N, d = a.shape
        if min(L, N, d) < 1:
            raise ValueError(f"a and w have shape (L, N, d) = {(L, N, d)}: depth, width (the "
                             "particles per layer) and dimension must each be at least 1")
        if b.shape != (L, N):
            raise ValueError(f"b must have shape (L, N) = {(L, N)}; got {tuple(b.shape)}")
        if readout is not None and readout.shape != (d,):
            raise ValueError(f"readout u must have shape (d,) = {(d,)}; got {tuple(readout.shape)}")
        if embedding is not None and (embedding.ndim != 2 or embedding.shape[0] != d):
            raise ValueError(
                f"embedding E must have shape (d, d_in) with d = {d}; got {tuple(embedding.shape)}"
            )
        self.a, self.w, self.b = a, w, b
        self.readout = readout
        self.embedding = embedding
        self.residual_scale = residual_scale
        self.act = activation if isinstance(activation, Activation) else get_activation(activation)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        a,
        w,
        b,
        activation: str = "tanh",
        readout=None,
        embedding=None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        residual_scale: str = "1/L",
    ) -> MeanFieldResNet:
        """Build a network from numpy arrays or tensors (copied).

        ``dtype`` defaults to the dtype of ``a`` when it is floating (numpy float64 stays
        float64), float32 otherwise.
        """
        for name, x in (("a", a), ("w", w), ("b", b), ("readout", readout),
                        ("embedding", embedding)):
            check_array(name, x, finite=True)
        if dtype is None:
            probe = torch.as_tensor(a)
            dtype = probe.dtype if probe.is_floating_point() else torch.float32
        device = torch.device(device) if device is not None else torch.device("cpu")

        def conv(x):
            t = _as_tensor(x, dtype, device)
            return None if t is None else t.detach().clone()

        return cls(conv(a), conv(w), conv(b), activation, conv(readout), conv(embedding),
                   residual_scale)

    def clone(self) -> MeanFieldResNet:
        def c(t):
            return None if t is None else t.detach().clone()

        return MeanFieldResNet(c(self.a), c(self.w), c(self.b), self.act, c(self.readout),
                               c(self.embedding), self.residual_scale)

    def to(self, dtype: torch.dtype | None = None, device=None) -> MeanFieldResNet:
        """A copy in another dtype and/or on another device."""
        dtype = dtype or self.dtype
        device = device or self.device

        def c(t):
            return None if t is None else t.detach().to(dtype=dtype, device=device).clone()

        return MeanFieldResNet(c(self.a), c(self.w), c(self.b), self.act, c(self.readout),
                               c(self.embedding), self.residual_scale)

    # ------------------------------------------------------------------ properties
    @property
    def depth(self) -> int:
        return self.a.shape[0]

    @property
    def width(self) -> int:
        return self.a.shape[1]

    @property
    def dim(self) -> int:
        return self.a.shape[2]

    @property
    def residual_divisor(self) -> float | int:
        """D_L = 1/α_L: the residual branch is divided by it (L, √L or 1)."""
        return residual_divisor(self.residual_scale, self.depth)

    @property
    def residual_factor(self) -> float:
        """α_L, the factor on the residual branch: 1/L, 1/√L or 1."""
        return 1.0 / self.residual_divisor

    @property
    def dtype(self) -> torch.dtype:
        return self.a.dtype

    @property
    def device(self) -> torch.device:
        return self.a.device

    @property
    def activation(self) -> str:
        return self.act.name

    def parameters(self) -> list[Tensor]:
        """The particle tensors [a, w, b] (readout and embedding are fixed)."""
        return [self.a, self.w, self.b]

    def numpy_params(self) -> dict[str, np.ndarray]:
        """Copies of the particle arrays (never views of the live tensors)."""
        return {k: t.detach().cpu().numpy().copy()
                for k, t in zip("awb", self.parameters(), strict=True)}

    # ------------------------------------------------------------------ the maps
    def block(self, layer: int, x: Tensor) -> Tensor:
        """g_l(x) = (1/N) Σ_i a_i σ(w_i·x + b_i) for one layer; x (B, d) -> (B, d)."""
        return self._block(x, self.a[layer], self.w[layer], self.b[layer])

    def _block(self, x: Tensor, a: Tensor, w: Tensor, b: Tensor) -> Tensor:
        """One layer's map from its particles a, w (N, d) and b (N,)."""
        h = self.act.fn(x @ w.T + b)  # (B, N)
        return h @ a / self.width  # (B, d)

    def _layers(self):
        """Per-layer (a_l, w_l, b_l) views. ``unbind`` rather than indexing layer by layer: the
        backward pass of an index writes its gradient into a zero tensor of the full (L, N, d)
        shape, once per layer (O(L²·N·d) work per step); that of ``unbind`` stacks the L
        per-layer gradients once."""
        return zip(self.a.unbind(0), self.w.unbind(0), self.b.unbind(0), strict=True)

    def blocks_at(self, z: Tensor) -> Tensor:
        """All layers at once on given inputs: z (L, B, d) -> (g_l(z_l))_l of shape (L, B, d)."""
        pre = torch.einsum("lbd,lnd->lbn", z, self.w) + self.b[:, None, :]  # (L, B, N)
        return torch.einsum("lbn,lnd->lbd", self.act.fn(pre), self.a) / self.width  # (L, B, d)

    def embed(self, x: Tensor) -> Tensor:
        return x if self.embedding is None else x @ self.embedding.T  # (B, d)

    def read(self, xL: Tensor) -> Tensor:
        return xL if self.readout is None else xL @ self.readout  # (B,) or (B, d)

    def _states(self, x: Tensor) -> Tensor:
        xs = [self.embed(x)]
        div = self.residual_divisor
        for a, w, b in self._layers():
            xs.append(xs[-1] + self._block(xs[-1], a, w, b) / div)
        return torch.stack(xs)  # (L+1, B, d)

    def _forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        div = self.residual_divisor
        for a, w, b in self._layers():
            h = h + self._block(h, a, w, b) / div
        return self.read(h)

    @_numpy_io
    def states(self, x) -> Tensor:
        """The L+1 hidden states x_0 … x_L; input (B, d_in) -> (L+1, B, d)."""
        return self._states(x)

    @_numpy_io
    def __call__(self, x) -> Tensor:
        """The output u·x_L, shape (B,); or x_L, shape (B, d), when there is no readout."""
        return self._forward(x)

    def lipschitz_bound(self) -> Tensor:
        """Per-layer rigorous Lipschitz bound of g_l: (1/N) Σ_i ‖a_i‖‖w_i‖ · sup|σ'|, shape (L,)."""
        per_particle = self.a.norm(dim=-1) * self.w.norm(dim=-1)  # (L, N)
        return per_particle.mean(dim=1) * self.act.sup_prime

    def __repr__(self) -> str:
        return (
            f"MeanFieldResNet(L={self.depth}, N={self.width}, d={self.dim}, "
            f"activation={self.activation!r}, residual_scale={self.residual_scale!r}, "
            f"readout={self.readout is not None}, "
            f"dtype={self.dtype}, device={self.device})"
        )
