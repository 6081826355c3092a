"""paradox.evaluation: sampling + grading + storing, the step shared by notebooks 00, 01 and 05."""

import math

from paradox.evaluation import greedy_accuracy, sample_and_grade, truncated_share
from paradox.generation import Completion, SamplingSettings
from paradox.problems import Problem


class ScriptedGenerator:
    """Answers each prompt with the completions scripted for it; records the settings it got."""

    name = "scripted"
    stops = None

    def __init__(self, script: dict[str, list[Completion]]):
        self.script, self.calls = script, []

    def generate(self, prompts, s):
        self.calls.append((list(prompts), s))
        return [self.script[p][: s.n] for p in prompts]

    def close(self):
        pass


def problem(i: int, answer: str) -> Problem:
    return Problem(id=f"p{i}", question=f"q{i}", answer=answer, reference_solution="", source="test")


PROBLEMS = [problem(0, "4"), problem(1, "7"), problem(2, "9")]
SCRIPT = {
    "q0": [Completion("2 + 2 = 4. The answer is \\boxed{4}", False), Completion("\\boxed{5}", False)],
    "q1": [Completion("\\boxed{7}", False), Completion("\\boxed{7", True)],  # cut by the token limit
    "q2": [Completion("", False), Completion("\\boxed{9}", False)],
}


def test_sample_and_grade_grades_every_sample_and_stores_shards(tmp_path):
    gen = ScriptedGenerator(SCRIPT)
    rows = sample_and_grade(
        gen,
        "weights",
        PROBLEMS,
        [p.question for p in PROBLEMS],
        SamplingSettings(2, 1.0, 1.0, 8, 3),
        tmp_path,
        batch_size=2,
        grade_workers=1,
        grade_timeout_s=5.0,
        desc="s",
        grade_desc="g",
    )
    assert [(r["id"], r["sample"], r["correct"]) for r in rows] == [
        ("p0", 0, True),
        ("p0", 1, False),
        ("p1", 0, True),
        ("p1", 1, False),
        ("p2", 0, False),
        ("p2", 1, True),
    ]
    assert len(list(tmp_path.glob("shard-*.jsonl"))) == 2 and len(gen.calls) == 2
    assert truncated_share(rows) == 100 / 6
    again = sample_and_grade(
        gen,
        "weights",
        PROBLEMS,
        [p.question for p in PROBLEMS],
        SamplingSettings(2, 1.0, 1.0, 8, 3),
        tmp_path,
        batch_size=2,
        grade_workers=1,
        grade_timeout_s=5.0,
        desc="s",
        grade_desc="g",
    )
    assert again == rows and len(gen.calls) == 2  # stored shards are reused


def test_truncated_share_of_nothing_is_nan():
    assert math.isnan(truncated_share([]))


def test_greedy_accuracy_batches_and_grades_one_completion_each():
    gen = ScriptedGenerator(SCRIPT)
    acc, outs = greedy_accuracy(
        gen, ["q0", "q1", "q2"], ["4", "8", "9"], batch_size=2, max_new_tokens=16, seed=5
    )
    assert acc == 100 / 3  # q0 right, q1 wrong gold, q2 empty
    assert [o.text for o in outs] == ["2 + 2 = 4. The answer is \\boxed{4}", "\\boxed{7}", ""]
    assert [p for p, _ in gen.calls] == [["q0", "q1"], ["q2"]]
    assert all(s == SamplingSettings(1, 0.0, 1.0, 16, 5) for _, s in gen.calls)


def test_learning_curves_off_need_no_learning_curve_splits(tmp_path):
    """real-served evaluates `math500` only and keeps no checkpoints: `learning_curve.splits`
    (default `test`) is then not an evaluation split, and 05 must not look it up (it crashed)."""
    import pandas as pd
    import pytest

    from paradox.evaluation import LC_COLUMNS, learning_curve_table
    from paradox.params import load_params
    from paradox.paths import RunPaths
    from paradox.training.runs import training_runs

    params = load_params("real-served")
    assert params.learning_curve.checkpoints == 0 and "test" in params.learning_curve.splits
    paths = RunPaths(params.profile, tmp_path)
    splits = {"math500": PROBLEMS}
    table = learning_curve_table(params, paths, pd.DataFrame(), training_runs(params), splits)
    assert list(table.columns) == LC_COLUMNS and table.empty
    # with checkpoints kept, a learning-curve split that is not evaluated is a clear error
    on = params.model_copy(
        update={"learning_curve": params.learning_curve.model_copy(update={"checkpoints": 2})}
    )
    with pytest.raises(ValueError, match=r"learning_curve.splits \['test'\]"):
        learning_curve_table(on, paths, pd.DataFrame(), training_runs(on), splits)


def test_evaluate_refuses_a_split_without_k_samples_for_every_problem(tmp_path, monkeypatch):
    """A generator (or a stored shard) that gives fewer than eval.k samples must not become a row
    of accuracy.csv over fewer samples or problems than it says (issue 11 item 1)."""
    import pytest

    from paradox import backends, evaluation
    from paradox.params import load_params
    from paradox.paths import RunPaths

    params = load_params("toy")
    assert params.eval.k > 2  # the script holds 2 completions per prompt
    gen = ScriptedGenerator({p.question: SCRIPT[p.question] for p in PROBLEMS})
    gen.tok = None
    monkeypatch.setattr(backends, "generator", lambda *a, **kw: gen)
    monkeypatch.setattr(backends, "format_prompt", lambda params, question, tok: question)
    with pytest.raises(ValueError, match=rf"m/test .*exactly k={params.eval.k} samples"):
        evaluation.evaluate(params, RunPaths("toy", tmp_path), "some/hub-model", "m", 0, {"test": PROBLEMS})
