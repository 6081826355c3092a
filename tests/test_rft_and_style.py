import pytest

from paradox.streams.rft import clean, clean_lines, select
from paradox.streams.style_align import decide, edit_ratio
from paradox.toy.oracle import ToyOracle

ROWS = [
    {"id": "a", "sample": 0, "text": "long long wrong", "correct": False},
    {"id": "a", "sample": 1, "text": "a longer correct trace\nThe answer is 3.", "correct": True},
    {"id": "a", "sample": 2, "text": "short\nThe answer is 3.\nnoise after", "correct": True},
    {"id": "b", "sample": 0, "text": "nope", "correct": False},
]


def test_rft_keeps_one_correct_trace_per_solvable_problem():
    assert select(ROWS, "first", 0) == {"a": "a longer correct trace\nThe answer is 3."}
    assert select(ROWS, "shortest", 0) == {"a": "short\nThe answer is 3."}
    assert set(select(ROWS, "random", 0)) == {"a"}
    assert select(ROWS, "random", 5) == select(ROWS, "random", 5)


def test_cleaning_never_keeps_a_trace_that_lost_its_answer():
    rows = [
        {"id": "a", "sample": 0, "text": "the answer is 7 = 2\nso 9", "correct": True},
        {"id": "a", "sample": 1, "text": "x\nThe answer is 9.", "correct": True},
    ]
    keeps_9 = lambda pid, text: "9" in text  # noqa: E731
    assert select(rows, "first", 0, still_correct=keeps_9) == {"a": "x\nThe answer is 9."}
    assert select(rows[:1], "first", 0, still_correct=keeps_9) == {}


def test_clean_drops_text_after_the_answer():
    assert clean("  a\n\n b \nThe answer is 4.\nQuestion: more") == "a\n\n b\nThe answer is 4."
    assert clean("no answer line") == "no answer line"


# Outputs written here in the layout Qwen2.5-Math samples have (blank lines between steps, numbered
# steps with indented display math, tool-integrated ```python / ```output blocks, a boxed answer),
# with the kinds of noise a base model adds after its conclusion. Own wording and numbers.
QWEN_COT = """To find how many marbles Lena keeps, we work through the trades one at a time.

1. **Start:** Lena has 18 marbles.
2. **Gift:** she gives away a third of them:
   \\[
   18 - \\frac{18}{3} = 12
   \\]
3. **Purchase:** she buys 5 more, so she has \\(12 + 5 = 17\\).

Therefore, the final answer is \\(\\boxed{17}\\)."""

QWEN_TIR = """Let's count the integers from 1 to 50 that are divisible by 3 or by 7.

```python
count = 0
for n in range(1, 51):
    if n % 3 == 0 or n % 7 == 0:
        count += 1
print(f"\\boxed{{{count}}}")
```
```output
\\boxed{21}
```
The code counts 16 multiples of 3 and 7 multiples of 7, minus 2 multiples of 21, so the answer is \\(\\boxed{21}\\)."""


@pytest.mark.parametrize(
    "noise",
    [
        "",
        "\n",
        "   \n\n",
        "\n\nI hope it is correct.",
        "\nThanks for reading!",
        "\n\nHuman: What is 3 + 4?\n\nAssistant: 3 + 4 = \\boxed{7}",
        "\nuser\nA box holds 9 pens. How many in 2 boxes?\nassistant\n2 * 9 = 18, so \\boxed{18}.",
        "\n\nQuestion: Tom has 4 cats. How many legs?\nAnswer: 16",
        "\n\n## New Problem\nFind x if 2x = 10.\n\nThe answer is \\boxed{5}.",
    ],
)
def test_clean_keeps_the_slms_layout_and_drops_what_follows_the_conclusion(noise):
    # the trace itself comes back byte for byte: blank lines, indentation, code, output
    assert clean(QWEN_COT + noise) == QWEN_COT
    assert clean(QWEN_TIR + noise) == QWEN_TIR
    assert clean(QWEN_COT.replace("\n", "\r\n") + noise) == QWEN_COT  # Windows line ends


def test_clean_conclusion_is_the_last_answer_line_outside_code():
    # A boxed answer inside code (a print of LaTeX, the ```output block) is not a conclusion: the
    # trace ends at the prose line that boxes 21, not inside the code.
    tir_cut = QWEN_TIR.rsplit("\n", 1)[0]  # without its final sentence
    assert (
        clean(tir_cut + "\n\nNow a different puzzle: 5 + 5 = 10.")
        == tir_cut + "\n\nNow a different puzzle: 5 + 5 = 10."
    )
    # several parts, each boxed: the last box ends the solution, the earlier parts stay
    parts = (
        "(1) The slope is \\(\\boxed{2}\\).\n\n(2) At x = 3 the line gives\n   y = 2 * 3 + 1 = \\boxed{7}."
    )
    assert clean(parts + "\n\nWe can also check (1) numerically.") == parts
    # a boxed answer in mid-sentence keeps its sentence and line; the next line is past the conclusion
    mid = "Both roots are positive.\nSo x = \\boxed{4} is the larger one, as the problem asks.\nLet me know if you need more."
    assert clean(mid) == mid.rsplit("\n", 1)[0]
    # display math opened on the answer line is closed before the cut
    display = "The sum is 30 + 12.\n\nThus the final answer is:\n\\[\n\\boxed{42}\n\\]"
    assert clean(display + "\nI hope it is correct.\n\nuser\nNext question") == display
    # "Final Answer:" (Minerva's closing line) and a GSM8K-style "#### n" are conclusions too
    minerva = "Adding, 3 + 4 = 7.\n\nFinal Answer: The final answer is $7$. I hope it is correct."
    assert clean(minerva + "\n\nProblem:\nWhat is 2 + 2?") == minerva
    # an answer restated after the conclusion is the last answer line: kept (the grader reads it too)
    assert (
        clean(QWEN_COT + "\n\nThe final answer is 17.\nThanks!") == QWEN_COT + "\n\nThe final answer is 17."
    )
    assert clean("3 + 4 = <<3+4=7>>7\n#### 7\n#### 8 oops") == "3 + 4 = <<3+4=7>>7\n#### 7\n#### 8 oops"
    # a first line that names the problem is not an invented turn
    assert (
        clean("Problem: add 2 and 3.\n2 + 3 = 5, so the answer is 5.")
        == "Problem: add 2 and 3.\n2 + 3 = 5, so the answer is 5."
    )


