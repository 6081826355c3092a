"""The whole pipeline on the `smoke` profile, through the same Make/papermill path as `make paper`."""

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from paradox.io import read_jsonl
from paradox.params import load_params
from paradox.streams import STREAMS, all_streams
from paradox.training.runs import keeps_checkpoints, main_runs, training_runs

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "runs" / "smoke"
FIG = RUN / "figures"

pytestmark = pytest.mark.pipeline


# smoke_run (tests/conftest.py): one `make paper PROFILE=smoke` from scratch per test session.


def test_every_stage_ran(smoke_run):
    for stage in (
        "00_toy_world",
        "01_data",
        "02_oracle_refine",
        "03_style_align",
        "04_train",
        "05_eval",
        "06_figures",
        "07_mechanism",
    ):
        assert (RUN / "notebooks" / f"{stage}.ipynb").is_file()
    assert not list(RUN.rglob("*.tmp"))


def test_streams_share_problems(smoke_run):
    ids = {s: [r["id"] for r in read_jsonl(RUN / "streams" / f"{s}.jsonl")] for s in STREAMS}
    assert len({tuple(v) for v in ids.values()}) == 1 and ids["slm_rft"]
    for s in STREAMS:
        for r in read_jsonl(RUN / "streams" / f"{s}.jsonl"):
            assert set(r) == {"id", "prompt", "completion"} and r["completion"]


def test_eval_artifacts(smoke_run):
    acc = pd.read_csv(RUN / "eval" / "accuracy.csv")
    params = load_params("smoke")
    runs = training_runs(params)
    assert len(acc) == (len(params.train.seeds) + len(runs)) * len(params.eval.splits)
    assert acc["avg_at_k"].between(0, 100).all()
    assert set(acc["purpose"]) == {"base", "main", "grid"}
    ppl = pd.read_csv(RUN / "eval" / "perplexity.csv")
    assert set(ppl["stream"]) == set(all_streams(params)) and (ppl["ppl"] > 1).all()
    lc = pd.read_csv(RUN / "eval" / "learning_curves.csv")
    curves = {(r.stream, r.loss) for r in main_runs(params) if keeps_checkpoints(params, r)}
    assert set(zip(lc["stream"], lc["loss"], strict=True)) == curves
    steps = lc.groupby(["stream", "loss"])["step"].nunique()
    assert (steps == params.learning_curve.checkpoints + 2).all()  # base, checkpoints, final
    loss_curves = pd.read_csv(RUN / "models" / "loss_curves.csv")
    assert set(loss_curves["stream"]) == set(all_streams(params))
    assert set(loss_curves["loss_type"]) == {"nll", "dft"}


def test_drift_dial_endpoint_equals_oracle_refined(smoke_run):
    assert read_jsonl(RUN / "streams" / "drift_100.jsonl") == read_jsonl(
        RUN / "streams" / "oracle_refined.jsonl"
    )


def test_table1_and_figures_with_sidecars(smoke_run):
    table = pd.read_csv(FIG / "table1.csv")
    assert list(table["Stream"]) == [
        "Base SLM",
        "SLM-RFT",
        "Ground truth",
        "Oracle-Refined",
        "Oracle-Synthesized",
        "Style-Aligned",
        "Compat-Selected",
    ]
    assert "\\toprule" in (FIG / "table1.tex").read_text()
    params_hash = load_params("smoke").hash()
    for stem in (
        "table1.csv",
        "table1.md",
        "table1.tex",
        "quality_vs_utility.png",
        "quality_vs_utility.pdf",
        "ppl_vs_utility.png",
        "loss_curves.png",
        "loss_curves.pdf",
        "mechanism.csv",
        "mechanism.tex",
        "segmented_ppl.png",
        "segmented_ppl.csv",
        "q1_loss_tokens.csv",
        "token_shift.png",
        "token_shift.csv",
        "learning_curves.png",
        "drift_dial.png",
        "robustness_grid.csv",
        "correlations.csv",
    ):
        assert (FIG / stem).stat().st_size > 0
        meta = json.loads((FIG / f"{stem}.json").read_text())
        assert meta["profile"] == "smoke" and meta["params_hash"] == params_hash
        assert meta["git_commit"] and meta["inputs"] and "Toy world" in meta["caption"]


