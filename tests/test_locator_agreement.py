"""Error locators in the toy world (the Oracle's rule, the PRM stand-in, the exact checker) and the
locator agreement table of notebook 03 (`paradox.locator_agreement`, ProcessBench's scores)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from paradox import backends, locator_agreement
from paradox.locators import ExactLocator, first_below
from paradox.params import ParamsError, load_params
from paradox.paths import RunPaths
from paradox.problems import Problem
from paradox.toy import steps, styles
from paradox.toy.oracle import ToyOracle
from paradox.toy.prm import StandInPRM

ROOT = Path(__file__).resolve().parents[1]


def _traces(splits) -> tuple[list[Problem], list[str]]:
    """Native traces of the toy train split, a third of them with one step's result off by one (a
    wrong step the checker finds), a third with the answer line dropped."""
    problems, traces = [], []
    for i, p in enumerate(splits["train"]):
        trace = styles.render_native(p.meta, random.Random(i))
        lines = trace.splitlines()
        if i % 3 == 1:
            step = next(j for j, ln in enumerate(lines) if steps.EQUATION.search(ln))
            m = list(steps.EQUATION.finditer(lines[step]))[-1]
            lines[step] = lines[step][: m.start(4)] + str(int(m.group(4)) + 1) + lines[step][m.end(4) :]
        elif i % 3 == 2:
            lines = lines[:-1]
        problems.append(p)
        traces.append("\n".join(lines))
    return problems, traces


def test_first_below():
    assert first_below([0.9, 0.5, 0.2, 0.1], 0.5) == 2  # at the threshold is not below it
    assert first_below([0.9, 0.8], 0.5) is None and first_below([], 0.5) is None


def test_stand_in_is_the_checker_at_rate_zero_and_always_wrong_at_rate_one(splits):
    problems, traces = _traces(splits)
    truth = ExactLocator().locate_many(problems, traces)
    assert truth.count(None) not in (0, len(truth))  # both kinds of trace are there
    assert StandInPRM(0.0, seed=0).locate_many(problems, traces) == truth
    wrong = StandInPRM(1.0, seed=0)
    answers = wrong.locate_many(problems, traces)
    assert all(a != t for a, t in zip(answers, truth, strict=True))
    for p, a in zip(problems, answers, strict=True):  # an answer the checker could give
        assert a is None or 0 <= a <= len(styles.steps_of(p.meta))
    assert wrong.stats() == {"prm_standin_replaced": len(problems)}


def test_stand_in_is_seeded_per_trace_and_leaves_the_global_generators_alone(splits):
    problems, traces = _traces(splits)
    state = random.getstate()
    a = StandInPRM(0.3, seed=0).locate_many(problems, traces)
    assert random.getstate() == state  # the toy's other outputs draw from the global generator
    assert StandInPRM(0.3, seed=0).locate_many(problems[::-1], traces[::-1]) == a[::-1]  # any order
    assert StandInPRM(0.3, seed=1).locate_many(problems, traces) != a
    truth = ExactLocator().locate_many(problems, traces)
    replaced = sum(x != t for x, t in zip(a, truth, strict=True))
    assert 0 < replaced < len(problems) * 0.6  # about 30% of 50


def test_compare_is_processbench_s_scores():
    #             sound sound  wrong wrong wrong  sound
    reference = [None, None, 2, 0, 1, None]
    located = [None, 3, 2, None, 0, None]
    row = locator_agreement.compare(located, reference)
    assert row["traces"] == 6 and row["ref_wrong"] == 3
    assert row["agree_pct"] == pytest.approx(100 * 3 / 6)  # two "no error" and one same step
    assert row["same_step_on_ref_wrong_pct"] == pytest.approx(100 / 3)  # ProcessBench's error accuracy
    assert row["none_on_ref_sound_pct"] == pytest.approx(200 / 3)  # its accuracy on correct samples
    assert row["f1"] == pytest.approx(2 * (100 / 3) * (200 / 3) / (100 / 3 + 200 / 3))
    assert (row["both_none"], row["same_step"], row["locator_only"]) == (2, 1, 1)
    assert (row["reference_only"], row["different_step"]) == (1, 1)
    only_sound = locator_agreement.compare([None], [None])
    assert math.isnan(only_sound["same_step_on_ref_wrong_pct"]) and math.isnan(only_sound["f1"])
    with pytest.raises(ValueError, match="2 answers against 1"):
        locator_agreement.compare([None, 1], [None])


def test_the_table_has_the_same_rows_in_every_world(splits):
    problems, traces = _traces(splits)
    toy = load_params("smoke", ROOT / "params")
    oracle = backends.oracle(toy, RunPaths("smoke"))
    located = backends.locators(toy, oracle)
    assert list(located) == ["oracle", "prm", "exact"]
    answers = {r: loc.locate_many(problems, traces) for r, loc in located.items()}
    notes = locator_agreement.toy_notes(toy, located["prm"].stats())
    table = locator_agreement.agreement_table(
        answers,
        {r: x.name for r, x in located.items()},
        locator_agreement.why_missing(toy, list(answers)),
        notes,
    )
    assert list(table.columns) == list(locator_agreement.COLUMNS) and len(table) == 3
    rule = table.iloc[1]  # the toy Oracle's rule against the checker: the same function
    assert rule["agree_pct"] == 100 and "by construction" in rule["note"]
    standin = table.iloc[2]
    assert 0 < standin["agree_pct"] < 100 and "stand-in, not a model" in standin["note"]
    assert "replaced in this run" in standin["note"]
    # A real world with no PRM: the same three rows, each saying why it is empty.
    real = load_params("real-local", ROOT / "params")
    missing = locator_agreement.why_missing(real, ["oracle"])
    empty = locator_agreement.agreement_table({"oracle": answers["oracle"]}, {}, missing)
    assert len(empty) == 3 and empty["traces"].isna().all()
    assert (
        "oracle.prm is not set" in empty.iloc[0]["note"] and "no exact step checker" in empty.iloc[1]["note"]
    )


def test_locators_follow_oracle_locator_and_compare_locators():
    toy = load_params("smoke", ROOT / "params")

    def with_oracle(**kw):
        return toy.model_copy(update={"oracle": toy.oracle.model_copy(update=kw)})

    alone = with_oracle(compare_locators=False)
    assert list(backends.locators(alone, backends.oracle(alone, RunPaths("smoke")))) == ["oracle", "exact"]
    prm = with_oracle(locator="prm", compare_locators=False)
    oracle = backends.oracle(prm, RunPaths("smoke"))
    assert isinstance(oracle, ToyOracle) and isinstance(oracle.locator, StandInPRM)
    located = backends.locators(prm, oracle)
    assert list(located) == ["prm", "exact"] and located["prm"] is oracle.locator
    real = load_params("real-local", ROOT / "params")
    assert list(backends.locators(real, backends.oracle(real, RunPaths("real-local")))) == ["oracle"]


def test_the_toy_oracle_locates_with_the_stand_in_when_told(splits):
    problems, traces = _traces(splits)
    own = ToyOracle()
    noisy = ToyOracle(StandInPRM(1.0, seed=0))
    truth = own.locate_many(problems, traces)
    assert truth == ExactLocator().locate_many(problems, traces) == own.own_locate_many(problems, traces)
    assert noisy.own_locate_many(problems, traces) == truth  # its own rule, whatever the locator
    assert all(a != t for a, t in zip(noisy.locate_many(problems, traces), truth, strict=True))
    assert (
        noisy.stats()["prm_standin_replaced"] == len(problems) and "prm_standin_replaced" not in own.stats()
    )


def test_toy_params_keep_their_hash_and_validate_the_rate(tmp_path):
    toy = load_params("toy", ROOT / "params")
    assert toy.toy is not None and toy.toy.prm_standin_error_rate == 0.1
    assert toy.hash() == "0d18faea89e2"  # the new keys at their defaults leave the hash alone
    noisier = toy.model_copy(update={"toy": toy.toy.model_copy(update={"prm_standin_error_rate": 0.2})})
    assert noisier.hash() != toy.hash()
    other = toy.model_copy(update={"oracle": toy.oracle.model_copy(update={"locator": "prm"})})
    assert other.hash() != toy.hash()
    (tmp_path / "base.yaml").write_text((ROOT / "params" / "base.yaml").read_text())
    (tmp_path / "toy.yaml").write_text((ROOT / "params" / "toy.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("extends: toy\ntoy:\n  prm_standin_error_rate: 1.5\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml: key 'toy.prm_standin_error_rate'"):
        load_params("bad", tmp_path)
