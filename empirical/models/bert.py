"""A BERT-style encoder family: the transformer of the paper's language experiments.

Post-layer-norm encoder layers as in the original BERT; ``width_mult`` widens the hidden size
and the feed-forward size together (the number of heads is kept, so heads get wider). Two
heads: a masked-language-model head (pretraining) and a sequence-classification head on the
first token (downstream). Because the hidden size changes with the width, thin and wide block
interfaces differ, and stage 2 pairs them with linear maps (``connectors.py``).

Named blocks, shared by every member of a family: ``embeddings``, ``layers.0`` ...
``layers.{n-1}``. The heads are not imitated blocks.

Not held here: next-sentence prediction, token-type embeddings, tied input/output embeddings.
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

    def __post_init__(self):
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

    def forward(self, input_ids):  # (B, T) -> (B, T, H)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.dropout(self.norm(self.token(input_ids) + self.position(positions)))


class EncoderLayer(nn.Module):
    """a = LN1(x + Attn(x)); y = LN2(a + W2 gelu(W1 a))."""

    def __init__(self, c: BertConfig):
        super().__init__()
        h = c.hidden_size
        self.heads = c.heads
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

    def forward(self, x, attn_bias):  # x (B, T, H); attn_bias (B, 1, 1, T), 0 or -inf
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        att = att.transpose(1, 2).reshape(x.shape)  # (B, T, H)
        a = self.norm1(x + self.dropout(self.attn_out(att)))
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
        self.mlm_head = nn.Sequential(
            nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h), nn.Linear(h, config.vocab_size)
        )
        self.cls_head = nn.Sequential(
            nn.Linear(h, h), nn.Tanh(), nn.Dropout(config.dropout),
            nn.Linear(h, config.num_classes),
        )
        self.apply(self._init_weights)

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
        return x

    def forward(self, input_ids, attention_mask, head: str = "mlm"):
        x = self.encode(input_ids, attention_mask)
        if head == "mlm":
            return self.mlm_head(x)  # (B, T, vocab)
        if head == "cls":
            return self.cls_head(x[:, 0])  # (B, classes)
        raise ValueError(f"unknown head {head!r}; expected 'mlm' or 'cls'")
