"""Checks on user-given paths, turned into one-line usage errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gowide.errors import UsageError


def check_path_text(text: str | os.PathLike, what: str = "output path") -> None:
    """UsageError for an empty or whitespace-only path (an unset shell variable): it would
    otherwise be taken as the current directory."""
    if isinstance(text, str) and not text.strip():
        raise UsageError(f"{what} is empty ({text!r}); give a directory, e.g. ./out")


def check_output_path(path: str | os.PathLike, what: str = "output directory",
                      writable: bool = True) -> Path:
    """Check, touching nothing, that ``path`` is a directory or can be created as one:
    not empty, no dangling symbolic link on the way, its nearest existing ancestor a
    writable directory. Returns the path with its symbolic links resolved."""
    check_path_text(path, what)
    path = Path(path)
    for p in (*reversed(path.parents), path):
        if p.is_symlink() and not p.exists():
            raise UsageError(f"{what} {str(path)!r}: {str(p)!r} is a symbolic link to "
                             f"{os.readlink(p)!r}, which does not exist")
    resolved = path.resolve()
    existing = next(p for p in (resolved, *resolved.parents) if p.exists())
    if not existing.is_dir():
        if existing == resolved:
            raise UsageError(f"{what} {str(path)!r} exists and is not a directory")
        raise UsageError(f"cannot create {what} {str(path)!r}: {str(existing)!r} "
                         "is not a directory")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {str(existing)!r} is not writable")
    return resolved


def output_dir(path: str | os.PathLike) -> Path:
    """Create (if needed) and return a writable output directory, or raise UsageError."""
    check_output_path(path)
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
    except IsADirectoryError:
        raise UsageError(f"{what} file {str(path)!r} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"cannot read {what} file {str(path)!r}: {reason}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} file {str(path)!r} is not valid JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer over Python's digit limit
        raise UsageError(f"{what} file {str(path)!r} cannot be parsed: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         ) from None
    except RecursionError:
        raise UsageError(f"{what} file {str(path)!r} is nested too deeply") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} file {str(path)!r} does not hold a JSON object")
    return data
