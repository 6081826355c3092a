"""The real Oracle: prompts (params/prompts/) sent to an OpenAI-compatible endpoint.

Same methods as `paradox.toy.oracle.ToyOracle`, plus `*_many` batch versions that send their
requests concurrently (the notebooks call those, for either world).

Style-Aligned Refinement, real variant:
1. the trace is split into steps: blank-line separated paragraphs, as Qwen2.5-Math-PRM and
   ProcessBench do, or its lines when it has a single paragraph;
2. the `locate` prompt (ProcessBench's task) asks for the index of the earliest wrong step, or
   -1; an answer with no usable index counts as "not located" (counted, never a crash). With
   `oracle.locator: prm` a process reward model answers instead, on the same steps (`paradox.prm`);
3. the `style_align` prompt rewrites the steps from the wrong one on, in the SLM's own wording;
   the steps before it are kept verbatim (they are copied, not asked for).

The drift dial: f = 0 is that repair alone, f = 1 is exactly `refine`, otherwise the `drift`
prompt shows the repaired trace's steps (once, tagged) and rewrites the first m = round(f n) of
them in the Oracle's own notation; the rest is copied verbatim.

A garbage answer never becomes a training trace. An answer is not used when
- the request did not fit the Oracle's context (the client skips it): `<kind>_skipped`;
- it was cut at its completion limit (finish_reason "length": a partial rewrite): `<kind>_truncated`;
- it lacks the tag its prompt asks for (`<solution>`, `<rewrite>`; text after an opened but
  unclosed tag is used, the answer having ended by itself): `<kind>_untagged`;
- it is empty, or the tagged text is: `<kind>_empty`;
- (locate) it holds no usable step index: `locate_unparsed`; (style_align) the rewrite loses the
  trace's correct final answer: `style_align_answer_lost`.
Instead each kind keeps its fallback: refine -> the SLM-RFT trace; synthesize -> the SLM-RFT trace
too, when the caller gives it (`fallbacks`; see `synthesize_many` for why), else empty; locate ->
not located; style-align -> the original trace; drift -> the repaired trace; the retention judge ->
unscored (`paradox.retention`, through `OracleClient.complete_many`). Every count is in `stats()`
(zeros included, the keys of `FALLBACK_COUNTS`, which the toy Oracle reports too), beside the
client's own counts. Nothing here raises on a model's output.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from paradox.grading import grade
from paradox.problems import Problem

if TYPE_CHECKING:
    from paradox.locators import Locator
    from paradox.oracle_client import Answer

# Placeholders each prompt file must contain ({n_steps} is optional everywhere, {n_total} in drift).
REQUIRED = {
    "refine": ("{question}", "{trace}"),
    "synthesize": ("{question}",),
    "locate": ("{question}", "{steps}"),
    "style_align": ("{question}", "{steps}", "{index}"),
    "drift": ("{steps}", "{last}"),  # {steps}: every step; {last}: the last one to rewrite
}

BLANK_LINE = re.compile(r"\n[ \t]*\n")
NEWLINE = re.compile(r"\n")
THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)
BOXED_INT = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")
# Fallback when there is no \boxed{}: "index is 2", "Answer: -1" (never "paragraph 3 is fine").
STATED_INT = re.compile(r"\b(?:index|answer)\s*(?:is|:|=)\s*[*`$]*\s*(-?\d+)", re.IGNORECASE)

# The tag each rewriting prompt asks its answer to be in.
TAGS = {"refine": "solution", "synthesize": "solution", "style_align": "rewrite", "drift": "rewrite"}
# Why an answer was not used, per kind of request (the counts `stats()` always reports).
FALLBACK_COUNTS = (
    *(f"{kind}_{why}" for kind in TAGS for why in ("skipped", "truncated", "untagged", "empty")),
    "locate_skipped",
    "locate_truncated",
    "locate_unparsed",
    "style_align_answer_lost",
)


class BatchCompleter(Protocol):
    """`paradox.oracle_client.OracleClient`: answers with their finish reason, skipped when a
    request does not fit the context."""

    def answer_many(
        self,
        prompts: list[str],
        *,
        kind: str = ...,
        sources: Sequence[str | None] | None = ...,
        desc: str | None = ...,
    ) -> list[Answer]: ...


@dataclass(frozen=True)
class Steps:
    """A trace cut into steps; `spans` are (start, end) of each step's text in `text`."""

    text: str
    spans: list[tuple[int, int]]
    mode: str  # "paragraph" | "line"

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, i: int) -> str:
        s, e = self.spans[i]
        return self.text[s:e]

    @property
    def items(self) -> list[str]:
        return [self[i] for i in range(len(self))]

    def head(self, i: int) -> str:
        """The text before step i, verbatim (separator included); the whole text for i = len."""
        return self.text if i >= len(self) else self.text[: self.spans[i][0]]

    def tail(self, i: int) -> str:
        """The text from step i on, verbatim."""
        return "" if i >= len(self) else self.text[self.spans[i][0] :]


