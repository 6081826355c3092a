"""Traces for reading: one problem's traces side by side with their word-level edits, and a
token strip coloured by each token's NLL under the base SLM.

A `TraceView` renders as HTML in JupyterLab and in nbconvert's HTML (`_repr_html_`: inline CSS,
no scripts, no external assets) and as plain text in terminals and papermill logs (`str`/`repr`:
the traces one after another under headers). Every piece of trace text is HTML-escaped: traces
hold `<`, `&` and LaTeX.

- `side_by_side`: columns in the given order; each column but the reference shows its edits
  against the reference (inserted or replaced words marked, deleted words struck through), with
  its word count and the share of its words that are new.
- `nll_strip` / `nll_view` / `nll_strips`: each response token on a background whose colour
  encodes its NLL (nats, one scale for every strip in a view, so colours compare); the token's
  NLL is its tooltip. `nll_strips` scores with `metrics.response_nll`, the same tokens and
  numbers as the perplexities of 05 and 07.
"""

from __future__ import annotations

import difflib
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from paradox.metrics import DEFAULT_TOKEN_BUDGET, TraceNLL, response_nll
from paradox.streams import label

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Inline styles use only properties and values that JupyterLab's HTML sanitizer keeps in an
# untrusted notebook (a papermill output opened later), checked against JupyterLab 4.6's allow-list:
# e.g. `word-break: break-word` or `overflow-wrap: anywhere` would be dropped there.
# Inserted/replaced words on blue, deleted words struck through on orange: a pair colour-blind
# readers tell apart, and underline / strike-through say the same without colour. Explicit black
# text, so the marks read in light and dark JupyterLab themes alike.
INS_STYLE = "background:#b8dcff;color:#000;text-decoration:underline;border-radius:2px"
DEL_STYLE = "background:#ffc9a8;color:#000;text-decoration:line-through;border-radius:2px"
_TRACE_STYLE = (
    "white-space:pre-wrap;overflow-wrap:break-word;font-family:monospace;font-size:12px;line-height:1.5"
)
_CMAP = "magma_r"  # perceptually uniform, colour-blind safe, light for the many low-NLL tokens
_CMAP_TOP = 0.8  # use the colormap up to here: magma's darkest fifth is near black, lost on a dark theme
_VMAX_QUANTILE = 0.98  # default colour scale: one outlier token should not wash out every other
_NEWLINE = "\u21b5"  # ↵
_WORDS = re.compile(r"\w+|[^\w\s]+|\s+")  # words, runs of punctuation (`\(`, `=`), runs of whitespace


