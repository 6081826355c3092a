"""paradox.paper: the paper's numbers and the direction of each claim, in a run's Table 1."""

import pandas as pd
import pytest

from paradox import paper


def _table1(rows: dict[str, tuple[float, float, float, float]], k: int = 4) -> pd.DataFrame:
    """A Table 1 as notebook 06 writes it (table1.csv), with made-up numbers."""
    return pd.DataFrame(
        [
            {"Stream": s, "Reward": r, "PPL": p, f"SFT Avg@{k}": sft, "SFT ci95": 0.0, f"DFT Avg@{k}": dft}
            | {"DFT ci95": 0.0, "seeds": 1}
            for s, (r, p, sft, dft) in rows.items()
        ]
    )


def test_the_paper_agrees_with_itself():
    t = paper.paper_table().rename(columns={"SFT": "SFT Avg@16", "DFT": "DFT Avg@16"})
    c = paper.claims(t)
    assert (c["paper"] == "yes").all() and (c["verdict"] == "agrees").all()


def test_a_run_that_reverses_the_paradox_differs_where_it_reverses():
    run = _table1(
        {
            "Base SLM": (float("nan"), float("nan"), 10.0, 10.0),
            "SLM-RFT": (1.0, 1.5, 20.0, 20.0),
            "Ground truth": (1.5, 1.6, 10.0, 12.0),
            "Oracle-Refined": (2.0, 1.2, 30.0, 25.0),  # more useful than RFT: no paradox here
            "Oracle-Synthesized": (2.0, 9.0, 5.0, 5.0),  # ties Refined on reward
            "Style-Aligned": (1.2, 1.4, 21.0, 22.0),
            "Compat-Selected": (9.0, 99.0, 1.0, 1.0),  # not a paper stream: never "highest"
        }
    )
    c = paper.claims(run).set_index("claim")
    assert c.loc["DFT: SLM-RFT beats Oracle-Refined (the paradox)", "verdict"] == "DIFFERS"
    assert c.loc["DFT: SLM-RFT beats Oracle-Refined (the paradox)", "run margin"] == pytest.approx(-5.0)
    assert c.loc["Oracle-Synthesized gets the highest reward", "this run"] == "tied"
    assert c.loc["Oracle-Synthesized has the highest perplexity", "verdict"] == "agrees"
    assert c.loc["DFT: Style-Aligned beats SLM-RFT (the fix)", "verdict"] == "agrees"


def test_a_loss_not_trained_is_not_measured():
    nan = float("nan")
    run = _table1({"SLM-RFT": (1.0, 1.5, nan, 20.0), "Oracle-Refined": (2.0, 1.2, nan, 15.0)})
    c = paper.claims(run).set_index("claim")
    assert c.loc["SFT: SLM-RFT beats Oracle-Refined", "this run"] == "not measured"
    assert c.loc["SFT: SLM-RFT beats Oracle-Refined", "verdict"] == "n/a"
    assert c.loc["DFT: SLM-RFT beats Oracle-Refined (the paradox)", "verdict"] == "agrees"


def test_side_by_side_and_a_table_without_its_columns():
    run = _table1({"SLM-RFT": (1.0, 1.5, 20.0, 21.0), "Compat-Selected": (2.0, 1.2, 15.0, 16.0)}, k=8)
    sbs = paper.side_by_side(run).set_index("Stream")
    assert sbs.loc["SLM-RFT", "DFT (paper)"] == 37.06 and sbs.loc["SLM-RFT", "DFT (run)"] == 21.0
    assert pd.isna(sbs.loc["Compat-Selected", "DFT (paper)"])
    with pytest.raises(ValueError, match="one 'DFT Avg@k' column"):
        paper.run_table(run.drop(columns=["DFT Avg@8"]))
