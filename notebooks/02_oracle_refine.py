# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · The Oracle's streams, and what a reward model thinks of every stream
#
# - **Oracle-Refined**: the Oracle minimally repairs each SLM-RFT trace. Logical repair, but
#   written in the Oracle's own notation.
# - **Oracle-Synthesized**: the Oracle solves each problem from scratch.
#
# Then a reward model scores every trace of every stream: the paper's "perceived quality".
#
# In the toy world the Oracle is a rule and the reward model a rubric (see
# `paradox/toy/reward.py`). **The rubric rewards polish** (named symbolic quantities, math
# markup, a boxed answer) on top of correctness, as the paper's reward models appear to: this
# is a modelling choice made before any result, not a finding of the toy world.

# %% [markdown]
# - **Question.** Does a reward model prefer the Oracle's traces to the SLM's own?
# - **Reads** the SLM-RFT stream (01). **Writes** the Oracle-Refined and Oracle-Synthesized streams, and
#   one reward per trace per stream in `runs/<profile>/rewards/`.
# - **Look for** the reward table: if the Oracle's streams score higher, the "quality" half
#   of the paradox is in place (the "utility" half comes in 05).

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"

# %%
from pathlib import Path

import pandas as pd

from paradox import backends
from paradox.grading import grade_many
from paradox.io import read_jsonl, write_json, write_jsonl, write_text
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.problems import Problem
from paradox.trace_view import side_by_side

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir))
print(f"profile={profile} params_hash={params.hash()}")

# %%
problems = {p["id"]: Problem.from_dict(p) for p in read_jsonl(paths.data / "kept_problems.jsonl")}
rft = read_jsonl(paths.stream("slm_rft"))
oracle = backends.oracle(params, paths)
reward = backends.reward_model(params, paths=paths)
print(f"{len(rft)} RFT traces; oracle={oracle.name}; reward model={reward.name}")

# %% [markdown]
# A real Oracle (`oracle.backend: openai`) gets its requests concurrently, retried on rate limits
# and server errors, and cached one answer per file under `runs/<profile>/cache/oracle/`: a rerun,
# or a resumed one, pays only for the answers it does not have yet. An unusable Oracle answer
# (empty, without its `<solution>` tag, cut at its limit, or a request that does not fit) keeps the
# RFT trace (refine and synthesize) and is counted in the "oracle counts" printed below.

# %%
rft_problems = [problems[r["id"]] for r in rft]
rft_traces = [r["completion"] for r in rft]  # what refine repairs, and the fallback of both kinds
refined = [
    {**r, "completion": c} for r, c in zip(rft, oracle.refine_many(rft_problems, rft_traces), strict=True)
]
synthesized = [
    {**r, "completion": c} for r, c in zip(rft, oracle.synthesize_many(rft_problems, rft_traces), strict=True)
]
print("oracle counts:", oracle.stats())
oracle.close()  # a managed Oracle server (oracle.serve) stops here: the GPU is the reward model's now
write_jsonl(paths.stream("oracle_refined"), refined)
write_jsonl(paths.stream("oracle_synthesized"), synthesized)

ex = rft[0]  # one problem's three traces; edits against the SLM's own trace are highlighted
side_by_side(
    {
        s: t[0]["completion"]
        for s, t in (("slm_rft", rft), ("oracle_refined", refined), ("oracle_synthesized", synthesized))
    },
    title=f"{ex['id']}: {problems[ex['id']].question}",
)

# %% [markdown]
# ## Reward of every trace
# The Oracle's streams should be correct by construction: their final answers are graded too,
# as a check on the Oracle.

# %%
summary = {}
for stream in ("slm_rft", "ground_truth", "oracle_refined", "oracle_synthesized"):
    rows = read_jsonl(paths.stream(stream))
    scores = reward.score_many([problems[r["id"]] for r in rows], [r["completion"] for r in rows])
    write_jsonl(
        paths.rewards / f"{stream}.jsonl",
        ({"id": r["id"], "reward": sc} for r, sc in zip(rows, scores, strict=True)),
    )
    correct = grade_many(
        [(r["completion"], problems[r["id"]].answer, False) for r in rows],
        workers=params.eval.grade_workers,
        timeout_s=params.eval.grade_timeout_s,
        desc=f"grading {stream}",
    )
    summary[stream] = {
        "mean_reward": sum(scores) / len(scores),
        "final_answer_correct": 100 * sum(correct) / len(rows),
        "n": len(rows),
    }
write_json(paths.rewards / "summary.json", summary)
pd.DataFrame(summary).T

# %% [markdown]
# ## Cross-check reward models
# The paper checks its reward model against others (Skywork, Nemotron): the paradox is about what
# reward models prefer, so the Oracle's streams should score above SLM-RFT under each of them, not
# only under the main one. Every model in `reward.cross_check` scores every stream here, one model
# at a time (the main model is freed first, and each cross-check model after its turn), into
# `rewards/cross_check/<model>/<stream>.jsonl`. The table: mean reward per stream under each model,
# and each model's ranking of the streams (1 = highest reward).

# %%
from paradox import cross_check

cross_check.free(reward)
if params.reward.cross_check:
    cross_check.score_streams(params, paths, problems, list(summary))
    xc = cross_check.reward_table(params, paths, list(summary))
    write_text(paths.rewards / "cross_check" / "summary.csv", xc.to_csv(index=False))
    display_xc = xc
else:
    display_xc = "reward.cross_check is empty: no cross-check reward models in this profile"
display_xc

# %% [markdown]
# ## Takeaway
# The reward model ranks the Oracle's traces above the SLM's own. In the toy world this ranking is
# built into the rubric; in the paper it is what real reward models did. Part one of the paradox.
#
# ## Try this
# - In `paradox/toy/reward.py`, change the rubric's weights for polish (markup, named quantities)
#   and see the reward ranking move while the traces stay the same: reward is a choice of judge.
#   Cost: reruns 02-07 (the toy SLM is rebuilt too: its cache key covers the toy world's code).
