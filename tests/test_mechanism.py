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
    assert (
        native_trace in judge.prompts[0]
        and refined in judge.prompts[0]
        and "Ignore formatting" in judge.prompts[0]
    )
    assert judge_retention(FakeJudge("I cannot say."), template, native_trace, refined) is None


def test_judge_prompt_must_have_placeholders(tmp_path):
    bad = tmp_path / "p.txt"
    bad.write_text("no placeholders")
    with pytest.raises(ValueError, match="placeholder"):
        load_prompt(bad)


def test_compatibility_selection_rule():
    cands = {
        "rft": {"a": (1.4, 0.2), "b": (1.4, 0.2)},
        "refined": {"a": (2.0, 0.5), "b": (2.0, 1.0)},
        "synth": {"a": (2.0, 6.0), "b": (2.0, 6.0)},
    }
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


# --- the analyses of notebook 07 (paradox.mechanism) on hand-made scored traces -------------------
import math  # noqa: E402

import pandas as pd  # noqa: E402

from paradox import mechanism  # noqa: E402
from paradox.metrics import TraceNLL  # noqa: E402


def trace(ids: list[int], nll: list[float]) -> TraceNLL:
    return TraceNLL(sum(nll), len(nll), nll, ids)


# 4 tokens: one per quarter; 8 tokens: two per quarter
T4 = trace([5, 6, 7, 8], [1.0, 2.0, 3.0, 4.0])
T8 = trace([9, 5, 1, 1, 2, 2, 3, 3], [3.0, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0])


def text(i: int) -> str:
    return f"t{i}"


def util_frame(rows: dict[tuple[str, str], tuple[float, float, int]]) -> pd.DataFrame:
    """A `metrics.utility` table by hand: index (stream, loss), columns mean, ci95, n_seeds."""
    idx = pd.MultiIndex.from_tuples(list(rows), names=["stream", "loss"])
    return pd.DataFrame(
        [dict(zip(["mean", "ci95", "n_seeds"], v, strict=True)) for v in rows.values()], index=idx
    )


def test_segmented_ppl_is_token_weighted_per_quarter():
    seg = mechanism.segmented_ppl({"a": [T4, T8], "b": [T4]}, ["a", "b"]).set_index("stream")
    # quarter sums of stream a: Q1 1 + (3 + 0.5) over 3 tokens, Q2 2 + 2 over 3, Q3 3 + 4 over 3, Q4 4 + 6 over 3
    for q, total in zip(mechanism.QUARTERS, [4.5, 4.0, 7.0, 10.0], strict=True):
        assert seg.loc["a", q] == pytest.approx(math.exp(total / 3))
    assert seg.loc["a", "global"] == pytest.approx(math.exp((10.0 + 15.5) / 12))
    assert [seg.loc["b", q] for q in mechanism.QUARTERS] == pytest.approx([math.e**v for v in (1, 2, 3, 4)])


def test_q1_attribution_ranks_tokens_by_summed_first_quarter_nll():
    att = mechanism.q1_attribution({"slm_rft": [T4, T8]}, ["slm_rft"], text, n_top=5)
    # Q1 tokens: T4 -> id 5 (1.0); T8 -> ids 9 (3.0), 5 (0.5); total 4.5
    assert att["stream"].tolist() == ["SLM-RFT", "SLM-RFT"]
    assert att["token"].tolist() == ["t9", "t5"] and att["rank"].tolist() == [1, 2]
    assert att["sum_nll"].tolist() == pytest.approx([3.0, 1.5])
    assert att["share_of_q1_nll"].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert len(mechanism.q1_attribution({"slm_rft": [T4, T8]}, ["slm_rft"], text, n_top=1)) == 1


def test_token_shift_per_1000_tokens():
    rft = [trace([1, 1, 2, 2], [0.0] * 4)]  # 1: 500, 2: 500 per 1,000
    refined = [trace([1, 3], [0.0] * 2), trace([3, 3], [0.0] * 2)]  # 1: 250, 3: 750 per 1,000
    shift = mechanism.token_shift(rft, refined, text, n_top=1)
    assert shift.columns.tolist() == ["direction", "token", "rft", "refined", "change"]
    assert shift.to_dict("records") == [
        {"direction": "increase", "token": "t3", "rft": 0.0, "refined": 750.0, "change": 750.0},
        {"direction": "decrease", "token": "t2", "rft": 500.0, "refined": 0.0, "change": -500.0},
    ]


