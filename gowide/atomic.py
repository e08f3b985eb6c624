"""Atomic writes: a file either appears complete or not at all.

Every result file, figure and checkpoint is written to a temporary file in the same
directory and renamed into place, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_into(path: Path, write: Callable[[str], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays, tuples and paths into plain JSON values.

    Non-finite floats become ``None`` so the output is strict JSON.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def write_text(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return _replace_into(Path(path), write)


def write_json(path: str | os.PathLike, data: Any, compact: bool = False) -> Path:
    """JSON, indented for reading; ``compact`` (no whitespace) for large raw records."""
    if compact:
        text = json.dumps(to_jsonable(data), separators=(",", ":"), allow_nan=False) + "\n"
    else:
        text = json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n"
    return write_text(path, text)


def save_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    """Save a matplotlib figure atomically; the format follows the file suffix."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    return _replace_into(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs))
