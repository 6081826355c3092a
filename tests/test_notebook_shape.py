"""Notebooks read like a paper's methods section: short code cells that call the library, no
functions defined in a notebook (they belong in `paradox`, with tests)."""

import ast
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))
MAX_CELL_LINES = 30


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_short_cells_without_definitions(py):
    cells = jupytext.read(py).cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        n = len(cell.source.splitlines())
        assert n <= MAX_CELL_LINES, f"{py.name}: code cell {i} has {n} lines (at most {MAX_CELL_LINES})"
        defs = [
            node.name
            for node in ast.walk(ast.parse(cell.source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        assert not defs, f"{py.name}: code cell {i} defines {defs}; move them into the library"
