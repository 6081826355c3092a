"""Reading a trace as steps: the toy validator, the minimal repair, and the notation rewrite.

A trace is read line by line. A *step line* holds an equation `x op b = y` (in any of the
three notations); a *final line* states the answer; the first line with no equation is the
*intro*; anything else is other text. The validator compares the step lines, in order, with
the problem's chain and returns the first wrong (or missing, or extra) step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paradox.toy import styles
from paradox.toy.styles import Chain

# (?<![\w.]) keeps "n_0 + 3 = 5" (a symbol, not a number) from reading as an equation.
EQUATION = re.compile(r"(?<![\w.])(\d+)\s*(\+|-|\*|\\times|×)\s*(\d+)\s*=\s*(\d+)(?![\d.])")
FINAL = re.compile(r"(?:answer is\s*(?:\\\(\s*)?(?:\\boxed\{)?|\\boxed\{|####\s*)(-?\d+)")
OPS = {"+": "+", "-": "-", "*": "*", "\\times": "*", "×": "*"}


@dataclass(frozen=True)
class Line:
    text: str
    kind: str  # "intro" | "step" | "final" | "other"
    equation: tuple[int, str, int, int] | None = None
    span: tuple[int, int] | None = None  # where the equation sits in `text`


def read_lines(trace: str) -> list[Line]:
    out: list[Line] = []
    for raw in trace.splitlines():
        text = raw.strip()
        if not text:
            continue
        matches = list(EQUATION.finditer(text))
        if matches:
            m = matches[-1]  # "n_1 = n_0 + 3 = 5 + 3 = 8": the numeric equation is the last
            eq = (int(m.group(1)), OPS[m.group(2)], int(m.group(3)), int(m.group(4)))
            out.append(Line(text, "step", eq, m.span()))
        elif FINAL.search(text):
            out.append(Line(text, "final"))
        elif not out:
            out.append(Line(text, "intro"))
        else:
            out.append(Line(text, "other"))
    return out


def final_answer(trace: str) -> str | None:
    found = FINAL.findall(trace)
    return found[-1] if found else None


def arithmetic_ok(eq: tuple[int, str, int, int]) -> bool:
    x, op, b, y = eq
    return {"+": x + b, "-": x - b, "*": x * b}[op] == y


@dataclass(frozen=True)
class StepError:
    index: int  # position in the chain (len(chain) means: the final answer or an extra step)
    reason: str


def first_wrong_step(trace: str, chain: Chain) -> StepError | None:
    """The first step that is wrong, missing or extra (or a wrong final answer); None if sound."""
    expected = styles.steps_of(chain)
    got = [ln.equation for ln in read_lines(trace) if ln.kind == "step" and ln.equation is not None]
    for i, want in enumerate(expected):
        if i >= len(got):
            return StepError(i, "missing step")
        if not arithmetic_ok(got[i]):
            return StepError(i, f"arithmetic: {got[i]}")
        if got[i] != want:
            return StepError(i, f"expected {want}, got {got[i]}")
    if len(got) > len(expected):
        return StepError(len(expected), "extra step")
    if final_answer(trace) != str(chain["values"][-1]):
        return StepError(len(expected), "wrong or missing final answer")
    return None


def _fix_step_line(line: Line, chain: Chain, want: tuple[int, str, int, int]) -> str:
    """Rewrite one step line with the right numbers, keeping its words where the logic allows."""
    assert line.equation is not None and line.span is not None
    x, op, b, y = line.equation
    if op != want[1]:
        # A wrong operation means wrong words too ("gets" for "loses"): write the step anew,
        # still in the SLM's wording (its first phrasing).
        return styles.native_step(chain, want)
    start, end = line.span
    m = EQUATION.match(line.text, start)
    assert m is not None
    sym = line.text[m.end(1) : m.start(3)]  # the operator as written, with its spacing
    head = line.text[:start]
    if b != want[2]:  # the operand may also be stated in words before the equation ("gets 3 more")
        head = re.sub(rf"(?<!\d){b}(?!\d)", str(want[2]), head, count=1)
    tail = line.text[end:]
    return f"{head}{want[0]}{sym}{want[2]} = {want[3]}{tail}"


def repair(trace: str, chain: Chain) -> tuple[str, list[int]]:
    """Minimal logical repair in the trace's own wording.

    Wrong step lines get the right numbers, missing steps are added in the SLM's wording, extra
    step lines and stray text after the answer are dropped, the final answer is corrected.
    Returns the repaired trace and the indices (in the repaired trace) of the lines changed.
    """
    expected = styles.steps_of(chain)
    answer = str(chain["values"][-1])
    out: list[str] = []
    changed: list[int] = []
    step_i = 0
    has_final = False
    for line in read_lines(trace):
        if line.kind == "step":
            if step_i >= len(expected):
                continue  # extra step: dropped
            want = expected[step_i]
            step_i += 1
            if line.equation == want:
                out.append(line.text)
            else:
                changed.append(len(out))
                out.append(_fix_step_line(line, chain, want))
        elif line.kind == "final":
            while step_i < len(expected):  # missing steps go before the answer
                changed.append(len(out))
                out.append(styles.native_step(chain, expected[step_i]))
                step_i += 1
            if final_answer(line.text) != answer:
                changed.append(len(out))
                out.append(FINAL.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + answer, line.text))
            else:
                out.append(line.text)
            has_final = True
            break  # text after the answer is generation noise
        else:
            out.append(line.text)
    if not has_final:
        while step_i < len(expected):
            changed.append(len(out))
            out.append(styles.native_step(chain, expected[step_i]))
            step_i += 1
        changed.append(len(out))
        out.append(styles.native_final(answer))
    return "\n".join(out), changed


def to_oracle_notation(trace: str, chain: Chain, fraction: float = 1.0) -> str:
    """Rewrite a (repaired) trace line by line in the Oracle's notation.

    `fraction` of the trace's lines, the first ones, are rewritten (1.0 = Oracle-Refined, 0.0 =
    unchanged); the logic is untouched. Lines that are neither intro, step nor answer are
    dropped by the Oracle when it rewrites them.
    """
    lines = read_lines(trace)
    n_rewrite = round(fraction * len(lines))
    out: list[str] = []
    step_i = 0
    for i, line in enumerate(lines):
        if line.kind == "step":
            step_i += 1
        if i >= n_rewrite:
            out.append(line.text)
        elif line.kind == "intro":
            out.append(styles.oracle_intro(chain))
        elif line.kind == "step":
            assert line.equation is not None
            out.append(styles.oracle_step(step_i - 1, line.equation))
        elif line.kind == "final":
            answer = final_answer(line.text)
            assert answer is not None  # a final line is one FINAL matches
            out.append(styles.oracle_final(answer))
    return "\n".join(out)
