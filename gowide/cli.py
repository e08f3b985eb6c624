"""The ``gowide`` command: one entry point, one subcommand per job.

Each package contributes its subcommands through a ``register(subparsers)`` function; the
handler set with ``set_defaults(func=...)`` receives the parsed arguments. Bad input
(a wrong flag, a value out of range, an unusable path or config) ends with a one-line
message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gowide import __version__
from gowide.errors import UsageError

# Modules that add subcommands, in the order they appear in ``gowide --help``.
COMMAND_MODULES = ("meanfield.cli", "gowide.reproduce", "empirical.cli")


# Characters that end a line (str.splitlines); escaped in error messages that quote input.
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(text: str) -> str:
    """``text`` with every line break escaped, so a message stays on one line."""
    for ch in LINE_BREAKS:
        text = text.replace(ch, ascii(ch)[1:-1])
    return text


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of usage dumps."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


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


def build_parser() -> Parser:
    parser = Parser(
        prog="gowide",
        description="Go wide, then narrow: mean-field simulations and small-scale experiments.",
    )
    parser.add_argument("--version", action="version", version=f"gowide {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except UsageError as exc:
        print(f"gowide: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gowide: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
