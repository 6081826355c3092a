"""Tables and figures with provenance: every file gets a `<file>.json` sidecar (profile, params
hash, git commit, hashes of the input artifacts, caption)."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: `make paper` runs without a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from paradox.io import atomic_path, write_sidecar, write_text  # noqa: E402
from paradox.params import Params  # noqa: E402
from paradox.streams import LABELS, SELECTED  # noqa: E402

TOY_CAVEAT = (
    "Toy world: a CPU simulation of the mechanism (a ~1M-parameter SLM, rule-based Oracle and "
    "reward rubric); it does not reproduce the paper's numbers."
)

# Colour-blind-safe colours plus a distinct marker and line style each, so figures read in B/W.
_PALETTE = sns.color_palette("colorblind", 7)
STREAM_STYLE: dict[str, dict[str, object]] = {
    name: {
        "color": _PALETTE[i],
        "marker": "osD^vPX"[i],
        "linestyle": ["-", "--", "-.", ":", (0, (5, 1)), (0, (1, 1)), (0, (3, 1, 1, 1))][i],
    }
    for i, name in enumerate(LABELS)
}
# A selected stream can coincide with a source stream: drawn hollow and larger, both stay visible.
STREAM_STYLE[SELECTED] |= {"hollow": True}


def caption_for(params: Params, text: str) -> str:
    return f"{text} {TOY_CAVEAT}" if params.world == "toy" else text


def setup_style() -> None:
    sns.set_theme(style="whitegrid", context="paper", palette="colorblind", font_scale=1.1)


def _show_in_notebook(png: Path, alt: str = "") -> None:
    """Show the saved PNG as the cell's output when a Jupyter kernel runs us (JupyterLab, papermill):
    the figure is closed after saving, and under Agg (set above for headless runs) IPython has no
    figure formatter, so displaying the figure itself would print only its repr."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        from IPython.display import Image, display

        # alt: the caption, for screen readers and exported HTML
        display(Image(filename=str(png), alt=alt))  # type: ignore[no-untyped-call]  # IPython ships no annotations


CAPTION_FONTSIZE = 8  # points: small, under the plot


def add_caption(fig: Figure, caption: str) -> None:
    """Print `caption` under the figure, wrapped to its width (`bbox_inches="tight"` grows the saved
    image to hold it): a PNG shared on its own still says what it shows and, in the toy world, that
    it is a simulation."""
    width_pt = fig.get_figwidth() * 72
    chars = max(40, int(width_pt / (0.5 * CAPTION_FONTSIZE)))  # ~0.5 em per character in DejaVu Sans
    fig.text(
        0.0,
        -0.02,
        textwrap.fill(caption, chars, break_on_hyphens=False).replace(
            "$", r"\$"
        ),  # a literal $, not mathtext
        ha="left",
        va="top",
        fontsize=CAPTION_FONTSIZE,
        gid="caption",
    )


def saved_image(png: Path) -> Any:
    """A saved PNG as an IPython Image whose alt text is the caption in its sidecar (the tour shows
    published figures this way: readable by screen readers and in exported HTML)."""
    from IPython.display import Image

    sidecar = png.with_name(png.name + ".json")
    caption = json.loads(sidecar.read_text()).get("caption", "") if sidecar.is_file() else ""
    return Image(filename=str(png), alt=caption)  # type: ignore[no-untyped-call]  # IPython ships no annotations


class SavedFiles(list[Path]):
    """The paths `save_figure` and `save_table` wrote. As a notebook cell's last value it shows
    nothing: the figure is already displayed, and a list of paths is noise for a reader."""

    def _ipython_display_(self) -> None:
        pass


def save_figure(fig: Figure, stem: Path, params: Params, inputs: Sequence[Path], caption: str) -> SavedFiles:
    """PDF and PNG, each with a sidecar holding the caption (with the toy caveat). The PNG also
    carries the caption printed under the plot; the PDF does not (it goes into LaTeX, where
    \\caption carries the text and a printed copy would repeat it). In a notebook the PNG is also
    shown inline."""
    caption = caption_for(params, caption)
    out = []
    for ext in ("pdf", "png"):
        if ext == "png":
            add_caption(fig, caption)
        path = stem.with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            # no CreationDate in the PDF: the same run gives the same bytes
            meta = {"CreationDate": None} if ext == "pdf" else None
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
        write_sidecar(
            path, profile=params.profile, params_hash=params.hash(), inputs=inputs, extra={"caption": caption}
        )
        out.append(path)
    _show_in_notebook(out[1], caption)
    plt.close(fig)
    return SavedFiles(out[::-1])  # PNG first, as before


