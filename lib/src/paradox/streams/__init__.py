"""Training streams in one place: their names, display labels and order, and, in the modules
beside this one, how each derived stream is built:

- `streams.rft`: SLM-RFT, one correct (lightly cleaned) trace per solvable problem;
- `streams.style_align`: the style-consistency check of Style-Aligned Refinement;
- `streams.selection`: compatibility-aware selection (`compat_selected`, beyond the paper).

The Oracle streams (refined, synthesized, style-aligned rewrites, drift dial) come from the
Oracle (`backends.oracle`); Ground truth is the dataset's own solution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paradox.params import Params

# The paper's five streams, in the order of its tables.
STREAMS = ("slm_rft", "ground_truth", "oracle_refined", "oracle_synthesized", "style_aligned")
ORACLE_STREAMS = ("oracle_refined", "oracle_synthesized")  # the high-reward streams of the paradox
SELECTED = "compat_selected"  # compatibility-aware selection (beyond the paper)
BASE = "base"  # the base SLM's row in tables (no stream: no fine-tuning)
DRIFT_PREFIX = "drift_"  # drift-dial streams: drift_000 (f = 0) ... drift_100 (f = 1)

LABELS = {
    BASE: "Base SLM",
    "slm_rft": "SLM-RFT",
    "ground_truth": "Ground truth",
    "oracle_refined": "Oracle-Refined",
    "oracle_synthesized": "Oracle-Synthesized",
    "style_aligned": "Style-Aligned",
    SELECTED: "Compat-Selected",
}
LOSS_TITLES = {"nll": "SFT (nll)", "dft": "DFT"}


def drift_stream(fraction: float) -> str:
    return f"{DRIFT_PREFIX}{round(fraction * 100):03d}"


def drift_fraction(stream: str) -> float:
    return int(stream.removeprefix(DRIFT_PREFIX)) / 100


def is_drift(stream: str) -> bool:
    return stream.startswith(DRIFT_PREFIX)


def label(stream: str) -> str:
    """Display name of a stream (drift-dial streams read 'Drift f=0.25')."""
    if is_drift(stream):
        return f"Drift f={drift_fraction(stream):.2f}"
    return LABELS.get(stream, stream)


def table_streams(params: Params) -> list[str]:
    """The streams of Table 1 and the mechanism table: the paper's (as trained) and the selected one."""
    return [*params.train.streams, *([SELECTED] if params.selection.enabled else [])]


def all_streams(params: Params) -> list[str]:
    """Every training stream in order: the paper's, then selection, then the drift dial."""
    return [*table_streams(params), *(drift_stream(f) for f in params.drift.fractions)]
