"""A BERT-style encoder family: the transformer of the paper's language experiments.

Post-layer-norm encoder layers as in the original BERT (``norm = "post"``, the default), or
pre-layer-norm ones (``norm = "pre"``: a layer norm before the attention and before the
feed-forward sublayer of each layer, and a final layer norm after the last layer, applied
before either head); ``width_mult`` widens the hidden size and the feed-forward size together
(the number of heads is kept, so heads get wider). Two heads: a masked-language-model head
(pretraining) and a sequence-classification head (downstream): an MLP on the first token
(``cls_head = "mlp"``, the default) or one linear layer on the mean of the final hidden
states over the non-padding tokens (``cls_head = "linear"``, the form a linear probe fits,
``empirical/probe.py``). With ``tie_embeddings`` the masked-LM head's output layer uses the
token embedding matrix as its weight (its bias stays its own).

The masked-LM head can be applied at chosen positions only (``mlm_positions``, a (B, T)
boolean mask): the logits are then (N, vocab) for the N selected positions, and no work is
spent on the others. Because the hidden size changes with the width, thin and wide block
interfaces differ, and stage 2 pairs them with linear maps (``connectors.py``).

Named blocks, shared by every member of a family: ``embeddings``, ``layers.0`` ...
``layers.{n-1}``. The heads are not imitated blocks.

The final layer norm of ``norm = "pre"`` (``final_norm``) is not part of any block: the block
``layers.{n-1}`` outputs the residual stream before it. Stage 2's pre-activation target
(``imitate.target = "pre"``) changes the ``embeddings`` block alone: it is imitated on the sum
of token and position embeddings before its layer norm and on the norm's output
(``Embeddings.final_act``); the encoder layers have no final activation, so both targets are
their output.

Not held here: next-sentence prediction, token-type embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gowide.errors import UsageError


@dataclass
class BertConfig:
    vocab_size: int = 2000
    max_len: int = 64
    layers: int = 2
    hidden: int = 64
    ffn: int = 256
    heads: int = 2
    width_mult: float = 1.0
    num_classes: int = 2
    dropout: float = 0.0
    norm: str = "post"  # post (original BERT) | pre (pre-LN, with a final layer norm)
    tie_embeddings: bool = False  # the MLM decoder's weight is the token embedding matrix
    cls_head: str = "mlp"  # mlp (first token) | linear (mean-pooled, for a linear probe)

    def __post_init__(self):
        if self.norm not in ("post", "pre"):
            raise UsageError(f"bert: norm must be 'post' or 'pre', got {self.norm!r}")
        if self.cls_head not in ("mlp", "linear"):
            raise UsageError(f"bert: cls_head must be 'mlp' or 'linear', got {self.cls_head!r}")
        if min(self.layers, self.hidden, self.ffn, self.heads, self.vocab_size) < 1:
            raise UsageError("bert: layers, hidden, ffn, heads and vocab_size must be positive")
        if self.width_mult <= 0:
            raise UsageError(f"bert: width_mult must be positive, got {self.width_mult}")
        if self.hidden_size % self.heads:
            raise UsageError(
                f"bert: hidden size {self.hidden_size} is not divisible by heads={self.heads}"
            )

    @property
    def hidden_size(self) -> int:
        return max(self.heads, round(self.hidden * self.width_mult))

    @property
    def ffn_size(self) -> int:
        return max(1, round(self.ffn * self.width_mult))


class Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.token = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position = nn.Embedding(c.max_len, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size)
        self.dropout = nn.Dropout(c.dropout)

    @property
    def final_act(self) -> nn.Module:
        """The layer norm, under the name stage 2 looks for (``empirical.capture``): with
        ``imitate.target = "pre"`` the block is imitated on its input, the sum of token and
        position embeddings, as well as on its output (the norm has parameters to learn;
        ``imitation_loss.learned_final_modules``). The layer norm's output alone leaves each
        token's embedding free along the all-ones direction (and partly in scale), and with
        tied embeddings the masked-LM output layer reads the raw token embeddings, so only
        the sum before the norm pins that layer to the teacher's."""
        return self.norm

    def forward(self, input_ids):  # (B, T) -> (B, T, H)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.dropout(self.norm(self.token(input_ids) + self.position(positions)))


