"""Argument types of the command lines: bounded integers and non-empty paths.

Part of the ground layer (docs/architecture.md): the subcommand modules (``meanfield.cli``,
``empirical.cli``, ``gowide.reproduce``) and the figure scripts take their argument types
from here, so none of them imports ``gowide.cli``, which imports them.
"""

from __future__ import annotations

import argparse

# Ranges of the integer options (docs/reliability.md). Every value outside its range is
# refused at parsing with one line and exit code 2, so no huge number reaches torch or numpy.
INT_LIMIT = 10**9  # counts with no tighter natural bound
SEED_MAX = 2**32 - 1  # seeds are integers in [0, 2**32)
SEEDS_MAX = 1000  # number of seeds of a comparison
THREADS_MAX = 1024
JOBS_MAX = 256


def bounded_int(minimum: int, maximum: int, name: str | None = None):
    """An argparse type: an integer in [minimum, maximum] (both kept on the function)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip()) if len(text) <= 100 else None
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"expected an integer in [{minimum}, {maximum}], got {text[:40]!r}"
                + ("..." if len(text) > 40 else ""))
        return value

    parse.minimum, parse.maximum = minimum, maximum
    parse.__name__ = name or f"int_{minimum}_{maximum}"
    return parse


positive_int = bounded_int(1, INT_LIMIT, "positive_int")
non_negative_int = bounded_int(0, INT_LIMIT, "non_negative_int")
seed_int = bounded_int(0, SEED_MAX, "seed_int")
seeds_count = bounded_int(1, SEEDS_MAX, "seeds_count")
threads_int = bounded_int(1, THREADS_MAX, "threads_int")
threads_or_default = bounded_int(0, THREADS_MAX, "threads_or_default")
jobs_int = bounded_int(1, JOBS_MAX, "jobs_int")


def path_text(text: str) -> str:
    """A path argument: refused when empty or whitespace only (an unset shell variable would
    otherwise make it the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r} (empty)")
    return text


def path_arg(text: str):
    from pathlib import Path

    return Path(path_text(text))
