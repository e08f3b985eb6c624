"""A plain reference of the mean-field training step: Python loops over layers and particles.

The same mathematics as ``meanfield.network`` and ``meanfield.dynamics`` (square loss,
gradient by hand, the mean-field step θ ← θ − η·N·L·∂R/∂θ), written the way one would
without batching the particles: for every layer, for every particle i,

    forward:   g += σ(x·w_i + b_i) a_iᵀ / N                       (over the batch, in numpy)
    backward:  ∂R/∂a_i = σ(p_i)ᵀ ∂x' / (N·L),   ∂p_i = (∂x' a_i) σ'(p_i) / (N·L),
               ∂R/∂w_i = ∂p_iᵀ x,   ∂R/∂b_i = Σ ∂p_i,   ∂x += ∂p_i w_iᵀ

where p_i = x·w_i + b_i are the particle's pre-activations over the batch (kept from the
forward pass) and ∂x' the gradient with respect to the layer's output state. Only the batch
and the state dimension are vectorised (numpy arrays of shape (B,) and (B, d)); layers and
particles are Python loops. It serves as the speed reference of the benchmarks and, in the
tests, as an independent check of the autograd gradients.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf


def _activation(name: str):
    if name == "tanh":
        return np.tanh, lambda u: 1.0 - np.tanh(u) ** 2
    if name == "relu":
        return (lambda u: np.maximum(u, 0.0)), (lambda u: (u > 0).astype(u.dtype))
    if name == "identity":
        return (lambda u: u), (lambda u: np.ones_like(u))
    if name == "gelu":
        def gelu(u):
            return 0.5 * u * (1.0 + erf(u / math.sqrt(2.0)))

        def gelu_prime(u):
            return (0.5 * (1.0 + erf(u / math.sqrt(2.0)))
                    + u * np.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi))
        return gelu, gelu_prime
    raise ValueError(f"unknown activation {name!r}")


def loop_loss_and_grads(a: np.ndarray, w: np.ndarray, b: np.ndarray, X: np.ndarray,
                        Y: np.ndarray, activation: str = "tanh", readout: np.ndarray | None = None,
                        embedding: np.ndarray | None = None):
    """The square loss R = ½ mean_batch ‖ŷ − y‖² and its gradients (∂R/∂a, ∂R/∂w, ∂R/∂b).

    a, w (L, N, d); b (L, N); X (B, d_in); Y (B,) with a readout u (d,), (B, d) without.
    Returns (loss, output ŷ, (ga, gw, gb))."""
    sigma, sigma_prime = _activation(activation)
    L, N, d = a.shape
    B = X.shape[0]
    dtype = a.dtype
    x = X @ embedding.T if embedding is not None else X.astype(dtype, copy=True)
    states = [x]
    pre = np.empty((L, N, B), dtype=dtype)
    for layer in range(L):
        x = states[-1]
        g = np.zeros((B, d), dtype=dtype)
        for i in range(N):
            p = x @ w[layer, i] + b[layer, i]  # (B,)
            pre[layer, i] = p
            g += np.outer(sigma(p), a[layer, i])
        states.append(x + g / (N * L))
    xL = states[-1]
    out = xL @ readout if readout is not None else xL
    diff = out - Y
    loss = 0.5 * float(np.mean(diff * diff if diff.ndim == 1 else (diff * diff).sum(-1)))
    grad_out = diff / B
    gx = np.outer(grad_out, readout) if readout is not None else grad_out  # (B, d)
    ga, gw, gb = np.zeros_like(a), np.zeros_like(w), np.zeros_like(b)
    scale = 1.0 / (N * L)
    for layer in reversed(range(L)):
        x = states[layer]
        g_prev = gx.copy()
        for i in range(N):
            p = pre[layer, i]
            ga[layer, i] = sigma(p) @ gx * scale
            gp = (gx @ a[layer, i]) * sigma_prime(p) * scale  # (B,)
            gw[layer, i] = gp @ x
            gb[layer, i] = gp.sum()
            g_prev += np.outer(gp, w[layer, i])
        gx = g_prev
    return loss, out, (ga, gw, gb)


def loop_step(a, w, b, X, Y, lr: float, activation: str = "tanh", readout=None,
              embedding=None) -> float:
    """One mean-field gradient step in place on a, w, b (θ ← θ − η·N·L·∂R/∂θ); returns the
    loss before the step."""
    L, N, _ = a.shape
    loss, _, grads = loop_loss_and_grads(a, w, b, X, Y, activation, readout, embedding)
    for p, g in zip((a, w, b), grads, strict=True):
        p -= lr * N * L * g
    return loss
