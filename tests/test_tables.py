"""paradox.tables: Table 1, accuracy per split and the reward cross-check, on hand-made numbers."""

import math

import pandas as pd
import pytest

from paradox import tables

U = {
    ("base", "none"): (20.0, 1.0, 3),
    ("slm_rft", "nll"): (40.0, 2.0, 3),
    ("slm_rft", "dft"): (42.0, 2.5, 3),
    ("oracle_refined", "nll"): (30.0, 1.0, 3),
    ("oracle_refined", "dft"): (31.0, 1.0, 3),
}


def u(stream: str, loss: str) -> tuple[float, float, int]:
    return U.get((stream, loss), (float("nan"), float("nan"), 0))


def ui(stream: str, loss: str) -> tuple[float, float, float]:
    """A bootstrap interval per (stream, loss): the mean, then mean - 2 and mean + 1 (asymmetric)."""
    m = U.get((stream, loss), (float("nan"),))[0]
    return m, m - 2, m + 1


def test_table1_has_the_base_slm_first_and_formats_intervals():
    full, shown = tables.table1(
        u,
        ["slm_rft", "oracle_refined"],
        {"slm_rft": 0.5, "oracle_refined": 0.91},
        {"slm_rft": 1.234, "oracle_refined": 5.678},
        k=4,
        ui=ui,
    )
    assert full["Stream"].tolist() == ["Base SLM", "SLM-RFT", "Oracle-Refined"]
    assert math.isnan(full.loc[0, "Reward"]) and full.loc[0, "SFT Avg@4"] == full.loc[0, "DFT Avg@4"] == 20.0
    assert full.loc[1, "DFT lo"] == full.loc[1, "DFT Avg@4"] - 2 and full.loc[2, "seeds"] == 3
    assert shown.to_dict("records")[0] == {
        "Stream": "Base SLM",
        "Reward": "n/a",
        "PPL": "n/a",
        "SFT Avg@4": "20.00 [18.00, 21.00]",
        "DFT Avg@4": "20.00 [18.00, 21.00]",
    }
    assert shown.loc[2, "Reward"] == "0.91" and shown.loc[2, "PPL"] == "5.68"


def test_accuracy_by_split_averages_seeds_of_main_runs_only():
    acc = pd.DataFrame(
        [
            {"purpose": p, "stream": s, "loss": loss, "split": sp, "avg_at_k": v}
            for p, s, loss, sp, v in [
                ("main", "slm_rft", "dft", "test", 40.0),
                ("main", "slm_rft", "dft", "test", 50.0),
                ("main", "slm_rft", "dft", "hard", 10.0),
                ("grid", "slm_rft", "dft", "test", 0.0),
                ("base", "base", "none", "test", 5.0),
            ]
        ]
    )
    t = tables.accuracy_by_split(acc).set_index(["stream", "loss"])
    assert t.loc[("slm_rft", "dft"), "test"] == 45.0 and t.loc[("slm_rft", "dft"), "hard"] == 10.0
    assert t.loc[("base", "none"), "test"] == 5.0 and math.isnan(t.loc[("base", "none"), "hard"])


def test_cross_check_adds_utility_and_spearman_per_reward_model():
    streams = ["slm_rft", "oracle_refined", "style_aligned"]
    U[("style_aligned", "dft")] = (35.0, 1.0, 3)
    try:
        xc = pd.DataFrame(
            {
                "reward:main": [0.2, 0.9, 0.5],
                "rank:main": [3, 1, 2],
                "reward:other": [0.1, 0.2, 0.3],
                "rank:other": [3, 2, 1],
            },
            index=streams,
        )
        full, shown, rho = tables.cross_check(xc, u, streams, k=2)
    finally:
        del U[("style_aligned", "dft")]
    assert full["DFT Avg@2"].tolist() == [42.0, 31.0, 35.0] and "DFT Avg@2" not in xc.columns
    assert shown.loc[1].tolist() == ["Oracle-Refined", "0.90 (1)", "0.20 (2)", "31.00 ± 1.00"]
    rho = rho.set_index("model")
    assert rho.loc["main", "spearman_dft"] == pytest.approx(-1.0)  # reward order is utility's reversed
    assert rho.loc["other", "spearman_dft"] == pytest.approx(-0.5)  # ranks (1,2,3) vs (3,1,2): 1 - 6*6/24
    assert math.isnan(rho.loc["main", "spearman_sft"])  # style_aligned not trained under SFT
