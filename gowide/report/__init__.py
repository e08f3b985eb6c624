"""Markdown of the result files, rendered once: what the subcommands print or write and what
``gowide reproduce`` puts into ``REPORT.md``.

A layer of its own (docs/architecture.md): it reads result dicts (the JSON files) and
imports the ground only; computation never imports it, the command lines do.

- :mod:`gowide.report.meanfield` — ``limits.json``, ``compare.json``, ``depth.json`` and
  ``clouds.json`` of ``gowide meanfield``;
- :mod:`gowide.report.empirical` — ``compare.json`` of ``gowide empirical compare`` (its
  ``compare.md``);
- :mod:`gowide.report.document` — ``REPORT.md``: a section per result, with its figures and
  the machine each result was computed on.

This module holds the cell formats they share.
"""

from __future__ import annotations

import math

HELD = {True: "yes", False: "**no**"}


def held_cell(held, undecided: str = "undecided") -> str:
    """A verdict's cell: yes, **no**, or ``undecided`` (the text for ``None``)."""
    return HELD[held] if held is not None else undecided


def num(x, fmt: str = ".3g") -> str:
    """``x`` in ``fmt``; ``n/a`` for a missing or non-finite number."""
    return "n/a" if x is None or not math.isfinite(x) else format(x, fmt)


def interval(v: dict, fmt: str = ".3g") -> str:
    """'value [low, high]' of a record with ``value``, ``ci_low`` and ``ci_high``."""
    return f"{num(v['value'], fmt)} [{num(v['ci_low'], fmt)}, {num(v['ci_high'], fmt)}]"
