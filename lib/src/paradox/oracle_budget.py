"""Every Oracle request fits the Oracle's context: prompt tokens + completion limit <= context - margin.

The same arithmetic serves three checks (docs/budgets.md):

- run time (`OracleClient`, for each request): the prompt is counted as the server will see it (the
  Oracle's tokenizer and chat template, `OracleTokenizer`), the completion limit of its kind
  (`oracle.answers`) is capped to what the context leaves, and a request with less room than its
  kind's minimum is not sent: it is skipped and counted, and the caller keeps its fallback;
- plan time (`make plan`, nothing loaded): every prompt template of the profile, on the longest
  question and trace the profile allows (`rft.max_question_tokens`, `rft.max_trace_tokens`), must
  fit with its full completion limit. Without a tokenizer the template's own text is bounded by
  `oracle.template_tokens_per_byte` x its UTF-8 bytes (1.0 is safe: a byte-level BPE tokenizer, as
  the Qwen2.5 and Llama-3 families use, never needs more than one token per byte) and the chat
  template by `oracle.chat_template_tokens`;
- the first minute of notebook 01 (the tokenizer loaded): the same check with exact token counts of
  the templates, and the two assumptions above checked against the real tokenizer, before any
  sampling.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paradox.params import AnswerTokens, Params
from paradox.paths import local_or_hub, resolve
from paradox.prompt_oracle import split_steps, tag_steps
from paradox.streams import DRIFT_PREFIX, drift_fraction, drift_stream

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

KINDS = ("refine", "synthesize", "locate", "style_align", "drift", "retention_judge")
# Placeholders a template may hold (real_oracle.fill and retention fill them); anything else in
# braces (\boxed{}) is the template's own text.
PLACEHOLDER = re.compile(r"\{(question|trace|steps|index|n_steps|n_total|last|original|rewrite)\}")
NUMBERS = (
    "index",
    "n_steps",
    "n_total",
    "last",
)  # step numbers: at most as many digits as the trace bound has


class BudgetError(ValueError):
    """A profile whose Oracle requests cannot fit, or an Oracle tokenizer that cannot count them."""


@dataclass(frozen=True)
class Limits:
    """One request's completion limits before the context caps them: asked for, and the least worth sending."""

    want: int
    need: int


def limits(answer: AnswerTokens, cap: int, source_tokens: int = 0) -> Limits:
    """`answer` for a request rewriting a text of `source_tokens` tokens, capped by `cap`
    (oracle.max_tokens). A cap below the minimum lowers the minimum too: the request goes out with
    the cap and a cut answer is counted as truncated (`make plan` reports such a cap as an error)."""
    extra = math.ceil(answer.per_source_token * source_tokens)
    want = min(cap, answer.max_tokens + extra)
    return Limits(want, min(want, answer.min_tokens + extra))


def fit(prompt_tokens: int, lim: Limits, context: int, margin: int) -> int | None:
    """The completion limit to send, or None when less than `lim.need` is left (do not send)."""
    left = context - margin - prompt_tokens
    return None if left < lim.need else min(lim.want, left)


def trace_tokens(trace: str, count: Callable[[str], int]) -> int:
    """A trace's length as the Oracle's prompts show it: the larger of the plain text (refine, the
    judge) and its step-tagged form (locate, style-align, drift). This is what rft.max_trace_tokens bounds."""
    return max(count(trace), count(tag_steps(split_steps(trace).items)))


# --- the tokenizer --------------------------------------------------------------------------------


class OracleTokenizer:
    """Counts prompt tokens as an OpenAI-compatible server does: the user message inside the model's
    chat template with the generation prompt, tokenized without extra special tokens (vLLM's
    default for chat requests). Loaded on first use; thread-safe."""

    def __init__(self, name_or_path: str, chat_template_tokens: int | None = None) -> None:
        self.name = name_or_path
        self.chat_template_tokens = chat_template_tokens
        self._tok: PreTrainedTokenizerBase | None = None
        self._lock = threading.Lock()

    def _load(self) -> PreTrainedTokenizerBase:
        if self._tok is None:
            try:
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(local_or_hub(self.name))
            except Exception as err:  # noqa: BLE001 - any failure here has one remedy, named below
                raise BudgetError(
                    f"oracle.tokenizer {self.name!r} could not be loaded ({type(err).__name__}: "
                    f"{str(err)[:300]}); set oracle.tokenizer to the Oracle's tokenizer (a hub id or "
                    "a local path, with its chat template), or unset oracle.context_length to send "
                    "requests uncounted"
                ) from None
            if not getattr(tok, "chat_template", None):
                raise BudgetError(
                    f"oracle.tokenizer {self.name!r} has no chat template: the server wraps every "
                    "prompt in one, so prompts cannot be counted as it sees them"
                )
            self._tok = tok
            overhead = self._prompt(tok, "")
            if self.chat_template_tokens is not None and overhead > self.chat_template_tokens:
                raise BudgetError(
                    f"the chat template of {self.name!r} adds {overhead} tokens around a prompt, "
                    f"more than oracle.chat_template_tokens ({self.chat_template_tokens}) that "
                    f"`make plan` assumed: raise oracle.chat_template_tokens to {overhead}"
                )
        return self._tok

    @staticmethod
    def _prompt(tok: PreTrainedTokenizerBase, prompt: str) -> int:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return len(tok(text, add_special_tokens=False)["input_ids"])

    def prompt_tokens(self, prompt: str) -> int:
        with self._lock:
            return self._prompt(self._load(), prompt)

    def text_tokens(self, text: str) -> int:
        with self._lock:
            return len(self._load()(text, add_special_tokens=False)["input_ids"])


