from paradox.rft import clean, select
from paradox.style_align import decide, edit_ratio
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
    rows = [{"id": "a", "sample": 0, "text": "the answer is 7 = 2\nso 9", "correct": True},
            {"id": "a", "sample": 1, "text": "x\nThe answer is 9.", "correct": True}]
    keeps_9 = lambda pid, text: "9" in text  # noqa: E731
    assert select(rows, "first", 0, still_correct=keeps_9) == {"a": "x\nThe answer is 9."}
    assert select(rows[:1], "first", 0, still_correct=keeps_9) == {}


def test_clean_drops_text_after_the_answer():
    assert clean("  a\n\n b \nThe answer is 4.\nQuestion: more") == "a\nb\nThe answer is 4."
    assert clean("no answer line") == "no answer line"


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
