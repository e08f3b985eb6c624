"""The timer every benchmark uses, and the machine description stored beside every figure.

Method (:func:`measure`): each function is called ``warmup`` times first (allocator, caches,
lazy initialisation); one timed call then fixes how many calls make a sample (enough for a
sample to last ``min_sample_s``, so that short calls are not timed below the clock's
resolution); then ``reps`` rounds follow, each timing one sample of every function in turn
(interleaved, so that a slow spell of the machine weighs on every function alike, and the
order is rotated from round to round). A sample is timed with ``time.perf_counter`` around
its calls, after a device synchronisation on CUDA. The figure kept is the median over
samples of the time per call; the quartiles are stored beside it. A ratio of two functions
is the median over rounds of the ratio of their samples in the same round
(:func:`paired_ratio`).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from gowide.provenance import machine_description

METHOD = (
    "time.perf_counter around samples of calls, after warm-up calls; a sample lasts at least "
    "min_sample_s (several calls when one is short); the functions compared are timed "
    "interleaved, in rotating order, for reps rounds; the median time per call is kept, with "
    "its quartiles; a ratio of two functions is the median over rounds of the ratio of their "
    "samples in the same round; CUDA is synchronised before each reading"
)


def _sync(device: str | torch.device | None) -> Callable[[], None]:
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def measure(fns: dict[str, Callable[[], object]], reps: int = 7, warmup: int = 2,
            min_sample_s: float = 0.02, max_calls: int = 10_000,
            device: str | torch.device | None = None) -> dict[str, dict]:
    """Time each function of ``fns`` (see the module docstring); returns, per name, the median
    seconds per call, its quartiles, the number of samples and the calls per sample."""
    sync = _sync(device)
    calls = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        once = max(time.perf_counter() - start, 1e-9)
        calls[name] = int(min(max_calls, max(1, math.ceil(min_sample_s / once))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(reps):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, k = fns[name], calls[name]
            sync()
            start = time.perf_counter()
            for _ in range(k):
                fn()
            sync()
            samples[name].append((time.perf_counter() - start) / k)
    out = {}
    for name, xs in samples.items():
        q1, q3 = (np.percentile(xs, [25, 75]).tolist() if len(xs) > 1 else (xs[0], xs[0]))
        out[name] = {"median_s": statistics.median(xs), "q1_s": q1, "q3_s": q3,
                     "samples": len(xs), "calls_per_sample": calls[name], "samples_s": xs}
    return out


def paired_ratio(t: dict[str, dict], num: str, den: str) -> float:
    """Median over rounds of the ratio of two functions' samples taken in the same round (a
    slow spell of the machine then cancels out of each ratio)."""
    pairs = zip(t[num]["samples_s"], t[den]["samples_s"], strict=True)
    return statistics.median(a / b for a, b in pairs)


def env(threads: int | None = None, device: str = "cpu", **extra) -> dict:
    """What a figure was measured on: CPU model and cores, GPU (if any), torch version and the
    intra-op threads torch used."""
    m = machine_description()
    info = {"cpu": m["cpu"], "cores": m["cpu_count"], "gpu": m.get("gpu"),
            "torch": torch.__version__,
            "threads": torch.get_num_threads() if threads is None else threads,
            "device": str(device)}
    return info | extra


def fit_slope(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: leave them) and return the number in use."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_count() -> int:
    return os.cpu_count() or 1