def split_steps(trace: str, mode: str | None = None) -> Steps:
    """Blank-line separated paragraphs; the lines when the trace has a single paragraph."""
    if mode is None:
        mode = "paragraph" if BLANK_LINE.search(trace.strip()) else "line"
    sep = BLANK_LINE if mode == "paragraph" else NEWLINE
    spans, pos = [], 0
    for m in [*sep.finditer(trace), None]:
        end = len(trace) if m is None else m.start()
        chunk = trace[pos:end]
        if chunk.strip():
            spans.append((pos + len(chunk) - len(chunk.lstrip()), pos + len(chunk.rstrip())))
        if m is not None:
            pos = m.end()
    return Steps(trace, spans, mode)


def tag_steps(steps: list[str], first: int = 0) -> str:
    """ProcessBench's layout: each step in <paragraph_i> tags, indexed from `first`."""
    return "\n\n".join(f"<paragraph_{first + i}>\n{s}\n</paragraph_{first + i}>" for i, s in enumerate(steps))


def fill(template: str, **fields: object) -> str:
    """str.replace, not str.format: math is full of braces."""
    for key, value in fields.items():
        template = template.replace("{" + key + "}", str(value))
    return template


def strip_think(answer: str | None) -> str:
    """Drop a leading <think>...</think> block (reasoning models served without a reasoning parser)."""
    return THINK.sub("", answer or "", count=1)


def parse_index(answer: str | None, n_steps: int) -> tuple[int | None, bool]:
    """(earliest wrong step or None for -1, parsed?) from a locate answer.

    The last \\boxed{int} wins; failing that, the last "index is N" / "answer: N"; failing that, a
    bare integer answer. Anything else, or an index outside [-1, n_steps), is not parsed.
    """
    text = strip_think(answer).strip()
    found = BOXED_INT.findall(text) or STATED_INT.findall(text)
    if not found and re.fullmatch(r"-?\d+\.?", text):
        found = [text.rstrip(".")]
    if not found:
        return None, False
    i = int(found[-1])
    if i == -1:
        return None, True
    return (i, True) if 0 <= i < n_steps else (None, False)


def extract(answer: str | None, tag: str) -> str | None:
    """The text inside the last <tag>...</tag> (or after an unclosed <tag>); None when the answer
    has no <tag> (the prompt asked for one: what else it says is not the rewrite)."""
    text = strip_think(answer)
    opened = text.rfind(f"<{tag}>")
    if opened < 0:
        return None
    text = text[opened + len(tag) + 2 :]
    closed = text.find(f"</{tag}>")
    text = text if closed < 0 else text[:closed]
    return text.strip("\n").rstrip()


def load_prompts(paths: dict[str, str], root: Path | str = ".") -> dict[str, str]:
    out = {}
    for name, rel in paths.items():
        path = Path(root) / rel
        text = path.read_text()
        missing = [f for f in REQUIRED[name] if f not in text]
        if missing:
            raise ValueError(f"{path}: the {name} prompt lacks the placeholder(s) {missing}")
        out[name] = text
    return out


