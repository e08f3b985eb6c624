"""Every notebook runs top to bottom in its quick setting, is committed without outputs, and
agrees with its percent-format source (notebooks/NN_*.py, see notebooks/pair.py)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from empirical_helpers import FAST_RESNET

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
if str(ROOT) not in sys.path:  # notebooks/ is run from the repository, not installed
    sys.path.insert(0, str(ROOT))

from notebooks import pair  # noqa: E402

# Settings injected after a notebook's parameters cell, as papermill would, where the quick
# setting alone takes long (notebook 2 trains and imitates at five thin widths for 150 steps,
# about 20 s on 2 cores; notebook 3 trains the tiny preset twice: about 30 s). Every cell still
# runs, on fewer and smaller nets. The full-size quick runs are `make slow-test`'s.
INJECTED = {
    "02_imitation_vs_backprop": "WIDE = 64\nTHIN = [4, 16]\nSTEPS = 30",
    "03_three_stages": "OVERRIDES = " + repr(FAST_RESNET),
}


def test_every_notebook_agrees_with_its_source():
    done = subprocess.run([sys.executable, "-m", "notebooks.pair", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [p.with_suffix(".py") for p in NOTEBOOKS] == pair.sources()


def test_the_pair_check_finds_an_edited_notebook_and_a_missing_source(tmp_path):
    for p in NOTEBOOKS:
        shutil.copy(p, tmp_path)
        shutil.copy(p.with_suffix(".py"), tmp_path)
    assert pair.check(tmp_path) == []
    first = NOTEBOOKS[0].name
    nb = json.loads((tmp_path / first).read_text())
    nb["cells"][-1]["source"] += "\n"
    (tmp_path / first).write_text(json.dumps(nb, indent=1))
    (tmp_path / "99_orphan.ipynb").write_text("{}")
    assert pair.check(tmp_path) == [f"{first} differs from {Path(first).stem}.py",
                                    "99_orphan.ipynb has no source 99_orphan.py"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_stable_ids_and_a_parameters_cell(path):
    nb = pair.parse(path.with_suffix(".py").read_text())
    assert [c.id for c in nb.cells] == [f"cell-{i:02d}" for i in range(len(nb.cells))]
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert "SEED = 0" in tagged[0].source
    assert pair.render(nb) == path.with_suffix(".py").read_text()  # a lossless round trip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None


def _run(path, tmp_path, monkeypatch, injected: str | None):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    if injected:
        at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
            injected, metadata={"tags": ["injected-parameters"]}))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    _run(path, tmp_path, monkeypatch, INJECTED.get(path.stem))


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem in INJECTED],
                         ids=[p.stem for p in NOTEBOOKS if p.stem in INJECTED])
def test_notebook_runs_top_to_bottom_in_its_own_quick_setting(path, tmp_path, monkeypatch):
    _run(path, tmp_path, monkeypatch, None)
