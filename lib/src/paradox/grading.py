"""The one grader of every stage: math-verify, with golds parsed the way they are published.

`grade(completion, gold)` is True iff the completion's final answer equals the gold answer:
- the gold (a `Problem.answer`: bare LaTeX such as `3\\sqrt{13}`, `6 - 5i`, `1,-2`, a matrix, a
  number, or several answers joined by ", ") is rewritten (`paradox.answers`) and parsed as
  inline math. math-verify only finds LaTeX inside a math environment: parsed bare, `3\\sqrt{13}`
  read as 3 and `6 - 5i` as 5, so that is the one thing the old grader got most wrong;
- the prediction is extracted as math-verify does (the last `\\boxed{}`, its sibling boxes
  joined as a set; "final answer is"; "answer"; the last number), with two additions: a last
  line `#### <number>` (GSM8K's convention) is the answer when there is no box, and the answer
  spans get the rewrites of `paradox.answers` (e.g. `4.5e33`);
- equality is math-verify's `verify`: numbers within its float rounding, symbolic equality,
  sets regardless of order (several answers must all be given, no more), tuples and intervals
  by position and bracket, matrices entry by entry, `\\text{}` answers by their text, and a
  relation against a gold set (`x > 3` for `(3, \\infty)`) by the set it describes.

Empty, truncated or unparseable output is graded wrong, and so is any input that is not text;
nothing raises. One call takes at most `timeout_s` seconds of wall time in total (math-verify's
own per-step limits are switched off in favour of `paradox.time_limit`).

`grade_many` grades a list in worker processes (math-verify's limits need a main thread, which
every `ProcessPoolExecutor` worker has), in chunks, with a progress bar, results in input order.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import logging
import math
import multiprocessing
import os
import re
import signal
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import math_verify.grader
import math_verify.parser
import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from tqdm.auto import tqdm

from paradox.answers import canonical_gold, choice_readings, gold_latex, rewrite_answer
from paradox.time_limit import TimeLimitExceeded, in_main_thread, time_limit

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
# The overall limit replaces math-verify's per-step ones; it warns once when they are off.
math_verify.parser.TIMEOUT_WARNING_SHOWN = True
math_verify.grader.TIMEOUT_WARNING_SHOWN = True

EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())  # math-verify's defaults
# GSM8K's last line, "#### 1,007": the answer (lm-evaluation-harness's strict match reads the same).
GSM8K_FINAL = re.compile(r"^[ \t]*####[ \t]*(\$?[ \t]*-?[\d,]*\.?\d+)[^\n]*\s*\Z", re.MULTILINE)
BOXED = re.compile(r"\\boxed\s*\{")
FINAL_ANSWER_MATH = re.compile(
    r"(final answer is:?\s*)(\$\$?|\\\(|\\\[)(.+?)(\$\$?|\\\)|\\\])", re.IGNORECASE | re.DOTALL
)
_no_limit_warned = False


def grade(
    completion: Any, gold: Any, *, truncated: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S
) -> bool:
    """True iff the completion's final answer equals `gold` (see the module docstring).

    `gold` is a `Problem.answer` or a gold as a dataset publishes it (str, int, float, or a list
    of answers). Never raises; `timeout_s` bounds the whole call.
    """
    text = completion.decode("utf-8", errors="replace") if isinstance(completion, bytes) else completion
    if truncated or not isinstance(text, str) or not text.strip():
        return False
    key = canonical_gold(gold)
    if key is None:
        return False
    if not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s) or timeout_s <= 0:
        timeout_s = DEFAULT_TIMEOUT_S
    try:
        with time_limit(timeout_s) as limited:
            if not limited:
                _warn_no_limit()
            target = parse_gold(key)
            if not target:
                return False
            pred = parse_prediction(text)
            if not pred:
                return False
            small = small_number_verdict(target, pred)
            if small is not None:
                return small
            return bool(verify(target, pred, timeout_seconds=None, allow_set_relation_comp=True))
    except TimeLimitExceeded:
        log.debug("grading took longer than %s s; graded wrong", timeout_s)
    except Exception as err:  # a library failing on odd input: a wrong answer, never a crash
        log.debug("grading failed (%r); graded wrong", err)
    return False


@lru_cache(maxsize=8192)
def parse_gold(gold: str) -> list[Any]:
    """math-verify's reading of a canonical gold: parsed as inline math, not as free text. A
    choice-and-value gold ("\\textbf{(B)}\\ 30") is read both ways."""
    readings = choice_readings(gold_latex(gold))
    return [x for r in readings for x in parse(f"${r}$", EXTRACTION, parsing_timeout=None)]


def parse_prediction(text: str) -> list[Any]:
    """math-verify's reading of a model's output, after the additions described above."""
    text = rewrite_answer_spans(text)
    boxed = last_boxed_content(text)
    if boxed is not None and len(readings := choice_readings(boxed)) > 1:
        return [x for r in readings for x in parse(f"${r}$", EXTRACTION, parsing_timeout=None)]
    if not BOXED.search(text):
        final = GSM8K_FINAL.search(text)
        if final:  # the answer even when the word "answer" appears earlier in the solution
            found: list[Any] = parse(final.group(1), EXTRACTION, parsing_timeout=None)
            if found:
                return found
    parsed: list[Any] = parse(text, EXTRACTION, parsing_timeout=None)
    return parsed


def rewrite_answer_spans(text: str) -> str:
    """`rewrite_answer` applied to the contents of every balanced `\\boxed{}` and to the math
    after "final answer is"; the rest of the text is left as it is."""
    out, pos = [], 0
    closing = _closing_braces(text) if "\\boxed" in text else {}
    for m in BOXED.finditer(text):
        if m.start() < pos:
            continue  # a box inside a box already rewritten
        end = closing.get(m.end() - 1)
        if end is None:
            continue
        out += [text[pos : m.end()], rewrite_answer(text[m.end() : end])]
        pos = end
    text = "".join(out) + text[pos:]
    return FINAL_ANSWER_MATH.sub(
        lambda m: m.group(1) + m.group(2) + rewrite_answer(m.group(3)) + m.group(4), text
    )


def last_boxed_content(text: str) -> str | None:
    starts = [m.end() for m in BOXED.finditer(text)]
    end = _closing_brace(text, starts[-1]) if starts else None
    return None if end is None else text[starts[-1] : end].strip()


def small_number_verdict(target: list[Any], pred: list[Any]) -> bool | None:
    """Equality of two approximate numbers below 1e-3 in size, compared as math-verify compares
    numbers (rounded to 6 decimals) but on the gold's scale: rounded to 6 decimals, 1.2e-17 and
    1.2e-18 would both be 0. None when this does not apply (math-verify decides)."""
    g, p = _real_number(target), _real_number(pred)
    if g is None or p is None or not (g[1] or p[1]) or not 0 < abs(g[0]) < 1e-3:
        return None
    scale = 10.0 ** math.floor(math.log10(abs(g[0])))
    return round(g[0] / scale, 6) == round(p[0] / scale, 6)


def _real_number(parsed: list[Any]) -> tuple[float, bool] | None:
    """(value, approximate?) of the first sympy object of a parse, if it is a real number."""
    expr = next((x for x in parsed if isinstance(x, sympy.Basic)), None)
    if not isinstance(expr, sympy.Expr) or expr.free_symbols or not expr.is_number:
        return None
    try:
        value = complex(expr.evalf())
    except (TypeError, ValueError):
        return None
    if value.imag or not math.isfinite(value.real):
        return None
    return value.real, expr.has(sympy.Float)


def _closing_braces(text: str) -> dict[int, int]:
    """Position of each `{` -> position of its `}`, for the braces that close (one pass: an
    output with thousands of unclosed boxes must not cost a scan per box)."""
    stack, pairs = [], {}
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
    return pairs


def _closing_brace(text: str, start: int) -> int | None:
    depth = 1
    for i in range(start, len(text)):
        depth += (text[i] == "{") - (text[i] == "}")
        if depth == 0:
            return i
    return None


def _warn_no_limit() -> None:
    global _no_limit_warned
    if not _no_limit_warned:
        log.warning("grade() called outside the main thread: no time limit (use grade_many's processes)")
        _no_limit_warned = True


# --- many at once, in worker processes ---------------------------------------------------------

Item = tuple[Any, Any, bool]  # (completion, gold, truncated)
SERIAL_BELOW = 256  # fewer items than this are graded in this process: a pool would cost more
_pool: cf.ProcessPoolExecutor | None = None
_pool_workers = 0


def resolve_workers(workers: int | None) -> int:
    """0 or None: every core this process may use."""
    if not workers:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
    return max(1, int(workers))


def grade_many(
    items: Sequence[Item],
    *,
    workers: int | None = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    chunk_size: int | None = None,
    desc: str = "grading",
) -> list[bool]:
    """`grade` over (completion, gold, truncated) items, in input order.

    `workers` processes (0: all cores); one process, or fewer than SERIAL_BELOW items, grades
    here in this process. The pool is kept for the next call (`close_pool` ends it).
    """
    items = [(c, g, bool(t)) for c, g, t in items]
    n_workers = resolve_workers(workers)
    if n_workers == 1 or len(items) < SERIAL_BELOW or not in_main_thread():
        return [
            grade(c, g, truncated=t, timeout_s=timeout_s) for c, g, t in tqdm(items, desc=desc, unit="answer")
        ]
    size = chunk_size or max(16, min(512, math.ceil(len(items) / (n_workers * 8))))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    results: list[list[bool] | None] = [None] * len(chunks)
    with tqdm(total=len(items), desc=desc, unit="answer") as bar:
        try:
            pool = _get_pool(n_workers)
            futures = {pool.submit(_grade_chunk, chunk, timeout_s): i for i, chunk in enumerate(chunks)}
            for fut in cf.as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                bar.update(len(chunks[i]))
        except cf.process.BrokenProcessPool as err:  # a worker died: grade what is left here
            log.warning("a grading worker died (%s); grading the remaining chunks in this process", err)
            close_pool()
            for i, chunk in enumerate(chunks):
                if results[i] is None:
                    results[i] = _grade_chunk(chunk, timeout_s)
                    bar.update(len(chunk))
    return [v for chunk in results for v in chunk]  # type: ignore[union-attr]  # every chunk was graded


def _grade_chunk(chunk: Sequence[Item], timeout_s: float) -> list[bool]:
    return [grade(c, g, truncated=t, timeout_s=timeout_s) for c, g, t in chunk]


def _get_pool(workers: int) -> cf.ProcessPoolExecutor:
    """One pool per process, reused across calls; spawned, not forked (the notebook's process
    holds threads and, in a real world, CUDA state that a fork must not copy)."""
    global _pool, _pool_workers
    if _pool is None or _pool_workers != workers:
        close_pool()
        _pool = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_ignore_interrupts,
        )
        _pool_workers = workers
    return _pool


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent: an interrupt (or a Jupyter kernel's shutdown) reaches
    the whole process group, and idle workers would die printing tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def close_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


atexit.register(close_pool)
