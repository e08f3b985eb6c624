"""What imitation leaves the thin model without, put right after stage 2 (and after a
subsample warm start).

* :func:`recalibrate_batchnorm`: BatchNorm running statistics re-estimated under the final
  weights (those of the blocks trained early were estimated under lower blocks that changed
  since; a subsample warm start carries the wide model's, subsampled).
* :func:`transfer_head`, :func:`transfer_mlm_head`: stage 2 imitates blocks only, so the
  thin model's output head is taken from the wide model's, through the last linear pair,
  where that is exact (ResNet) or a measured approximation (the BERT masked-LM head);
  ``imitate.head = "own"`` keeps the thin one.
"""

from __future__ import annotations

import torch
from torch import nn

from empirical.connectors import Connectors
from empirical.runtime import Runtime, to_device


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, task, runtime: Runtime, batches: int,
                          batch_size: int, seed: int) -> int:
    """Re-estimate the running statistics of every BatchNorm layer of ``model`` as the plain
    average over ``batches`` training batches (train-mode forward passes, no gradient, no
    weight change), so eval mode matches the weights as they are now: after a subsample warm
    start (whose statistics are the wide model's, subsampled) or after imitation (whose
    frozen blocks changed under the statistics of the blocks above). Returns the number of
    batches used (0 when the model has no BatchNorm layer)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not batches:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    data = task.train_batches(batch_size, torch.Generator().manual_seed(seed), runtime.rank,
                              runtime.world)
    try:
        with runtime.autocast():
            for _ in range(batches):
                task.forward(model, to_device(next(data), runtime.device))
    finally:
        for m, was in modes.items():
            m.training = was
        for m, momentum in momenta.items():
            m.momentum = momentum
    return batches



@torch.no_grad()
def transfer_head(thin: nn.Module, wide: nn.Module, connectors: Connectors, last: str) -> str:
    """Give the thin model the wide model's output head where that is exact.

    Stage 2 imitates blocks only; a linear head on top of the last block can be taken from
    the wide model, with the last pair's ``P`` (thin→wide) merged into it:
    ``W_wide (P h) + b = (W_wide P) h + b``. The ResNet head (pool, then linear) allows it;
    the BERT heads have a hidden layer of the interface width (see :func:`transfer_mlm_head`
    for the masked-LM one; the classification head keeps its own weights). Returns what was
    done: ``"wide"`` or ``"own"``."""
    t_head, w_head = getattr(thin, "head", None), getattr(wide, "head", None)
    if not isinstance(t_head, nn.Linear) or not isinstance(w_head, nn.Linear):
        return "own"
    pair = connectors.pair(last)
    weight = w_head.weight if pair is None else w_head.weight @ pair.up  # (K, c)
    if weight.shape != t_head.weight.shape:
        return "own"
    t_head.weight.copy_(weight)
    t_head.bias.copy_(w_head.bias)
    return "wide"


@torch.no_grad()
def transfer_mlm_head(thin: nn.Module, wide: nn.Module, connectors: Connectors, last: str,
                      seed: int, rescale: str = "linear") -> str:
    """Give the thin BERT model a masked-LM head taken from the wide one's, so that the
    output of stage 2 predicts tokens at all (a random head guesses uniformly).

    The head is ``W2 · LN(gelu(W1 z + b1)) + b2`` with a hidden layer of the interface width
    ``H`` (wide) or ``c`` (thin), so it cannot be taken over exactly when they differ. Its
    input is mapped as the ResNet head's is (``z = P h``: ``W1 P``), and its hidden layer is a
    seeded subsample of ``c`` of the wide head's ``H`` hidden units (``subsample.py``): rows
    of ``W1 P`` and of ``b1``, the layer norm's gain and bias, columns of ``W2`` rescaled by
    ``H/c`` (``rescale = "linear"``, the default) or ``sqrt(H/c)``. Exact when ``c = H``.
    Returns ``"wide-subsampled"``, or ``"own"`` when the models have no such head.

    Measured on the tiny preset (BERT 3×32 from a 3×64 teacher, vocabulary 2000, seeds 0 and
    1), masked-LM validation loss of ``ours_no_ft``: the thin model's own random head 7.607
    and 7.608 nats (uniform guessing is 7.601), this head with the sqrt rule 6.481 and 6.503,
    with the linear rule 6.400 and 6.405 (its teachers: 6.338 and 6.385). Stage 2 uses the
    linear rule.

    Pre-LN models (``norm = "pre"``) put a final layer norm between the last block and the
    head. When the widths are equal it is copied with the head (exact). When they differ it
    cannot be mapped through ``P`` (a layer norm of ``P h`` is not ``P`` of one of ``h``): the
    thin model keeps its own final norm, and the head is mapped as above, an approximation;
    the return value then ends in ``"+own-final-norm"``.

    Tied embeddings (``tie_embeddings``): the head's output weight is the thin model's token
    embedding matrix, which stage 2 trained as part of the ``embeddings`` block, and it is
    left alone; a subsampled hidden layer of the wide head would then feed coordinates that
    do not match it, so the thin head's hidden layer stays its own too, and only the output
    bias (the wide model's token log-prior) is copied. Returns ``"own+wide-bias"``."""
    from empirical.subsample import _factor, _pick

    t, w = getattr(thin, "mlm_head", None), getattr(wide, "mlm_head", None)
    layout = (nn.Linear, nn.GELU, nn.LayerNorm, nn.Linear)
    if not all(isinstance(h, nn.Sequential) and len(h) == 4
               and all(isinstance(m, k) for m, k in zip(h, layout, strict=True))
               for h in (t, w)):
        return "own"
    if thin.config.tie_embeddings or wide.config.tie_embeddings:
        if w[3].bias.shape != t[3].bias.shape:
            return "own"
        t[3].bias.copy_(w[3].bias)
        return "own+wide-bias"
    pair = connectors.pair(last)
    w1 = w[0].weight if pair is None else w[0].weight @ pair.up  # (H, H) @ (H, c) -> (H, c)
    n_wide, n_thin = w[0].out_features, t[0].out_features
    if w1.shape[1] != t[0].in_features or w[3].out_features != t[3].out_features:
        return "own"
    idx = _pick(n_wide, n_thin, torch.Generator().manual_seed(seed))  # (c,) hidden units
    t[0].weight.copy_(w1[idx])
    t[0].bias.copy_(w[0].bias[idx])
    t[2].weight.copy_(w[2].weight[idx])
    t[2].bias.copy_(w[2].bias[idx])
    t[3].weight.copy_(w[3].weight[:, idx] * _factor(n_wide / n_thin, rescale))  # (V, c)
    t[3].bias.copy_(w[3].bias)
    t_norm, w_norm = getattr(thin, "final_norm", None), getattr(wide, "final_norm", None)
    if t_norm is None or w_norm is None:
        return "wide-subsampled"
    if pair is None:
        t_norm.load_state_dict(w_norm.state_dict())
        return "wide-subsampled"
    return "wide-subsampled+own-final-norm"
