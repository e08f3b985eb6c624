"""Checks on user-given paths, turned into one-line usage errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gowide.errors import UsageError


def output_dir(path: str | os.PathLike) -> Path:
    """Create (if needed) and return a writable output directory, or raise UsageError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"output path {str(path)!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {str(path)!r}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {str(path)!r} is not writable")
    return path


def read_json(path: str | os.PathLike, what: str = "results") -> dict:
    """Load a JSON object, or raise UsageError saying what is wrong with the file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise UsageError(f"{what} file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} file {str(path)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} file {str(path)!r} does not hold a JSON object")
    return data
