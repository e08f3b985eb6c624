"""The layers of the package point down (docs/architecture.md).

* ground — ``gowide.errors``, ``atomic``, ``provenance``, ``paths``, ``stats``, ``argtypes``,
  ``environment`` and ``gowide/__init__``: imports nothing else of the project;
* libraries — ``meanfield/`` and ``empirical/`` (their ``cli.py`` aside): import the ground
  and their own package only: never the other library, a command line or ``figures``
  (computation does not import plotting);
* figures — ``figures/``: the ground and ``figures`` only (they read result files);
* report — ``gowide.report`` and its modules: the ground and ``gowide.report`` only (they
  render result dicts as markdown);
* fronts — ``gowide.cli``, ``gowide.reproduce``, ``gowide.jobs``, ``meanfield.cli``,
  ``empirical.cli``: anything, except that no subcommand module imports ``gowide.cli``,
  which loads them.

Every import counts, those inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("gowide", "meanfield", "empirical", "figures")
GROUND = {"gowide", "gowide.errors", "gowide.atomic", "gowide.provenance", "gowide.paths",
          "gowide.stats", "gowide.argtypes", "gowide.environment"}
FRONTS = {"gowide.cli", "gowide.__main__", "gowide.reproduce", "gowide.jobs", "meanfield.cli",
          "empirical.cli"}
REPORT = "gowide.report"


def _in_report(name: str) -> bool:
    return name == REPORT or name.startswith(REPORT + ".")


def modules() -> dict[str, set[str]]:
    """Every module of the project and the project modules it imports."""
    out = {}
    for top in PROJECT:
        for path in (ROOT / top).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            name = name.removesuffix(".__init__")
            found = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                    found |= {f"{node.module}.{a.name}" for a in node.names}
                elif isinstance(node, ast.Import):
                    found |= {a.name for a in node.names}
            out[name] = {m for m in found if m.split(".")[0] in PROJECT}
    return out


def _known(imported: set[str], names: set[str]) -> set[str]:
    """The imported names that are modules (``from x import y`` adds ``x.y`` even when
    ``y`` is a function)."""
    return {m for m in imported if m in names}


def test_the_ground_imports_nothing_else_of_the_project():
    mods = modules()
    assert GROUND <= set(mods), f"ground modules missing: {GROUND - set(mods)}"
    for name in GROUND:
        assert _known(mods[name], set(mods)) <= GROUND, (name, mods[name] - GROUND)


def test_libraries_import_only_the_ground_and_themselves():
    mods = modules()
    for name, imported in mods.items():
        top = name.split(".")[0]
        if top not in ("meanfield", "empirical") or name in FRONTS:
            continue
        bad = {m for m in _known(imported, set(mods))
               if m not in GROUND and m.split(".")[0] != top}
        bad |= {m for m in _known(imported, set(mods)) if m in FRONTS}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_figures_read_results_only():
    mods = modules()
    for name, imported in mods.items():
        if name.split(".")[0] != "figures":
            continue
        bad = {m for m in _known(imported, set(mods))
               if m not in GROUND and m.split(".")[0] != "figures"}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_the_report_reads_results_only():
    mods = modules()
    assert REPORT in mods, "gowide.report is missing"
    for name, imported in mods.items():
        if not _in_report(name):
            continue
        bad = {m for m in _known(imported, set(mods)) if m not in GROUND and not _in_report(m)}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_every_project_module_has_a_layer():
    # a new module of gowide/ must be placed: in the ground, the report or the fronts
    mods = modules()
    for name in mods:
        if name.split(".")[0] == "gowide":
            assert name in GROUND | FRONTS or _in_report(name), f"{name} has no layer"


def test_no_subcommand_module_imports_the_entry_point():
    mods = modules()
    for name in FRONTS - {"gowide.cli", "gowide.__main__"}:
        assert "gowide.cli" not in mods[name], name


def test_the_rules_see_a_violation(tmp_path, monkeypatch):
    # the checker itself: a library module importing a command line is caught
    fake = {"empirical.x": {"gowide.cli"}, "gowide.cli": set()}
    bad = {m for m in _known(fake["empirical.x"], set(fake)) if m in FRONTS}
    assert bad == {"gowide.cli"}
