"""Small configurations and model pairs shared by the tests of ``empirical/``."""

from __future__ import annotations

import tempfile

import torch

from empirical.models.bert import Bert, BertConfig
from empirical.models.resnet import ResNet, ResNetConfig
from empirical.presets import build_config

# One tokenizer cache for the whole test session, outside the user's home.
TEST_CACHE = tempfile.mkdtemp(prefix="gowide-test-cache-")

# A ResNet run that takes a few seconds on one CPU core.
FAST_RESNET = [
    "model.blocks_per_stage=1", "model.base_width=4", "wide_mult=2.0",
    "wide.steps=20", "wide.batch_size=32",
    "imitate.steps_per_block=4", "imitate.batch_size=32",
    "finetune.steps=20", "finetune.batch_size=32", "finetune.log_every=5",
    "wide.log_every=5", "imitate.log_every=2",
]

FAST_BERT = [
    "model.layers=2", "model.hidden=16", "model.ffn=32", "model.heads=2", "wide_mult=2.0",
    "data.max_mlm_sequences=300", "data.max_len=32",
    "wide.steps=6", "wide.batch_size=16", "imitate.steps_per_block=2", "imitate.batch_size=16",
    "finetune.steps=6", "finetune.batch_size=16", "downstream.steps=6",
    "downstream.batch_size=16", "wide.log_every=2", "finetune.log_every=2",
    "imitate.log_every=2", "downstream.log_every=2",
]


def fast_config(task: str, method: str = "ours", extra: list[str] = (), **fields):
    base = FAST_RESNET if task == "resnet" else FAST_BERT
    fields.setdefault("device", "cpu")
    return build_config(task, method, "tiny", list(base) + list(extra), **fields)


def resnet_pair(widen_interfaces: bool = False, norm: str = "batch", seed: int = 0):
    torch.manual_seed(seed)
    kw = dict(blocks_per_stage=1, base_width=4, widen_interfaces=widen_interfaces, norm=norm)
    thin = ResNet(ResNetConfig(width_mult=1.0, **kw))
    wide = ResNet(ResNetConfig(width_mult=4.0, **kw))
    return thin, wide


def bert_pair(seed: int = 0, thin_mult: float = 1.0, wide_mult: float = 2.0):
    torch.manual_seed(seed)
    kw = dict(vocab_size=50, max_len=12, layers=2, hidden=16, ffn=32, heads=2)
    thin = Bert(BertConfig(width_mult=thin_mult, **kw))
    return thin, Bert(BertConfig(width_mult=wide_mult, **kw))


def bert_batch(batch: int = 3, length: int = 12, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, length // 2:] = 0
    ids[0, length // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def bert_forward(model, batch):
    return model(batch["input_ids"], batch["attention_mask"], head="mlm")


def resnet_forward(model, batch):
    return model(batch["x"])


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every normalisation layer non-trivial affine parameters and running stats (eval
    mode then exercises them), so zero-initialised gains do not hide differences."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
