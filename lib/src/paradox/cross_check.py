"""The reward cross-check: every stream scored by each model in `reward.cross_check` too.

The paper reports perceived quality with Qwen2.5-Math-RM-72B and checks it with other reward models
(Skywork, Nemotron): the paradox claims that the Oracle's streams look better than the SLM's own
under a reward model, not under one particular reward model. Notebooks 02 and 03 score each stream
with each cross-check model, one model at a time (each is freed before the next loads), and write

    rewards/cross_check/<key>/<stream>.jsonl    {"id", "reward"} per trace, like rewards/<stream>.jsonl

where <key> names the model (`model_keys`). `reward_table` puts the main model and the cross-check
models side by side, mean reward per stream and each model's ranking of the streams.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from paradox import backends
from paradox.io import read_jsonl, write_jsonl
from paradox.params import Params, RewardModel
from paradox.paths import RunPaths
from paradox.problems import Problem


def model_key(spec: RewardModel) -> str:
    """A file-name-safe name for a reward model: the last part of its hub id or path
    ("Skywork/Skywork-Reward-V2-Llama-3.1-8B" -> "Skywork-Reward-V2-Llama-3.1-8B")."""
    name = (spec.name_or_path or spec.backend).rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "model"


def model_keys(params: Params) -> list[str]:
    """One distinct key per cross-check model, in params order (a repeated name gets -2, -3, ...)."""
    keys: list[str] = []
    for spec in params.reward.cross_check:
        key, n = model_key(spec), 2
        while key in keys or key == "main":
            key, n = f"{model_key(spec)}-{n}", n + 1
        keys.append(key)
    return keys


def scores_path(paths: RunPaths, key: str, stream: str) -> Path:
    return paths.rewards / "cross_check" / key / f"{stream}.jsonl"


def free(model: object) -> None:
    """Release a reward model's weights or engine (the toy rubric has none)."""
    close = getattr(model, "close", None)
    if callable(close):
        close()


def score_streams(
    params: Params, paths: RunPaths, problems: Mapping[str, Problem], streams: Sequence[str]
) -> None:
    """Score every stream's traces with each cross-check model, one model at a time, freeing it after."""
    for key, model in zip(model_keys(params), backends.cross_check_rewards(params, paths), strict=True):
        try:
            for stream in streams:
                rows = read_jsonl(paths.stream(stream))
                scores = model.score_many([problems[r["id"]] for r in rows], [r["completion"] for r in rows])
                write_jsonl(
                    scores_path(paths, key, stream),
                    ({"id": r["id"], "reward": s} for r, s in zip(rows, scores, strict=True)),
                )
                print(f"cross-check {key}: {stream} mean reward {sum(scores) / max(1, len(scores)):.3f}")
        finally:
            free(model)


def copy_selected(
    params: Params, paths: RunPaths, choice: Mapping[str, str], stream: str = "compat_selected"
) -> None:
    """A selected stream's cross-check scores: each trace's score from the stream it was chosen from
    (`choice`: problem id -> source stream), in the order of `choice`; nothing is scored again."""
    for key in model_keys(params):
        by_source = {
            s: {r["id"]: r["reward"] for r in read_jsonl(scores_path(paths, key, s))}
            for s in sorted(set(choice.values()))
        }
        write_jsonl(
            scores_path(paths, key, stream),
            ({"id": i, "reward": by_source[src][i]} for i, src in choice.items()),
        )


def reward_table(params: Params, paths: RunPaths, streams: Sequence[str]) -> pd.DataFrame:
    """Mean reward per stream (rows) under the main model and each cross-check model (columns
    `reward:<model>`), and each model's rank of the stream (`rank:<model>`, 1 = highest reward)."""
    cols = {f"main ({model_key(params.reward)})": [paths.rewards / f"{s}.jsonl" for s in streams]}
    for key in model_keys(params):
        cols[key] = [scores_path(paths, key, s) for s in streams]
    out = pd.DataFrame({"stream": list(streams)})
    for name, files in cols.items():
        out[f"reward:{name}"] = [pd.DataFrame(read_jsonl(f))["reward"].mean() for f in files]
    for name in cols:
        out[f"rank:{name}"] = out[f"reward:{name}"].rank(ascending=False, method="min").astype(int)
    return out


def input_files(params: Params, paths: RunPaths, streams: Sequence[str]) -> list[Path]:
    """Every reward file `reward_table` reads (for provenance sidecars)."""
    return [paths.rewards / f"{s}.jsonl" for s in streams] + [
        scores_path(paths, key, s) for key in model_keys(params) for s in streams
    ]
