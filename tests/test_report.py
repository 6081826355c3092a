"""REPORT.md (paradox.report.mechanism_report); the figures are in test_figures.py."""

import pandas as pd
import pytest

from paradox.params import load_params
from paradox.report import TOY_CAVEAT, markdown_table, mechanism_report

TABLE1_MD = "| Stream | Reward |\n|:--|--:|\n| SLM-RFT | 0.50 |\n\nTable 1. The caption.\n"


def pieces(**over):
    base = dict(
        k=4,
        n_seeds=1,
        verdicts={"nll": "no: none", "dft": "yes for X"},
        table1_md=TABLE1_MD,
        mechanism=pd.DataFrame([{"Stream": "SLM-RFT", "Global PPL": "1.5"}]),
        correlations=pd.DataFrame([{"loss": "nll", "spearman_reward_utility": -0.5}]),
        segmented=pd.DataFrame([{"stream": "SLM-RFT", "Q1": 2.0}]),
        drift=None,
        grid=pd.DataFrame(),
        n_unscored=0,
        figure_names=["a.png", "b.png"],
    )
    return base | over


def test_markdown_table_keeps_learning_rates_significant():
    md = markdown_table(pd.DataFrame([{"learning_rate": 2.5e-4, "x": 1.23456}]))
    assert "0.00025" in md and "1.235" in md and "0.000 " not in md


def test_toy_report_has_every_section_and_the_caveat():
    params = load_params("smoke")
    text = mechanism_report(params, **pieces())
    assert text.startswith("# Report: profile `smoke`\n\n> " + TOY_CAVEAT)
    assert (
        f"params hash\n`{params.hash()}`" in text
        and "\none seed; in Table 1's brackets a 95% bootstrap interval" in text
    )
    assert "- Under SFT (nll): no: none.\n- Under DFT: yes for X." in text
    assert "| SLM-RFT | 0.50 |" in text and "The caption" not in text  # Table 1 without its caption
    assert "-0.500" in text and "2.000" in text
    assert "## Drift dial\nnot run in this profile\n" in text
    assert "## Robustness grid\nnot run in this profile (see `toy-full`)\n" in text
    assert "- [a.png](figures/a.png)\n- [b.png](figures/b.png)" in text  # from runs/<profile>/
    beside = mechanism_report(params, **pieces(), figures_link="")
    assert "- [a.png](a.png)\n- [b.png](b.png)" in beside  # the copy in the figures directory
    assert "The toy reward rubric rewards polish" in text


def test_report_with_seeds_drift_and_grid():
    params = load_params("smoke")
    text = mechanism_report(
        params,
        **pieces(
            n_seeds=3,
            drift=pd.DataFrame([{"f": 0.5, "ppl": 2.0}]),
            grid=pd.DataFrame([{"learning_rate": "1e-05", "best": "SLM-RFT"}]),
        ),
    )
    assert (
        "bootstrap interval over problems and seeds in brackets; other tables: mean ± 95% Student-t interval over 3 seeds."
        in text
    )
    assert "| 0.500 | 2.000 |" in text and " 1e-05 | SLM-RFT |" in text


def test_real_world_report_names_the_judge_and_reward_model():
    params = load_params("paper-mini")
    text = mechanism_report(params, **pieces(n_unscored=3))
    assert TOY_CAVEAT not in text and "(see `toy-full`)" not in text
    assert f"`{params.oracle.model}`" in text and "3 judge answer(s) without a score" in text
    assert f"`{params.reward.name_or_path}`" in text


@pytest.mark.parametrize("n_seeds", [1, 2])
def test_seed_note(n_seeds):
    text = mechanism_report(load_params("smoke"), **pieces(n_seeds=n_seeds))
    assert ("over 2 seeds" in text) == (n_seeds == 2)
