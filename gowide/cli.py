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
from gowide.argtypes import (  # noqa: F401 (the argument types, also importable from here)
    INT_LIMIT,
    JOBS_MAX,
    SEED_MAX,
    SEEDS_MAX,
    THREADS_MAX,
    bounded_int,
    jobs_int,
    non_negative_int,
    path_arg,
    path_text,
    positive_int,
    seed_int,
    seeds_count,
    threads_int,
    threads_or_default,
)
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
        except Exception as exc:
            if interrupts.seen:  # e.g. a module left half imported by the interruption
                return _fail("gowide: interrupted", 130)
            if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda's, without importing it
                return _fail("gowide: error: out of GPU memory (a smaller batch_size or "
                             "model may fit)", 1)
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
