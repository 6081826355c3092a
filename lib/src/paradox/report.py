"""Tables and figures with provenance: every file gets a `<file>.json` sidecar (profile, params
hash, git commit, hashes of the input artifacts, caption)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: `make paper` runs without a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from paradox.io import atomic_path, write_sidecar, write_text  # noqa: E402
from paradox.params import Params  # noqa: E402
from paradox.streams import LABELS, SELECTED  # noqa: E402

TOY_CAVEAT = ("Toy world: a CPU simulation of the mechanism (a ~1M-parameter SLM, rule-based Oracle and "
              "reward rubric); it does not reproduce the paper's numbers.")

# Colour-blind-safe colours plus a distinct marker and line style each, so figures read in B/W.
_PALETTE = sns.color_palette("colorblind", 7)
STREAM_STYLE = {
    name: {"color": _PALETTE[i], "marker": "osD^vPX"[i],
           "linestyle": ["-", "--", "-.", ":", (0, (5, 1)), (0, (1, 1)), (0, (3, 1, 1, 1))][i]}
    for i, name in enumerate(LABELS)
}
# A selected stream can coincide with a source stream: drawn hollow and larger, both stay visible.
STREAM_STYLE[SELECTED] |= {"hollow": True}


def caption_for(params: Params, text: str) -> str:
    return f"{text} {TOY_CAVEAT}" if params.world == "toy" else text


def setup_style() -> None:
    sns.set_theme(style="whitegrid", context="paper", palette="colorblind", font_scale=1.1)


def save_figure(fig: plt.Figure, stem: Path, params: Params, inputs: Sequence[Path], caption: str) -> list[Path]:
    """PNG and PDF, each with a sidecar; the caption (with the toy caveat) goes into the sidecar."""
    caption = caption_for(params, caption)
    out = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        write_sidecar(path, profile=params.profile, params_hash=params.hash(), inputs=inputs,
                      extra={"caption": caption})
        out.append(path)
    plt.close(fig)
    return out


def save_table(df: pd.DataFrame, stem: Path, params: Params, inputs: Sequence[Path], caption: str,
               float_format: str = "{:.2f}", display: pd.DataFrame | None = None) -> list[Path]:
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
    texts = {"csv": df.to_csv(index=False),
             "md": shown.to_markdown(index=False) + f"\n\n{caption}\n",
             "tex": latex}
    out = []
    for ext, text in texts.items():
        path = stem.with_suffix(f".{ext}")
        write_text(path, text)
        write_sidecar(path, profile=params.profile, params_hash=params.hash(), inputs=inputs,
                      extra={"caption": caption})
        out.append(path)
    return out
