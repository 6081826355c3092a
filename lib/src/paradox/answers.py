"""Gold answers as the benchmarks publish them, turned into the one string `Problem.answer` holds,
and the few rewrites of answer LaTeX that math-verify does not do itself.

The canonical gold string (`canonical_gold`):
- text is kept as published (stripped); an answer wrapped whole in `$...$` loses the dollars;
- numbers (AMC23 publishes floats such as `27.0`) become their shortest exact text: `27`, `0.5`;
- a list of answers (OlympiadBench's `final_answer`) becomes its entries joined by ", ": one
  entry is that answer, several are a set of answers (graded as a set: all of them, any order).

`rewrite_answer` is applied to a gold before parsing and to the final-answer spans of a model's
output (the contents of `\\boxed{}`, the math after "final answer is", the `####` line):
- scientific notation written the programming way, `4.5e33` (Minerva's golds), becomes
  `4.5\\times 10^{33}`, and `10^33` gets its braces (LaTeX reads `10^33` as 10^3 * 3);
- numpy spellings in a few Minerva golds (`np.arcsin(10/13)`) become LaTeX (`\\arcsin(10/13)`);
- the Unicode minus and multiplication signs become `-` and `\\times`;
- a full stop or comma closing the answer (`\\boxed{204.}`) is dropped.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

SCI_NOTATION = re.compile(r"(?<![\w.\\])(\d+(?:\.\d*)?|\.\d+)\s*[eE]\s*([+-]?\d+)(?![\w.])")
POW10_NO_BRACES = re.compile(r"(?<![\d.])10\s*\^\s*([+-]?\d{2,}|[+-]\d)")
NUMPY_FUNC = re.compile(
    r"\b(?:np|numpy|math)\.(arcsin|arccos|arctan|sinh|cosh|tanh|sin|cos|tan|exp|log|sqrt)\b"
)
NUMPY_CONST = re.compile(r"\b(?:np|numpy|math)\.(pi|e)\b")
# A multiple-choice answer with its value, as AMC solutions box it: "\textbf{(B)}\ 30", "(B) 30".
CHOICE_AND_VALUE = re.compile(
    r"^\s*(?:\\text(?:bf|rm|normal)?\s*\{\s*\(?\s*([A-E])\s*\)?\s*\}|\(\s*([A-E])\s*\))"
    r"(?:\s|~|\\[ ,;:!>]|\\quad|\\qquad)*(\S.*?)\s*$",
    re.DOTALL,
)
WHOLE_MATH = re.compile(r"^\$+([^$]+)\$+$")
TRAILING_PUNCT = re.compile(r"(?<=[\w}])\s*[.,;:]\s*$")


def canonical_gold(value: Any) -> str | None:
    """The gold answer `value` (str, int, float or a list of them) as one string; None if empty."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        text = value.strip()
        m = WHOLE_MATH.match(text)
        if m:
            text = m.group(1).strip()
        return text or None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if not math.isfinite(x):
            return None
        return str(int(x)) if x.is_integer() and abs(x) < 1e16 else repr(x)
    if isinstance(value, list | tuple):
        parts = [p for p in (canonical_gold(v) for v in value) if p]
        return ", ".join(parts) if parts else None
    if hasattr(value, "tolist"):  # numpy arrays and scalars (datasets may hand them over)
        return canonical_gold(value.tolist())
    return None


def rewrite_answer(latex: str) -> str:
    """The rewrites math-verify lacks (see the module docstring); identity on everything else."""
    text = latex.replace("\u2212", "-").replace("\u00d7", "\\times ")
    text = SCI_NOTATION.sub(lambda m: f"{m.group(1)}\\times 10^{{{int(m.group(2))}}}", text)
    text = POW10_NO_BRACES.sub(lambda m: f"10^{{{m.group(1)}}}", text)
    text = NUMPY_FUNC.sub(r"\\\1", text)
    text = NUMPY_CONST.sub(lambda m: "\\pi" if m.group(1) == "pi" else "e", text)
    return TRAILING_PUNCT.sub("", text)


def choice_readings(answer: str) -> list[str]:
    """A choice-and-value answer read both ways, `["30", "\\text{B}"]`; else `[answer]`.

    The gold of an AMC problem in NuminaMath-CoT is often "\\textbf{(B)}\\ 30": an output
    giving the letter or the value (or both) states the same answer."""
    m = CHOICE_AND_VALUE.match(answer)
    if not m:
        return [answer]
    return [m.group(3), f"\\text{{{m.group(1) or m.group(2)}}}"]


def gold_latex(gold: str) -> str:
    """A canonical gold ready to be parsed as inline math: rewritten, currency dollars and math
    delimiters dropped (an OlympiadBench gold may read `$69$,$84$`), on one line."""
    text = rewrite_answer(gold).replace("\\$", "").replace("$", " ")
    return " ".join(text.split())