class PromptOracle:
    """The Oracle behind an OpenAI-compatible endpoint, with the prompts of `params.oracle.prompts`."""

    def __init__(
        self,
        client: BatchCompleter,
        prompts: dict[str, str],
        name: str = "oracle",
        servers: Sequence[Any] = (),
        locator: Locator | None = None,
    ) -> None:
        """`servers`: managed servers behind the client (`paradox.serving`), stopped by `close()`.
        `locator`: where the first wrong step comes from (`oracle.locator: prm`, a process reward model
        indexing `split_steps` as the `locate` prompt does); None: the `locate` prompt."""
        missing = set(REQUIRED) - set(prompts)
        if missing:
            raise ValueError(f"PromptOracle needs prompts for {sorted(missing)}")
        self.client, self.prompts, self.name = client, prompts, name
        self.servers = list(servers)
        self.locator = locator
        self._stats: Counter[str] = Counter()

    def close(self) -> None:
        """Stop the managed servers, if any, and free the locator's weights (the stage is done)."""
        for server in self.servers:
            server.stop()
        self.servers = []
        if self.locator is not None:
            self.locator.close()

    def stats(self) -> dict[str, int]:
        """Answers not used, per kind and reason (`FALLBACK_COUNTS`, zeros included), plus the
        client's request counts, if it has them, and the locator's, if one was handed over."""
        client_stats = getattr(self.client, "stats", None)
        own = {k: self._stats[k] for k in FALLBACK_COUNTS}
        located = self.locator.stats() if self.locator is not None else {}
        return {**own, **(client_stats() if callable(client_stats) else {}), **located}

    def _text(self, answer: str | None, kind: str) -> str | None:
        """The tagged text of a usable answer; None (counted `<kind>_untagged` / `<kind>_empty`)
        for an answer without its tag or with nothing in it. `answer` None: already counted."""
        if answer is None:
            return None
        text = extract(answer, TAGS[kind])
        if not strip_think(answer).strip():
            why: str | None = "empty"  # nothing at all, tag or not
        else:
            why = "untagged" if text is None else "empty" if not text.strip() else None
        if why is not None:
            self._stats[f"{kind}_{why}"] += 1
            return None
        return text

    def _ask(
        self, prompts: list[str], kind: str, desc: str, sources: list[str] | None = None
    ) -> list[str | None]:
        """The answers' text; None for a request skipped (did not fit) or cut at its limit, counted
        as `<kind>_skipped` / `<kind>_truncated` (the caller keeps its fallback)."""
        if not prompts:
            return []
        out: list[str | None] = []
        for a in self.client.answer_many(prompts, kind=kind, sources=sources, desc=desc):
            if a.skipped or a.truncated:
                self._stats[f"{kind}_{'skipped' if a.skipped else 'truncated'}"] += 1
            out.append(None if a.skipped or a.truncated else a.text)
        return out

    # --- Oracle-Refined and Oracle-Synthesized ------------------------------------------------
    def refine_many(self, problems: list[Problem], traces: list[str]) -> list[str]:
        """Minimal repair of each trace, in whatever notation the Oracle writes."""
        answers = self._ask(
            [
                fill(self.prompts["refine"], question=p.question, trace=t)
                for p, t in zip(problems, traces, strict=True)
            ],
            "refine",
            "oracle refine",
            list(traces),
        )
        texts = [self._text(a, "refine") for a in answers]
        return [trace if t is None else t for trace, t in zip(traces, texts, strict=True)]  # else: the trace

    def synthesize_many(self, problems: list[Problem], fallbacks: list[str] | None = None) -> list[str]:
        """The Oracle's own solution from scratch. An answer not used (see the module docstring)
        becomes `fallbacks[i]`, the problem's SLM-RFT trace, or "" without `fallbacks`.

        Why the RFT trace: the streams are compared on the same problems, so a failed answer must
        keep its problem (dropping it would shrink this stream alone), and an empty or garbage
        trace must not be trained on. The RFT trace is correct, exists for every problem, is
        refine's fallback too, and pulls this stream towards the baseline it is compared with: the
        fallbacks work against the gap the paper reports, not for it. The reference solution
        would be a third model's writing in a stream meant to be the Oracle's. Counted, so a stream
        with many fallbacks is visible in `stats()`."""
        if fallbacks is not None and len(fallbacks) != len(problems):
            raise ValueError(f"{len(fallbacks)} fallbacks for {len(problems)} problems")
        answers = self._ask(
            [fill(self.prompts["synthesize"], question=p.question) for p in problems],
            "synthesize",
            "oracle synthesize",
        )
        keep = [""] * len(problems) if fallbacks is None else list(fallbacks)
        texts = [self._text(a, "synthesize") for a in answers]
        return [k if t is None else t for k, t in zip(keep, texts, strict=True)]

    # --- Style-Aligned Refinement -------------------------------------------------------------
    def locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]:
        """Earliest wrong step (index into `split_steps(trace)`), or None: none, or not located; from
        the locator handed over (a PRM), else from the `locate` prompt."""
        if self.locator is not None:
            return self.locator.locate_many(problems, traces)
        return self.own_locate_many(problems, traces)

    def own_locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]:
        """The `locate` prompt's answer, whatever the locator: ProcessBench's task, one request per trace."""
        steps = [split_steps(t) for t in traces]
        answers = self._ask(
            [
                fill(self.prompts["locate"], question=p.question, steps=tag_steps(s.items), n_steps=len(s))
                for p, s in zip(problems, steps, strict=True)
            ],
            "locate",
            "oracle locate",
        )
        out: list[int | None] = []
        for s, ans in zip(steps, answers, strict=True):
            if ans is None:  # skipped or cut off before its final index: not located (counted in _ask)
                out.append(None)
                continue
            index, parsed = parse_index(ans, len(s))
            if not parsed:
                self._stats["locate_unparsed"] += 1  # counted as "not located"
            out.append(index)
        return out

    def rewrite_in_style_many(
        self, problems: list[Problem], traces: list[str], first_wrong: list[int | None]
    ) -> list[tuple[str, list[int]]]:
        """Rewrite the steps from the first wrong one on, in the trace's own wording.

        Returns (trace, changed step indices); the steps before the wrong one are copied verbatim.
        A trace with no located error is returned as is, with no change.
        """
        steps = [split_steps(t) for t in traces]
        todo = [i for i, k in enumerate(first_wrong) if k is not None and k < len(steps[i])]
        answers = self._ask(
            [
                fill(
                    self.prompts["style_align"],
                    question=problems[i].question,
                    trace=traces[i],
                    steps=tag_steps(steps[i].items),
                    index=first_wrong[i],
                    n_steps=len(steps[i]),
                )
                for i in todo
            ],
            "style_align",
            "oracle style-align",
            [steps[i].tail(first_wrong[i]) for i in todo],  # type: ignore[arg-type]  # todo: located steps only (int)
        )
        out: list[tuple[str, list[int]]] = [(t, []) for t in traces]
        for i, ans in zip(todo, answers, strict=True):
            k, orig = first_wrong[i], steps[i]
            assert k is not None
            new_tail = self._text(ans, "style_align")
            if new_tail is None:  # skipped, cut off, no tag or empty: the original, unchanged (counted)
                continue
            trailing = orig.text[len(orig.text.rstrip()) :]  # keep the original's final newline(s)
            rewrite = orig.head(k) + new_tail.lstrip() + trailing
            if grade(orig.text, problems[i].answer) and not grade(rewrite, problems[i].answer):
                # The "repair" broke a correct answer: keep the original.
                self._stats["style_align_answer_lost"] += 1
                continue
            new = split_steps(rewrite, orig.mode)
            changed = [
                j
                for j in range(k, max(len(new), len(orig)))
                if j >= len(new) or j >= len(orig) or new[j] != orig[j]
            ]
            out[i] = (rewrite, changed)
        return out

    # --- the drift dial -----------------------------------------------------------------------
    def rewrite_fraction_many(self, problems: list[Problem], traces: list[str], fraction: float) -> list[str]:
        """f = 0: the style-aligned repair alone; f = 1: `refine`; otherwise the first round(f n)
        steps of the repaired trace in the Oracle's notation, the rest verbatim."""
        if fraction >= 1.0:
            return self.refine_many(problems, traces)
        # The repair's requests repeat for every fraction, and come from the cache after the first.
        first_wrong = self.locate_many(problems, traces)
        repaired = [r for r, _ in self.rewrite_in_style_many(problems, traces, first_wrong)]
        if fraction <= 0.0:
            return repaired
        steps = [split_steps(t) for t in repaired]
        m = [round(fraction * len(s)) for s in steps]
        todo = [i for i, n in enumerate(m) if n > 0]
        # Every step is shown once, tagged (the context), and the first m are asked for: the trace is
        # in the prompt once, not twice, so the request fits the context as a refine does.
        answers = self._ask(
            [
                fill(
                    self.prompts["drift"],
                    question=problems[i].question,
                    steps=tag_steps(steps[i].items),
                    n_steps=m[i],
                    last=m[i] - 1,
                    n_total=len(steps[i]),
                )
                for i in todo
            ],
            "drift",
            f"oracle drift {fraction:g}",
            [steps[i].head(m[i]) for i in todo],
        )
        out = list(repaired)
        for i, ans in zip(todo, answers, strict=True):
            text = self._text(ans, "drift")
            if text is None:  # skipped, cut off, no tag or empty: the repaired trace (counted)
                continue
            head = text.strip()
            s, n = steps[i], m[i]
            sep = s.text[s.spans[n - 1][1] : s.spans[n][0]] if n < len(s) else s.text[s.spans[-1][1] :]
            out[i] = head + sep + s.tail(n)
        return out

    # --- one problem at a time (the ToyOracle interface) ---------------------------------------
    def refine(self, problem: Problem, trace: str) -> str:
        return self.refine_many([problem], [trace])[0]

    def synthesize(self, problem: Problem, fallback: str | None = None) -> str:
        return self.synthesize_many([problem], None if fallback is None else [fallback])[0]

    def first_wrong_step(self, problem: Problem, trace: str) -> int | None:
        return self.locate_many([problem], [trace])[0]

    def rewrite_in_style(self, problem: Problem, trace: str) -> tuple[str, list[int]]:
        return self.rewrite_in_style_many([problem], [trace], [self.first_wrong_step(problem, trace)])[0]

    def rewrite_fraction(self, problem: Problem, trace: str, fraction: float) -> str:
        return self.rewrite_fraction_many([problem], [trace], fraction)[0]
