"""The reward cross-check's bookkeeping (paradox.cross_check), with toy rubrics as the models: keys,
one file per model and stream, every model freed after its turn, the selected stream's scores
taken from its sources, and the side-by-side table."""

from __future__ import annotations

from pathlib import Path

from paradox import backends, cross_check
from paradox.io import read_jsonl, write_jsonl
from paradox.params import Reward, RewardModel, load_params
from paradox.paths import RunPaths

ROOT = Path(__file__).resolve().parents[1]


def test_model_keys_are_file_names_and_distinct():
    params = load_params("smoke", ROOT / "params")
    specs = (
        RewardModel(backend="hf", name_or_path="Skywork/Skywork-Reward-V2-Llama-3.1-8B"),
        RewardModel(backend="hf", name_or_path="other/Skywork-Reward-V2-Llama-3.1-8B"),
        RewardModel(backend="vllm", name_or_path="runs/x/assets/rm qwen/"),
        RewardModel(backend="toy"),
    )
    params = params.model_copy(update={"reward": Reward(cross_check=specs)})
    assert cross_check.model_keys(params) == [
        "Skywork-Reward-V2-Llama-3.1-8B",
        "Skywork-Reward-V2-Llama-3.1-8B-2",
        "rm_qwen",
        "toy",
    ]


class Closing:
    """A rubric that records being freed and refuses to score afterwards."""

    def __init__(self, inner, log: list) -> None:
        self.inner, self.log, self.closed = inner, log, False

    def score_many(self, problems, traces):
        assert not self.closed
        self.log.append("score")
        return [s + 1.0 * len(self.log) for s in self.inner.score_many(problems, traces)]

    def close(self) -> None:
        self.closed = True
        self.log.append("close")


def test_score_streams_writes_each_model_and_frees_it_before_the_next(
    tmp_path, toy_problem, native_trace, monkeypatch
):
    params = load_params("smoke", ROOT / "params")
    params = params.model_copy(update={"reward": Reward(cross_check=(RewardModel(backend="toy"),) * 2)})
    paths = RunPaths("x", tmp_path / "runs")
    log: list[str] = []
    monkeypatch.setattr(
        backends,
        "cross_check_rewards",
        lambda p, paths=None: [Closing(backends.reward_model(p, s), log) for s in p.reward.cross_check],
    )
    problems = {"t-0": toy_problem}
    for stream in ("slm_rft", "oracle_refined", "style_aligned"):
        write_jsonl(paths.stream(stream), [{"id": "t-0", "prompt": "q", "completion": native_trace}])
        write_jsonl(paths.rewards / f"{stream}.jsonl", [{"id": "t-0", "reward": 0.5}])
    cross_check.score_streams(params, paths, problems, ["slm_rft", "oracle_refined"])
    assert log == ["score", "score", "close", "score", "score", "close"]
    assert read_jsonl(paths.rewards / "cross_check" / "toy" / "oracle_refined.jsonl")[0]["id"] == "t-0"
    cross_check.score_streams(params, paths, problems, ["style_aligned"])  # notebook 03's turn
    cross_check.copy_selected(params, paths, {"t-0": "oracle_refined"})
    for key in ("toy", "toy-2"):
        picked = read_jsonl(paths.rewards / "cross_check" / key / "compat_selected.jsonl")
        assert picked == read_jsonl(paths.rewards / "cross_check" / key / "oracle_refined.jsonl")
    table = cross_check.reward_table(params, paths, ["slm_rft", "oracle_refined", "style_aligned"])
    assert list(table.columns) == [
        "stream",
        "reward:main (toy)",
        "reward:toy",
        "reward:toy-2",
        "rank:main (toy)",
        "rank:toy",
        "rank:toy-2",
    ]
    assert table["reward:main (toy)"].tolist() == [0.5, 0.5, 0.5] and table["rank:main (toy)"].tolist() == [
        1,
        1,
        1,
    ]
    # each score_many call added its call count: the first model's streams rank in calling order, reversed
    assert table["rank:toy"].tolist() == [3, 2, 1]
    assert len(cross_check.input_files(params, paths, ["slm_rft"])) == 3


def test_free_closes_what_can_be_closed():
    log: list[str] = []
    cross_check.free(Closing(None, log))
    cross_check.free(object())  # the toy rubric: nothing to free
    assert log == ["close"]
