"""Small statistics shared by the experiments: log-log slopes and across-seed intervals."""

from __future__ import annotations

import math

import numpy as np
import scipy.stats


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.any(x <= 0) or np.any(y <= 0):
        return math.nan
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def mean_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval across seeds; (mean, nan, nan) with fewer than 2 values."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    half = scipy.stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return mean, mean - half, mean + half


def slope_summary(per_seed: list[float], seeds: list[int], predicted: float,
                  tolerance: float) -> dict:
    """The record stored for every measured rate.

    ``held`` is true when the across-seed mean lies within ``tolerance`` of the prediction;
    ``ci_contains_predicted`` says whether the 95% interval covers it exactly.
    """
    value, lo, hi = mean_interval(per_seed)
    return {
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
        "predicted": predicted,
        "tolerance": tolerance,
        "held": bool(math.isfinite(value) and abs(value - predicted) <= tolerance),
        "ci_contains_predicted": bool(math.isfinite(lo) and lo <= predicted <= hi),
        "seeds": list(seeds),
        "per_seed": list(per_seed),
        "interval": "95% Student-t across seeds",
    }