def save_table(
    df: pd.DataFrame,
    stem: Path,
    params: Params,
    inputs: Sequence[Path],
    caption: str,
    float_format: str = "{:.2f}",
    display: pd.DataFrame | None = None,
) -> SavedFiles:
    """CSV (full precision), Markdown and LaTeX (booktabs), each with a sidecar. `display`, if
    given, is what Markdown and LaTeX show (e.g. 'mean ± interval' strings)."""
    caption = caption_for(params, caption)
    shown = (df if display is None else display).copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "n/a" if pd.isna(v) else float_format.format(v))
    latex = shown.to_latex(index=False, caption=caption, label=f"tab:{stem.name}", escape=True)
    if "\\toprule" not in latex:
        raise RuntimeError("pandas did not emit a booktabs table")
    texts = {
        "csv": df.to_csv(index=False),
        "md": shown.to_markdown(index=False) + f"\n\n{caption}\n",
        "tex": latex,
    }
    out = []
    for ext, text in texts.items():
        path = stem.with_suffix(f".{ext}")
        write_text(path, text)
        write_sidecar(
            path, profile=params.profile, params_hash=params.hash(), inputs=inputs, extra={"caption": caption}
        )
        out.append(path)
    return SavedFiles(out)


def markdown_table(df: pd.DataFrame) -> str:
    """A frame as REPORT.md shows it: floats to 3 decimals, learning rates with their significant
    digits (2.5e-04 would print as 0.000 at .3f)."""
    return df.to_markdown(index=False, floatfmt=["g" if c == "learning_rate" else ".3f" for c in df.columns])


def _caveats(params: Params, n_unscored: int) -> str:
    """What stands behind the numbers: the toy world's rules, or the real models and judge."""
    if params.world == "toy":
        return """- Perplexity is token-weighted over response tokens; a notation that is rigid and templated
  (the toy Oracle's) can have a *lower* per-token perplexity than the SLM's own varied wording
  even when the SLM has seen little of it; per-token perplexity measures surprise, not the cost
  of changing how the model writes.
- Retention in the toy world counts a repaired wrong value as not kept.
- The toy reward rubric rewards polish by construction (a modelling choice), so the reward axis
  is designed, not discovered.
"""
    return f"""- Perplexity is token-weighted over response tokens; per-token perplexity measures surprise,
  not the cost of changing how the model writes.
- Retention is the judgement of `{params.oracle.model}` with `{params.analysis.retention_prompt}`,
  which counts a corrected value as kept; {n_unscored} judge answer(s) without a score are left out of the means.
- Reward is the score of `{params.reward.name_or_path}` (`reward.backend: {params.reward.backend}`).
"""


def mechanism_report(
    params: Params,
    *,
    k: int,
    n_seeds: int,
    verdicts: Mapping[str, str],
    table1_md: str,
    mechanism: pd.DataFrame,
    correlations: pd.DataFrame,
    segmented: pd.DataFrame,
    drift: pd.DataFrame | None,
    grid: pd.DataFrame,
    n_unscored: int,
    figure_names: Sequence[str],
    figures_link: str = "figures",
) -> str:
    """REPORT.md of a run (notebook 07): the verdict per loss, Table 1 (the first block of
    table1.md: the table without its caption), the mechanism table (display form), the rank
    correlations, segmented perplexity (streams by label), the drift dial and robustness grid
    (None / empty: not run), caveats and links to the figures (PNG names, under `figures_link`
    relative to the report: "figures" for runs/<profile>/REPORT.md, "" for the copy beside them)."""
    profile = params.profile
    caveat = f"\n> {TOY_CAVEAT}\n" if params.world == "toy" else ""
    grid_hint = " (see `toy-full`)" if params.world == "toy" else ""
    seeds = (
        f"Table 1: mean of {n_seeds} seeds with a 95% bootstrap interval over problems and seeds in brackets; "
        f"other tables: mean ± 95% Student-t interval over {n_seeds} seeds"
        if n_seeds > 1
        else "one seed; in Table 1's brackets a 95% bootstrap interval over the evaluation problems"
    )
    figure_links = "\n".join(f"- [{name}]({Path(figures_link) / name})" for name in figure_names)
    return f"""# Report: profile `{profile}`
{caveat}
Generated by `notebooks/07_mechanism` from the artifacts in `runs/{profile}/` (params hash
`{params.hash()}`). Utility = Avg@{k} (%), mean over the evaluation splits ({", ".join(params.eval.splits)});
{seeds}.

## Does the paradox appear?
- Under SFT (nll): {verdicts["nll"]}.
- Under DFT: {verdicts["dft"]}.

## Table 1
{table1_md.split(chr(10) + chr(10))[0]}

## Mechanism table
{markdown_table(mechanism)}

## Rank correlations across streams
{markdown_table(correlations)}

Reading: a negative reward-utility correlation is the paradox in one number; a negative
perplexity-utility correlation says adaptation cost tracks the loss of utility.

## Segmented perplexity (Q1-Q4)
{markdown_table(segmented)}

## Drift dial
{markdown_table(drift) if drift is not None else "not run in this profile"}

## Robustness grid
{markdown_table(grid) if not grid.empty else "not run in this profile" + grid_hint}

## Caveats
{_caveats(params, n_unscored)}
## Figures
{figure_links}
"""
