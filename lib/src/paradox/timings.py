"""Where a run's time goes: `runs/<profile>/timings.csv`, read from the executed notebooks.

Papermill stamps every executed cell with its duration (`metadata.papermill.duration`). The
Makefile adds what papermill cannot see: the stage's wall time as Make ran it, papermill's own
start-up and the kernel's start included (`--notebook NB --since T0` stores it in the notebook's
`metadata.paradox.wall_s`). The CSV is rebuilt from every finished notebook after each stage, so
it always describes the notebooks that are there; nobody writes it by hand.

Rows: one `total` per stage (Make's wall time), one `start-up` (total minus the cells: papermill,
kernel start), one per code cell that took at least `MIN_CELL_S`, labelled with its first line of
code, and an `all stages` total. Light (the standard library and `paradox.io`): Make runs it after
every stage.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from paradox.io import write_text
from paradox.paths import display

MIN_CELL_S = 0.5  # shorter cells are folded into nothing: the table is for where time goes
COLUMNS = ["stage", "part", "seconds"]


def _label(index: int, source: str | list[str]) -> str:
    text = "".join(source) if isinstance(source, list) else source
    code = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    first = code[0] if code else "(comments only)"
    return f"cell {index}: {first[:70]}"


def stage_rows(notebook: Path) -> list[dict[str, Any]]:
    """The rows of one executed notebook (see the module docstring)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    stage = notebook.stem
    cells = []
    for i, cell in enumerate(nb.get("cells", [])):
        duration = (cell.get("metadata", {}).get("papermill") or {}).get("duration")
        if cell.get("cell_type") == "code" and isinstance(duration, (int, float)):
            cells.append((i, cell.get("source", ""), float(duration)))
    in_cells = sum(d for _, _, d in cells)
    wall = (nb.get("metadata", {}).get("paradox") or {}).get("wall_s")
    if wall is None:  # run outside Make: papermill's own clock (kernel start included, its start-up not)
        wall = (nb.get("metadata", {}).get("papermill") or {}).get("duration") or in_cells
    rows = [
        {"stage": stage, "part": "total", "seconds": round(float(wall), 2)},
        {"stage": stage, "part": "start-up", "seconds": round(max(float(wall) - in_cells, 0.0), 2)},
    ]
    rows += [
        {"stage": stage, "part": _label(i, src), "seconds": round(d, 2)}
        for i, src, d in cells
        if d >= MIN_CELL_S
    ]
    return rows


def table(notebooks_dir: Path) -> list[dict[str, Any]]:
    """Rows of every finished stage under `notebooks_dir` (failed ones stay in partial/, not here)."""
    rows: list[dict[str, Any]] = []
    for nb in sorted(Path(notebooks_dir).glob("*.ipynb")):
        try:
            rows += stage_rows(nb)
        except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError) as err:
            # a damaged record of a finished stage must not fail every later stage's recipe
            print(
                f"warning: {display(nb)}: unreadable ({type(err).__name__}: {err}); left out of timings.csv "
                "(delete it and make paper runs that stage again)",
                file=sys.stderr,
            )
    total = sum(r["seconds"] for r in rows if r["part"] == "total")
    rows.append({"stage": "all stages", "part": "total", "seconds": round(total, 2)})
    return rows


def write_csv(run_dir: Path) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(table(Path(run_dir) / "notebooks"))
    return write_text(Path(run_dir) / "timings.csv", buf.getvalue())


def record_wall(notebook: Path, since: float) -> float:
    """Store the wall time from `since` (epoch seconds, taken by Make before papermill) to now."""
    wall = time.time() - since
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    nb.setdefault("metadata", {}).setdefault("paradox", {})["wall_s"] = round(wall, 3)
    write_text(notebook, json.dumps(nb, indent=1) + "\n")  # ASCII escapes: safe in any locale
    return wall


def markdown(rows: list[dict[str, Any]]) -> str:
    """Stage totals as a Markdown table (minutes), for README and the closing notes."""
    totals = [r for r in rows if r["part"] == "total"]
    lines = ["| stage | minutes |", "|---|---|"]
    lines += [f"| {r['stage']} | {r['seconds'] / 60:.2f} |" for r in totals]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paradox.timings", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="runs/<profile>")
    ap.add_argument("--notebook", type=Path, help="an executed notebook to stamp with its wall time")
    ap.add_argument("--since", type=float, help="epoch seconds when Make started the stage")
    ap.add_argument("--markdown", action="store_true", help="print stage totals as a Markdown table")
    a = ap.parse_args(argv)
    if a.notebook is not None and a.since is not None:
        record_wall(a.notebook, a.since)
    if a.markdown:
        print(markdown(table(a.run_dir / "notebooks")))
    else:
        write_csv(a.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
