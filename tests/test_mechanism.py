"""The measures behind notebook 07 and the two experiments beyond the paper."""

import pytest

from paradox.metrics import quarter_slices
from paradox.params import load_params
from paradox.retention import judge_retention, load_prompt
from paradox.streams import drift_fraction, drift_stream
from paradox.streams.selection import select_compatible
from paradox.toy.oracle import ToyOracle
from paradox.toy.retention import toy_atoms, toy_retention, toy_retention_share
from paradox.training.runs import grid_runs, main_runs, training_runs


@pytest.mark.parametrize("n", [*range(0, 41), 97, 1000, 4097])
def test_quarters_partition_the_response_tokens(n):
    qs = quarter_slices(n)
    covered = [i for q in qs for i in range(n)[q]]
    assert covered == list(range(n))  # every token once, in order
    sizes = [q.stop - q.start for q in qs]
    assert max(sizes) - min(sizes) <= 1  # equal length, up to one token


def test_retention_on_hand_made_cases(toy_problem, native_trace):
    oracle = ToyOracle()
    # same atoms in another notation: everything kept
    assert toy_retention(native_trace, oracle.refine(toy_problem, native_trace)) == 5.0
    assert toy_retention(native_trace, native_trace) == 5.0
    # a rewrite that drops one of three equations keeps fewer atoms
    lines = native_trace.splitlines()
    dropped = "\n".join([lines[0], lines[1], lines[2], lines[4]])
    share = toy_retention_share(native_trace, dropped)
    assert 0 < share < 1 and toy_retention(native_trace, dropped) == pytest.approx(1 + 4 * share)
    # an unrelated solution keeps (almost) nothing
    assert toy_retention(native_trace, "Let \\( N = 1 \\).\n\\( 2 + 2 = 4 \\)") < 2
    assert ("eq", 7, "+", 5, 12) in toy_atoms(native_trace) and ("q", 7) in toy_atoms(native_trace)


class FakeJudge:
    """Answers like a judge would, from the toy atoms of the two traces in its prompt."""

    def __init__(self, reply_format: str = "Reasoning...\nScore: {score}"):
        self.reply_format, self.prompts = reply_format, []

    def complete(self, prompt: str) -> str:
        self.prompts.append(prompt)
        original = prompt.split("Original solution:\n<<<\n")[1].split("\n>>>")[0]
        rewrite = prompt.split("Rewritten solution:\n<<<\n")[1].split("\n>>>")[0]
        return self.reply_format.format(score=round(toy_retention(original, rewrite)))


def test_judge_retention_uses_the_prompt_file_and_parses_the_score(toy_problem, native_trace):
    template = load_prompt("params/prompts/retention_judge.txt")
    refined = ToyOracle().refine(toy_problem, native_trace)
    judge = FakeJudge()
    assert judge_retention(judge, template, native_trace, refined) == 5.0
    assert native_trace in judge.prompts[0] and refined in judge.prompts[0] and "Ignore formatting" in judge.prompts[0]
    assert judge_retention(FakeJudge("I cannot say."), template, native_trace, refined) is None


def test_judge_prompt_must_have_placeholders(tmp_path):
    bad = tmp_path / "p.txt"
    bad.write_text("no placeholders")
    with pytest.raises(ValueError, match="placeholder"):
        load_prompt(bad)


def test_compatibility_selection_rule():
    cands = {"rft": {"a": (1.4, 0.2), "b": (1.4, 0.2)},
             "refined": {"a": (2.0, 0.5), "b": (2.0, 1.0)},
             "synth": {"a": (2.0, 6.0), "b": (2.0, 6.0)}}
    assert select_compatible(cands, lam=0.0) == {"a": "refined", "b": "refined"}  # reward alone; tie -> first
    assert select_compatible(cands, lam=1.0) == {"a": "refined", "b": "rft"}  # 2.0-0.5 > 1.2; 2.0-1.0 < 1.2
    assert select_compatible(cands, lam=10.0) == {"a": "rft", "b": "rft"}
    assert select_compatible({"x": {"a": (1, 0)}, "y": {"b": (1, 0)}}, lam=1.0) == {}  # only shared problems


def test_run_plan():
    p = load_params("toy-full")
    runs = training_runs(p)
    names = [r.name for r in runs]
    assert len(names) == len(set(names))
    main = main_runs(p)
    assert {r.seed for r in main} == {0, 1, 2}
    assert all(r.loss == "dft" for r in main if r.stream.startswith("drift_"))
    grid = grid_runs(p)
    cells = {(r.learning_rate, r.batch_size) for r in grid}
    assert (p.train.learning_rate, p.train.batch_size) not in cells and len(cells) == 3
    assert drift_stream(0.25) == "drift_025" and drift_fraction("drift_025") == 0.25
