"""Keeps each notebook's source (``notebooks/NN_name.py``) and its ``.ipynb`` in agreement.

The ``.py`` file is the one to edit: jupytext's percent format, where ``# %%`` opens a code
cell, ``# %% [markdown]`` a markdown cell whose lines are commented with ``# ``, and
``tags=["parameters"]`` after the marker tags a cell (the quick-mode switch, which papermill
can set). ruff lints these files like any other module. The ``.ipynb`` beside it is generated:
no outputs, and cell ids derived from the cell's position (``cell-00``, ``cell-01``, …) so that
regenerating an unchanged source rewrites the same bytes.

    python -m notebooks.pair            # write every .ipynb from its .py
    python -m notebooks.pair --check    # exit 1 when a pair disagrees (run by the tests)

jupytext, when installed, opens the same ``.py`` files as notebooks; this script is what the
repository itself uses, so that no extra package is needed and the ids stay stable.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
HEADER = """# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---
"""
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?$")


def sources(folder: Path = HERE) -> list[Path]:
    """The notebook sources: ``NN_*.py`` in ``folder`` (by default beside this file)."""
    return sorted(folder.glob("[0-9][0-9]_*.py"))


def cell_id(index: int) -> str:
    return f"cell-{index:02d}"


def parse(text: str) -> nbformat.NotebookNode:
    """Percent-format text → notebook (no outputs, stable ids)."""
    if not text.startswith(HEADER):
        raise ValueError("a notebook source must start with the jupytext header of pair.HEADER")
    lines = text[len(HEADER):].split("\n")
    cells, current = [], None
    for line in lines:
        m = MARKER.match(line)
        if m:
            current = {"markdown": bool(m["markdown"]),
                       "tags": json.loads(m["tags"]) if m["tags"] else [], "lines": []}
            cells.append(current)
        elif current is None:
            if line.strip():
                raise ValueError(f"text before the first cell marker: {line!r}")
        else:
            current["lines"].append(line)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for index, cell in enumerate(cells):
        body = cell["lines"]
        while body and not body[-1].strip():
            body.pop()
        metadata = {"tags": cell["tags"]} if cell["tags"] else {}
        if cell["markdown"]:
            for line in body:
                if line != "#" and not line.startswith("# "):
                    raise ValueError(f"markdown line not commented with '# ': {line!r}")
            source = "\n".join(line[2:] for line in body)
            nb.cells.append(nbformat.v4.new_markdown_cell(source, id=cell_id(index),
                                                          metadata=metadata))
        else:
            nb.cells.append(nbformat.v4.new_code_cell("\n".join(body), id=cell_id(index),
                                                      metadata=metadata))
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """Notebook → percent-format text (the inverse of :func:`parse` on its sources)."""
    parts = [HEADER]
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        marker = "# %%" + (" [markdown]" if cell.cell_type == "markdown" else "")
        if tags:
            marker += " tags=" + json.dumps(tags)
        if cell.cell_type == "markdown":
            body = "\n".join("# " + line if line else "#" for line in cell.source.split("\n"))
        else:
            body = cell.source
        parts.append(f"\n{marker}\n{body}\n")
    return "".join(parts)


def notebook_text(source: Path) -> str:
    return nbformat.writes(parse(source.read_text())) + "\n"


def check(folder: Path = HERE) -> list[str]:
    """The disagreements: a source whose .ipynb is missing or differs, an .ipynb with no
    source."""
    problems = []
    for source in sources(folder):
        target = source.with_suffix(".ipynb")
        if not target.exists():
            problems.append(f"{target.name} is missing")
        elif target.read_text() != notebook_text(source):
            problems.append(f"{target.name} differs from {source.name}")
    for target in sorted(folder.glob("*.ipynb")):
        if not target.with_suffix(".py").exists():
            problems.append(f"{target.name} has no source {target.with_suffix('.py').name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="report disagreements and exit 1, writing nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run `python -m notebooks.pair` to regenerate the notebooks", file=sys.stderr)
        return 1 if problems else 0
    for source in sources():
        source.with_suffix(".ipynb").write_text(notebook_text(source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
