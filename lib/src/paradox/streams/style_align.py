"""Style-Aligned Refinement: keep the SLM's trace, change only the wrong steps in its own
wording, then keep the rewrite only if it still reads like the SLM (style-consistency check).

The check compares the rewrite with the original trace: perplexity under the base SLM may grow
by at most `max_ppl_ratio`, and the character edit distance may be at most `max_edit_ratio` of
the original's length. A rejected rewrite falls back to the original trace, and is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein


def edit_ratio(original: str, rewrite: str) -> float:
    return Levenshtein.distance(original, rewrite) / max(1, len(original))


@dataclass(frozen=True)
class Decision:
    trace: str  # what goes into the Style-Aligned stream
    status: str  # "unchanged" (no wrong step) | "rewritten" | "rejected" (fell back to the original)
    changed_lines: int
    ppl_ratio: float
    edit_ratio: float


def decide(
    original: str,
    rewrite: str,
    changed_lines: int,
    ppl_original: float,
    ppl_rewrite: float,
    max_ppl_ratio: float,
    max_edit_ratio: float,
) -> Decision:
    if not changed_lines or rewrite == original:
        return Decision(original, "unchanged", 0, 1.0, 0.0)
    ratio = ppl_rewrite / ppl_original if ppl_original > 0 else math.inf
    edits = edit_ratio(original, rewrite)
    if ratio <= max_ppl_ratio and edits <= max_edit_ratio:
        return Decision(rewrite, "rewritten", changed_lines, ratio, edits)
    return Decision(original, "rejected", changed_lines, ratio, edits)