def test_token_text_quotes_the_decoded_token():
    class Decoder:
        def decode(self, ids: list[int]) -> str:
            return {7: "\n", 8: " x"}[ids[0]]

    assert mechanism.token_text(Decoder(), 7) == "'\\n'" and mechanism.token_text(Decoder(), 8) == "' x'"


class ScriptedJudge:
    name = "scripted"

    def __init__(self, scores: list[float | None]):
        self.scores, self.pairs = scores, []

    def score_many(self, pairs, desc=None):
        self.pairs += pairs
        return self.scores[: len(pairs)]


def test_mean_retention_pairs_by_id_and_leaves_unscored_out():
    rft = [{"id": "a", "completion": "A"}, {"id": "b", "completion": "B"}]
    rewrites = {"oracle_refined": [{"id": "b", "completion": "B'"}, {"id": "a", "completion": "A'"}]}
    judge = ScriptedJudge([4.0, None])
    retention, unscored = mechanism.mean_retention(judge, rft, rewrites)
    assert judge.pairs == [("B", "B'"), ("A", "A'")]
    assert retention == {"oracle_refined": 4.0} and unscored == {"oracle_refined": 1}
    retention, unscored = mechanism.mean_retention(ScriptedJudge([None, None]), rft, rewrites)
    assert math.isnan(retention["oracle_refined"]) and unscored == {"oracle_refined": 2}


REWARD = {"slm_rft": 0.5, "oracle_refined": 0.9, "oracle_synthesized": 0.8, "style_aligned": 0.7}
PPL = {"slm_rft": 1.5, "oracle_refined": 3.0, "oracle_synthesized": 4.0, "style_aligned": 1.8}


def test_mechanism_table_orders_by_perplexity_and_formats():
    util = util_frame(
        {
            ("slm_rft", "dft"): (40.0, 2.0, 3),
            ("slm_rft", "nll"): (35.0, 1.0, 3),
            ("oracle_refined", "dft"): (30.0, 1.5, 3),
        }
    )
    full, shown = mechanism.mechanism_table(
        ["oracle_refined", "slm_rft"], PPL, REWARD, {"oracle_refined": 4.25}, util, k=4
    )
    assert full["stream"].tolist() == ["slm_rft", "oracle_refined"]
    assert math.isnan(full.loc[0, "retention"]) and full.loc[1, "retention"] == 4.25
    assert full.loc[1, "sft"] != full.loc[1, "sft"]  # not trained under SFT: nan
    assert shown.to_dict("records")[1] == {
        "Stream": "Oracle-Refined",
        "Global PPL": "3",
        "Reward": "0.90",
        "Retention": "4.25",
        "DFT Avg@4": "30.00 ± 1.50",
        "SFT Avg@4": "n/a",
    }
    assert shown.loc[0, "Retention"] == "reference"


def test_correlations_are_spearman_over_trained_streams():
    streams = ["slm_rft", "oracle_refined", "oracle_synthesized", "style_aligned"]
    # SFT: utility falls as reward rises (-1); perplexity order rft < style < refined < synth
    util = util_frame(
        {
            ("slm_rft", "nll"): (40.0, 0, 1),
            ("style_aligned", "nll"): (30.0, 0, 1),
            ("oracle_synthesized", "nll"): (20.0, 0, 1),
            ("oracle_refined", "nll"): (10.0, 0, 1),
            ("slm_rft", "dft"): (1.0, 0, 1),
            ("oracle_refined", "dft"): (2.0, 0, 1),
        }
    )
    corr = mechanism.correlations(streams, REWARD, PPL, util).set_index("loss")
    assert corr.loc["nll", "n_streams"] == 4 and corr.loc["nll", "spearman_reward_utility"] == pytest.approx(
        -1.0
    )
    # ranks of ppl (1, 3, 4, 2) against utility (4, 1, 2, 3): squared differences 9 + 4 + 4 + 1,
    # rho = 1 - 6 * 18 / (4 * 15) = -0.8
    assert corr.loc["nll", "spearman_ppl_utility"] == pytest.approx(-0.8)
    assert corr.loc["dft", "n_streams"] == 2 and corr.loc["dft", "spearman_reward_utility"] == pytest.approx(
        1.0
    )


