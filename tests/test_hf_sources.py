"""The Hugging Face problem source on small local fixtures (no hub here)."""

import json
from types import SimpleNamespace

import pytest

from paradox.hf_sources import HFProblemSource, last_boxed, to_problems


def spec(**kw):
    base = dict(
        hub_id="AI-MO/NuminaMath-CoT",
        config=None,
        split="train",
        revision=None,
        local_path=None,
        question_field="problem",
        answer_field=None,
        answer_from="boxed_in_solution",
        solution_field="solution",
        id_field=None,
        limit=None,
    )
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed {x^{2}+1}", "x^{2}+1"),
        ("no box", None),
        ("\\boxed{unbalanced", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_numina_style_rows_map_to_problems(tmp_path):
    rows = [
        {"problem": "What is 2+2?", "solution": "2+2=4, so \\boxed{4}.", "source": "amc"},
        {"problem": "No answer here", "solution": "We cannot say.", "source": "x"},
    ]
    path = tmp_path / "numina.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    src = HFProblemSource({"train": spec(local_path=str(path))}, seed=0)
    [p] = src.load("train")  # the row without a gold answer is skipped, not guessed
    assert (p.id, p.question, p.answer, p.source) == ("train-0", "What is 2+2?", "4", "train")
    assert p.reference_solution.startswith("2+2=4")


def test_benchmark_styles(tmp_path):
    gsm = [{"question": "Tom has 3+4 apples?", "answer": "3+4=<<3+4=7>>7\n#### 1,007"}]
    assert (
        to_problems(
            gsm,
            spec(
                question_field="question",
                answer_field="answer",
                answer_from="gsm8k_hash",
                solution_field="answer",
            ),
            "gsm8k",
        )[0].answer
        == "1007"
    )
    olympiad = [
        {"id": 17, "question": "Find x.", "final_answer": ["$3$"]},
        {"id": 18, "question": "Find all x.", "final_answer": ["$69$", "$84$"], "solution": ["One.", "Two."]},
    ]
    ob = to_problems(
        olympiad,
        spec(
            question_field="question",
            answer_field="final_answer",
            answer_from="field",
            solution_field=None,
            id_field="id",
        ),
        "olympiadbench",
    )
    # dollars dropped; several answers joined into one set-valued gold (the old loader kept only the first)
    assert [(p.id, p.answer, p.reference_solution) for p in ob] == [
        ("olympiadbench-17", "3", ""),
        ("olympiadbench-18", "69, 84", ""),
    ]
    [p] = to_problems(
        olympiad[1:],
        spec(
            question_field="question",
            answer_field="final_answer",
            answer_from="field",
            solution_field="solution",
            id_field="id",
        ),
        "olympiadbench",
    )
    assert p.reference_solution == "One.\n\nTwo."  # a list of solution paragraphs, not its repr
    amc = [{"id": 3, "question": "q", "answer": 27.0}, {"id": 4, "question": "q", "answer": 0.5}]
    assert [
        p.answer
        for p in to_problems(
            amc,
            spec(
                question_field="question",
                answer_field="answer",
                answer_from="field",
                solution_field=None,
                id_field="id",
            ),
            "amc23",
        )
    ] == ["27", "0.5"]
    two_hashes = [{"question": "q", "answer": "Step #### not this\n#### 12"}]
    assert (
        to_problems(
            two_hashes,
            spec(
                question_field="question",
                answer_field="answer",
                answer_from="gsm8k_hash",
                solution_field="answer",
            ),
            "gsm8k",
        )[0].answer
        == "12"
    )


def test_missing_field_is_named(tmp_path):
    with pytest.raises(KeyError, match=r"no field\(s\) \['problem'\]; fields are \['question'"):
        to_problems([{"question": "q", "solution": "\\boxed{1}"}], spec(), "math500")


def test_limit_is_a_seeded_sample(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        "\n".join(json.dumps({"problem": f"q{i}", "solution": f"\\boxed{{{i}}}"}) for i in range(20))
    )
    a = HFProblemSource({"test": spec(local_path=str(path), limit=5)}, seed=1).load("test")
    b = HFProblemSource({"test": spec(local_path=str(path), limit=5)}, seed=1).load("test")
    assert [p.id for p in a] == [p.id for p in b] and len(a) == 5
    with pytest.raises(KeyError, match="no dataset named 'hard'"):
        HFProblemSource({"test": spec(local_path=str(path))}, seed=1).load("hard")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFProblemSource({"test": spec(local_path=str(tmp_path / "nope.jsonl"))}, seed=1).load("test")


def test_real_world_profile_reads_datasets_through_the_backend(tmp_path):
    """A `world: real` profile whose datasets point at local copies loads through the same factory."""
    import shutil
    from pathlib import Path

    from paradox import backends
    from paradox.params import ParamsError, load_params
    from paradox.paths import RunPaths

    root = Path(__file__).resolve().parents[1]
    pdir = tmp_path / "params"
    pdir.mkdir()
    shutil.copy(root / "params" / "base.yaml", pdir / "base.yaml")
    shutil.copytree(root / "params" / "prompts", pdir / "prompts")
    data = tmp_path / "numina.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "solution": "\\boxed{2}"}) + "\n")
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": "2+2?", "answer": "4"}) + "\n")
    ds = lambda **kw: "\n".join(f"    {k}: {v}" for k, v in kw.items())  # noqa: E731
    (pdir / "real.yaml").write_text(
        "description: real, offline\nworld: real\nslm:\n  name_or_path: some/model\n"
        "eval:\n  splits: [bench]\nlearning_curve:\n  splits: [bench]\ndatasets:\n"
        f"  train:\n{ds(hub_id='AI-MO/NuminaMath-CoT', split='train', local_path=data, question_field='problem', answer_from='boxed_in_solution', solution_field='solution')}\n"
        f"  bench:\n{ds(hub_id='x/bench', split='test', local_path=bench, question_field='question', answer_field='answer')}\n"
    )
    params = load_params("real", pdir)
    source = backends.problem_source(params, RunPaths("real", tmp_path / "runs"))
    assert [p.answer for p in source.load("train")] == ["2"] and [p.answer for p in source.load("bench")] == [
        "4"
    ]
    (pdir / "bad.yaml").write_text("description: x\nworld: real\neval:\n  splits: [bench]\n")
    with pytest.raises(ParamsError, match=r"no entry for split\(s\) \['train', 'bench'\]"):
        load_params("bad", pdir)
