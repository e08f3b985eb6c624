"""Mean-field warm start: initialise each thin block from a seeded subsample of the wide
block's neurons (channels, hidden units), the finite-width analogue of drawing ``n`` particles
from the wide layer's particle distribution (docs/theory.md §1.5, "warm start by subsampling").

A weight that *sums* over a subsampled index set is rescaled so that the block output keeps
its scale; two rules, chosen by ``rescale``:

* ``"linear"`` multiplies by ``r = N/n`` (wide/thin set sizes): the sum over the ``n`` kept
  neurons is then an unbiased estimate of the sum over all ``N``. This is the mean-field rule
  (a layer *averages* over its neurons, docs/theory.md §1.2), exact in expectation when the
  summed terms share a common mean, as in mean-field-scaled networks.
* ``"sqrt"`` (default) multiplies by ``sqrt(r)``: it keeps the *variance* of the sum when the
  summed terms are nearly uncorrelated with zero mean, which is the regime of standard
  (Kaiming/BERT) parametrisations, even after training. On the tiny digits ResNet, a thin
  network subsampled from a trained 4×-wide one this way is far closer to it, block by block
  and in accuracy before any training, than with the linear rule.

Coordinates that are merely kept (an output channel, a layer-norm gain) are copied.

Attention: heads are kept and each head keeps a seeded subset of its dimensions. With the
linear rule, queries are further scaled by ``sqrt(d_wide/d_thin)`` so that the attention
logits keep their scale under the ``1/sqrt(d)`` of scaled dot-product attention (with the
sqrt rule the logits keep their scale as they are).

BERT with tied embeddings: the masked-LM decoder weight is the token embedding matrix, copied
(unscaled) with the embeddings; only the decoder bias is copied separately, so the decoder's
sum over hidden coordinates is not rescaled. Pre-LN: the final layer norm keeps the
subsampled coordinates of its gain and bias.

Not held here: a subsample that changes the number of blocks or heads.
"""

from __future__ import annotations

import torch
from torch import nn

from empirical.models.bert import Bert
from empirical.models.resnet import ResNet


def _pick(n_wide: int, n_thin: int, g: torch.Generator) -> torch.Tensor:
    if n_thin > n_wide:
        raise ValueError(f"cannot subsample {n_thin} neurons from {n_wide}")
    return torch.randperm(n_wide, generator=g)[:n_thin].sort().values


RESCALE = ("sqrt", "linear")


def _factor(ratio: float, rescale: str) -> float:
    return ratio ** 0.5 if rescale == "sqrt" else ratio


def _copy(dst: torch.Tensor, src: torch.Tensor, out_idx=None, in_idx=None, scale=1.0):
    if out_idx is not None:
        src = src.index_select(0, out_idx)
    if in_idx is not None:
        src = src.index_select(1, in_idx)
    dst.copy_(src * scale)


def _copy_norm(dst: nn.Module, src: nn.Module, idx: torch.Tensor):
    for name in ("weight", "bias", "running_mean", "running_var"):
        t = getattr(src, name, None)
        if t is not None:
            getattr(dst, name).copy_(t.index_select(0, idx))
    if hasattr(src, "num_batches_tracked") and src.num_batches_tracked is not None:
        dst.num_batches_tracked.copy_(src.num_batches_tracked)


@torch.no_grad()
def subsample_resnet(thin: ResNet, wide: ResNet, seed: int, rescale: str = "sqrt") -> None:
    g = torch.Generator().manual_seed(seed)
    c_img = thin.stem.conv.in_channels
    inp = torch.arange(c_img)
    # The interface index set is shared by every block of a stage (identity shortcuts).
    stem_idx = _pick(wide.stem.conv.out_channels, thin.stem.conv.out_channels, g)
    _copy(thin.stem.conv.weight, wide.stem.conv.weight, stem_idx, inp)
    _copy_norm(thin.stem.norm, wide.stem.norm, stem_idx)
    prev = stem_idx
    prev_ratio = _factor(wide.stem.conv.out_channels / thin.stem.conv.out_channels, rescale)
    for tb, wb in zip(thin.blocks, wide.blocks, strict=True):
        if isinstance(tb.shortcut, nn.Identity):
            out_idx = prev
        else:
            out_idx = _pick(wb.conv2.out_channels, tb.conv2.out_channels, g)
        inner = _pick(wb.conv1.out_channels, tb.conv1.out_channels, g)
        inner_ratio = _factor(wb.conv1.out_channels / tb.conv1.out_channels, rescale)
        _copy(tb.conv1.weight, wb.conv1.weight, inner, prev, prev_ratio)
        _copy_norm(tb.norm1, wb.norm1, inner)
        _copy(tb.conv2.weight, wb.conv2.weight, out_idx, inner, inner_ratio)
        _copy_norm(tb.norm2, wb.norm2, out_idx)
        if not isinstance(tb.shortcut, nn.Identity):
            _copy(tb.shortcut[0].weight, wb.shortcut[0].weight, out_idx, prev, prev_ratio)
            _copy_norm(tb.shortcut[1], wb.shortcut[1], out_idx)
        prev = out_idx
        prev_ratio = _factor(wb.conv2.out_channels / tb.conv2.out_channels, rescale)
    # The head averages channels, then a linear layer sums over them.
    _copy(thin.head.weight, wide.head.weight, None, prev, prev_ratio)
    thin.head.bias.copy_(wide.head.bias)


