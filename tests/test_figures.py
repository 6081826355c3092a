"""The figure functions (paradox.figures) and report.save_figure: what each draws, on hand-made
numbers (the layout of the CSVs notebooks 05-07 write)."""

import json
import re

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from paradox import figures
from paradox.params import load_params
from paradox.report import TOY_CAVEAT, save_figure

U = {  # (stream, loss) -> (mean, lo, hi), as metrics.interval returns
    ("slm_rft", "nll"): (40.0, 36.0, 44.0),
    ("slm_rft", "dft"): (41.0, 37.5, 44.0),
    ("oracle_refined", "nll"): (30.0, 26.0, 33.0),
    ("oracle_synthesized", "nll"): (2.0, 0.0, 5.0),
    ("drift_000", "dft"): (40.0, 36.0, 44.0),
    ("drift_050", "dft"): (30.0, 26.0, 34.0),
    ("drift_100", "dft"): (35.0, 31.0, 39.0),
}


def util(s: str, loss: str) -> tuple[float, float, float]:
    return U.get((s, loss), (float("nan"),) * 3)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def errorbar_ys(ax):
    """(lowest, highest) y reached by the error bars drawn on `ax`."""
    ys = [y for c in ax.containers for seg in c.lines[2][0].get_segments() for _, y in seg]
    return min(ys), max(ys)


def test_utility_scatter_draws_one_asymmetric_errorbar_per_trained_stream():
    streams = ["slm_rft", "oracle_refined", "oracle_synthesized"]
    fig = figures.utility_scatter(
        {"slm_rft": 0.5, "oracle_refined": 0.9, "oracle_synthesized": 0.95},
        util,
        streams,
        (35.0, 32.0, 38.0),
        k=4,
        xlabel="reward",
    )
    sft, dft = fig.axes
    assert [len(ax.containers) for ax in (sft, dft)] == [
        3,
        1,
    ]  # one errorbar per stream trained under the loss
    assert errorbar_ys(sft) == (0.0, 44.0)  # Oracle-Synthesized's bar stops at 0, not at 2 - 3
    assert errorbar_ys(dft) == (37.5, 44.0)  # asymmetric: 41 - 3.5 .. 41 + 3
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Base SLM", "SLM-RFT", "Oracle-Refined", "Oracle-Synthesized"]


def test_an_off_scale_perplexity_goes_onto_a_broken_off_axis():
    ppl = {"slm_rft": 1.24, "oracle_refined": 1.15, "oracle_synthesized": 554.0}
    fig = figures.utility_scatter(
        ppl, util, list(ppl), (35.0, 32.0, 38.0), k=4, xlabel="ppl", break_off_scale=True
    )
    main, off = fig.axes[:2]  # the SFT panel: main part, broken-off part
    assert main.get_xscale() == "linear" and main.get_xlim()[1] < 2  # the main streams keep their spread
    assert [c.lines[0].get_xdata()[0] for c in off.containers] == [554.0]
    assert [t.get_text() for t in off.get_xticklabels()] == ["554"]  # the outlier's value on its tick
    assert not main.spines["right"].get_visible() and not off.spines["left"].get_visible()


def test_split_off_scale_only_splits_off_a_minority_an_order_of_magnitude_above():
    r = {"a": (1.1, 1.5), "b": (1.2, 1.3), "c": (23.0, 9500.0)}
    assert figures.split_off_scale(r) == (["a", "b"], ["c"])
    assert figures.split_off_scale({"a": (1.0, 1.0), "b": (9.0, 9.0)}) == (["a", "b"], [])  # < 10x
    # the bulk above, one stream far below: nothing is off the scale of the others' axis
    assert figures.split_off_scale({"a": (1.0, 1.0), "b": (50.0, 50.0), "c": (60.0, 60.0)})[1] == []


