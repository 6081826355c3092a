"""Notebooks are committed as jupytext pairs without outputs, each with one parameters cell."""

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
PAIRS = sorted(NB_DIR.glob("*.py"))
STAGES = [
    "00_toy_world",
    "01_data",
    "02_oracle_refine",
    "03_style_align",
    "04_train",
    "05_eval",
    "06_figures",
    "07_mechanism",
]


def test_every_stage_has_a_pair():
    assert [p.stem for p in PAIRS] == [*STAGES, "tour"]
    assert sorted(p.stem for p in NB_DIR.glob("*.ipynb")) == [*STAGES, "tour"]


@pytest.mark.parametrize("py", PAIRS, ids=lambda p: p.stem)
def test_pair_in_sync_and_clean(py):
    ipynb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    text = jupytext.read(py)
    src = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert src(ipynb) == src(text), f"{py.name} and its .ipynb differ: run `make sync-notebooks`"
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{py.with_suffix('.ipynb').name} has outputs"
            )


@pytest.mark.parametrize("py", PAIRS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_scalars(py):
    nb = jupytext.read(py)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    tree = ast.parse(cells[0].source)
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), ast.dump(node)
        names += [t.id for t in node.targets]
    # a stage reads and writes runs/<profile>/; the tour reads only published results
    assert names == (["profile"] if py.stem == "tour" else ["profile", "runs_dir"])
