"""The ``gowide`` command: one entry point, one subcommand per job.

Each package contributes its subcommands through a ``register(subparsers)`` function; the
handler set with ``set_defaults(func=...)`` receives the parsed arguments. Bad input
(a wrong flag, a value out of range, an unusable path or config) ends with a one-line
message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

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


class _Interrupts:
    """SIGINT handling of :func:`main`: held back while the parser is built (the imports of
    the commands; an import cut in the middle can leave a module half initialised and fail
    later in a way that no longer looks like Ctrl-C), then raised as KeyboardInterrupt; and
    remembered, so that whatever an interrupted import or library raises afterwards is still
    reported as the interruption it is."""

    def __init__(self):
        self.seen = False
        self.hold = True
        self.previous = None

    def __call__(self, signum, frame):
        self.seen = True
        if not self.hold:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self)
        return self

    def release(self):
        self.hold = False
        if self.seen:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure ends in one line on stderr: bad input exit 2,
    Ctrl-C at any moment (parser construction and the imports of the commands included) 130,
    an operating-system error (a full disk, a missing permission) or running out of memory
    1. Anything else is a bug and keeps its traceback."""
    with _Interrupts() as interrupts:
        try:
            parser = build_parser()
            interrupts.release()
            args = parser.parse_args(argv)
            result = args.func(args)
        except UsageError as exc:
            return _fail(f"gowide: error: {exc}", 2)
        except KeyboardInterrupt:
            return _fail("gowide: interrupted", 130)
        except OSError as exc:
            if interrupts.seen:
                return _fail("gowide: interrupted", 130)
            where = f": {exc.filename!s}" if exc.filename else ""
            what = exc.strerror or str(exc) or type(exc).__name__
            return _fail(f"gowide: error: {what}{where}", 1)
        except MemoryError:
            return _fail("gowide: error: out of memory", 1)
        except Exception:
            if interrupts.seen:  # e.g. a module left half imported by the interruption
                return _fail("gowide: interrupted", 130)
            raise
    return int(result or 0)


def _fail(message: str, code: int) -> int:
    try:
        print(one_line(message)[:2000], file=sys.stderr)
    except (OSError, KeyboardInterrupt):  # stderr closed, or a second Ctrl-C
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