class Decoder(Protocol):
    """What token strips need of a tokenizer (a transformers tokenizer is one)."""

    def decode(self, token_ids: list[int], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Panel:
    """One column of a view: its heading, a stats line, its body as HTML (escaped) and as text;
    a token strip also keeps its (token text, NLL) pairs."""

    title: str
    stats: str
    html: str
    text: str
    tokens: tuple[tuple[str, float], ...] = ()


class TraceView:
    """Columns of traces (or token strips) under a title and a legend; see the module docstring."""

    def __init__(
        self, panels: Sequence[Panel], title: str | None = None, legend_html: str = "", legend_text: str = ""
    ) -> None:
        if not panels:
            raise ValueError("a TraceView needs at least one trace")
        self.panels = list(panels)
        self.title = title
        self.legend_html = legend_html
        self.legend_text = legend_text

    def to_html(self) -> str:
        cols = "".join(
            f'<div style="min-width:0;border:1px solid rgba(128,128,128,.35);border-radius:4px;padding:6px">'
            f'<div style="font-weight:bold">{html.escape(p.title)}</div>'
            f'<div style="font-size:11px;opacity:.75;margin-bottom:4px">{html.escape(p.stats)}</div>'
            f'<div style="{_TRACE_STYLE}">{p.html}</div></div>'
            for p in self.panels
        )
        head = (
            f'<div style="font-weight:bold;margin-bottom:2px">{html.escape(self.title)}</div>'
            if self.title
            else ""
        )
        legend = (
            f'<div style="font-size:11px;margin-bottom:6px">{self.legend_html}</div>'
            if self.legend_html
            else ""
        )
        grid = (
            f'<div style="display:grid;grid-template-columns:repeat({len(self.panels)},minmax(220px,1fr));'
            f'gap:8px;overflow-x:auto">{cols}</div>'
        )
        return f'<div class="paradox-trace-view">{head}{legend}{grid}</div>'

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        parts = [f"# {self.title}"] if self.title else []
        if self.legend_text:
            parts.append(self.legend_text)
        parts += [f"=== {p.title} ({p.stats}) ===\n{p.text}" for p in self.panels]
        return "\n".join(parts)

    def __repr__(self) -> str:  # papermill logs and terminals show the text, not an object address
        return str(self)


# ---- side by side, with word-level edits --------------------------------------------------------


def words(text: str) -> list[str]:
    """The diff's tokens: words, punctuation runs and whitespace runs; they join back to `text`."""
    return _WORDS.findall(text)


def _is_word(tok: str) -> bool:
    return not tok.isspace()


def _mark(tokens: Sequence[str], style: str, tag: str) -> str:
    return f'<{tag} style="{style}">{html.escape("".join(tokens))}</{tag}>' if tokens else ""


def _mark_inserted(tokens: Sequence[str]) -> str:
    """Inserted tokens marked, their leading and trailing whitespace left outside the mark."""
    lo, hi = 0, len(tokens)
    while lo < hi and not _is_word(tokens[lo]):
        lo += 1
    while hi > lo and not _is_word(tokens[hi - 1]):
        hi -= 1
    edge = html.escape
    return edge("".join(tokens[:lo])) + _mark(tokens[lo:hi], INS_STYLE, "ins") + edge("".join(tokens[hi:]))


def word_diff(reference: str, text: str) -> tuple[str, int, int]:
    """(HTML of `text` with its edits against `reference`, words of `text` inserted or replaced,
    words of `reference` deleted or replaced).

    difflib.SequenceMatcher on word and whitespace tokens: the standard library's matcher is what a
    word-level HTML diff needs; the maintained diff libraries either diff characters
    (diff-match-patch) or lines (difflib.HtmlDiff), so only the tokenising and marking are ours.
    autojunk is off: in a long trace '=' or ' ' are frequent but still part of the text.
    """
    a, b = words(reference), words(text)
    out: list[str] = []
    new = gone = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape("".join(b[j1:j2])))
            continue
        old_words, new_words = a[i1:i2], b[j1:j2]
        gone += sum(map(_is_word, old_words))
        new += sum(map(_is_word, new_words))
        # whitespace-only changes (a re-wrapped line) are kept as text, unmarked: marks on blanks read as noise
        if not any(map(_is_word, old_words + new_words)):
            out.append(html.escape("".join(new_words)))
            continue
        # a deleted run keeps its whitespace inside the mark: struck-through words stay apart from the next
        out.append(_mark(old_words, DEL_STYLE, "del") + _mark_inserted(new_words))
    return "".join(out), new, gone


def side_by_side(
    traces: Mapping[str, str], reference: str | None = None, title: str | None = None
) -> TraceView:
    """One problem's traces as columns in the given order; keys are stream names (shown by their
    label, `streams.label`) or any label. Every column but the reference (default: the first) marks
    its edits against the reference: inserted/replaced words underlined in blue (<ins>), deleted
    words struck through in orange (<del>)."""
    if not traces:
        raise ValueError("side_by_side: no traces given")
    ref = next(iter(traces)) if reference is None else reference
    if ref not in traces:
        raise ValueError(f"side_by_side: reference {ref!r} is not one of the traces {list(traces)}")
    ref_label = label(ref)
    panels = []
    for key, text in traces.items():
        n_words = sum(map(_is_word, words(text)))
        if key == ref:
            panels.append(Panel(label(key), f"{n_words} words · reference", html.escape(text), text))
            continue
        body, new, gone = word_diff(traces[ref], text)
        share = new / n_words if n_words else 0.0
        stats = f"{n_words} words · {share:.0%} new or changed vs {ref_label} · {gone} removed"
        panels.append(Panel(label(key), stats, body, text))
    legend_html = (
        f'<ins style="{INS_STYLE}">inserted or replaced</ins> and <del style="{DEL_STYLE}">deleted</del> '
        f"words against {html.escape(ref_label)}"
    )
    return TraceView(panels, title, legend_html, f"(edits are counted against {ref_label})")