def test_segmented_ppl_gives_an_outlier_stream_its_own_panel():
    seg = pd.DataFrame(  # the toy run's shape: Oracle-Synthesized 23-9565, the rest 1.1-1.5
        [
            {"stream": "slm_rft", "Q1": 1.5, "Q2": 1.17, "Q3": 1.21, "Q4": 1.13},
            {"stream": "style_aligned", "Q1": 1.5, "Q2": 1.16, "Q3": 1.2, "Q4": 1.12},
            {"stream": "oracle_synthesized", "Q1": 2820.0, "Q2": 9565.0, "Q3": 157.0, "Q4": 23.4},
        ]
    )
    fig = figures.segmented_ppl(seg)
    top, bottom = fig.axes
    assert [len(a.lines) for a in (top, bottom)] == [1 + 1, 2 + 1]  # streams + the break mark
    assert bottom.get_yscale() == "linear" and bottom.get_ylim()[1] < 2
    assert top.get_yscale() == "log" and top.get_ylim()[1] > 9565
    no_outlier = figures.segmented_ppl(seg[seg["stream"] != "oracle_synthesized"])
    assert len(no_outlier.axes) == 1 and len(no_outlier.axes[0].lines) == 2


def test_drift_dial_puts_the_fraction_on_x_so_the_line_never_loops():
    drift = ["drift_050", "drift_000", "drift_100"]  # any order in; perplexity not monotone in f
    ppl = {"drift_000": 1.27, "drift_050": 1.47, "drift_100": 1.15}
    fig = figures.drift_dial(drift, ppl, util, ["dft"], k=4)
    utility_ax, ppl_ax = fig.axes
    [line] = [c.lines[0] for c in utility_ax.containers]
    assert list(line.get_xdata()) == [0.0, 0.5, 1.0] and list(line.get_ydata()) == [40.0, 30.0, 35.0]
    assert list(ppl_ax.lines[0].get_xdata()) == [0.0, 0.5, 1.0]
    assert list(ppl_ax.lines[0].get_ydata()) == [1.27, 1.47, 1.15]
    assert errorbar_ys(utility_ax) == (26.0, 44.0)


def test_loss_curves_label_each_loss_and_print_plain_ticks_without_collisions():
    curves = pd.DataFrame(
        [
            {"stream": s, "loss_type": lt, "step": st, "loss": scale / (st + 1)}
            for s, scale in (("slm_rft", 0.3), ("oracle_synthesized", 6.0))
            for lt in ("nll", "dft")
            for st in range(0, 36, 5)
        ]
    )
    fig = figures.loss_curves(curves, ["slm_rft", "oracle_synthesized"])
    sft, dft = fig.axes
    assert [len(ax.lines) for ax in (sft, dft)] == [2, 2]
    assert "mean NLL per token" in sft.get_ylabel() and "probability" not in sft.get_ylabel()
    assert "weighted NLL per token" in dft.get_ylabel() and "p·NLL" in dft.get_ylabel()
    fig.canvas.draw()
    ticks = [t.get_text() for ax in (sft, dft) for t in ax.get_yticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"[0-9.]+", t) for t in ticks), ticks  # no 5.6x10^0 mathtext
    renderer = fig.canvas.get_renderer()
    dft_label = dft.yaxis.label.get_window_extent(renderer)
    assert not dft_label.overlaps(sft.get_tightbbox(renderer))  # the DFT y label clears the SFT panel
    assert not fig.legends[0].get_window_extent(renderer).overlaps(dft.get_window_extent(renderer))


def test_token_shift_shows_tokens_as_text_and_explains_the_hatch():
    assert figures.display_token(repr("\n")) == "↵"
    assert figures.display_token(repr(" \\(")) == "␣\\("  # the LaTeX delimiter as written
    assert figures.display_token(repr("$x")) == "\\$x"  # a literal dollar, not mathtext
    assert figures.display_token("plain") == "plain"  # an unquoted token stays as it is
    shift = pd.DataFrame({"token": [repr(" \\("), repr("\n"), repr(" has")], "change": [3.0, -2.0, -1.0]})
    fig = figures.token_shift(shift)
    ax = fig.axes[0]
    assert [b.get_hatch() or "" for b in ax.patches[:3]] == ["//", "", ""]  # hatched: more frequent
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["␣\\(", "↵", "␣has"] and not any("'" in t for t in labels)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["more frequent after refinement", "less frequent after refinement"]
    assert ax.get_legend().get_patches()[0].get_hatch() == "//"


