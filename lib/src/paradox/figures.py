"""The figures of notebooks 06 and 07, one function each. Each takes the computed numbers and
returns the matplotlib figure; the notebook saves it with `report.save_figure` (which prints the
caption, and in the toy world its caveat, under the PNG). Streams are drawn in
`report.STREAM_STYLE` (colour, marker and line style, so every figure reads in black and white).

Utility error bars are `metrics.bootstrap_utility` intervals (percentile bootstrap over problems,
and seeds where there are several): they stay within [0, 100] and a one-seed run has them too.

A stream whose perplexity is more than `OFF_SCALE` times every other's (the toy Oracle-Synthesized,
PPL ~550 against ~1.2) would squash the rest into one band on a shared axis; it is drawn on a
separate, broken-off part of the axis (its own scale, break marks on the spines) so that the main
streams keep a readable linear scale and the outlier keeps its true value on its tick.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

from paradox.report import STREAM_STYLE
from paradox.streams import LABELS, LOSS_TITLES, drift_fraction, label

Interval = Callable[[str, str], tuple[float, float, float]]  # (stream, loss) -> (mean, lo, hi); nans: not run
OFF_SCALE = 10.0  # a group of streams this many times above all others goes onto a broken-off axis
_PLAIN = FuncFormatter(lambda v, _pos: f"{v:g}")  # 0.05, 1, 500: not 5x10^-2 on a log axis


def _err(mean: float, lo: float, hi: float) -> list[list[float]]:
    """matplotlib's asymmetric yerr for one point."""
    return [[mean - lo], [hi - mean]]


def split_off_scale(ranges: Mapping[str, tuple[float, float]]) -> tuple[list[str], list[str]]:
    """(main, off-scale) streams from each stream's (smallest, largest) positive value: off-scale
    are the streams above the widest gap where every value above is more than `OFF_SCALE` times
    every value below, provided they are fewer than the rest (an outlier group, not the bulk)."""
    finite = {s: r for s, r in ranges.items() if all(math.isfinite(v) and v > 0 for v in r)}
    order = sorted(finite, key=lambda s: finite[s][0])
    best, best_ratio = len(order), OFF_SCALE
    for i in range(1, len(order)):
        below = max(finite[s][1] for s in order[:i])
        ratio = finite[order[i]][0] / below
        if ratio > best_ratio and len(order) - i < i:
            best, best_ratio = i, ratio
    off = order[best:]
    return [s for s in ranges if s not in off], off


def _scale_for(ax: Axes, values: Sequence[float], axis: str) -> None:
    """Log scale (plain-number ticks) where the values span more than a factor OFF_SCALE, else linear."""
    vals = [v for v in values if math.isfinite(v) and v > 0]
    if vals and max(vals) / min(vals) > OFF_SCALE:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        target = ax.xaxis if axis == "x" else ax.yaxis
        target.set_major_formatter(_PLAIN)
        target.set_minor_formatter(NullFormatter())


def _break_marks(first: Axes, second: Axes, axis: str) -> None:
    """The usual '//' marks where an axis is broken between `first` (left/top) and `second`, and
    the spines between them hidden."""
    kw: dict[str, Any] = dict(
        marker=[(-1, -0.5), (1, 0.5)],
        markersize=10,
        linestyle="none",
        color="k",
        mec="k",
        mew=1,
        clip_on=False,
    )
    if axis == "x":  # first left of second
        first.spines["right"].set_visible(False)
        second.spines["left"].set_visible(False)
        second.tick_params(axis="y", left=False, labelleft=False)
        first.plot([1, 1], [0, 1], transform=first.transAxes, **kw)
        second.plot([0, 0], [0, 1], transform=second.transAxes, **kw)
    else:  # first above second
        first.spines["bottom"].set_visible(False)
        second.spines["top"].set_visible(False)
        first.tick_params(axis="x", bottom=False, labelbottom=False)
        first.plot([0, 1], [0, 0], transform=first.transAxes, **kw)
        second.plot([0, 1], [1, 1], transform=second.transAxes, **kw)


def _value_ticks(ax: Axes, values: Sequence[float], axis: str) -> None:
    """Ticks exactly at the (few) off-scale values, labelled with them: the outlier's number is read
    off the axis."""
    loc = FixedLocator(sorted(values))
    fmt = FuncFormatter(lambda v, _pos: f"{v:.3g}")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(loc)
    target.set_major_formatter(fmt)
    target.set_minor_formatter(NullFormatter())


