"""runs/<profile>/timings.csv from executed notebooks (paradox.timings)."""

import csv
import json
import time

import pytest

from paradox import timings


def _executed(path, cells, wall=None, papermill=None):
    """A notebook as papermill leaves it: each executed cell has metadata.papermill.duration."""
    nb = {
        "cells": [
            {
                "cell_type": kind,
                "source": src,
                "metadata": {"papermill": {"duration": d}} if d is not None else {},
            }
            for kind, src, d in cells
        ],
        "metadata": {"papermill": {"duration": papermill}} if papermill else {},
    }
    if wall is not None:
        nb["metadata"]["paradox"] = {"wall_s": wall}
    path.write_text(json.dumps(nb))
    return path


def test_rows_split_the_wall_time_into_start_up_and_slow_cells(tmp_path):
    nb = _executed(
        tmp_path / "05_eval.ipynb",
        [
            ("markdown", "# title", 0.01),
            ("code", ["# comment first\n", "from pathlib import Path\n", "import torch"], 7.5),
            ("code", "x = 1", 0.02),  # too short to list
            ("code", "acc = accuracy_table(params)", 100.0),
        ],
        wall=112.0,
    )
    rows = timings.stage_rows(nb)
    got = {r["part"]: r["seconds"] for r in rows}
    assert got["total"] == 112.0
    assert got["start-up"] == pytest.approx(112.0 - 107.52)  # every code cell counts
    assert got["cell 1: from pathlib import Path"] == 7.5
    assert got["cell 3: acc = accuracy_table(params)"] == 100.0
    assert len(rows) == 4 and {r["stage"] for r in rows} == {"05_eval"}


def test_a_notebook_run_outside_make_falls_back_to_papermills_clock(tmp_path):
    nb = _executed(tmp_path / "01_data.ipynb", [("code", "a()", 3.0)], papermill=5.0)
    assert timings.stage_rows(nb)[0] == {"stage": "01_data", "part": "total", "seconds": 5.0}


def test_csv_has_every_finished_stage_and_the_sum_not_the_failed_one(tmp_path):
    nbs = tmp_path / "notebooks"
    (nbs / "partial").mkdir(parents=True)
    _executed(nbs / "00_toy_world.ipynb", [("code", "a()", 1.0)], wall=10.0)
    _executed(nbs / "01_data.ipynb", [("code", "b()", 2.0)], wall=20.5)
    _executed(nbs / "partial" / "02_oracle_refine.ipynb", [("code", "c()", 9.0)], wall=99.0)
    out = timings.write_csv(tmp_path)
    rows = list(csv.DictReader(out.open()))
    totals = {r["stage"]: float(r["seconds"]) for r in rows if r["part"] == "total"}
    assert totals == {"00_toy_world": 10.0, "01_data": 20.5, "all stages": 30.5}
    assert "| 01_data | 0.34 |" in timings.markdown(timings.table(nbs))


def test_record_wall_stamps_the_notebook(tmp_path):
    nb = _executed(tmp_path / "04_train.ipynb", [("code", "train()", 1.0)])
    wall = timings.record_wall(nb, time.time() - 3.0)
    assert 3.0 <= wall < 60
    assert json.loads(nb.read_text())["metadata"]["paradox"]["wall_s"] == round(wall, 3)
    assert timings.stage_rows(nb)[0]["seconds"] == round(wall, 2)


def test_a_damaged_executed_notebook_is_named_and_left_out_not_a_failure_of_every_stage(tmp_path, capsys):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _executed(nbs / "05_eval.ipynb", [("code", "x = 1", 2.0)], wall=3.0)
    good = _executed(nbs / "06_figures.ipynb", [("code", "y = 2", 1.0)], wall=2.0)
    (nbs / "05_eval.ipynb").write_bytes(
        (nbs / "05_eval.ipynb").read_bytes()[:20]
    )  # cut, as a full disk leaves it
    rows = timings.table(nbs)
    assert [r["stage"] for r in rows if r["part"] == "total"] == [good.stem, "all stages"]
    assert "05_eval.ipynb: unreadable" in capsys.readouterr().err