def _linear(dst: nn.Linear, src: nn.Linear, out_idx, in_idx, in_ratio, out_scale=1.0):
    _copy(dst.weight, src.weight, out_idx, in_idx, in_ratio * out_scale)
    if dst.bias is not None:
        b = src.bias if out_idx is None else src.bias.index_select(0, out_idx)
        dst.bias.copy_(b * out_scale)


@torch.no_grad()
def subsample_bert(thin: Bert, wide: Bert, seed: int, rescale: str = "sqrt") -> None:
    g = torch.Generator().manual_seed(seed)
    heads = thin.config.heads
    h_w, h_t = wide.config.hidden_size, thin.config.hidden_size
    d_w, d_t = h_w // heads, h_t // heads
    # Hidden coordinates: per head, a subset of that head's dimensions, so that the thin
    # layout (head-major) matches the wide one.
    hid = torch.cat([k * d_w + _pick(d_w, d_t, g) for k in range(heads)])
    ratio = _factor(h_w / h_t, rescale)
    q_scale = (d_w / d_t) ** 0.5 if rescale == "linear" else 1.0
    emb_t, emb_w = thin.embeddings, wide.embeddings
    _copy(emb_t.token.weight, emb_w.token.weight, None, hid)
    _copy(emb_t.position.weight, emb_w.position.weight, None, hid)
    _copy_norm(emb_t.norm, emb_w.norm, hid)
    for lt, lw in zip(thin.layers, wide.layers, strict=True):
        _linear(lt.query, lw.query, hid, hid, ratio, q_scale)
        _linear(lt.key, lw.key, hid, hid, ratio)
        _linear(lt.value, lw.value, hid, hid, ratio)
        _linear(lt.attn_out, lw.attn_out, hid, hid, ratio)
        _copy_norm(lt.norm1, lw.norm1, hid)
        ffn = _pick(lw.ffn_in.out_features, lt.ffn_in.out_features, g)
        _linear(lt.ffn_in, lw.ffn_in, ffn, hid, ratio)
        _linear(lt.ffn_out, lw.ffn_out, hid, ffn,
                _factor(lw.ffn_in.out_features / len(ffn), rescale))
        _copy_norm(lt.norm2, lw.norm2, hid)
    if thin.final_norm is not None and wide.final_norm is not None:
        _copy_norm(thin.final_norm, wide.final_norm, hid)
    mt, mw = thin.mlm_head, wide.mlm_head
    _linear(mt[0], mw[0], hid, hid, ratio)
    _copy_norm(mt[2], mw[2], hid)
    if thin.config.tie_embeddings:  # the weight is the token embedding, subsampled above
        mt[3].bias.copy_(mw[3].bias)
    else:
        _linear(mt[3], mw[3], None, hid, ratio)
    ct, cw = thin.cls_head, wide.cls_head
    if isinstance(ct, nn.Linear) and isinstance(cw, nn.Linear):  # mean-pooled linear head
        _linear(ct, cw, None, hid, ratio)
    else:
        _linear(ct[0], cw[0], hid, hid, ratio)
        _linear(ct[3], cw[3], None, hid, ratio)


def subsample_init(thin: nn.Module, wide: nn.Module, seed: int, rescale: str = "sqrt") -> None:
    """Overwrite ``thin``'s weights with a rescaled seeded subsample of ``wide``'s."""
    if rescale not in RESCALE:
        raise ValueError(f"rescale must be one of {RESCALE}, got {rescale!r}")
    if isinstance(thin, ResNet) and isinstance(wide, ResNet):
        subsample_resnet(thin, wide, seed, rescale)
    elif isinstance(thin, Bert) and isinstance(wide, Bert):
        subsample_bert(thin, wide, seed, rescale)
    else:
        raise TypeError(f"no subsample rule for {type(thin).__name__} from {type(wide).__name__}")
