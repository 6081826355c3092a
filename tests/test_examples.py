"""paradox.examples: the published examples.jsonl the tour reads (no model needed to show them)."""

from paradox.examples import build, pick_ids
from paradox.metrics import TraceNLL
from paradox.trace_view import strips_view


class CharTokenizer:
    """One token per character (id = code point): enough to check that strips join back."""

    def decode(self, ids, clean_up_tokenization_spaces=False):
        return "".join(map(chr, ids))


def _nll(text: str) -> TraceNLL:
    vals = [0.1 * (n % 7) for n in range(len(text))]
    return TraceNLL(sum(vals), len(text), vals, [ord(c) for c in text])


DATA = {
    "slm_rft": [
        {"id": "a", "prompt": "Q: a\n", "completion": "x = 1 + 1 = 2"},
        {"id": "b", "prompt": "Q: b\n", "completion": "y = 3 - 1 = 2"},
    ],
    "oracle_refined": [
        {"id": "b", "prompt": "Q: b\n", "completion": "\\(y = 2\\)"},
        {"id": "a", "prompt": "Q: a\n", "completion": "\\(x = 2\\)"},
    ],
    "style_aligned": [
        {"id": "a", "prompt": "Q: a\n", "completion": "x = 1 + 1 = 2"},  # unchanged
        {"id": "b", "prompt": "Q: b\n", "completion": "y = 3 - 1 = 2 indeed"},  # repaired
    ],
}


def test_repaired_problems_come_first():
    assert pick_ids(DATA, 2) == ["b", "a"]
    assert pick_ids(DATA, 1) == ["b"]
    assert pick_ids({"slm_rft": DATA["slm_rft"]}, 5) == ["a", "b"]  # no style_aligned stream: in order


def test_records_pair_each_stream_by_id_and_strips_join_back():
    scored = {s: [_nll(r["completion"]) for r in rows] for s, rows in DATA.items()}
    [rec] = build(["b"], DATA, {"a": "qa", "b": "qb"}, scored, CharTokenizer())
    assert rec["question"] == "qb"
    assert rec["traces"] == {
        "slm_rft": "y = 3 - 1 = 2",
        "oracle_refined": "\\(y = 2\\)",
        "style_aligned": "y = 3 - 1 = 2 indeed",
    }
    assert set(rec["strips"]) == {"slm_rft", "oracle_refined"}
    refined = rec["strips"]["oracle_refined"]
    assert "".join(refined["tokens"]) == "\\(y = 2\\)"  # row 0 of oracle_refined, not row 1
    assert refined["nll"] == [round(v, 4) for v in scored["oracle_refined"][0].token_nll]
    view = strips_view({s: (st["tokens"], st["nll"]) for s, st in rec["strips"].items()})
    assert [p.title for p in view.panels] == ["SLM-RFT", "Oracle-Refined"]
    assert "Oracle-Refined" in str(view) and "<span" in view._repr_html_()