# --- plan time ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestBudget:
    """The longest request of one kind: prompt bound + completion limit + margin vs the context."""

    kind: str
    prompt: int  # upper bound on the prompt's tokens, chat template included
    completion: int  # the completion limit asked for at that bound
    need: int  # the kind's minimum there (fewer tokens left: not sent)
    context: int
    margin: int
    exact: bool  # template tokens counted with the tokenizer (else bounded by bytes)

    @property
    def total(self) -> int:
        return self.prompt + self.completion + self.margin

    @property
    def fits(self) -> bool:
        return self.total <= self.context


def load_templates(params: Params) -> dict[str, str]:
    """The profile's prompt templates, by kind (real_oracle.load_prompts checks their placeholders)."""
    from paradox.paths import project_root
    from paradox.prompt_oracle import load_prompts
    from paradox.retention import load_prompt

    out = load_prompts(params.oracle.prompts.model_dump(), root=project_root())
    out["retention_judge"] = load_prompt(resolve(params.analysis.retention_prompt))
    return out


def _stream_bound(params: Params, stream: str, t: int, repaired: int) -> int | None:
    """Tokens of a stream's trace, as the judge's {rewrite} (None: not bounded by params)."""
    a, cap = params.oracle.answers, params.oracle.max_tokens
    if stream == "slm_rft":
        return t
    if stream == "oracle_refined":
        return limits(a.refine, cap, t).want
    if stream == "oracle_synthesized":
        return limits(a.synthesize, cap).want
    if stream == "style_aligned":
        return repaired
    if stream == "compat_selected":
        bounds = [_stream_bound(params, s, t, repaired) for s in params.selection.candidates]
        return None if None in bounds else max(b for b in bounds if b is not None)
    if stream.startswith(DRIFT_PREFIX):
        f = drift_fraction(stream)
        if f <= 0:
            return repaired
        if f >= 1:
            return limits(a.refine, cap, t).want
        # restyled head (its own limit) + the rest of the repaired trace
        return max(repaired, limits(a.drift, cap, repaired).want)
    return None  # ground_truth: the dataset's own solutions


def placeholder_bounds(params: Params) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Per kind, a token bound for each placeholder; and notes on what params cannot bound."""
    r, o = params.rft, params.oracle
    assert r.max_question_tokens is not None and r.max_trace_tokens is not None
    q, t = r.max_question_tokens, r.max_trace_tokens
    digits = len(str(t))  # a step number is below the number of steps, itself below the trace's tokens
    # A style-aligned repair keeps the steps before the wrong one and rewrites the rest within its
    # limit: at most that limit more than the trace. Assumed to hold for its step-tagged form too.
    repaired = max(t, limits(o.answers.style_align, o.max_tokens, t).want)
    judged = [
        s
        for s in [
            *params.train.streams,
            *(["compat_selected"] if params.selection.enabled else []),
            *[drift_stream(f) for f in params.drift.fractions],
        ]
        if s != "slm_rft"
    ]
    rewrites = {s: _stream_bound(params, s, t, repaired) for s in dict.fromkeys(judged)}
    unbounded = [s for s, b in rewrites.items() if b is None]
    notes = []
    if unbounded:
        notes.append(
            f"retention_judge on {unbounded}: not bounded by params (the dataset's solutions); a pair "
            "that does not fit is skipped and counted (unscored)"
        )
    rewrite = max([b for b in rewrites.values() if b is not None], default=t)
    num = dict.fromkeys(NUMBERS, digits)
    per_kind = {
        "refine": {"question": q, "trace": t, **num},
        "synthesize": {"question": q, **num},
        "locate": {"question": q, "trace": t, "steps": t, **num},
        "style_align": {"question": q, "trace": t, "steps": t, **num},
        "drift": {"question": q, "trace": repaired, "steps": repaired, **num},
        "retention_judge": {"original": t, "rewrite": rewrite},
    }
    return per_kind, notes


def source_bound(params: Params, kind: str) -> int:
    """Tokens of the text a kind's answer rewrites, at the profile's bounds (0: it rewrites none)."""
    o, t = params.oracle, params.rft.max_trace_tokens or 0
    if kind in ("refine", "style_align"):
        return t
    if kind == "drift":
        return max(t, limits(o.answers.style_align, o.max_tokens, t).want)
    return 0


def template_bound(params: Params, own_text: str) -> int:
    """Plan-time bound on the tokens of a template's own text (placeholders removed)."""
    return math.ceil(params.oracle.template_tokens_per_byte * len(own_text.encode()))


