"""The stability bound of docs/theory.md §3 (Theorem 4), computed from a network.

Holds: the per-layer Lipschitz bounds κ_l = sup|σ'| · (1/n) Σ_i ‖a_{l,i}‖‖w_{l,i}‖ of the thin
network's blocks (Lemma 3), the measured per-layer imitation errors δ_l at the wide states,
and the three forms of the bound on the RMS state deviation e_L = ‖x_L − z_L‖ (RMS over the
data) of the thin net from the wide one, for the nets' residual factor α = α_L (1/L by
default; docs/theory.md §8):

    product:  α Σ_l Π_{m>l} (1 + α κ_m) δ_l            (the tightest rigorous form)
    uniform:  α Σ_l (1 + α κ)^{L−1−l} δ_l,              κ = max_l κ_l
    exp:      α Σ_l e^{α κ (L−l)} δ_l                    (the form quoted in the docs)

(Theorem 4's proof with α in place of 1/L: e_{l+1} ≤ (1 + α κ_l) e_l + α δ_l.) Under 1/L these
are the forms of the docs, flat in L when the δ_l are; under 1/√L and 1 the growth factors
reach e^{κ√L} and (1 + κ)^L.

and the output deviation bound ‖u‖ times each. The bound holds for the empirical measure of
the data it is computed on, so on the same data a measured deviation above it is a bug.
Also here, for comparison only: a data-estimated constant K̂ = max over layers and data
points of the spectral norm of the block Jacobian, at the thin and the wide states. It is
tighter but not rigorous (the Lipschitz constant is a sup over the whole segment between
thin and wide states, not over the data points).
Does not hold: the experiments that set the bound beside measured deviations.
"""

from __future__ import annotations

import numpy as np
import torch

from meanfield.imitation import block_errors
from meanfield.network import MeanFieldResNet


def jacobian_norms(net: MeanFieldResNet, z) -> np.ndarray:
    """Spectral norms of Dg_l at given states: z (L, B, d) -> (L, B).

    Dg_l(x) = (1/n) Σ_i σ'(w_i·x + b_i) a_i w_iᵀ.
    """
    z = torch.as_tensor(z, dtype=net.dtype, device=net.device)
    with torch.no_grad():
        s = net.act.prime(torch.einsum("lbd,lnd->lbn", z, net.w) + net.b[:, None, :])  # (L,B,n)
        jac = torch.einsum("lbn,lni,lnj->lbij", s, net.a, net.w) / net.width  # (L, B, d, d)
        return torch.linalg.matrix_norm(jac, ord=2).cpu().numpy()


def _output_weight(net: MeanFieldResNet) -> float:
    return 1.0 if net.readout is None else float(net.readout.norm())


def stability_report(thin: MeanFieldResNet, wide: MeanFieldResNet, X) -> dict:
    """Measured deviation of ``thin`` from ``wide`` on inputs X and the bounds on it."""
    X = torch.as_tensor(X, dtype=wide.dtype, device=wide.device)
    L = thin.depth
    if thin.residual_scale != wide.residual_scale:
        raise ValueError("thin and wide nets must share the residual scale")
    div = thin.residual_divisor  # 1/α: L (the default, exactly as before), √L or 1
    delta = block_errors(thin, wide, X)  # (L,)
    kappa = thin.lipschitz_bound().cpu().numpy()  # (L,)
    with torch.no_grad():
        z = wide._states(X)  # (L+1, B, d)
        x = thin.to(dtype=wide.dtype)._states(X)
    state_dev = float(torch.sqrt(((x[-1] - z[-1]) ** 2).sum(-1).mean()))
    out_dev = float(torch.sqrt(((thin.read(x[-1]) - wide.read(z[-1])) ** 2).mean()))
    # Π_{m>l} (1 + α κ_m): suffix products
    growth = np.ones(L)
    for l in range(L - 2, -1, -1):
        growth[l] = growth[l + 1] * (1 + kappa[l + 1] / div)
    k = float(kappa.max())
    steps = np.arange(L)
    with np.errstate(over="ignore"):  # without 1/L the looser forms may overflow to +inf
        bounds = {
            "product": float((growth * delta).sum() / div),
            "uniform": float(((1 + k / div) ** (L - 1 - steps) * delta).sum() / div),
            "exp": float((np.exp(k * (L - steps) / div) * delta).sum() / div),
        }
    jac = np.maximum(jacobian_norms(thin, z[:-1]).max(axis=1),
                     jacobian_norms(thin, x[:-1]).max(axis=1))  # (L,)
    g_hat = np.ones(L)
    for l in range(L - 2, -1, -1):
        g_hat[l] = g_hat[l + 1] * (1 + jac[l + 1] / div)
    u = _output_weight(thin)
    return {
        "depth": L,
        "width": thin.width,
        "residual_scale": thin.residual_scale,
        "delta": delta.tolist(),
        "kappa": kappa.tolist(),
        "K": k,
        "K_data": float(jac.max()),
        "state_deviation": state_dev,
        "output_deviation": out_dev,
        "state_bound": bounds,
        "output_bound": {key: u * v for key, v in bounds.items()},
        "output_bound_data_K": u * float((g_hat * delta).sum() / div),
        "bound_holds": bool(out_dev <= u * bounds["product"] * (1 + 1e-9) + 1e-12
                            and state_dev <= bounds["product"] * (1 + 1e-9) + 1e-12),
    }
