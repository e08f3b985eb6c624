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
    return mean, float(mean - half), float(mean + half)


def slope_summary(per_seed: list[float], seeds: list[int], predicted: float,
                  tolerance: float) -> dict:
    """The record stored for every measured rate.

    ``held`` follows the interval, not the mean: True when the 95% interval lies within
    ``predicted ± tolerance``, False when it lies wholly outside, None (undecided) otherwise;
    ``ci_contains_predicted`` says whether the interval covers the prediction exactly.
    """
    value, lo, hi = mean_interval(per_seed)
    rule = {"kind": "within", "low": predicted - tolerance, "high": predicted + tolerance}
    return {
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
        "predicted": predicted,
        "tolerance": tolerance,
        "rule": rule,
        "held": decide(rule, lo, hi),
        "ci_contains_predicted": bool(math.isfinite(lo) and lo <= predicted <= hi),
        "seeds": list(seeds),
        "per_seed": list(per_seed),
        "interval": "95% Student-t across seeds",
    }


# Verdicts decided by their interval, never by the mean alone. A rule is one of
#   {"kind": "at_most", "bound": c}       held when ci_high ≤ c   (one-sided: "no more than c")
#   {"kind": "at_least", "bound": c}      held when ci_low ≥ c    (one-sided: "no less than c")
#   {"kind": "within", "low": a, "high": b}  held when a ≤ ci_low and ci_high ≤ b (equivalence)
# and `held` is False when the interval lies wholly on the wrong side, None (undecided) when it
# straddles the bound or no interval exists (fewer than 2 values, or a failed gate).


def rule_text(rule: dict) -> str:
    if rule["kind"] == "at_most":
        return f"held when the 95% interval's upper end ≤ {rule['bound']:g}"
    if rule["kind"] == "at_least":
        return f"held when the 95% interval's lower end ≥ {rule['bound']:g}"
    if rule["kind"] == "within":
        return f"held when the 95% interval lies within [{rule['low']:g}, {rule['high']:g}]"
    raise ValueError(f"unknown rule kind {rule['kind']!r}")


def decide(rule: dict, ci_low: float, ci_high: float) -> bool | None:
    """True, False, or None (undecided) for ``rule`` given a 95% interval."""
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return None
    kind = rule["kind"]
    if kind == "at_most":
        return True if ci_high <= rule["bound"] else (False if ci_low > rule["bound"] else None)
    if kind == "at_least":
        return True if ci_low >= rule["bound"] else (False if ci_high < rule["bound"] else None)
    if kind == "within":
        if rule["low"] <= ci_low and ci_high <= rule["high"]:
            return True
        if ci_high < rule["low"] or ci_low > rule["high"]:
            return False
        return None
    raise ValueError(f"unknown rule kind {kind!r}")


def verdict(prediction: str, values, predicted, rule: dict, gate: str | None = None,
            level: float = 0.95) -> dict:
    """The record of one prediction: ``value``, ``ci_low``, ``ci_high`` (Student-t across
    ``values``, one per seed), ``predicted``, ``rule`` and ``held``, which ``decide`` recomputes
    from the others. ``gate`` names a failed precondition: the prediction is then not judged
    (``held`` None)."""
    value, lo, hi = mean_interval(list(values), level)
    return {
        "prediction": prediction,
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
        "n": sum(1 for v in values if math.isfinite(v)),
        "predicted": predicted,
        "rule": rule,
        "rule_text": rule_text(rule),
        "held": None if gate else decide(rule, lo, hi),
        "gate_failed": gate,
        "per_seed": [float(v) for v in values],
        "interval": f"{level:.0%} Student-t across seeds",
    }


def k_of_n(k: int, n: int) -> str:
    return f"{k} of {n}"