def test_save_figure_prints_caption_and_toy_caveat_under_the_png_only(tmp_path):
    params = load_params("smoke")  # a toy-world profile
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    bare = tmp_path / "bare.png"
    fig.savefig(bare, dpi=150, bbox_inches="tight")
    caption = "Utility of every stream; error bars cost $0 and never reach below 0 %."
    png, pdf = save_figure(fig, tmp_path / "fig", params, [], caption)
    printed = " ".join(t.get_text() for t in fig.texts if t.get_gid() == "caption")
    flat = re.sub(r"\s+", " ", printed).replace("\\$", "$")
    assert flat == f"{caption} {TOY_CAVEAT}"
    assert all(len(line) < 110 for line in printed.splitlines())  # wrapped to a 4-inch figure
    assert mpimg.imread(png).shape[0] > mpimg.imread(bare).shape[0] + 40  # the caption grew the PNG
    assert json.loads(png.with_name("fig.png.json").read_text())["caption"] == f"{caption} {TOY_CAVEAT}"
    assert pdf.suffix == ".pdf" and json.loads(pdf.with_name("fig.pdf.json").read_text())["caption"]


def test_a_profile_that_trains_one_loss_gets_one_panel_not_an_empty_one():
    """The class profile trains DFT only: no empty SFT panel with a meaningless axis."""
    dft_only = {("slm_rft", "dft"): (41.0, 37.5, 44.0), ("oracle_refined", "dft"): (30.0, 26.0, 33.0)}
    fig = figures.utility_scatter(
        {"slm_rft": 0.5, "oracle_refined": 0.6},
        lambda s, loss: dft_only.get((s, loss), (float("nan"),) * 3),
        ["slm_rft", "oracle_refined"],
        (35.0, 32.0, 38.0),
        k=4,
        xlabel="reward",
    )
    assert [sf._suptitle.get_text() for sf in fig.subfigs] == ["DFT"] and len(fig.axes) == 1
    curves = pd.DataFrame(
        [{"stream": "slm_rft", "loss_type": "dft", "step": st, "loss": 1.0 / st} for st in (1, 2)]
    )
    [ax] = figures.loss_curves(curves, ["slm_rft"]).axes
    assert ax.get_title() == "DFT" and len(ax.lines) == 1


def test_the_same_figure_saved_twice_gives_the_same_pdf_bytes(tmp_path):
    """No CreationDate in the PDF (matplotlib writes the wall-clock time by default)."""
    params = load_params("smoke")
    outs = []
    for run in ("a", "b"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        png, pdf = save_figure(fig, tmp_path / run / "f", params, [], "A caption.")
        outs.append(pdf.read_bytes())
    assert outs[0] == outs[1] and b"CreationDate" not in outs[0]


def test_a_saved_figure_shows_with_its_caption_as_alt_text(tmp_path):
    from paradox.report import saved_image

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    png, _ = save_figure(fig, tmp_path / "f", load_params("smoke"), [], "Utility against f.")
    img = saved_image(png)
    assert img.alt.startswith("Utility against f.") and TOY_CAVEAT in img.alt
    assert img.data == png.read_bytes()


def test_a_cell_ending_in_save_figure_shows_the_figure_not_a_list_of_paths(tmp_path):
    from IPython.core.formatters import DisplayFormatter

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    saved = save_figure(fig, tmp_path / "f", load_params("smoke"), [], "A caption.")
    assert [p.suffix for p in saved] == [".png", ".pdf"]
    data, _ = DisplayFormatter().format(saved)
    assert data == {}  # IPython calls _ipython_display_, which shows nothing more
