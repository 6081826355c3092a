"""Rejection sampling: one correct trace per solvable problem, lightly cleaned."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence

ANSWER_LINE = re.compile(r"answer is|\\boxed\{|^####", re.IGNORECASE)


def clean(trace: str) -> str:
    """Strip blank lines and spaces, and drop anything after the first line stating the answer
    (the generation noise a sampled trace can carry past its conclusion)."""
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ANSWER_LINE.search(ln):
            return "\n".join(lines[: i + 1])
    return "\n".join(lines)


def select(samples: Sequence[dict], rule: str, seed: int, do_clean: bool = True,
           still_correct: Callable[[str, str], bool] | None = None) -> dict[str, str]:
    """samples: rows {id, sample, text, correct}. Returns {problem id: chosen trace} for every
    problem with at least one correct sample. `rule`: first | shortest | random.

    `still_correct(id, cleaned_text)` re-grades a trace after cleaning: a garbled sample can be
    graded right on its raw text yet lose its answer when cut at its first answer line, and
    cleaning must never turn a correct trace into a wrong one.
    """
    correct: dict[str, list[dict]] = defaultdict(list)
    for row in samples:
        if not row["correct"]:
            continue
        text = clean(row["text"]) if do_clean else row["text"]
        if still_correct is None or still_correct(row["id"], text):
            correct[row["id"]].append({**row, "text": text})
    rng = random.Random(seed)
    chosen: dict[str, str] = {}
    for pid in sorted(correct):
        rows = sorted(correct[pid], key=lambda r: r["sample"])
        if rule == "first":
            row = rows[0]
        elif rule == "shortest":
            row = min(rows, key=lambda r: (len(r["text"]), r["sample"]))
        elif rule == "random":
            row = rng.choice(rows)
        else:
            raise ValueError(f"unknown RFT selection rule {rule!r}")
        chosen[pid] = row["text"]
    return chosen
