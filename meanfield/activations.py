"""Activations σ of the neuron function f(x; θ) = a·σ(w·x + b), with σ' and sup|σ'|.

Holds: tanh, relu, gelu (exact, erf form) and identity, as torch functions, their
derivatives (used by the Lipschitz bound and by the width-limit quadrature), and the
global constant sup|σ'| that enters the stability bound of docs/theory.md §3.
Does not hold: learnable activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


def _gelu_prime(u: Tensor) -> Tensor:
    cdf = 0.5 * (1.0 + torch.erf(u / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)
    return cdf + u * pdf


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable[[Tensor], Tensor]
    prime: Callable[[Tensor], Tensor]
    sup_prime: float  # sup_u |σ'(u)|, the constant in the Lipschitz bound


# sup|gelu'| is attained at u = sqrt(2): Φ(√2) + √2 φ(√2) ≈ 1.1289.
_GELU_SUP = 0.5 * (1 + math.erf(1.0)) + math.sqrt(2) * math.exp(-1.0) / math.sqrt(2 * math.pi)

ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", torch.tanh, lambda u: 1.0 - torch.tanh(u) ** 2, 1.0),
    "relu": Activation("relu", torch.relu, lambda u: (u > 0).to(u.dtype), 1.0),
    "gelu": Activation(
        "gelu", lambda u: torch.nn.functional.gelu(u, approximate="none"), _gelu_prime, _GELU_SUP
    ),
    "identity": Activation("identity", lambda u: u, lambda u: torch.ones_like(u), 1.0),
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name; a ValueError lists the valid names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None