# ---- token strips coloured by NLL ---------------------------------------------------------------


def nll_colour(nll: float, vmax: float, cmap: str = _CMAP) -> str:
    """The background colour (#rrggbb) of a token with this NLL on a scale 0..vmax (clipped)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    x = min(max(nll / vmax, 0.0), 1.0) if vmax > 0 else 0.0
    return to_hex(colormaps[cmap](_CMAP_TOP * x), keep_alpha=False)


def _text_colour(background: str) -> str:
    """Black or white, whichever reads on `background` (WCAG relative luminance)."""
    r, g, b = (int(background[i : i + 2], 16) / 255 for i in (1, 3, 5))
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "#000" if luminance > 0.179 else "#fff"


def _default_vmax(values: Sequence[float]) -> float:
    if not values:
        return 1.0
    s = sorted(values)
    return max(s[min(len(s) - 1, math.ceil(_VMAX_QUANTILE * len(s)) - 1)], 1e-6)


def _decode(tokenizer: Decoder, ids: list[int]) -> str:
    # no clean-up of spaces (Llama 3's config turns ' .' into '.'): the pieces must join back to the text
    return str(tokenizer.decode(ids, clean_up_tokenization_spaces=False))


def token_texts(tokenizer: Decoder, token_ids: Sequence[int]) -> list[str]:
    """Each token's share of the decoded text, so that the pieces join back to decode(token_ids).

    Decoded incrementally (a token's text is what it adds to the decoded prefix), not one token
    at a time as `mechanism.token_text` does for tables: with byte-level BPE one character may span
    several tokens, which alone decode to U+FFFD; those tokens get '' and the token that completes
    the character gets it. A window of the previous tokens keeps this linear in the length.
    """
    ids = list(token_ids)
    out: list[str] = []
    start = 0  # first token whose text is not out yet
    for i in range(len(ids)):
        lo = max(0, start - 8)
        before = _decode(tokenizer, ids[lo:start]) if start > lo else ""
        after = _decode(tokenizer, ids[lo : i + 1])
        if after.endswith("\ufffd") and i + 1 < len(ids):
            out.append("")  # an incomplete character: the next tokens finish it
            continue
        out.append(after[len(before) :] if after.startswith(before) else after)
        start = i + 1
    return out


def _strip_panel(title: str, texts: Sequence[str], nll: Sequence[float], vmax: float, cmap: str) -> Panel:
    if len(texts) != len(nll):
        raise ValueError(f"nll_strip {title!r}: {len(texts)} token texts but {len(nll)} NLL values")
    spans = []
    for t, v in zip(texts, nll, strict=True):
        bg = nll_colour(v, vmax, cmap)
        shown = html.escape(t).replace("\n", f"{_NEWLINE}\n")
        extra = "display:inline-block;min-width:3px;min-height:1em;" if not t else ""
        tip = html.escape(f"{t!r} · NLL {v:.3f}", quote=True)
        spans.append(
            f'<span title="{tip}" style="{extra}background:{bg};color:{_text_colour(bg)}">{shown}</span>'
        )
    n = len(nll)
    mean = sum(nll) / n if n else float("nan")
    stats = f"{n} tokens · mean NLL {mean:.3f} · PPL {math.exp(mean):.3f}" if n else "0 tokens"
    top = sorted(range(n), key=lambda i: -nll[i])[:5]
    text = "".join(texts) + (
        "\nhighest NLL: " + ", ".join(f"{texts[i]!r} {nll[i]:.2f}" for i in top) if top else ""
    )
    return Panel(title, stats, "".join(spans), text, tuple(zip(texts, map(float, nll), strict=True)))


def _strip_legend(vmax: float, cmap: str) -> tuple[str, str]:
    stops = [vmax * k / 4 for k in range(5)]
    swatches = "".join(
        f'<span style="background:{(c := nll_colour(v, vmax, cmap))};color:{_text_colour(c)};'
        f'padding:0 6px;font-family:monospace">{v:.1f}{"+" if k == 4 else ""}</span>'
        for k, v in enumerate(stops)
    )
    return (
        f"token NLL under the base SLM (nats; hover a token for its value): {swatches}",
        f"(token NLL under the base SLM, colour scale 0..{vmax:.2f} nats)",
    )


def nll_strip(
    token_texts: Sequence[str],
    token_nll: Sequence[float],
    title: str | None = None,
    vmax: float | None = None,
    cmap: str = _CMAP,
) -> TraceView:
    """One token strip: each token on a background coloured by its NLL (0..vmax, clipped above;
    default: the 98th percentile of these values; pass the same vmax to strips you compare)."""
    scale = _default_vmax(token_nll) if vmax is None else vmax
    legend_html, legend_text = _strip_legend(scale, cmap)
    return TraceView(
        [_strip_panel(title or "tokens", token_texts, token_nll, scale, cmap)], None, legend_html, legend_text
    )


def nll_view(
    tokenizer: Decoder,
    scored: Mapping[str, TraceNLL],
    title: str | None = None,
    vmax: float | None = None,
    cmap: str = _CMAP,
) -> TraceView:
    """Token strips side by side, one per scored trace (keys: stream names or labels), on one
    colour scale (default: the 98th percentile of all their token NLLs). `scored` holds
    `metrics.response_nll` results, e.g. those 07 has already computed."""
    for key, t in scored.items():
        if len(t.token_ids) != t.n_tokens:
            raise ValueError(
                f"nll_view {key!r}: the TraceNLL has no token ids (score it with metrics.response_nll)"
            )
    scale = _default_vmax([v for t in scored.values() for v in t.token_nll]) if vmax is None else vmax
    panels = [
        _strip_panel(label(key), token_texts(tokenizer, t.token_ids), t.token_nll, scale, cmap)
        for key, t in scored.items()
    ]
    legend_html, legend_text = _strip_legend(scale, cmap)
    return TraceView(panels, title, legend_html, legend_text)


def strips_view(
    strips: Mapping[str, tuple[Sequence[str], Sequence[float]]],
    title: str | None = None,
    vmax: float | None = None,
    cmap: str = _CMAP,
) -> TraceView:
    """Token strips side by side from stored (token texts, NLLs) per stream, on one colour scale
    (as `nll_view`, without a tokenizer: the tour reads them from a published examples.jsonl)."""
    scale = _default_vmax([v for _, nll in strips.values() for v in nll]) if vmax is None else vmax
    panels = [_strip_panel(label(key), texts, nll, scale, cmap) for key, (texts, nll) in strips.items()]
    legend_html, legend_text = _strip_legend(scale, cmap)
    return TraceView(panels, title, legend_html, legend_text)


def nll_strips(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    completions: Sequence[str],
    labels: Sequence[str] | None = None,
    title: str | None = None,
    vmax: float | None = None,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    cmap: str = _CMAP,
) -> TraceView:
    """Score each completion given its prompt with `metrics.response_nll` (the prompt as stored in
    the stream, chat template applied; the tokens perplexity measures) and show the token strips
    side by side on one colour scale. `labels` default to 'trace 1', 'trace 2', ..."""
    names = list(labels) if labels is not None else [f"trace {i + 1}" for i in range(len(completions))]
    if len(names) != len(completions):
        raise ValueError(f"nll_strips: {len(names)} labels for {len(completions)} completions")
    if len(set(names)) != len(names):
        raise ValueError(f"nll_strips: labels must be distinct, got {names}")
    scored = response_nll(model, tokenizer, prompts, completions, token_budget=token_budget, desc="strips")
    return nll_view(tokenizer, dict(zip(names, scored, strict=True)), title, vmax, cmap)
