"""Checks of the arrays and counts given to the public API: a clear TypeError or ValueError
at the call, instead of a NaN (an empty average), a silently dropped imaginary part, or a
failure deep inside torch later."""

from __future__ import annotations

import numbers

import numpy as np
import torch


def _dtype_kind(x) -> tuple[str, str]:
    """(numpy dtype kind, dtype name) of an array, tensor or nested sequence."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            return "c", str(x.dtype)
        if x.is_floating_point():
            return "f", str(x.dtype)
        return ("b" if x.dtype == torch.bool else "i"), str(x.dtype)
    arr = np.asarray(x)
    return arr.dtype.kind, str(arr.dtype)


def check_finite(name: str, x):
    """ValueError if ``x`` (an array or tensor of numbers) holds a NaN or an infinity."""
    if x is None:
        return x
    finite = (bool(torch.isfinite(x).all()) if isinstance(x, torch.Tensor)
              else bool(np.isfinite(np.asarray(x, dtype=float)).all()))
    if not finite:
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def check_array(name: str, x, integers: bool = False, finite: bool = False):
    """TypeError unless ``x`` holds real floating-point numbers (``integers``: or integers,
    converted exactly); complex numbers, booleans, strings and objects are refused.
    ``finite``: also ValueError for a NaN or an infinity (:func:`check_finite`)."""
    if x is None:
        return x
    if finite:
        check_array(name, x, integers)
        return check_finite(name, x)
    kind, dtype = _dtype_kind(x)
    if kind == "c":
        raise TypeError(f"{name} is complex ({dtype}); the mean-field nets are real: pass "
                        f"{name}.real if the imaginary part is meant to be dropped")
    if kind in "iu" and integers:
        return x
    if kind != "f":
        raise TypeError(f"{name} must hold floating-point numbers, got dtype {dtype}"
                        + (f"; convert it first, e.g. {name}.astype(float)" if kind in "iub"
                           else ""))
    return x


def check_count(name: str, n, minimum: int = 1) -> int:
    """TypeError unless ``n`` is an integer, ValueError unless it is at least ``minimum``."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {n!r}")
    if n < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {n}")
    return int(n)
