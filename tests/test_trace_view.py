import html
import re

import pytest

from paradox import trace_view as tv
from paradox.metrics import TraceNLL, response_nll
from paradox.models import load_model

# a hand-written native trace and the same trace with one number of step 3 changed
NATIVE = "Tom has 7 apples.\nHe gets 5 more, so 7 + 5 = 12.\nHe gives away 4: 12 - 4 = 8.\nThe answer is 8."
ONE_NUMBER = (
    "Tom has 7 apples.\nHe gets 5 more, so 7 + 5 = 12.\nHe gives away 3: 12 - 4 = 8.\nThe answer is 8."
)


def _marked(fragment: str, tag: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(rf"<{tag} [^>]*>(.*?)</{tag}>", fragment, re.S)]


def _shown(fragment: str) -> str:
    """The text a column shows once deletions are dropped and tags removed."""
    kept = re.sub(r"<del [^>]*>.*?</del>", "", fragment, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", kept))


def test_words_join_back_to_the_text():
    text = "Let \\( n_0 = 5 \\).\n\n  x<y & 3.5"
    assert "".join(tv.words(text)) == text
    assert "\\(" in tv.words(text) and "n_0" in tv.words(text)


def test_the_diff_marks_exactly_the_changed_word():
    view = tv.side_by_side({"slm_rft": NATIVE, "style_aligned": ONE_NUMBER})
    ref, other = view.panels
    assert _marked(other.html, "ins") == ["3"]
    assert _marked(other.html, "del") == ["4"]
    assert "<ins" not in ref.html and "<del" not in ref.html
    n_words = len([w for w in tv.words(ONE_NUMBER) if not w.isspace()])
    assert other.stats == f"{n_words} words · {1 / n_words:.0%} new or changed vs SLM-RFT · 1 removed"
    # the marked HTML, tags removed and deletions dropped, is the trace itself
    assert _shown(other.html) == ONE_NUMBER


def test_a_deleted_and_an_inserted_word():
    _, other = tv.side_by_side({"a": "x = 1 + 2 = 3", "b": "x = 1 + 2 + 0 = 3"}).panels
    assert _marked(other.html, "ins") == ["+ 0"] and _marked(other.html, "del") == []
    _, other = tv.side_by_side({"a": "so the answer is 3", "b": "the answer is 3"}).panels
    assert _marked(other.html, "del") == ["so "] and _marked(other.html, "ins") == []
    assert other.stats.endswith("· 0% new or changed vs a · 1 removed")


def test_identical_traces_and_whitespace_only_changes_have_no_marks():
    for other_text in (NATIVE, NATIVE.replace("\n", "\n\n")):
        _, other = tv.side_by_side({"slm_rft": NATIVE, "x": other_text}).panels
        assert "<ins" not in other.html and "<del" not in other.html
        assert "0% new or changed" in other.stats and other.stats.endswith("0 removed")


def test_user_text_is_escaped():
    evil = '<script>alert(1)</script> & \\( x<y \\) "q"'
    view = tv.side_by_side({"<b>key</b>": evil, "oracle_refined": NATIVE + evil}, title="<i>t</i> & co")
    page = view._repr_html_()
    assert _shown(view.panels[1].html) == NATIVE + evil
    assert "<script>" not in page and "<b>key" not in page and "<i>t" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp; \\( x&lt;y \\)" in page
    assert "&lt;b&gt;key&lt;/b&gt;" in page and "&lt;i&gt;t&lt;/i&gt; &amp; co" in page
    strip = tv.nll_strip(["<b>", '"&'], [0.5, 1.0], title="<t>")._repr_html_()
    assert "<b>" not in strip and "&lt;b&gt;" in strip and "&lt;t&gt;" in strip
    # the tooltip attribute cannot be closed by a token's quote
    assert all('"' not in t for t in re.findall(r'title="([^"]*)"', strip))
    assert html.unescape(re.findall(r'title="([^"]*)"', strip)[1]) == "'\"&' · NLL 1.000"


def test_columns_keep_the_given_order_and_stream_labels():
    traces = {"style_aligned": "a b", "slm_rft": "a c", "drift_025": "a d", "my own": "a e"}
    view = tv.side_by_side(traces)
    assert [p.title for p in view.panels] == ["Style-Aligned", "SLM-RFT", "Drift f=0.25", "my own"]
    page = view.to_html()
    positions = [page.index(f">{t}<") for t in ("Style-Aligned", "SLM-RFT", "Drift f=0.25", "my own")]
    assert positions == sorted(positions)
    assert view.panels[0].stats.endswith("reference")
    view = tv.side_by_side(traces, reference="slm_rft")
    assert view.panels[1].stats.endswith("reference") and "vs SLM-RFT" in view.panels[0].stats
    assert _marked(view.panels[0].html, "ins") == ["b"] and _marked(view.panels[0].html, "del") == ["c"]
    with pytest.raises(ValueError, match="'oracle_refined' is not one of the traces"):
        tv.side_by_side(traces, reference="oracle_refined")
    with pytest.raises(ValueError, match="no traces"):
        tv.side_by_side({})


def test_text_fallback_holds_every_trace_under_its_header():
    view = tv.side_by_side({"slm_rft": NATIVE, "oracle_refined": ONE_NUMBER}, title="problem 7")
    text = str(view)
    assert repr(view) == text
    assert text.startswith("# problem 7")
    assert f"=== SLM-RFT ({view.panels[0].stats}) ===\n{NATIVE}" in text
    assert f"=== Oracle-Refined ({view.panels[1].stats}) ===\n{ONE_NUMBER}" in text
    assert "<" not in text


def _luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_strip_colours_darken_with_nll_and_tooltips_give_the_values():
    nll = [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 9.0]
    view = tv.nll_strip(["a", " b", "\n", "c", "d", "e", "f"], nll, vmax=4.0)
    page = view.to_html()
    spans = re.findall(
        r'<span title="([^"]*)" style="[^"]*background:(#[0-9a-f]{6});color:(#[0-9a-f]{3})">', page
    )
    assert len(spans) == len(nll)
    lum = [_luminance(bg) for _, bg, _ in spans]
    assert all(a > b for a, b in zip(lum[:5], lum[1:6], strict=True))  # strictly darker up to vmax
    assert spans[6][1] == spans[5][1]  # clipped above vmax
    assert [float(html.unescape(t).rsplit("NLL ", 1)[1]) for t, _, _ in spans] == nll
    assert spans[0][2] == "#000" and spans[5][2] == "#fff"  # text stays readable on light and dark
    assert "\u21b5\n</span>" in page  # a newline token shows as ↵ and breaks the line
    assert [v for _, v in view.panels[0].tokens] == nll
    # one scale for strips that are compared: the same NLL gets the same colour whatever else is shown
    assert tv.nll_colour(2.0, 4.0) == spans[3][1]
    assert tv.nll_strip(["x", "y"], [2.0, 8.0], vmax=4.0).panels[0].html.count(tv.nll_colour(2.0, 4.0)) == 1
    with pytest.raises(ValueError, match="2 token texts but 1 NLL"):
        tv.nll_strip(["a", "b"], [1.0])


def test_strips_of_a_tiny_model_are_the_response_nll_tokens(tiny_lm):
    model, tok = load_model(str(tiny_lm))
    prompts = ["Question: Tom has 3 apples.\nAnswer:\n", "Question: a square root\nAnswer:\n"]
    # '√' and '≥' are three bytes each: the toy tokenizer's byte tokens decode alone to U+FFFD
    completions = ["Tom has 3 apples.\nThe answer is 3.", "√9 = 3 ≥ 2, so\n\nthe answer is  3 < 4 & 5."]
    view = tv.nll_strips(model, tok, prompts, completions, labels=["slm_rft", "mine"], title="p")
    scored = response_nll(model, tok, prompts, completions)
    assert [p.title for p in view.panels] == ["SLM-RFT", "mine"]
    for panel, completion, s in zip(view.panels, completions, scored, strict=True):
        texts = [t for t, _ in panel.tokens]
        assert "".join(texts) == completion
        assert [v for _, v in panel.tokens] == pytest.approx(s.token_nll, abs=1e-5)
        assert len(texts) == s.n_tokens
        # the HTML spans hold the same text (↵ marks added before each newline)
        shown = "".join(html.unescape(x) for x in re.findall(r"<span [^>]*>(.*?)</span>", panel.html, re.S))
        assert shown.replace("\u21b5\n", "\n") == completion
    assert any(tok.decode([i]) == "\ufffd" for i in scored[1].token_ids)  # the case decoding alone gets wrong
    assert "".join(tok.decode([i]) for i in scored[1].token_ids) != completions[1]


def test_nll_view_needs_token_ids():
    class Tok:
        def decode(self, token_ids, **kw):
            return "".join(chr(97 + i) for i in token_ids)

    view = tv.nll_view(Tok(), {"slm_rft": TraceNLL(1.0, 2, [0.25, 0.75], [0, 1])})
    assert view.panels[0].tokens == (("a", 0.25), ("b", 0.75))
    with pytest.raises(ValueError, match="'slm_rft': the TraceNLL has no token ids"):
        tv.nll_view(Tok(), {"slm_rft": TraceNLL(1.0, 2, [0.25, 0.75])})
