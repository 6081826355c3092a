"""metrics.problem_accuracy and metrics.bootstrap_utility: the figures' utility intervals (percentile
bootstrap over problems, and seeds), on hand-made graded rows laid out as notebook 05 writes them
(eval/graded/<model>/<split>.jsonl, one row per sample: id, sample, correct)."""

import math

import numpy as np
import pandas as pd
import pytest

from paradox.io import write_jsonl
from paradox.metrics import bootstrap_utility, interval, problem_accuracy, utility


def graded(tmp_path, correct_by_model, k=4):
    """Write graded rows and the matching accuracy.csv frame. `correct_by_model[(stream, loss, seed)]
    [split]` is a list of per-problem counts of correct samples out of k."""
    rows = []
    for (stream, loss, seed), by_split in correct_by_model.items():
        model = f"base-s{seed}" if stream == "base" else f"{stream}-{loss}-s{seed}"
        for split, counts in by_split.items():
            samples = [
                {"id": f"{split}-{i:03d}", "sample": j, "correct": j < int(c), "text": "", "truncated": False}
                for i, c in enumerate(counts)
                for j in range(k)
            ]
            write_jsonl(tmp_path / model / f"{split}.jsonl", samples)
            rows.append(
                {
                    "model": model,
                    "stream": stream,
                    "loss": loss,
                    "seed": seed,
                    "purpose": "base" if stream == "base" else "main",
                    "split": split,
                    "avg_at_k": 100.0 * sum(counts) / (k * len(counts)),
                    "k": k,
                }
            )
    return pd.DataFrame(rows)


def test_one_seed_run_gets_an_interval_inside_0_100_that_contains_the_mean(tmp_path):
    rng = np.random.default_rng(1)
    low = {"test": list(rng.choice([0, 0, 0, 1], 60)), "hard": [0] * 59 + [1]}  # ~8% and ~0.4%
    acc = graded(
        tmp_path, {("slm_rft", "dft", 0): low, ("base", "none", 0): {"test": [4] * 60, "hard": [4] * 60}}
    )
    boot = bootstrap_utility(problem_accuracy(acc, tmp_path), seed=0)
    m, lo, hi = interval(boot, "slm_rft", "dft")
    assert m == pytest.approx(utility(acc).loc[("slm_rft", "dft"), "mean"])  # the same utility as Table 1
    assert 0.0 <= lo < m < hi <= 100.0  # one seed, mixed correctness: a real interval, never below 0
    assert interval(boot, "base", "none") == (100.0, 100.0, 100.0)  # all correct: nothing to vary
    assert boot.loc[("slm_rft", "dft"), "n_problems"] == 120
    again = bootstrap_utility(problem_accuracy(acc, tmp_path), seed=0)
    pd.testing.assert_frame_equal(boot, again)  # deterministic under a seed
    other = interval(bootstrap_utility(problem_accuracy(acc, tmp_path), seed=1), "slm_rft", "dft")
    assert other != (m, lo, hi) and abs(other[1] - lo) < 1.5  # another seed: a close, not identical draw
    assert all(math.isnan(v) for v in interval(boot, "slm_rft", "nll"))  # not run


def test_several_seeds_resample_seeds_too(tmp_path):
    """Two seeds that disagree widely: the interval must cover the seed-to-seed spread, which a
    bootstrap over problems alone (averaging the seeds in every replicate) would hide."""
    acc = graded(
        tmp_path,
        {("style_aligned", "dft", 0): {"test": [0] * 40}, ("style_aligned", "dft", 1): {"test": [4] * 40}},
    )
    boot = bootstrap_utility(problem_accuracy(acc, tmp_path), seed=0)
    m, lo, hi = interval(boot, "style_aligned", "dft")
    assert m == 50.0 and lo == 0.0 and hi == 100.0  # seeds drawn {0,0} and {1,1} among the replicates
    assert boot.loc[("style_aligned", "dft"), "n_seeds"] == 2


def test_graded_rows_must_match_accuracy_csv(tmp_path):
    acc = graded(tmp_path, {("slm_rft", "dft", 0): {"test": [1, 2, 3]}})
    stale = acc.assign(avg_at_k=99.0)
    with pytest.raises(ValueError, match=r"slm_rft-dft-s0/test\.jsonl: Avg@k 50\.0000 .* says 99\.0000"):
        problem_accuracy(stale, tmp_path)
    with pytest.raises(FileNotFoundError, match="graded samples of slm_rft-dft-s0 on test"):
        problem_accuracy(acc, tmp_path / "elsewhere")


def test_models_must_share_the_problems_of_a_split(tmp_path):
    acc = graded(
        tmp_path, {("slm_rft", "dft", 0): {"test": [1, 2, 3]}, ("style_aligned", "dft", 0): {"test": [1, 2]}}
    )
    with pytest.raises(ValueError, match="style_aligned/dft on split test: graded problems differ"):
        bootstrap_utility(problem_accuracy(acc, tmp_path), seed=0)