def test_verdict_names_the_higher_reward_streams_below_rft():
    streams = ["slm_rft", "oracle_refined", "oracle_synthesized"]
    util = util_frame(
        {
            ("slm_rft", "nll"): (40.0, 2.0, 3),
            ("oracle_refined", "nll"): (30.0, 3.0, 3),
            ("oracle_synthesized", "nll"): (37.0, 2.0, 3),
            ("slm_rft", "dft"): (40.0, 0.0, 1),
            ("oracle_refined", "dft"): (45.0, 0.0, 1),
            ("oracle_synthesized", "dft"): (39.0, 0.0, 1),
        }
    )
    # refined: 30 + 3 < 40 - 2, separated; synthesized: 37 + 2 > 38, not
    assert mechanism.verdict(util, REWARD, streams, "nll") == (
        "yes for Oracle-Refined, Oracle-Synthesized (higher reward, lower utility than SLM-RFT); "
        "intervals separated for Oracle-Refined"
    )
    assert mechanism.verdict(util, REWARD, streams, "dft") == (
        "yes for Oracle-Synthesized (higher reward, lower utility than SLM-RFT); one seed: Table 1's "
        "bootstrap intervals over problems say how large the gaps are"
    )
    assert mechanism.verdict(util, {**REWARD, "slm_rft": 1.0}, streams, "nll").startswith("no:")
    untrained = util.drop(index=[i for i in util.index if i[1] == "nll"])  # a DFT-only profile
    assert (
        mechanism.verdict(untrained, REWARD, streams, "nll")
        == "not run: this profile does not train this loss"
    )
    # an Oracle stream the profile does not train is not judged
    assert mechanism.verdict(util, REWARD, ["slm_rft", "oracle_synthesized"], "nll").startswith(
        "yes for Oracle-Synthesized ("
    )


def test_robustness_grid_picks_the_best_stream_per_cell():
    acc = pd.DataFrame(
        [
            {
                "purpose": p,
                "stream": s,
                "loss": "dft",
                "seed": seed,
                "learning_rate": lr,
                "batch_size": 8,
                "split": split,
                "avg_at_k": v,
            }
            for p, s, seed, lr, split, v in [
                ("main", "slm_rft", 0, 1e-5, "test", 50.0),
                ("main", "slm_rft", 0, 1e-5, "hard", 30.0),
                ("main", "oracle_refined", 0, 1e-5, "test", 20.0),
                ("main", "oracle_refined", 0, 1e-5, "hard", 20.0),
                ("grid", "slm_rft", 0, 2.5e-4, "test", 10.0),
                ("grid", "oracle_refined", 0, 2.5e-4, "test", 30.0),
                ("main", "slm_rft", 1, 1e-5, "test", 0.0),  # another seed: not in the grid
                ("base", "base", 0, 0.0, "test", 99.0),
            ]
        ]
    )
    grid = mechanism.robustness_grid(acc, ["slm_rft", "oracle_refined"], ["dft"], seed=0)
    assert grid.columns.tolist() == [
        "loss",
        "learning_rate",
        "batch_size",
        "SLM-RFT",
        "Oracle-Refined",
        "best",
    ]
    assert grid["learning_rate"].tolist() == ["1e-05", "0.00025"]
    assert grid["SLM-RFT"].tolist() == [40.0, 10.0] and grid["best"].tolist() == ["SLM-RFT", "Oracle-Refined"]
    assert mechanism.robustness_grid(acc, [], ["dft"], seed=0).empty


def test_drift_table():
    util = util_frame({("drift_000", "dft"): (40.0, 0, 1), ("drift_100", "dft"): (30.0, 0, 1)})
    table = mechanism.drift_table(
        ["drift_000", "drift_100"],
        {"drift_000": 1.5, "drift_100": 2.5},
        {"drift_000": 0.4, "drift_100": 0.6},
        util,
        ["dft"],
        k=2,
    )
    assert table.to_dict("records") == [
        {"f": 0.0, "ppl": 1.5, "reward": 0.4, "dft Avg@2": 40.0},
        {"f": 1.0, "ppl": 2.5, "reward": 0.6, "dft Avg@2": 30.0},
    ]


def test_dose_response_sets_the_prediction_beside_the_run():
    drift = pd.DataFrame(
        {
            "f": [0.0, 0.5, 1.0],
            "ppl": [1.3, 1.5, 1.1],
            "reward": [1.0, 1.5, 2.0],
            "dft Avg@4": [16.0, 12.0, 13.0],
        }
    )
    d = mechanism.dose_response(drift).set_index("with f")
    assert list(d.index) == ["ppl", "dft Avg@4"]  # reward rises with f by construction: not shown
    assert d.loc["ppl", "mechanism predicts"] == "rises" and d.loc["ppl", "this run"] == "falls"
    assert d.loc["ppl", "spearman"] == pytest.approx(-0.5)
    assert d.loc["dft Avg@4", "mechanism predicts"] == "falls" and d.loc["dft Avg@4", "this run"] == "falls"
