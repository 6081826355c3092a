"""The paper profile's dataset specs on records in each dataset's published layout.

tests/conformance/datasets/<name>.jsonl hold made-up problems with exactly the fields (names and
types) of the published datasets, as their dataset cards and viewers show them:
  numina        AI-MO/NuminaMath-CoT         source, problem, solution, messages
  math500       HuggingFaceH4/MATH-500       problem, solution, answer, subject, level (int), unique_id
  minerva       math-ai/minervamath          question, answer
  aime24        HuggingFaceH4/aime_2024      id (int), problem, solution, answer (str), url, year (str)
  amc23         math-ai/amc23                id (int), question, answer (float), url
  olympiadbench math-ai/olympiadbench        id, question, solution (list), final_answer (list), context,
                                             image_1..5, modality, difficulty, is_multiple_answer, unit,
                                             answer_type, error, question_type, subfield, subject, language
  gsm8k         openai/gsm8k (main)          question, answer (solution ending in "#### N")
Each loads through the paper profile's spec with only `local_path` swapped in, and each gold,
boxed, is graded correct while a near miss is not.
"""

from pathlib import Path

import pytest

from paradox.grading import grade
from paradox.hf_sources import HFProblemSource, to_problems
from paradox.params import load_params

DATA = Path(__file__).parent / "datasets"
PROFILE = "paper-qwen2.5-math-1.5b"
FILES = {
    "train": "numina",
    "math500": "math500",
    "minerva": "minerva",
    "aime24": "aime24",
    "amc23": "amc23",
    "olympiadbench": "olympiadbench",
    "gsm8k": "gsm8k",
}
# (id, gold as the Problem holds it, a near miss) per record; a Numina row without a box is skipped
EXPECTED = {
    "train": [("train-0", "\\textbf{(C)}\\ 23", "22"), ("train-1", "3", "7"), ("train-2", "x = 2", "-2")],
    "math500": [
        ("math500-test/prealgebra/1001.json", "3\\sqrt{13}", "3"),
        ("math500-test/algebra/2002.json", "6 - 5i", "5"),
        ("math500-test/algebra/2003.json", "1,-2", "1"),
        ("math500-test/precalculus/3004.json", "\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}", "-1"),
        ("math500-test/prealgebra/1005.json", "\\text{(C)}", "\\text{(D)}"),
        ("math500-test/prealgebra/1006.json", "\\dfrac{14}{3}", "4.67"),
    ],
    "minerva": [
        ("minerva-0", "5.8e32", "5.8"),
        ("minerva-1", "1.0", "10"),
        ("minerva-2", "np.arcsin(13/15)", "\\arcsin(15/13)"),
        ("minerva-3", "7.6e-7", "7.6e-6"),
    ],
    "aime24": [("aime24-60", "102", "103"), ("aime24-61", "001", "100"), ("aime24-62", "30", "3")],
    "amc23": [("amc23-0", "3", "3.5"), ("amc23-1", "27", "2.7"), ("amc23-2", "-1", "1")],
    "olympiadbench": [
        ("olympiadbench-2801", "2^{2017}", "2^{2018}"),
        ("olympiadbench-2802", "14, 34, 49", "14, 34"),
        ("olympiadbench-2803", "1,3,5", "1, 3"),
        ("olympiadbench-2804", "(2,4)", "(4,2)"),
    ],
    "gsm8k": [("gsm8k-0", "72", "27"), ("gsm8k-1", "3500", "3.5"), ("gsm8k-2", "8", "12")],
}


@pytest.fixture(scope="module")
def source():
    params = load_params(PROFILE)
    specs = {
        name: params.datasets[name].model_copy(update={"local_path": str(DATA / f"{FILES[name]}.jsonl")})
        for name in FILES
    }
    return HFProblemSource(specs, params.seed), params


@pytest.mark.parametrize("name", list(FILES))
def test_published_layout_loads_through_the_paper_spec(source, name, capsys):
    src, params = source
    problems = src.load(name)
    assert [(p.id, p.answer) for p in problems] == [(i, a) for i, a, _ in EXPECTED[name]]
    for p in problems:
        assert p.question and p.source == name and isinstance(p.answer, str)
        if params.datasets[name].solution_field:
            assert p.reference_solution
    if name == "train":
        assert "skipped 1 of 4 rows" in capsys.readouterr().out  # the proof without a box


@pytest.mark.parametrize("name", list(FILES))
def test_every_gold_boxed_is_correct_and_a_near_miss_is_not(source, name):
    src, _ = source
    for p, (_, _, miss) in zip(src.load(name), EXPECTED[name], strict=True):
        assert grade(f"Thus the final answer is $\\boxed{{{p.answer}}}$.", p.answer), (p.id, p.answer)
        assert not grade(f"Thus the final answer is $\\boxed{{{miss}}}$.", p.answer), (p.id, p.answer, miss)


def test_the_gold_fields_are_the_published_ones(source):
    """The old spec read OlympiadBench's gold from `answer`, a field it does not have: a run died
    in notebook 05, after all training. Named fields and types are checked here instead."""
    _, params = source
    spec = params.datasets["olympiadbench"]
    assert (spec.question_field, spec.answer_field, spec.id_field) == ("question", "final_answer", "id")
    assert params.datasets["amc23"].id_field == "id" and params.datasets["math500"].id_field == "unique_id"
    row = {"id": 1, "question": "q", "final_answer": ["$1$"]}
    with pytest.raises(
        KeyError, match=r"no field\(s\) \['answer'\]; fields are \['final_answer', 'id', 'question'\]"
    ):
        to_problems([row], spec.model_copy(update={"answer_field": "answer"}), "olympiadbench")


def test_a_gold_field_of_the_wrong_type_is_named(source):
    _, params = source
    spec = params.datasets["math500"]
    with pytest.raises(
        TypeError, match=r"dataset 'math500' row 0 field 'answer': cannot read a gold answer from dict"
    ):
        to_problems(
            [{"problem": "q", "solution": "s", "answer": {"x": 1}, "unique_id": "u"}], spec, "math500"
        )