def test_mechanism_outputs(smoke_run):
    mech = pd.read_csv(FIG / "mechanism.csv")
    assert set(mech["stream"]) == set(STREAMS) | {"compat_selected"}
    assert mech["retention"].dropna().between(1, 5).all()
    seg = pd.read_csv(FIG / "segmented_ppl.csv")
    assert list(seg.columns) == ["stream", "global", "Q1", "Q2", "Q3", "Q4"]
    report = (RUN / "REPORT.md").read_text()
    assert "Does the paradox appear?" in report and "Toy world" in report and "Spearman" not in report[:0]
    beside = (FIG / "REPORT.md").read_text()  # the same report, its links relative to figures/
    assert beside == report.replace("](figures/", "](")


def test_locator_agreement_table(smoke_run):
    """03's table: the same three rows in every world; in the toy one the rule is the checker."""
    table = pd.read_csv(FIG / "locator_agreement.csv")
    assert len(table) == 3 and table.loc[1, "agree_pct"] == 100
    assert "stand-in, not a model" in table.loc[2, "note"]
    n = len(read_jsonl(RUN / "streams" / "slm_rft.jsonl"))
    assert (table["traces"] == n).all()
    meta = json.loads((FIG / "locator_agreement.csv.json").read_text())
    assert "Toy world" in meta["caption"] and meta["params_hash"] == load_params("smoke").hash()
    answers = read_jsonl(RUN / "data" / "locator_answers.jsonl")
    decisions = read_jsonl(RUN / "data" / "style_align_decisions.jsonl")
    assert [a["oracle"] for a in answers] == [d["first_wrong"] for d in decisions]  # the rewrite's locator
    assert [a["oracle"] for a in answers] == [a["exact"] for a in answers]


def test_second_run_does_nothing(smoke_run):
    proc = subprocess.run(["make", "-q", "paper", "PROFILE=smoke"], cwd=ROOT)
    assert proc.returncode == 0, "make paper would redo work with nothing changed"


def test_bad_profile_fails_before_any_stage(tmp_path):
    bad = ROOT / "params" / "pytest-bad.yaml"
    bad.write_text("description: x\nworld: toy\nsampling:\n  temprature: 1.0\n")
    try:
        proc = subprocess.run(
            ["make", "paper", "PROFILE=pytest-bad"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    finally:
        bad.unlink()
    assert proc.returncode != 0
    assert "params/pytest-bad.yaml: unknown key 'sampling.temprature'" in proc.stderr
    assert not (ROOT / "runs" / "pytest-bad" / "notebooks").exists()


def test_a_stage_runs_with_its_kernel_in_notebooks(smoke_run, tmp_path):
    """JupyterLab starts kernels in notebooks/: a stage run from there reads and writes the same
    runs/ and figures/ as `make paper` (papermill --cwd at the root)."""
    table = FIG / "table1.csv"
    before = table.read_bytes()
    table.unlink()
    out = tmp_path / "06.ipynb"
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "papermill",
            str(ROOT / "notebooks" / "06_figures.ipynb"),
            str(out),
            "-k",
            "python3",
            "--cwd",
            str(ROOT / "notebooks"),
            "-p",
            "profile",
            "smoke",
        ],
        cwd=ROOT / "notebooks",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert table.read_bytes() == before
    assert not (ROOT / "notebooks" / "runs").exists() and not (ROOT / "notebooks" / "figures").exists()
    assert not (ROOT / "figures" / "smoke").exists()  # a run writes under runs/; `make publish` copies
