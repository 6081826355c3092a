"""notebooks/tour.ipynb runs on the committed results alone (figures/toy/), from notebooks/ as
JupyterLab starts it, and shows its figures, tables and traces inline."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, profile: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(ROOT / "notebooks" / "tour.ipynb"),
            str(tmp_path / "tour.ipynb"),
        ]
        + ["-k", "python3", "--cwd", str(ROOT / "notebooks"), "-p", "profile", profile],
        cwd=ROOT / "notebooks",
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_tour_runs_on_the_committed_toy_results(tmp_path):
    if not (ROOT / "figures" / "toy" / "examples.jsonl").is_file():
        pytest.fail("figures/toy/ has no examples.jsonl: publish a toy run (make paper && make publish)")
    proc = _run(tmp_path, "toy")
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(tmp_path / "tour.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    data = [o.get("data", {}) for o in outputs]
    assert sum("image/png" in d for d in data) >= 5  # the five figures of the story
    html = "".join(d.get("text/html", "") for d in data)
    assert html.count("paradox-trace-view") >= 3  # two side-by-side views and the token strips
    assert "DIFFERS" in html or "agrees" in html  # the claims table rendered
    assert "Toy world" in "".join(d.get("text/markdown", "") for d in data)  # the caveat up front


def test_a_profile_without_published_results_says_what_to_run(tmp_path):
    proc = _run(tmp_path, "no-such-profile")
    assert proc.returncode != 0
    assert "make paper PROFILE=no-such-profile" in proc.stderr + proc.stdout
