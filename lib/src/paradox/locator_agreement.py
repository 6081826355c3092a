"""The locator agreement table of notebook 03 (docs/prm-locator.md): how often two error locators name
the same first wrong step of the same traces, and, in the toy world, how often each names the true one.

The traces are the ones 03 locates errors in: the SLM-RFT traces, one per kept problem. Their final
answers are correct, so most have no wrong step; those that do (a slip that cancels out, a skipped
step) are what Style-Aligned Refinement repairs, the paper's intervention on the RFT trace. The SLM's
incorrect samples from 01 are not in the table: no stream is built from them, and every one has a wrong
step (its answer), so they would test only half of a locator's job, saying "no error" when there is none.

Each row compares a locator with a reference, ProcessBench's way (its `run_eval.py`): among the traces
where the reference names a wrong step, the share where the locator names the same step; among those
where it names none, the share where the locator names none too; F1, their harmonic mean. Against the
exact step checker (the toy's truth) these are ProcessBench's accuracy on erroneous samples, its
accuracy on correct samples, and its F1. Between two locators (the PRM against the Oracle's prompt) the
reference is the second: neither is the truth. Every world shows the same three rows; one that its world
cannot fill says why (a real world has no exact checker; a PRM only with `oracle.prm`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from paradox.params import Params

ROLES = {"oracle": "Oracle (own locator)", "prm": "PRM", "exact": "exact step checker (truth)"}
PAIRS = (("prm", "oracle"), ("oracle", "exact"), ("prm", "exact"))
COLUMNS = (
    "locator",
    "reference",
    "traces",
    "agree_pct",  # the same answer: the same step, or both "no error"
    "ref_wrong",  # traces where the reference names a wrong step
    "same_step_on_ref_wrong_pct",  # ProcessBench's accuracy on erroneous samples (vs. the truth)
    "none_on_ref_sound_pct",  # ProcessBench's accuracy on correct samples (vs. the truth)
    "f1",  # their harmonic mean
    "both_none",
    "same_step",
    "locator_only",  # the locator names a step, the reference none
    "reference_only",  # the reference names a step, the locator none
    "different_step",  # both name a step, not the same
    "note",
)


def _pct(hits: int, n: int) -> float:
    return 100.0 * hits / n if n else math.nan


def compare(located: Sequence[int | None], reference: Sequence[int | None]) -> dict[str, Any]:
    """The counts and shares of one row (COLUMNS, without the names and the note)."""
    if len(located) != len(reference):
        raise ValueError(f"{len(located)} answers against {len(reference)} reference answers")
    pairs = list(zip(located, reference, strict=True))
    wrong = [(a, b) for a, b in pairs if b is not None]
    sound = [(a, b) for a, b in pairs if b is None]
    on_wrong = _pct(sum(a == b for a, b in wrong), len(wrong))
    on_sound = _pct(sum(a is None for a, _ in sound), len(sound))
    f1 = (
        math.nan
        if math.isnan(on_wrong) or math.isnan(on_sound)
        else (2 * on_wrong * on_sound / (on_wrong + on_sound) if on_wrong + on_sound else 0.0)
    )
    return {
        "traces": len(pairs),
        "agree_pct": _pct(sum(a == b for a, b in pairs), len(pairs)),
        "ref_wrong": len(wrong),
        "same_step_on_ref_wrong_pct": on_wrong,
        "none_on_ref_sound_pct": on_sound,
        "f1": f1,
        "both_none": sum(a is None and b is None for a, b in pairs),
        "same_step": sum(a is not None and a == b for a, b in pairs),
        "locator_only": sum(a is not None and b is None for a, b in pairs),
        "reference_only": sum(a is None and b is not None for a, b in pairs),
        "different_step": sum(a is not None and b is not None and a != b for a, b in pairs),
    }


def why_missing(params: Params, present: Sequence[str]) -> dict[str, str]:
    """For each role not run, why (the note of the rows that need it)."""
    o, out = params.oracle, {}
    if "exact" not in present:
        out["exact"] = "no exact step checker: a real Oracle's steps (or a real world)"
    if "prm" not in present:
        out["prm"] = (
            "not run: oracle.compare_locators is false"
            if not o.compare_locators
            else "no PRM: oracle.prm is not set"
        )
    if "oracle" not in present:
        out["oracle"] = "not run: oracle.compare_locators is false"
    return out


def agreement_table(
    answers: Mapping[str, Sequence[int | None]],
    names: Mapping[str, str],
    missing: Mapping[str, str],
    notes: Mapping[tuple[str, str], str] | None = None,
) -> pd.DataFrame:
    """One row per pair of PAIRS: `answers[role]` per trace (index or None), `names[role]` the
    locator's name, `missing[role]` why a role has no answers, `notes` a remark per pair."""
    rows = []
    for loc, ref in PAIRS:
        row: dict[str, Any] = {
            "locator": names.get(loc, ROLES[loc]),
            "reference": names.get(ref, ROLES[ref]),
        }
        absent = [missing.get(r, f"{ROLES[r]}: not run") for r in (loc, ref) if r not in answers]
        if absent:
            row |= dict.fromkeys(COLUMNS[2:-1], math.nan) | {"note": "; ".join(dict.fromkeys(absent))}
        else:
            row |= compare(answers[loc], answers[ref]) | {"note": (notes or {}).get((loc, ref), "")}
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def toy_notes(params: Params, stats: Mapping[str, int] | None = None) -> dict[tuple[str, str], str]:
    """The toy world's remarks: its Oracle's rule is the checker, its PRM a stand-in (`stats`: the
    stand-in's, for how many answers it replaced in this run)."""
    if params.oracle.backend != "toy":
        return {}
    rate = params.toy.prm_standin_error_rate if params.toy else math.nan
    replaced = (stats or {}).get("prm_standin_replaced")
    here = f" ({replaced} replaced in this run)" if replaced is not None else ""
    return {
        ("oracle", "exact"): "the toy Oracle's rule is the exact checker: complete agreement by construction",
        (
            "prm",
            "exact",
        ): f"a stand-in, not a model: the checker with each answer replaced at rate {rate:.0%}{here}",
        ("prm", "oracle"): "the stand-in against the rule (the checker)",
    }
