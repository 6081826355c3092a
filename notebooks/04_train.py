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
# # 04 · Fine-tune the SLM on each stream: SFT and DFT
#
# TRL's `SFTTrainer` on prompt/completion pairs (loss on the completion only), once with
# `loss_type="nll"` (standard SFT) and once with `loss_type="dft"` (Dynamic Fine-Tuning: each
# token's NLL weighted by its own detached probability). Every stream trains on the **same
# problems, for the same number of steps, from the same base model, with the same seed**: the
# only difference is the traces.
#
# The runs come from `paradox.plan`: every stream x loss x seed (`train.seeds`), the drift-dial
# streams with `drift.losses`, and, where a profile asks for it, the robustness grid (learning
# rate x batch size). Runs that feed the learning curves keep `learning_curve.checkpoints`
# evenly spaced checkpoints. Each run is saved atomically with a key of its inputs, so an
# interrupted notebook resumes with the runs it has not finished, and a changed setting retrains.

# %% [markdown]
# - **Question.** What does each stream teach? (Same problems, same steps, same seed: only the traces differ.)
# - **Reads** every stream (01-03) and the base SLM. **Writes** one model per run in `runs/<profile>/models/`,
#   `runs.csv` and `loss_curves.csv`.
# - **Look for** the loss curves: a stream the SLM finds surprising starts higher; whether it ends
#   lower says nothing yet about accuracy (that is 05).

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"

# %%
from pathlib import Path

import pandas as pd

from paradox.io import read_json, write_csv
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.training.fine_tune import fine_tune_all
from paradox.training.runs import training_runs

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir))
print(f"profile={profile} params_hash={params.hash()}")

# %% [markdown]
# `fine_tune_all` (`paradox.training.fine_tune`) trains every run of the plan in order. Each run is saved
# atomically with a key of its inputs (settings, the stream's content, the base weights), so an
# interrupted notebook resumes with the runs it has not finished, and a changed setting retrains.
# Identical inputs give identical weights on a CPU, so a run whose key matches one already trained
# is copied, not retrained (e.g. a selected stream whose traces all come from one source stream).
#
# `train.launcher: inline` trains in this process (CPU or one GPU). `accelerate` starts
# `accelerate launch --config_file <train.accelerate_config> --num_processes <train.num_processes>
# -m paradox.training.job JOB` for each run (`paradox.training.launch`): every process trains, the main one
# saves the same files as an inline run (plus `launch.log`), and a failed launch stops the
# notebook with the log's tail and leaves no finished-looking model. With `train.num_machines`
# above 1 the other nodes run `make train-node` meanwhile (see README) and each launch is one job
# over all of them.

# %%
t = params.train
runs = training_runs(params)
runs_df = fine_tune_all(params, paths)
trained = runs_df[runs_df["copied_from"] == ""]
print(
    f"{len(trained)} runs trained ({len(runs_df) - len(trained)} copied): {trained['seconds'].sum():.0f} s of "
    f"training, {trained['seconds'].median():.1f} s per run (median)"
)

# %% [markdown]
# ## Loss curves (main runs, first seed)

# %%
curves = []
for r in runs:
    if r.purpose != "main" or r.seed != t.seeds[0]:
        continue
    for h in read_json(paths.models / r.name / "log_history.json"):
        if "loss" in h:
            curves.append({"stream": r.stream, "loss_type": r.loss, "step": h["step"], "loss": h["loss"]})
write_csv(paths.models / "loss_curves.csv", pd.DataFrame(curves))
runs_df.groupby(["purpose", "loss"])["seconds"].describe()[["count", "mean", "max"]]

# %% [markdown]
# ## Takeaway
# Each model saw the same problems for the same number of steps; only the wording of the traces
# differed. Any difference in accuracy in 05 is the traces' doing.
#
# ## Try this
# - `train.epochs` (2) or `train.learning_rate` (5e-4): does the ordering of streams survive a longer
#   or gentler fine-tune? (`make paper PROFILE=toy-full` runs a learning-rate x batch-size grid.)
#   Cost: reruns 04-07 (stage times: TEACHING.md).
# - `train.losses`: `[dft]` alone halves this stage (the class profile does).