def request_budgets(
    params: Params, templates: dict[str, str], count_prompt: Callable[[str], int] | None = None
) -> tuple[list[RequestBudget], list[str]]:
    """The longest request of every kind the profile sends. `count_prompt` (a prompt -> tokens with
    the chat template, `OracleTokenizer.prompt_tokens`) makes the template counts exact; without
    it they are bounded by `template_bound` plus oracle.chat_template_tokens."""
    o = params.oracle
    assert o.context_length is not None
    bounds, notes = placeholder_bounds(params)
    out = []
    for kind in KINDS:
        text = templates[kind]
        found = PLACEHOLDER.findall(text)
        own = PLACEHOLDER.sub("", text)
        fixed = (
            template_bound(params, own) + o.chat_template_tokens
            if count_prompt is None
            else count_prompt(own)
        )
        # + 1 per placeholder: a token may straddle the seam between template text and the filled text
        prompt = fixed + sum(bounds[kind].get(name, 0) + 1 for name in found)
        lim = limits(getattr(o.answers, kind), o.max_tokens, source_bound(params, kind))
        out.append(
            RequestBudget(
                kind, prompt, lim.want, lim.need, o.context_length, o.context_margin, count_prompt is not None
            )
        )
    return out, notes


def check(params: Params, tokenizer: OracleTokenizer | None = None) -> tuple[list[str], list[str]]:
    """(lines to print, errors naming the key to change) for a profile's Oracle requests: with
    bounds only (`make plan`), or with the Oracle's tokenizer (notebook 01), which also checks the
    bounds `make plan` assumed."""
    o, r = params.oracle, params.rft
    if o.backend != "openai":
        return ["Oracle requests: the toy Oracle (a rule) has no context to fit"], []
    if o.context_length is None:
        return [
            f"Oracle requests: not counted (oracle.context_length is not set): every request asks for "
            f"{o.max_tokens:,} completion tokens, and a context-length refusal is skipped and counted"
        ], []
    templates = load_templates(params)
    errors = []
    if tokenizer is not None:  # what `make plan` assumed, against the real tokenizer
        for kind, text in templates.items():
            own = PLACEHOLDER.sub("", text)
            n, bound = tokenizer.text_tokens(own), template_bound(params, own)
            if n > bound:
                errors.append(
                    f"the {kind} template takes {n:,} tokens, more than the {bound:,} that `make plan` "
                    f"assumed (oracle.template_tokens_per_byte {o.template_tokens_per_byte:g} x "
                    f"{len(own.encode()):,} bytes): raise oracle.template_tokens_per_byte to "
                    f"{n / len(own.encode()):.3f} or more"
                )
    budgets, notes = request_budgets(params, templates, tokenizer.prompt_tokens if tokenizer else None)
    how = (
        "template tokens counted with the Oracle's tokenizer"
        if tokenizer
        else (
            f"template text <= {o.template_tokens_per_byte:g} token(s) per UTF-8 byte (oracle.template_tokens_per_byte), "
            "chat template <= oracle.chat_template_tokens"
        )
    )
    lines = [
        f"Oracle requests in a {o.context_length:,}-token context (oracle.context_length), for a question of "
        f"<= {r.max_question_tokens:,} and a (step-tagged) trace of <= {r.max_trace_tokens:,} tokens "
        f"(rft.max_question_tokens, rft.max_trace_tokens); {how}; margin {o.context_margin}:"
    ]
    for b in budgets:
        lines.append(
            f"  {b.kind:<16} prompt <= {b.prompt:>5,} + completion {b.completion:>5,} + margin = "
            f"{b.total:>5,} {'fits' if b.fits else 'DOES NOT FIT'} (sent with at least {b.need:,} "
            "completion tokens left)"
        )
        if not b.fits:
            errors.append(
                f"Oracle {b.kind} request: prompt <= {b.prompt:,} + completion {b.completion:,} + margin "
                f"{b.margin} = {b.total:,} tokens > oracle.context_length {b.context:,}; lower "
                f"rft.max_trace_tokens ({r.max_trace_tokens:,}) or rft.max_question_tokens "
                f"({r.max_question_tokens:,}), or oracle.answers.{b.kind}.max_tokens"
            )
        answer = getattr(o.answers, b.kind)
        floor = answer.min_tokens + math.ceil(answer.per_source_token * source_bound(params, b.kind))
        if o.max_tokens < floor:
            errors.append(
                f"oracle.max_tokens ({o.max_tokens:,}) is below the {floor:,} tokens a {b.kind} answer needs "
                f"at the longest trace (oracle.answers.{b.kind}): raise oracle.max_tokens"
            )
    lines += [f"  note: {n}" for n in notes]
    return lines, errors
