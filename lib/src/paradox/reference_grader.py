"""An independent second grader: the field's normalise-then-`math_equal` practice.

This follows the logic of the Qwen2.5-Math evaluation toolkit (itself built on Hendrycks'
MATH equivalence, PRM800K and ToRA), written afresh here and sharing no code with
`paradox.grading` (which is math-verify). Its use is to cross-check the project's grader: where
the two disagree, one of them is wrong, and `docs/grader.md` says which and why.

1. Extract the answer: the Minerva few-shot form "final answer is $X$. I hope it is correct",
   else the content of the last `\\boxed{}`, else what follows "the answer is" or
   "final answer is", else the last number in the text.
2. Normalise the answer string (and the gold, except for Minerva, whose golds keep their form):
   drop `\\left`/`\\right`, `\\!`, dollars, degree marks, percent signs, trailing `\\text{...}`
   units and common unit words, `\\text{}` wrappers, "x =" prefixes, trailing zeros of decimals
   and spaces; `\\dfrac` -> `\\frac`, `\\frac12` -> `\\frac{1}{2}`, `a/b` -> `\\frac{a}{b}`.
3. `math_equal`: equal strings; equal numbers (relative tolerance 1e-4, the gold also read as a
   percentage, x100 or /100); lists and matrices element by element; equations by their
   difference; else symbolic equality with sympy (simplify, then numeric evaluation).

Known differences from `paradox.grading` by design of the practice: a list of tuples must come
in the gold's order; `(1,2)` equals `[1,2]` (brackets are not told apart); numbers within a
relative 1e-4 are equal, percentages are lenient; unit words are stripped even where they are
variables. See docs/grader.md for the measured disagreements.

Command line, over graded samples of your own (JSONL rows with the output, the gold or a problem
id, and optionally the verdict of another grader):

    python -m paradox.reference_grader samples.jsonl --gold-from problems.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from paradox.answers import canonical_gold
from paradox.time_limit import TimeLimitExceeded, time_limit

MINERVA_FINAL = re.compile(r"final answer is \$(.+?)\$\. I hope", re.DOTALL)
LAST_NUMBER = re.compile(r"-?\d*\.?\d+")
NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)
SMALL_NUMBER_WORDS = {w: str(i) for i, w in enumerate(NUMBER_WORDS.split())}
# Unit words a final answer may carry (own list; the toolkit's is longer and from MathQA).
UNIT_WORDS = sorted(
    {
        "cm",
        "mm",
        "km",
        "m",
        "meter",
        "meters",
        "metre",
        "metres",
        "inch",
        "inches",
        "foot",
        "feet",
        "ft",
        "yard",
        "yards",
        "mile",
        "miles",
        "mph",
        "kg",
        "g",
        "gram",
        "grams",
        "pound",
        "pounds",
        "lb",
        "lbs",
        "second",
        "seconds",
        "sec",
        "minute",
        "minutes",
        "min",
        "hour",
        "hours",
        "hr",
        "day",
        "days",
        "week",
        "weeks",
        "month",
        "months",
        "year",
        "years",
        "degree",
        "degrees",
        "dollar",
        "dollars",
        "cent",
        "cents",
        "unit",
        "units",
        "square",
        "sq",
        "cubic",
        "liter",
        "liters",
        "litre",
        "gallon",
        "gallons",
        "percent",
    },
    key=len,
    reverse=True,
)
UNIT_WORD = re.compile(r"(^|\W)(?:" + "|".join(map(re.escape, UNIT_WORDS)) + r")(?=$|\W)")


# --- 1. extraction ------------------------------------------------------------------------------


def extract_answer(text: str) -> str:
    """The answer string a model's output states, by the toolkit's order of rules."""
    text = text.replace("\u043a\u0438", "")  # a token some math SFT data leaves behind
    m = MINERVA_FINAL.search(text)
    if m:
        answer = m.group(1).strip()
    elif "boxed" in text:
        answer = _after_last_boxed(text)
    elif "he answer is" in text:
        answer = text.rsplit("he answer is", 1)[1].strip()
    elif "final answer is" in text:
        answer = text.rsplit("final answer is", 1)[1].strip()
    else:
        numbers = LAST_NUMBER.findall(text.replace(",", ""))
        answer = numbers[-1] if numbers else ""
    answer = re.sub(r"\n\s*", "", answer)
    answer = answer[1:] if answer.startswith(":") else answer
    return answer.rstrip(".").rstrip("/")


def _after_last_boxed(text: str) -> str:
    rest = text.rsplit("boxed", 1)[1]
    if not rest.startswith("{"):
        return rest.split("$")[0].strip()
    depth, out = 1, []
    for ch in rest[1:]:
        depth += (ch == "{") - (ch == "}")
        if depth == 0:
            break
        out.append(ch)
    return "".join(out)


# --- 2. normalisation ---------------------------------------------------------------------------


def normalize(answer: Any, skip_unit: bool = False) -> str:
    """The answer string in the practice's normal form (see the module docstring)."""
    s = str(answer).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s).replace("\\end{array}", "\\end{pmatrix}")
    s = s.replace("bmatrix", "pmatrix").replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    without_unit = re.sub(r"\\text\{.*?\}$", "", s).strip()
    if without_unit:
        s = without_unit
    if not skip_unit:
        for _ in range(2):
            stripped = UNIT_WORD.sub(r"\1", s)
            if stripped.strip():
                s = stripped
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = SMALL_NUMBER_WORDS.get(s.strip().lower(), s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox\{.*?\}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s.startswith("."):
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _slash_to_frac(_brace_fracs(s))


def _brace_fracs(s: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{72}` -> `\\frac{1}{72}`."""
    head, *tails = s.split("\\frac")
    out = [head]
    for tail in tails:
        if tail.startswith("{") or len(tail) < 2:
            out.append("\\frac" + tail)
            continue
        a, b, rest = tail[0], tail[1], tail[2:]
        out.append("\\frac{" + a + "}" + (b + rest if b == "{" else "{" + b + "}" + rest))
    return "".join(out)


def _slash_to_frac(s: str) -> str:
    m = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    return f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}" if m else s


# --- 3. equality --------------------------------------------------------------------------------


def _as_number(s: str) -> float | None:
    s = s.replace(",", "")
    try:
        return float(s)
    except ValueError:
        pass
    if s.endswith("%"):
        try:
            return float(s[:-1].rstrip("\\")) / 100
        except ValueError:
            return None
    return None


def _numbers_equal(pred: str, ref: str) -> bool:
    p, r = _as_number(pred), _as_number(ref)
    if p is None or r is None:
        return False
    return any(math.isclose(p, x, rel_tol=1e-4) for x in (r, r / 100, r * 100))


def _is_sequence(s: str) -> bool:
    return bool(re.match(r"[(\[].+[)\]]$", s))


def _is_matrix(s: str) -> bool:
    return s.startswith("\\begin{pmatrix}") and s.endswith("\\end{pmatrix}")


def math_equal(pred: str | None, ref: str | None) -> bool:
    """The practice's equality of two normalised answer strings, `pred` against `ref`."""
    if pred is None or ref is None:
        return False
    pred, ref = str(pred).strip(), str(ref).strip()
    if pred.lower() == ref.lower():
        return True
    if ref in ("A", "B", "C", "D", "E"):
        letters = re.findall(r"\b([A-E])\b", pred.upper())
        if letters and letters[-1] == ref:
            return True
    if _numbers_equal(pred, ref):
        return True
    if not pred:
        return False
    p, r = pred, ref
    if (p.startswith("[") and p.endswith("]") and not (r.startswith("(") and r.endswith(")"))) or (
        p.startswith("(") and p.endswith(")") and not (r.startswith("[") and r.endswith("]"))
    ):
        p, r = p.strip("[]()"), r.strip("[]()")
    p, r = re.sub(r"[{}()]", "", p), re.sub(r"[{}()]", "", r)
    if p.lower() == r.lower():
        return True
    if _is_sequence(pred) and _is_sequence(ref):
        a, b = pred[1:-1].split(","), ref[1:-1].split(",")
        return len(a) == len(b) and all(math_equal(x, y) for x, y in zip(a, b, strict=True))
    if _is_matrix(pred) and _is_matrix(ref):
        return _matrices_equal(pred, ref)
    if pred.count("=") == 1 and ref.count("=") == 1:
        d_pred = _difference(pred)
        return _symbolic_equal(d_pred, _difference(ref)) or _symbolic_equal(f"-({d_pred})", _difference(ref))
    if pred.count("=") == 1 and len(pred.split("=")[0].strip()) <= 2 and "=" not in ref:
        return math_equal(pred.split("=")[1], ref)
    if ref.count("=") == 1 and len(ref.split("=")[0].strip()) <= 2 and "=" not in pred:
        return math_equal(pred, ref.split("=")[1])
    return _symbolic_equal(pred, ref)


def _matrices_equal(pred: str, ref: str) -> bool:
    def rows(m: str) -> list[list[str]]:
        body = m[len("\\begin{pmatrix}") : -len("\\end{pmatrix}")]
        return [line.strip().split("&") for line in body.split("\\\\") if line.strip()]

    a, b = rows(pred), rows(ref)
    return len(a) == len(b) and all(
        len(x) == len(y) and all(math_equal(u, v) for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


def _difference(equation: str) -> str:
    lhs, rhs = equation.split("=")
    return f"{lhs.strip()} - ({rhs.strip()})"


def _to_sympy(s: str) -> Any:  # a sympy expression, or `s` when no reader can read it
    """LaTeX or plain-math text to sympy, as the practice tries its readers in turn. Its first
    reader, sympy's ANTLR `parse_latex`, needs ANTLR 4.11 (math-verify pins 4.13), and sympy's
    Lark backend is ~100x slower: latex2sympy (ANTLR, its own grammar) stands in for both."""
    from latex2sympy2_extended import latex2sympy
    from sympy.parsing.sympy_parser import parse_expr

    for reader in (latex2sympy, parse_expr):
        for candidate in (s.replace("\\\\", "\\"), s):
            try:
                return reader(candidate)
            except Exception:
                continue
    return s


def _symbolic_equal(a: str, b: str) -> bool:
    from sympy import N, simplify

    x, y = _to_sympy(a), _to_sympy(b)
    checks = (
        lambda: str(x) == str(y) or x == y,
        lambda: x.equals(y) or simplify(x - y) == 0,
        lambda: abs(x.lhs - x.rhs).equals(abs(y.lhs - y.rhs)),
        lambda: math.isclose(float(N(x)), float(N(y)), rel_tol=1e-4),
        lambda: (
            x.shape == y.shape
            and x.applyfunc(lambda v: round(v, 3)).equals(y.applyfunc(lambda v: round(v, 3)))
        ),
    )
    for check in checks:
        try:
            if check():
                return True
        except Exception:
            continue
    return False


# --- the whole grader ---------------------------------------------------------------------------


def reference_grade(
    completion: Any,
    gold: Any,
    *,
    benchmark: str | None = None,
    truncated: bool = False,
    timeout_s: float = 5.0,
) -> bool:
    """The practice's verdict on one output. `benchmark` "minerva" keeps units and the gold's
    form, as the toolkit does for Minerva Math. Never raises; wrong after `timeout_s` seconds."""
    if truncated or not isinstance(completion, str) or not completion.strip():
        return False
    ref = canonical_gold(gold)
    if ref is None:
        return False
    minerva = benchmark == "minerva"
    try:
        with time_limit(timeout_s), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sympy deprecation notes about the parsers' objects
            pred = normalize(extract_answer(completion), skip_unit=minerva)
            if minerva:
                ref = ref.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
            else:
                ref = normalize(ref)
            return bool(math_equal(pred, ref))
    except TimeLimitExceeded:
        return False
    except Exception:  # unparseable: wrong, as in the practice
        return False


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise SystemExit(f"{path}:{n}: not JSON ({err})") from err
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m paradox.reference_grader", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "samples", type=Path, help="JSONL rows: the output, the gold (or a problem id), a verdict"
    )
    ap.add_argument("--text-field", default="text", help="field holding the model's output (default: text)")
    ap.add_argument("--gold-field", default="gold", help="field holding the gold answer (default: gold)")
    ap.add_argument("--gold-from", type=Path, help="JSONL of problems (id, answer): golds looked up by id")
    ap.add_argument("--verdict-field", default="correct", help="another grader's verdict to compare with")
    ap.add_argument("--benchmark", help="'minerva' keeps units and the gold's form")
    ap.add_argument("--disagreements", type=Path, help="write the rows where the verdicts differ here")
    args = ap.parse_args(argv)
    rows = _read_jsonl(args.samples)
    golds = {str(p["id"]): p["answer"] for p in _read_jsonl(args.gold_from)} if args.gold_from else {}
    n_agree = n_compared = n_correct = 0
    differ = []
    for i, row in enumerate(rows):
        where = f"{args.samples} row {i + 1}"
        if args.text_field not in row:
            raise SystemExit(f"{where}: no field '{args.text_field}' (fields: {sorted(row)})")
        gold = golds.get(str(row.get("id"))) if golds else row.get(args.gold_field)
        if gold is None:
            raise SystemExit(
                f"{where}: no gold (field '{args.gold_field}', or id {row.get('id')!r} in --gold-from)"
            )
        verdict = reference_grade(
            row[args.text_field], gold, benchmark=args.benchmark, truncated=bool(row.get("truncated", False))
        )
        n_correct += verdict
        if args.verdict_field in row:
            n_compared += 1
            if bool(row[args.verdict_field]) == verdict:
                n_agree += 1
            else:
                differ.append({**row, "gold": gold, "reference_verdict": verdict})
    print(
        f"{len(rows)} samples, {n_correct} correct by the reference ({100 * n_correct / max(1, len(rows)):.1f}%)"
    )
    if n_compared:
        print(
            f"agreement with '{args.verdict_field}': {n_agree}/{n_compared} ({100 * n_agree / n_compared:.1f}%)"
        )
    if args.disagreements:
        args.disagreements.write_text("".join(json.dumps(r) + "\n" for r in differ))
        print(f"{len(differ)} disagreements written to {args.disagreements}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
