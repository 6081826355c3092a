import pytest

from paradox.grading import grade


@pytest.mark.parametrize("completion,gold,expected", [
    ("So the answer is 6.", "6", True),
    ("Therefore, the answer is \\( \\boxed{6} \\).", "6", True),
    ("5+3=<<5+3=8>>8 apples\n#### 8", "8", True),
    ("The answer is 7.", "6", False),
    ("The answer is \\boxed{\\frac{1}{2}}", "0.5", True),
    ("", "6", False),
    ("   \n ", "6", False),
    (None, "6", False),
    ("no number here at all", "6", False),
    ("\\boxed{", "6", False),
    ("\\frac{\\frac{\\frac{", "6", False),
    ("}{}{}{\\\\\\\\", "6", False),
])
def test_grade(completion, gold, expected):
    assert grade(completion, gold) is expected


def test_truncated_output_is_wrong_even_if_the_number_matches():
    assert grade("he has 5 + 3 = 8 apples", "8") is True
    assert grade("he has 5 + 3 = 8 apples", "8", truncated=True) is False


def test_very_long_garbage_does_not_raise():
    assert grade("x^" * 5000 + "(((", "6", timeout_s=1) is False
