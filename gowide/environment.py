"""The distributed environment variables (set by ``torchrun``), checked before any work."""

from __future__ import annotations

import os

from gowide.errors import UsageError

WORLD_MAX = 65536


def _integer(name: str, low: int, high: int) -> int | None:
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        value = int(text.strip()) if len(text) <= 20 else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise UsageError(f"environment variable {name}={text[:40]!r} must be an integer in "
                         f"[{low}, {high}] (torchrun sets it; unset it to run one process)")
    return value


def distributed() -> tuple[int, int, int]:
    """(world size, rank, local rank) from ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
    UsageError for a malformed value, a rank outside the world, or a world of several
    processes without the rendezvous variables that torchrun sets (a stale ``WORLD_SIZE``)."""
    world = _integer("WORLD_SIZE", 1, WORLD_MAX) or 1
    rank = _integer("RANK", 0, world - 1) or 0
    local = _integer("LOCAL_RANK", 0, world - 1) or 0
    if world > 1:
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise UsageError(f"WORLD_SIZE={world} is set but {' and '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not: launch with "
                             "torchrun, or unset WORLD_SIZE to run one process")
    return world, rank, local