def _point(ax: Axes, stream: str, xv: float, mean: float, lo: float, hi: float) -> None:
    st = STREAM_STYLE[stream]
    face: dict[str, Any] = (
        dict(markerfacecolor="none", markeredgecolor=st["color"], markersize=14, markeredgewidth=2, zorder=4)
        if st.get("hollow")
        else dict(markeredgecolor="black", markersize=8, zorder=3)
    )
    ax.errorbar(
        xv,
        mean,
        yerr=_err(mean, lo, hi),
        color=st["color"],
        marker=st["marker"],
        linestyle="none",
        capsize=3,
        label=LABELS[stream],
        **face,
    )


def _line_style(stream: str) -> dict[str, Any]:
    """Line, marker and colour of a stream in line plots; a hollow stream (the selected one, which
    can coincide with a source stream) gets larger open markers, so the line under it shows."""
    st = STREAM_STYLE[stream]
    kw: dict[str, Any] = dict(color=st["color"], linestyle=st["linestyle"], marker=st["marker"])
    if st.get("hollow"):
        kw |= dict(markerfacecolor="none", markersize=10, markeredgewidth=1.5)
    return kw


def _base_band(ax: Axes, base: tuple[float, float, float]) -> None:
    mean, lo, hi = base
    ax.axhspan(lo, hi, color="grey", alpha=0.15, linewidth=0, zorder=0)
    ax.axhline(mean, color="grey", linestyle="--", linewidth=1, label="Base SLM", zorder=1)


def utility_scatter(
    x: Mapping[str, float],
    u: Interval,
    streams: Sequence[str],
    base: tuple[float, float, float],
    k: int,
    xlabel: str,
    break_off_scale: bool = False,
) -> Figure:
    """Utility (Avg@k, bootstrap interval as error bars) against a per-stream quantity, one panel
    per loss; the base SLM as a dashed line with its interval as a grey band. A selected stream is
    drawn hollow and larger, so that it stays visible where it coincides with a source stream.

    `break_off_scale` (for positive quantities such as perplexity): streams more than `OFF_SCALE`
    times above the rest are drawn on a narrow broken-off part of the x axis, ticked at their values."""
    trained = [s for s in streams if any(not math.isnan(u(s, loss)[0]) for loss in LOSS_TITLES)]
    # a panel per loss the profile trained (the class profile trains DFT only)
    losses = [loss for loss in LOSS_TITLES if any(not math.isnan(u(s, loss)[0]) for s in trained)] or list(
        LOSS_TITLES
    )
    main, off = split_off_scale({s: (x[s], x[s]) for s in trained}) if break_off_scale else (trained, [])
    fig = plt.figure(figsize=(5 * len(losses), 3.9), layout="constrained")
    subs: list[SubFigure] = list(np.ravel(np.asarray(fig.subfigures(1, len(losses), wspace=0.03))))
    all_axes: list[Axes] = []
    for sub, loss in zip(subs, losses, strict=True):
        title = LOSS_TITLES[loss]
        if off:
            ax, ax_off = sub.subplots(1, 2, sharey=True, width_ratios=[5, 1], gridspec_kw={"wspace": 0.05})
        else:
            ax, ax_off = sub.subplots(), None
        for a, group in ((ax, main), (ax_off, off)):
            if a is None:
                continue
            all_axes.append(a)
            _base_band(a, base)
            for s in group:
                m, lo, hi = u(s, loss)
                if not math.isnan(m):
                    _point(a, s, x[s], m, lo, hi)
        _scale_for(ax, [x[s] for s in main], "x")
        if ax_off is not None:
            vals = [x[s] for s in off]
            _scale_for(ax_off, vals, "x")
            pad = 1.3 if min(vals) > 0 else 1.0
            ax_off.set_xlim(min(vals) / pad, max(vals) * pad)
            _value_ticks(ax_off, vals, "x")
            _break_marks(ax, ax_off, "x")
        sub.suptitle(title, fontsize="medium")
        if len(all_axes) <= 2:  # the first loss's panel; the y range is shared, so label it once
            ax.set_ylabel(f"Avg@{k} (%, mean over splits)")
    # one y range for both losses (the panels live in separate subfigures, so share it by hand)
    lims = [a.get_ylim() for a in all_axes]
    for a in all_axes:
        a.set_ylim(min(lo for lo, _ in lims), max(hi for _, hi in lims))
    fig.supxlabel(xlabel, fontsize="medium")
    _merge_legend_from(fig, all_axes)
    return fig


