"""Linear pairs between thin and wide block interfaces, and their merge (paper, stage 2).

Where a thin block's output has width ``c`` and the wide block of the same name has width
``C``, a pair of linear maps sits after the thin block:

* ``P`` (thin→wide, a ``C×c`` matrix) maps the thin output into the wide space, where the
  imitation loss compares it with the wide block's output;
* ``Q`` (wide→thin, ``c×C``) maps a wide state into the thin space; it feeds the next thin
  block in teacher-forced imitation, and ``Q·P`` is what the next thin block sees in
  progressive imitation.

``Q`` is tied to ``P`` as its pseudo-inverse, ``Q = (PᵀP)⁻¹Pᵀ``, so ``Q·P`` is the identity of
the thin space. The reason is exactness: a product ``Q·P`` other than the identity would have
to be absorbed into the next block, and neither block family allows it exactly (the next
block's input also feeds a residual connection, and a ReLU or a layer norm sits on either
side). With the tie, training ``P`` chooses the ``c``-dimensional view of the wide space in
which the thin state is compared and from which teacher states are read, and the merge that
removes the pair leaves the thin network's function unchanged up to the float error of the
solve: the final model is exactly the thin architecture, with its parameter count.

The maps act along a model's feature dimension (``feature_dim``: channels of an image
feature map, the hidden size of a token sequence).
"""

from __future__ import annotations

import torch
from torch import nn

from empirical.capture import ensure_hook_guards, resolve_block


class LinearPair(nn.Module):
    def __init__(self, thin_width: int, wide_width: int, feature_dim: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.feature_dim = feature_dim
        # P starts with orthonormal columns: a random isometric embedding of the thin space.
        a = torch.randn(wide_width, thin_width, generator=generator, dtype=torch.float64)
        q, _ = torch.linalg.qr(a)  # (C, c)
        self.up = nn.Parameter(q.to(torch.float32))

    def down_matrix(self) -> torch.Tensor:
        """Q = (PᵀP)⁻¹Pᵀ, (c, C), solved in float64 for exactness."""
        p = self.up.double()
        return torch.linalg.solve(p.T @ p, p.T).to(self.up.dtype)

    def _map(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        x = x.movedim(self.feature_dim, -1)  # (..., in)
        y = x @ matrix.T.to(x.dtype)  # (..., out)
        # movedim leaves channels-last strides; hand the next layer the default format.
        return y.movedim(-1, self.feature_dim).clone(memory_format=torch.contiguous_format)

    def to_wide(self, h: torch.Tensor) -> torch.Tensor:
        return self._map(h, self.up)

    def to_thin(self, z: torch.Tensor) -> torch.Tensor:
        return self._map(z, self.down_matrix())

    def round_trip(self, h: torch.Tensor) -> torch.Tensor:
        """Q·P·h: what the next thin block receives while the pair is in place."""
        return self.to_thin(self.to_wide(h))


class Connectors(nn.Module):
    """One :class:`LinearPair` per block whose thin and wide widths differ (keyed by the block
    name with dots replaced by ``__``); blocks of equal width get none."""

    def __init__(self, thin: nn.Module, wide: nn.Module, names: list[str], seed: int = 0):
        super().__init__()
        thin_w, wide_w = thin.block_widths(), wide.block_widths()
        generator = torch.Generator().manual_seed(seed)
        self.pairs = nn.ModuleDict()
        for name in names:
            if thin_w[name] != wide_w[name]:
                self.pairs[self.key(name)] = LinearPair(
                    thin_w[name], wide_w[name], thin.feature_dim, generator
                )

    @staticmethod
    def key(name: str) -> str:
        return name.replace(".", "__")

    def pair(self, name: str) -> LinearPair | None:
        return self.pairs[self.key(name)] if self.key(name) in self.pairs else None

    def to_wide(self, name: str, h: torch.Tensor) -> torch.Tensor:
        pair = self.pair(name)
        return h if pair is None else pair.to_wide(h)

    def to_thin(self, name: str, z: torch.Tensor) -> torch.Tensor:
        pair = self.pair(name)
        return z if pair is None else pair.to_thin(z)

    def insert(self, thin: nn.Module) -> InsertedPairs:
        """Context manager that routes each thin block's output through ``Q·P``."""
        return InsertedPairs(thin, self)


class InsertedPairs:
    def __init__(self, thin: nn.Module, connectors: Connectors):
        self.thin, self.connectors, self._handles = thin, connectors, []

    def __enter__(self):
        ensure_hook_guards(self.thin)
        for key, pair in self.connectors.pairs.items():
            block = resolve_block(self.thin, key.replace("__", "."))

            def hook(module, args, output, pair=pair):
                return pair.round_trip(output)

            self._handles.append(block.register_forward_hook(hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False


@torch.no_grad()
def merge_error(thin: nn.Module, connectors: Connectors, forward, batch) -> float:
    """Max abs difference between the thin model's outputs with the pairs in place and after
    the merge (the plain thin model), on one batch, in eval mode."""
    was_training = thin.training
    thin.eval()
    with connectors.insert(thin):
        before = forward(thin, batch)
    after = forward(thin, batch)
    thin.train(was_training)
    return float((before - after).abs().max())


def remove_pairs(thin: nn.Module, connectors: Connectors) -> nn.Module:
    """The paper's merge of the pairs into the neighbouring layers. With ``Q·P`` the identity
    of the thin space there is nothing to fold in: the merged network is the thin network
    itself, so merging is removing the pairs (``merge_error`` measures that it changes
    nothing)."""
    for key in list(connectors.pairs):
        del connectors.pairs[key]
    return thin
