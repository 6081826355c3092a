"""REPORT.md (paradox.report.mechanism_report) and the figure functions (paradox.figures)."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from paradox import figures
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
    assert f"params hash\n`{params.hash()}`" in text and "; one seed." not in text and "\none seed.\n" in text
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
    assert "mean ± 95% Student-t interval over 3 seeds." in text
    assert "| 0.500 | 2.000 |" in text and " 1e-05 | SLM-RFT |" in text


def test_real_world_report_names_the_judge_and_reward_model():
    params = load_params("paper-mini")
    text = mechanism_report(params, **pieces(n_unscored=3))
    assert TOY_CAVEAT not in text and "(see `toy-full`)" not in text
    assert f"`{params.oracle.model}`" in text and "3 judge answer(s) without a score" in text
    assert f"`{params.reward.name_or_path}`" in text


def test_figure_functions_draw_one_line_or_bar_per_item():
    u = {
        ("slm_rft", "nll"): (40.0, 2.0, 3),
        ("slm_rft", "dft"): (41.0, 0.0, 1),
        ("oracle_refined", "nll"): (30.0, 1.0, 3),
        ("drift_000", "dft"): (40.0, 1.0, 3),
        ("drift_100", "dft"): (35.0, 1.0, 3),
    }

    def util(s: str, loss: str):
        return u.get((s, loss), (float("nan"), float("nan"), 0))

    fig = figures.utility_scatter(
        {"slm_rft": 0.5, "oracle_refined": 0.9},
        util,
        ["slm_rft", "oracle_refined"],
        35.0,
        k=4,
        xlabel="reward",
    )
    assert [len(ax.containers) for ax in fig.axes] == [2, 1]  # one errorbar per stream trained under the loss
    seg = pd.DataFrame(
        [{"stream": s, "Q1": 2.0, "Q2": 1.5, "Q3": 1.4, "Q4": 1.3} for s in ("slm_rft", "style_aligned")]
    )
    assert len(figures.segmented_ppl(seg).axes[0].lines) == 2
    shift = pd.DataFrame({"token": ["'a'", "'b'"], "change": [3.0, -2.0]})
    bars = figures.token_shift(shift).axes[0].patches
    assert [b.get_hatch() for b in bars] == ["//", ""]  # hatched: more frequent after refinement
    lc = pd.DataFrame(
        [
            {"stream": "slm_rft", "loss": loss, "step": st, "avg_at_k": 1.0}
            for loss in ("dft", "nll")
            for st in (0, 5)
        ]
    )
    assert [
        len(ax.lines) for ax in figures.learning_curves(lc, ["slm_rft", "oracle_refined"], 4, ["test"]).axes
    ] == [1, 1]
    fig = figures.drift_dial(
        ["drift_000", "drift_100"], {"drift_000": 1.5, "drift_100": 2.0}, util, ["dft"], k=4
    )
    assert [t.get_text() for t in fig.axes[0].texts] == ["f=0.00", "f=1.00"]
    curves = pd.DataFrame(
        [
            {"stream": "slm_rft", "loss_type": lt, "step": st, "loss": 1.0 / (st + 1)}
            for lt in ("nll", "dft")
            for st in range(3)
        ]
    )
    assert [len(ax.lines) for ax in figures.loss_curves(curves, ["slm_rft"]).axes] == [1, 1]
    plt.close("all")


@pytest.mark.parametrize("n_seeds", [1, 2])
def test_seed_note(n_seeds):
    text = mechanism_report(load_params("smoke"), **pieces(n_seeds=n_seeds))
    assert ("over 2 seeds" in text) == (n_seeds == 2)