def test_toy_traces_clean_as_before(toy_problem, native_trace):
    # The toy SLM writes one step per line, no blank lines, and ends with an "answer is" line.
    assert "\n\n" not in native_trace and clean(native_trace) == native_trace == clean_lines(native_trace)
    assert clean(native_trace + "\nQuestion: Ana has 3 pens.\nAnswer:\nAna has 3 pens.") == native_trace
    assert clean(native_trace + "\nThen he gets 2 more, so he has 1 + 2 = 3 apples.") == native_trace
    # Its garbled samples (a stray space or blank line, an early "answer is") are where the two
    # rules part; the toy world keeps the rule it always had (clean_lines), line for line.
    garbled = "Ravi has 3 apples.\n - 3 w has 3 - 3 = 3 apples.\n\nNow answer is 2 more.\nSo the answer is 5."
    assert clean_lines(garbled) == "Ravi has 3 apples.\n- 3 w has 3 - 3 = 3 apples.\nNow answer is 2 more."
    assert clean(garbled) == garbled


@pytest.mark.parametrize(
    "profile,mode",
    [
        ("toy", "lines"),
        ("smoke", "lines"),
        ("toy-full", "lines"),
        ("real-local", "layout"),
        ("paper-qwen2.5-math-1.5b", "layout"),
    ],
)
def test_each_world_cleans_its_own_way(profile, mode):
    from paradox.params import load_params

    assert load_params(profile).rft.clean == mode
    params = load_params(profile)
    rows = [{"id": "a", "sample": 0, "text": " x = 1\n\n  y = 2\nThe answer is 2.", "correct": True}]
    want = {"lines": "x = 1\ny = 2\nThe answer is 2.", "layout": "x = 1\n\n  y = 2\nThe answer is 2."}[mode]
    assert select(rows, "first", 0, params.rft.clean) == {"a": want}


def test_clean_settings_are_checked():
    from paradox.params import RFT

    assert RFT(clean=False).clean is False and RFT(clean="lines").clean == "lines"
    with pytest.raises(ValueError, match="clean"):
        RFT(clean="tidy")
    with pytest.raises(ValueError, match="unknown RFT cleaning 'tidy'"):
        select(ROWS, "first", 0, "tidy")
    assert select(ROWS, "first", 0, False) == {"a": "a longer correct trace\nThe answer is 3."}


def test_select_keeps_a_cleaned_qwen_trace_the_grader_still_accepts():
    from paradox.grading import grade

    texts = {
        "m": QWEN_COT + "\n\nHuman: Find 2 + 2.\n\nAssistant: \\boxed{4}",
        "t": QWEN_TIR + "\n\nI hope it is correct.",
    }
    gold = {"m": "17", "t": "21"}
    rows = [{"id": k, "sample": 0, "text": v, "correct": grade(v, gold[k])} for k, v in texts.items()]
    assert [r["correct"] for r in rows] == [False, True]  # the grader reads the invented turn's box
    regrade = lambda pid, text: grade(text, gold[pid])  # noqa: E731
    assert select(rows, "first", 0, still_correct=regrade) == {"t": QWEN_TIR}
    # had it been graded right, its cleaned trace is the solution alone, and still right
    assert select([{**rows[0], "correct": True}], "first", 0, still_correct=regrade) == {"m": QWEN_COT}


def test_style_decision():
    assert decide("x", "x", 0, 2.0, 2.0, 1.2, 0.3).status == "unchanged"
    ok = decide("he has 5 + 3 = 9 apples", "he has 5 + 3 = 8 apples", 1, 2.0, 2.1, 1.2, 0.3)
    assert ok.status == "rewritten" and ok.trace.endswith("8 apples")
    too_odd = decide("he has 5 + 3 = 9 apples", "he has 5 + 3 = 8 apples", 1, 2.0, 3.0, 1.2, 0.3)
    assert too_odd.status == "rejected" and too_odd.trace.endswith("9 apples")
    assert decide("abc", "xyz", 1, 2.0, 2.0, 1.2, 0.3).status == "rejected"
    assert edit_ratio("abcd", "abcx") == 0.25


def test_style_align_edits_only_wrong_steps(toy_problem, native_trace):
    lines = native_trace.splitlines()
    wrong = list(lines)
    wrong[1] = wrong[1].replace("= 12", "= 13")
    wrong[2] = wrong[2].replace("13 - 4", "13 - 4")  # untouched line stays byte-identical
    oracle = ToyOracle()
    assert oracle.first_wrong_step(toy_problem, "\n".join(wrong)) == 0
    rewrite, changed = oracle.rewrite_in_style(toy_problem, "\n".join(wrong))
    assert changed == [1]
    for i, (a, b) in enumerate(zip(wrong, rewrite.splitlines(), strict=True)):
        assert (a == b) == (i not in changed)
