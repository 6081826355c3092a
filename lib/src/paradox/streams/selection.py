"""Compatibility-aware data selection: a "model-aware reward" for choosing training traces."""

from __future__ import annotations


def select_compatible(candidates: dict[str, dict[str, tuple[float, float]]], lam: float) -> dict[str, str]:
    """candidates[source][problem id] = (reward, log perplexity under the learner).

    Returns, for every problem id that all sources share, the source maximising
    reward - lam * log_ppl. Ties go to the source listed first, so the rule is deterministic.
    """
    sources = list(candidates)
    ids = set.intersection(*(set(candidates[s]) for s in sources)) if sources else set()
    choice = {}
    for pid in sorted(ids):
        scores = [(candidates[s][pid][0] - lam * candidates[s][pid][1], -i, s) for i, s in enumerate(sources)]
        choice[pid] = max(scores)[2]
    return choice
