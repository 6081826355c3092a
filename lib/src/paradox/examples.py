"""A few problems' traces in every stream, with the token NLLs of two streams under the base SLM:
`examples.jsonl` beside a run's figures (notebook 07), which the tour shows without any compute
(`trace_view.side_by_side`, `trace_view.strips_view`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paradox.metrics import TraceNLL
from paradox.trace_view import Decoder, token_texts

STRIP_STREAMS = ("slm_rft", "oracle_refined")  # the paradox's pair: the SLM's wording and the rewrite


def pick_ids(data: Mapping[str, Sequence[Mapping[str, Any]]], n: int) -> list[str]:
    """`n` problem ids of the SLM-RFT stream, those whose Style-Aligned trace differs from the
    SLM's (a repair to look at) first, each group in stream order: deterministic, no sampling."""
    rft = data["slm_rft"]
    aligned = {r["id"]: r["completion"] for r in data.get("style_aligned", ())}
    repaired = [r["id"] for r in rft if r["id"] in aligned and aligned[r["id"]] != r["completion"]]
    rest = [r["id"] for r in rft if r["id"] not in set(repaired)]
    return (repaired + rest)[:n]


def build(
    ids: Sequence[str],
    data: Mapping[str, Sequence[Mapping[str, Any]]],
    questions: Mapping[str, str],
    scored: Mapping[str, Sequence[TraceNLL]],
    tokenizer: Decoder,
    strip_streams: Sequence[str] = STRIP_STREAMS,
) -> list[dict[str, Any]]:
    """One record per id: the question, each stream's trace for it (streams in `data` order; a
    stream without the id is left out) and, for `strip_streams`, the response tokens' texts and
    NLLs (`scored[s][i]` belongs to `data[s][i]`, as 07 computes them)."""
    out = []
    for pid in ids:
        traces: dict[str, str] = {}
        strips: dict[str, dict[str, list[Any]]] = {}
        for s, rows in data.items():
            i = next((n for n, r in enumerate(rows) if r["id"] == pid), None)
            if i is None:
                continue
            traces[s] = rows[i]["completion"]
            if s in strip_streams:
                t = scored[s][i]
                strips[s] = {
                    "tokens": token_texts(tokenizer, t.token_ids),
                    "nll": [round(v, 4) for v in t.token_nll],
                }
        out.append({"id": pid, "question": questions[pid], "traces": traces, "strips": strips})
    return out