class EncoderLayer(nn.Module):
    """post: a = LN1(x + Attn(x)); y = LN2(a + W2 gelu(W1 a)).
    pre:  a = x + Attn(LN1(x));  y = a + W2 gelu(W1 LN2(a))."""

    def __init__(self, c: BertConfig):
        super().__init__()
        h = c.hidden_size
        self.heads = c.heads
        self.pre = c.norm == "pre"
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.attn_out = nn.Linear(h, h)
        self.norm1 = nn.LayerNorm(h)
        self.ffn_in = nn.Linear(h, c.ffn_size)
        self.ffn_out = nn.Linear(c.ffn_size, h)
        self.norm2 = nn.LayerNorm(h)
        self.dropout = nn.Dropout(c.dropout)

    def _split(self, t):  # (B, T, H) -> (B, heads, T, H / heads)
        b, n, h = t.shape
        return t.view(b, n, self.heads, h // self.heads).transpose(1, 2)

    def _attend(self, x, attn_bias):
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        return self.attn_out(att.transpose(1, 2).reshape(x.shape))  # (B, T, H)

    def forward(self, x, attn_bias):  # x (B, T, H); attn_bias (B, 1, 1, T), 0 or -inf
        if self.pre:
            a = x + self.dropout(self._attend(self.norm1(x), attn_bias))
            return a + self.dropout(self.ffn_out(F.gelu(self.ffn_in(self.norm2(a)))))
        a = self.norm1(x + self.dropout(self._attend(x, attn_bias)))
        f = self.ffn_out(F.gelu(self.ffn_in(a)))
        return self.norm2(a + self.dropout(f))


class Bert(nn.Module):
    feature_dim = -1  # block outputs are (B, T, H): features along the last dim
    has_unused_heads = True  # each objective uses one of the two heads (DDP must know)

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.layers))
        self.final_norm = nn.LayerNorm(h) if config.norm == "pre" else None
        self.mlm_head = nn.Sequential(
            nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h), nn.Linear(h, config.vocab_size)
        )
        if config.cls_head == "linear":
            self.cls_head = nn.Linear(h, config.num_classes)
        else:
            self.cls_head = nn.Sequential(
                nn.Linear(h, h), nn.Tanh(), nn.Dropout(config.dropout),
                nn.Linear(h, config.num_classes),
            )
        self.apply(self._init_weights)
        if config.tie_embeddings:  # one parameter, (vocab, H), in both places
            self.mlm_head[3].weight = self.embeddings.token.weight

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def block_names(self) -> list[str]:
        return ["embeddings"] + [f"layers.{i}" for i in range(len(self.layers))]

    def block_widths(self) -> dict[str, int]:
        return {name: self.config.hidden_size for name in self.block_names()}

    def encode(self, input_ids, attention_mask):  # -> (B, T, H)
        bias = torch.zeros(attention_mask.shape, dtype=torch.float32, device=input_ids.device)
        bias = bias.masked_fill(attention_mask == 0, float("-inf"))[:, None, None, :]
        x = self.embeddings(input_ids)
        bias = bias.to(x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return x if self.final_norm is None else self.final_norm(x)

    def pool(self, x, attention_mask):  # (B, T, H) -> (B, H), what the cls head reads
        if self.config.cls_head == "mlp":
            return x[:, 0]
        m = attention_mask.to(x.dtype)[..., None]  # (B, T, 1)
        return (x * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, input_ids, attention_mask, head: str = "mlm", mlm_positions=None):
        """head "mlm": logits (B, T, vocab), or (N, vocab) at the N positions where the
        boolean ``mlm_positions`` (B, T) is true (in row-major order); head "cls": (B,
        classes)."""
        x = self.encode(input_ids, attention_mask)
        if head == "mlm":
            if mlm_positions is not None:
                x = x[mlm_positions]  # (N, H)
            return self.mlm_head(x)
        if head == "cls":
            return self.cls_head(self.pool(x, attention_mask))  # (B, classes)
        raise ValueError(f"unknown head {head!r}; expected 'mlm' or 'cls'")