def _merge_legend_from(fig: Figure, axes: Sequence[Axes]) -> None:
    """Rebuild the figure legend from every axes (a stream may only be drawn in an off-scale part)."""
    for leg in list(fig.legends):
        leg.remove()
    seen: dict[str, Artist] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    order = ["Base SLM", *[lab for lab in LABELS.values() if lab in seen and lab != "Base SLM"]]
    order += [lab for lab in seen if lab not in order]
    order = [lab for lab in order if lab in seen]
    fig.legend([seen[lab] for lab in order], order, loc="outside right center", frameon=False)


def _log_plain(ax: Axes) -> None:
    """Log y axis with plain-number ticks at 1-2-5 steps (0.05, 0.1, 0.2, ...), no minor labels."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(_PLAIN)
    ax.yaxis.set_minor_formatter(NullFormatter())


# What each loss_type logs per token (TRL SFTTrainer: the per-token loss summed and divided by the
# number of response tokens). DFT multiplies each token's NLL by its probability (detached).
LOSS_YLABELS = {
    "nll": "mean NLL per token\n(nats, log scale)",
    "dft": "prob.-weighted NLL per token\n(mean p·NLL, nats, log scale)",
}


def loss_curves(curves: pd.DataFrame, streams: Sequence[str]) -> Figure:
    """Training loss per optimizer step (models/loss_curves.csv), one panel per loss, log scale.
    SFT logs the mean NLL per response token; DFT the mean of p(token) x NLL(token) (TRL's
    loss_type="dft"), a different quantity on a different scale, so each panel has its own y label."""
    losses = [loss for loss in LOSS_TITLES if (curves["loss_type"] == loss).any()] or list(LOSS_TITLES)
    fig, axes = plt.subplots(
        1, len(losses), figsize=(5 * len(losses), 3.8), layout="constrained", squeeze=False
    )
    for ax, loss in zip(axes[0], losses, strict=True):
        title = LOSS_TITLES[loss]
        for s in streams:
            c = curves[(curves["stream"] == s) & (curves["loss_type"] == loss)]
            ax.plot(
                c["step"],
                c["loss"],
                **_line_style(s),
                markevery=max(1, len(c) // 6),
                label=LABELS[s],
            )
        ax.set_title(title)
        _log_plain(ax)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(LOSS_YLABELS[loss])
    _merge_legend_from(fig, list(axes[0]))
    return fig


def segmented_ppl(seg: pd.DataFrame) -> Figure:
    """Perplexity per quarter (`mechanism.segmented_ppl`: columns stream, Q1-Q4). Streams more than
    `OFF_SCALE` times above the rest get their own panel on top (broken y axis, log scale where
    they span more than that factor); the others share a linear panel below."""
    quarters = ["Q1", "Q2", "Q3", "Q4"]
    values = {str(r["stream"]): [float(r[q]) for q in quarters] for _, r in seg.iterrows()}
    main, off = split_off_scale({s: (min(v), max(v)) for s, v in values.items()})
    if off:
        fig, (ax_off, ax) = plt.subplots(
            2, 1, sharex=True, figsize=(7.5, 4.4), height_ratios=[1, 2], layout="constrained"
        )
        engine: Any = fig.get_layout_engine()  # the constrained engine asked for above
        engine.set(hspace=0.02)  # the two parts of the broken axis close together
    else:
        fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
        ax_off = None
    for a, group in ((ax, main), (ax_off, off)):
        if a is None:
            continue
        for s in group:
            a.plot(
                quarters,
                values[s],
                **_line_style(s),
                label=label(s),
            )
    _scale_for(ax, [v for s in main for v in values[s]], "y")
    if ax_off is not None:
        _scale_for(ax_off, [v for s in off for v in values[s]], "y")
        _break_marks(ax_off, ax, "y")
        ax_off.set_ylabel("log scale" if ax_off.get_yscale() == "log" else "", fontsize="small")
        ax.set_ylabel("linear scale" if ax.get_yscale() == "linear" else "log scale", fontsize="small")
        fig.supylabel("perplexity under the base SLM", fontsize="medium")
    else:
        ax.set_ylabel("perplexity under the base SLM")
    ax.set_xlabel("quarter of the response (by token position)")
    _merge_legend_from(fig, [a for a in (ax_off, ax) if a is not None])
    return fig


_VISIBLE = {"\n": "↵", "\t": "⇥", " ": "␣", "\r": "⏎"}


def display_token(token: str) -> str:
    """A token as a reader should see it on an axis: a table's quoted repr ("' \\\\('") is turned back
    into its text, whitespace is made visible (space ␣, newline ↵, tab ⇥) and '$' is escaped so
    that matplotlib does not read it as mathtext; LaTeX delimiters such as \\( stay as they are."""
    text = token
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        try:
            parsed = ast.literal_eval(token)
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, str):
            text = parsed
    shown = "".join(_VISIBLE.get(ch, ch) for ch in text)
    return shown.replace("$", r"\$") if shown else "(empty)"


def token_shift(shift: pd.DataFrame) -> Figure:
    """Horizontal bars of `mechanism.token_shift`: hatched in Oracle-Refined's colour where the token
    is more frequent after refinement, plain in SLM-RFT's where less (the hatch keeps the two apart
    in black and white; the legend says which is which). Tokens in monospace, whitespace visible."""
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(shift) + 1.4), layout="constrained")
    up: Any = STREAM_STYLE["oracle_refined"]["color"]  # an RGB tuple of the palette
    down: Any = STREAM_STYLE["slm_rft"]["color"]
    colors = [up if c > 0 else down for c in shift["change"]]
    positions = np.arange(len(shift))
    bars = ax.barh(positions, shift["change"], color=colors, edgecolor="black")
    for b, c in zip(bars, shift["change"], strict=True):
        b.set_hatch("//" if c > 0 else "")
    ax.set_yticks(positions, [display_token(str(t)) for t in shift["token"]], family="monospace")
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("change in frequency per 1,000 tokens (Oracle-Refined minus SLM-RFT)")
    ax.set_ylabel("token (␣ space, ↵ newline)")
    ax.legend(
        handles=[
            Patch(facecolor=up, edgecolor="black", hatch="//", label="more frequent after refinement"),
            Patch(facecolor=down, edgecolor="black", label="less frequent after refinement"),
        ],
        loc="lower right",
        frameon=True,
    )
    return fig


def learning_curves(lc: pd.DataFrame, streams: Sequence[str], k: int, splits: Sequence[str]) -> Figure:
    """Avg@k of checkpoints (eval/learning_curves.csv, mean over splits and seeds) per optimizer
    step, one panel per loss."""
    lc_mean = lc.groupby(["stream", "loss", "step"])["avg_at_k"].mean().reset_index()
    losses = sorted(lc_mean["loss"].unique())
    fig, axes = plt.subplots(
        1, len(losses), figsize=(4.8 * len(losses) + 1.8, 3.6), squeeze=False, layout="constrained"
    )
    for ax, loss in zip(axes[0], losses, strict=True):
        for s in streams:
            c = lc_mean[(lc_mean["stream"] == s) & (lc_mean["loss"] == loss)]
            if c.empty:
                continue
            ax.plot(
                c["step"],
                c["avg_at_k"],
                **_line_style(s),
                label=label(s),
            )
        ax.set_title(LOSS_TITLES[loss])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"Avg@{k} (%, {', '.join(splits)})")
    _merge_legend_from(fig, list(axes[0]))
    return fig


def drift_dial(
    drift: Sequence[str], ppl: Mapping[str, float], u: Interval, losses: Sequence[str], k: int
) -> Figure:
    """The drift dial against its setting: x is the fraction f of each trace in the Oracle's
    notation (monotone, so the line never loops). One panel of utility per loss (bootstrap
    intervals as error bars), then one of the measured perplexity of the training traces under
    the base SLM, which need not rise monotonically with f."""
    order = sorted(drift, key=drift_fraction)
    fs = [drift_fraction(s) for s in order]
    fig, axes = plt.subplots(
        1, len(losses) + 1, figsize=(3.6 * (len(losses) + 1), 3.4), squeeze=False, layout="constrained"
    )
    for ax, loss in zip(axes[0][:-1], losses, strict=True):
        ys = [u(s, loss) for s in order]
        ax.errorbar(
            fs,
            [y[0] for y in ys],
            yerr=[[y[0] - y[1] for y in ys], [y[2] - y[0] for y in ys]],
            color="black",
            marker="o",
            linestyle="-",
            capsize=3,
        )
        ax.set_title(f"utility after {LOSS_TITLES[loss]}")
        ax.set_ylabel(f"Avg@{k} (%, mean over splits)")
    pax = axes[0][-1]
    pax.plot(fs, [ppl[s] for s in order], color="black", marker="s", linestyle="--")
    pax.set_title("adaptation cost")
    pax.set_ylabel("perplexity under the base SLM")
    for ax in axes[0]:
        ax.set_xticks(fs, [f"{f:g}" for f in fs])
        ax.set_xlabel("fraction f in Oracle notation")
    return fig
