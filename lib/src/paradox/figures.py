"""The figures of notebooks 06 and 07, one function each. Each takes the computed numbers and
returns the matplotlib figure; the notebook saves it with `report.save_figure` (caption and
sidecar). Streams are drawn in `report.STREAM_STYLE` (colour, marker and line style, so every
figure reads in black and white)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from paradox.report import STREAM_STYLE
from paradox.streams import LABELS, LOSS_TITLES, drift_fraction, label

Utility = Callable[[str, str], tuple[float, float, int]]  # (stream, loss) -> (mean, ci95, n_seeds)


def _legend_right(ax: Axes) -> None:
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)


def utility_scatter(
    x: Mapping[str, float],
    u: Utility,
    streams: Sequence[str],
    base_mean: float,
    k: int,
    xlabel: str,
    logx: bool = False,
) -> Figure:
    """Utility (Avg@k, error bars with several seeds) against a per-stream quantity, one panel per
    loss; the base SLM as a dashed line. A selected stream is drawn hollow and larger, so that it
    stays visible where it coincides with a source stream."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True, layout="constrained")
    for ax, loss, title in zip(axes, LOSS_TITLES, LOSS_TITLES.values(), strict=True):
        for s in streams:
            m, ci, n = u(s, loss)
            if n == 0:
                continue
            st = STREAM_STYLE[s]
            face = (
                dict(
                    markerfacecolor="none",
                    markeredgecolor=st["color"],
                    markersize=14,
                    markeredgewidth=2,
                    zorder=4,
                )
                if st.get("hollow")
                else dict(markeredgecolor="black", markersize=8, zorder=3)
            )
            ax.errorbar(
                x[s],
                m,
                yerr=ci if n > 1 else None,
                color=st["color"],
                marker=st["marker"],
                linestyle="none",
                capsize=3,
                label=LABELS[s],
                **face,
            )
        ax.axhline(base_mean, color="grey", linestyle="--", linewidth=1, label="Base SLM")
        if logx:
            ax.set_xscale("log")
        ax.set_title(title)
    fig.supxlabel(xlabel, fontsize="medium")
    axes[0].set_ylabel(f"Avg@{k} (%, mean over splits)")
    _legend_right(axes[1])
    return fig


def loss_curves(curves: pd.DataFrame, streams: Sequence[str]) -> Figure:
    """Training loss per optimizer step (models/loss_curves.csv), one panel per loss, log scale."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, loss, title in zip(axes, LOSS_TITLES, LOSS_TITLES.values(), strict=True):
        for s in streams:
            c = curves[(curves["stream"] == s) & (curves["loss_type"] == loss)]
            st = STREAM_STYLE[s]
            ax.plot(
                c["step"],
                c["loss"],
                color=st["color"],
                linestyle=st["linestyle"],
                marker=st["marker"],
                markevery=max(1, len(c) // 6),
                label=LABELS[s],
            )
        ax.set_title(title)
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (nats per token, log scale)")
    _legend_right(axes[1])
    return fig


def segmented_ppl(seg: pd.DataFrame) -> Figure:
    """Perplexity per quarter (`mechanism.segmented_ppl`: columns stream, Q1-Q4), log scale."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for _, r in seg.iterrows():
        st = STREAM_STYLE[r["stream"]]
        ax.plot(
            ["Q1", "Q2", "Q3", "Q4"],
            [r[f"Q{q}"] for q in range(1, 5)],
            color=st["color"],
            linestyle=st["linestyle"],
            marker=st["marker"],
            label=label(r["stream"]),
        )
    ax.set_yscale("log")
    ax.set_xlabel("quarter of the response (by token position)")
    ax.set_ylabel("perplexity under the base SLM (log scale)")
    _legend_right(ax)
    return fig


def token_shift(shift: pd.DataFrame) -> Figure:
    """Horizontal bars of `mechanism.token_shift` (hatched in Oracle-Refined's colour: more
    frequent after refinement; plain in SLM-RFT's: less)."""
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(shift) + 1))
    colors = [
        STREAM_STYLE["oracle_refined"]["color"] if c > 0 else STREAM_STYLE["slm_rft"]["color"]
        for c in shift["change"]
    ]
    bars = ax.barh(shift["token"], shift["change"], color=colors, edgecolor="black")
    for b, c in zip(bars, shift["change"], strict=True):
        b.set_hatch("//" if c > 0 else "")
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("change in frequency per 1,000 tokens (Oracle-Refined minus SLM-RFT)")
    ax.set_ylabel("token")
    return fig


def learning_curves(lc: pd.DataFrame, streams: Sequence[str], k: int, splits: Sequence[str]) -> Figure:
    """Avg@k of checkpoints (eval/learning_curves.csv, mean over splits and seeds) per optimizer
    step, one panel per loss."""
    lc_mean = lc.groupby(["stream", "loss", "step"])["avg_at_k"].mean().reset_index()
    losses = sorted(lc_mean["loss"].unique())
    fig, axes = plt.subplots(1, len(losses), figsize=(4.8 * len(losses) + 1.8, 3.6), squeeze=False)
    for ax, loss in zip(axes[0], losses, strict=True):
        for s in streams:
            c = lc_mean[(lc_mean["stream"] == s) & (lc_mean["loss"] == loss)]
            if c.empty:
                continue
            st = STREAM_STYLE[s]
            ax.plot(
                c["step"],
                c["avg_at_k"],
                color=st["color"],
                linestyle=st["linestyle"],
                marker=st["marker"],
                label=label(s),
            )
        ax.set_title(LOSS_TITLES[loss])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"Avg@{k} (%, {', '.join(splits)})")
    _legend_right(axes[0][-1])
    return fig


def drift_dial(
    drift: Sequence[str], ppl: Mapping[str, float], u: Utility, losses: Sequence[str], k: int
) -> Figure:
    """Utility against the measured perplexity of the drift-dial streams, each point marked with
    its fraction f, one panel per loss (error bars with several seeds)."""
    fig, axes = plt.subplots(1, len(losses), figsize=(4.8 * len(losses), 3.6), squeeze=False)
    for ax, loss in zip(axes[0], losses, strict=True):
        xs = [ppl[s] for s in drift]
        ys = [u(s, loss) for s in drift]
        ax.errorbar(
            xs,
            [y[0] for y in ys],
            yerr=[y[1] if y[2] > 1 else 0 for y in ys],
            color="black",
            marker="o",
            linestyle="-",
            capsize=3,
        )
        for s, x, y in zip(drift, xs, ys, strict=True):
            ax.annotate(f"f={drift_fraction(s):.2f}", (x, y[0]), textcoords="offset points", xytext=(5, 5))
        ax.set_title(LOSS_TITLES[loss])
        ax.set_xlabel("perplexity of the training traces under the base SLM")
        ax.set_ylabel(f"Avg@{k} (%, mean over splits)")
    return fig
