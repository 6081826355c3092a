import random

from paradox.toy import problems as toy_problems
from paradox.toy import steps, styles
from paradox.toy.oracle import ToyOracle
from paradox.toy.reward import RubricReward


def test_every_notation_of_a_correct_solution_validates(splits):
    for p in splits["train"] + splits["hard"]:
        for text in (
            styles.render_native(p.meta, random.Random(0)),
            styles.render_oracle(p.meta),
            styles.render_synthesized(p.meta),
            p.reference_solution,
        ):
            assert steps.first_wrong_step(text, p.meta) is None, text


def test_splits_are_disjoint_and_seeded(splits):
    questions = [p.question for rows in splits.values() for p in rows]
    assert len(questions) == len(set(questions))
    again = toy_problems.build_splits(
        1, {"train": 50, "test": 20, "hard": 20}, (2, 3), 9, 99, (4, 5), 15, 199
    )
    assert [p.to_dict() for p in again["test"]] == [p.to_dict() for p in splits["test"]]
    assert all(4 <= len(p.meta["ops"]) <= 5 for p in splits["hard"])


def test_validator_finds_the_first_wrong_step(toy_problem, native_trace):
    lines = native_trace.splitlines()
    bad = "\n".join([lines[0], lines[1], lines[2].replace("= 8", "= 9"), *lines[3:]])
    err = steps.first_wrong_step(bad, toy_problem.meta)
    assert err is not None and err.index == 1 and "arithmetic" in err.reason
    # a consistent but wrong chain (wrong operand copied from the question) is caught as well
    off = native_trace.replace("12 - 4 = 8", "12 - 3 = 9")
    assert steps.first_wrong_step(off, toy_problem.meta).index == 1


def test_validator_missing_extra_and_final(toy_problem, native_trace):
    lines = native_trace.splitlines()
    missing = "\n".join([lines[0], lines[1], lines[3], lines[4]])
    assert steps.first_wrong_step(missing, toy_problem.meta).index == 1
    extra = "\n".join([*lines[:4], "Then he gets 1 more, so he has 24 + 1 = 25 apples.", lines[4]])
    assert steps.first_wrong_step(extra, toy_problem.meta).reason == "extra step"
    wrong_final = "\n".join([*lines[:4], "The answer is 23."])
    assert steps.first_wrong_step(wrong_final, toy_problem.meta).reason.startswith("wrong or missing final")


def test_repair_changes_only_the_wrong_steps(toy_problem, native_trace):
    lines = native_trace.splitlines()
    bad_lines = list(lines)
    bad_lines[2] = lines[2].replace("12 - 4 = 8", "12 - 4 = 9")
    repaired, changed = steps.repair("\n".join(bad_lines), toy_problem.meta)
    assert changed == [2]
    assert repaired.splitlines() == lines  # the wrong number fixed, every word kept
    assert steps.first_wrong_step(repaired, toy_problem.meta) is None


def test_repair_rewrites_a_wrong_operation_in_native_wording(toy_problem, native_trace):
    lines = native_trace.splitlines()
    bad = "\n".join([lines[0], lines[1], "Then he gets 4 more, so he has 12 + 4 = 16 apples.", *lines[3:]])
    repaired, changed = steps.repair(bad, toy_problem.meta)
    assert 2 in changed and steps.first_wrong_step(repaired, toy_problem.meta) is None
    assert repaired.splitlines()[2] == styles.native_step(toy_problem.meta, (12, "-", 4, 8))
    assert repaired.splitlines()[0] == lines[0] and repaired.splitlines()[1] == lines[1]


def test_repair_adds_missing_steps_and_drops_noise(toy_problem, native_trace):
    lines = native_trace.splitlines()
    bad = "\n".join([lines[0], lines[1], lines[4], "blah blah 3"])
    repaired, changed = steps.repair(bad, toy_problem.meta)
    assert steps.first_wrong_step(repaired, toy_problem.meta) is None
    assert "blah" not in repaired and len(changed) == 2


def test_drift_dial_endpoints(toy_problem, native_trace):
    oracle = ToyOracle()
    assert steps.to_oracle_notation(native_trace, toy_problem.meta, 0.0) == native_trace
    assert steps.to_oracle_notation(native_trace, toy_problem.meta, 1.0) == oracle.refine(
        toy_problem, native_trace
    )
    half = steps.to_oracle_notation(native_trace, toy_problem.meta, 0.5)
    assert half != native_trace and steps.first_wrong_step(half, toy_problem.meta) is None


def test_oracle_streams_are_correct_and_in_oracle_notation(toy_problem, native_trace):
    oracle = ToyOracle()
    refined = oracle.refine(toy_problem, native_trace)
    synthesized = oracle.synthesize(toy_problem)
    for text in (refined, synthesized):
        assert steps.first_wrong_step(text, toy_problem.meta) is None
        assert "\\(" in text and "\\boxed{24}" in text
        assert "apples." not in text.splitlines()[1]  # the SLM's wording is gone
    assert refined != synthesized


def test_rubric_rewards_polish_and_correctness(toy_problem, native_trace):
    r = RubricReward()
    oracle = ToyOracle()
    native, refined = (
        r.score(toy_problem, native_trace),
        r.score(toy_problem, oracle.refine(toy_problem, native_trace)),
    )
    assert refined == 2.0 and native == 1.5
    wrong = native_trace.replace("The answer is 24", "The answer is 23").replace(
        "answer is 24", "answer is 23"
    )
    assert r.score(toy_problem, wrong) < native
    assert r.score(toy_problem, "") == 0.0
