"""Linear probe of a frozen BERT-style encoder: the downstream evaluation with
``downstream.mode = "probe"``.

Fine-tuning the whole encoder on the 10k Rotten Tomatoes training snippets can land on the
majority class, a seed-dependent failure that says nothing about the pretrained encoder. A
linear probe has no such failure mode: the encoder is frozen, its final hidden states are
mean-pooled over the non-padding tokens, standardised with the training split's mean and
standard deviation, and a multinomial logistic regression is fitted on them full-batch
(L-BFGS, float64) for every L2 strength of ``L2_GRID``; the strength with the best
validation accuracy (ties: the lower validation loss) is kept. Its weights, with the
standardisation folded in, become the model's ``cls_head``, a single linear layer
(``model.cls_head = "linear"``), so the probed model is evaluated like a fine-tuned one.

Mean pooling rather than the first token: the masked-LM objective never trains the ``[CLS]``
position's output (it is never masked and no sentence-level objective reads it), while the
mean pools every token representation the objective did train.

Compute: the encoder's forward passes over the training and validation snippets are counted
(:func:`empirical.flops.count_flops`) into the ``downstream`` stage; the regression itself is
not (it is small and not a matrix product the counter would see in the same way).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from empirical.capture import unwrap
from empirical.data.text import PAD
from empirical.flops import ComputeLedger, count_flops
from gowide.errors import UsageError

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@torch.no_grad()
def pooled_features(model: nn.Module, ids: torch.Tensor, device, batch_size: int = 512):
    """Mean-pooled final hidden states (N, H), float64 on the CPU, model in eval mode."""
    inner = unwrap(model)
    was = inner.training
    inner.eval()
    out = []
    for s in range(0, len(ids), batch_size):
        b = ids[s: s + batch_size].to(device)
        mask = (b != PAD).long()
        x = inner.encode(b, mask)
        m = mask.to(x.dtype)[..., None]
        out.append(((x * m).sum(1) / m.sum(1).clamp_min(1.0)).double().cpu())
    inner.train(was)
    return torch.cat(out)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float,
                 max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, full batch: minimises mean cross-entropy
    + ``l2``/2 · ‖W‖² (the bias is not penalised) with L-BFGS. Returns W (classes, d), b."""
    w = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _scores(x, y, w, b) -> dict:
    logits = x @ w.T + b
    return {"loss": float(F.cross_entropy(logits, y)),
            "accuracy": float((logits.argmax(-1) == y).double().mean())}


def linear_probe(model: nn.Module, task, device, ledger: ComputeLedger, stage: str,
                 grid=L2_GRID) -> dict:
    """Fit the probe (module docstring) on ``task``'s (a ``ClassificationTask``) training
    split, choose the L2 strength on its validation split, and write the chosen regression
    into ``model.cls_head``. Returns the stage record."""
    start = time.perf_counter()
    inner = unwrap(model)
    head = getattr(inner, "cls_head", None)
    if not isinstance(head, nn.Linear):
        raise UsageError('downstream.mode = "probe" needs a linear classification head: '
                         'set model.cls_head = "linear"')
    d = task.data
    (x_tr, x_va), flops = count_flops(lambda: (pooled_features(model, d.cls_ids_train, device),
                                               pooled_features(model, d.cls_ids_val, device)))
    ledger.add(stage, "probe_features", flops, 1)
    y_tr, y_va = d.cls_y_train, d.cls_y_val
    mu, sd = x_tr.mean(0), x_tr.std(0).clamp_min(1e-8)
    z_tr, z_va = (x_tr - mu) / sd, (x_va - mu) / sd
    classes = head.out_features
    rows, best = [], None
    for l2 in grid:
        w, b = fit_logistic(z_tr, y_tr, classes, l2)
        row = {"l2": l2, "train": _scores(z_tr, y_tr, w, b), "val": _scores(z_va, y_va, w, b)}
        rows.append(row)
        key = (-row["val"]["accuracy"], row["val"]["loss"])
        if best is None or key < best[0]:
            best = (key, l2, w, b)
    _, l2, w, b = best
    with torch.no_grad():  # logits = ((x - mu) / sd) W^T + b, folded into one linear layer
        weight = w / sd
        head.weight.copy_(weight.to(head.weight.dtype))
        head.bias.copy_((b - weight @ mu).to(head.bias.dtype))
    majority = float(torch.bincount(y_va).max()) / len(y_va)
    return {"mode": "probe", "pool": "mean", "l2": l2, "grid": rows,
            "val_majority_accuracy": majority, "wall_s": time.perf_counter() - start}
