"""Rejection sampling: one correct trace per solvable problem, lightly cleaned."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

# A line that states a final answer: a boxed result, "... answer is ...", "Final Answer:", "#### n".
ANSWER_MARK = re.compile(r"\\boxed\s*\{|\\fbox\s*\{|answer is|final answer\s*:|^\s*####", re.IGNORECASE)
# A line that opens a turn or a problem the model invented after its solution: a role or
# question label ("Human:", "User:", "Question:", "Problem:", "Q:"), a Markdown heading for a new
# problem, a chat-template token written out, or a bare role name (what a chat template's
# `<|im_start|>user` leaves once special tokens are skipped in decoding).
NEW_TURN = re.compile(
    r"^\s*(?:(?:human|user|assistant|question|problem|q)\s*[:：]"
    r"|#+\s*(?:new\s+|next\s+|another\s+)?(?:problem|question|exercise)\b"
    r"|<\|(?:im_start|im_end|endoftext|user|assistant)\|>)"
    r"|^(?:user|assistant|system)$",
    re.IGNORECASE,
)
FENCE = re.compile(r"^\s*(```|~~~)")
# Display math or an environment left open on the answer line ("\[", "$$", "\begin{aligned}").
OPENERS = re.compile(r"\\\[|\\\(|\\begin\{")
CLOSERS = re.compile(r"\\\]|\\\)|\\end\{")


def _math_depth(line: str) -> int:
    return len(OPENERS.findall(line)) - len(CLOSERS.findall(line)) + line.count("$$") % 2


def clean(trace: str) -> str:
    """Light cleaning: remove generation noise, keep the SLM's own layout.

    Kept as written: blank lines between steps, indentation, code blocks and their printed output
    (```python / ```output fences), Markdown, LaTeX. Qwen2.5-Math separates steps with blank lines
    and writes indented code; that layout is the style the paper measures, so the streams must
    differ only in content. What is removed:

    1. whitespace at the end of each line, before the first text and after the last (Windows
       line ends become "\\n");
    2. everything from the first line (after the first) that opens an invented new turn or problem:
       "Human:", "User:", "Question:", "Problem:", "Q:", "## New Problem", a chat-template token
       written out, or a bare "user"/"assistant" line;
    3. everything after the conclusion. The conclusion is the LAST line, outside code blocks and
       before any invented turn, that states a final answer: it contains `\\boxed{` (or `\\fbox{`),
       "answer is", "Final Answer:", or starts with "####". The last, not the first, because the
       grader (math-verify) reads the last boxed answer and because a solution may box a part or
       an intermediate result, verify it (code and its output) and box again at the end. That
       whole line is kept, so a boxed answer in mid-sentence keeps its sentence ("so x =
       \\boxed{5}, the only root."); if the line leaves display math or an environment open
       ("\\[" ... "\\]", "$$" ... "$$", "\\begin{..}" ... "\\end{..}"), the lines that close it are
       kept too (within the paragraph). What follows the conclusion ("I hope it is correct." on
       a line of its own, a new problem without a label or an answer) is dropped; an answer
       restated after it is itself the last answer line, and stays.
       A `\\boxed{` inside a code block (a `print` of LaTeX, an ```output block) is not a
       conclusion.

    A trace with no answer statement is kept whole (after steps 1-2). `select` re-grades every
    cleaned trace, so a cut that loses the answer drops the trace. This is `rft.clean: layout`, the
    default for a real world; the toy world keeps `clean_lines`.
    """
    lines = [ln.rstrip() for ln in trace.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    in_code, code = False, []
    for ln in lines:
        fence = bool(FENCE.match(ln))
        code.append(in_code or fence)
        in_code ^= fence
    end = len(lines)
    for i, ln in enumerate(lines):
        if i > 0 and not code[i] and NEW_TURN.search(ln):
            end = i
            break
    answers = [i for i in range(end) if not code[i] and ANSWER_MARK.search(lines[i])]
    if answers:
        last = answers[-1]
        depth = sum(_math_depth(lines[i]) for i in range(last + 1) if not code[i])
        while depth > 0 and last + 1 < end and lines[last + 1].strip():
            last += 1
            depth += _math_depth(lines[last])
        end = last + 1
    kept = lines[:end]
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept).lstrip()


FIRST_ANSWER_LINE = re.compile(r"answer is|\\boxed\{|^####", re.IGNORECASE)


def clean_lines(trace: str) -> str:
    """Light cleaning for an SLM that writes one step per line (the toy SLM): every line stripped,
    blank lines dropped, and the trace cut after its FIRST line that states the answer. The toy
    SLM's layout has no blank lines or indentation, so any in its samples are noise; this is the
    rule the toy world has always used (`rft.clean: lines`, the toy world's default)."""
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if FIRST_ANSWER_LINE.search(ln):
            return "\n".join(lines[: i + 1])
    return "\n".join(lines)


CLEANERS: dict[str, Callable[[str], str]] = {"layout": clean, "lines": clean_lines}


def select(
    samples: Sequence[dict[str, Any]],
    rule: str,
    seed: int,
    do_clean: bool | str = True,
    still_correct: Callable[[str, str], bool] | None = None,
) -> dict[str, str]:
    """samples: rows {id, sample, text, correct}. Returns {problem id: chosen trace} for every
    problem with at least one correct sample. `rule`: first | shortest | random. `do_clean`:
    "layout" (`clean`, also for True), "lines" (`clean_lines`) or False (no cleaning).

    `still_correct(id, cleaned_text)` re-grades a trace after cleaning: a garbled sample can be
    graded right on its raw text yet lose its answer when cut at its conclusion, and cleaning must
    never turn a correct trace into a wrong one.
    """
    if do_clean not in (True, False, *CLEANERS):
        raise ValueError(f"unknown RFT cleaning {do_clean!r}; known: {[True, False, *CLEANERS]}")
    cleaner = None if do_clean is False else CLEANERS["layout" if do_clean is True else do_clean]
    correct: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in samples:
        if not row["correct"]:
            continue
        text = cleaner(row["text"]) if cleaner else row["text"]
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
