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
# # 05 · Evaluation: utility (Avg@k) and adaptation cost (perplexity)
#
# **Utility.** Avg@k as in the paper: k samples per problem at temperature 1.0, graded by the
# one `grade` function (math-verify), averaged over samples and then over problems. It is a
# mean accuracy, not pass@k. Each evaluation split is scored separately; the headline is the
# mean over splits (the paper averages its five benchmarks). The base SLM is evaluated too,
# with each seed, as are the checkpoints kept for the learning curves.
#
# **Adaptation cost.** The perplexity of each stream's training traces under the *base* SLM,
# token-weighted over response tokens only (prompt tokens condition but are not scored; the
# end-of-sequence token is not scored): exp(total NLL / total response tokens).

# %% [markdown]
# - **Question.** How accurate is each fine-tuned model (utility), and how surprising was each
#   stream to the base SLM before training (adaptation cost)?
# - **Reads** every model (04) and stream (01-03). **Writes** `runs/<profile>/eval/` (samples, grades,
#   `accuracy.csv`, `learning_curves.csv`, `perplexity.csv`).
# - **Look for** the accuracy table against the reward table of 02: the paradox is a stream with a
#   higher reward and a lower Avg@k than SLM-RFT.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"

# %%
from pathlib import Path

from paradox import backends
from paradox.evaluation import accuracy_table, learning_curve_table, perplexity_table
from paradox.io import write_csv
from paradox.models import load_model
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.streams import all_streams
from paradox.training.runs import training_runs

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir))
print(f"profile={profile} params_hash={params.hash()}")

# %%
e = params.eval
source = backends.problem_source(params, paths)
splits = {name: source.load(name) for name in e.splits}
runs = training_runs(params)
print(f"{len(runs)} fine-tuned models + the base SLM, on {len(splits)} splits, k={e.k}")

# %% [markdown]
# ## Avg@k of every model
# `evaluation.accuracy_table` evaluates the base SLM once per seed, then every fine-tuned model
# (`evaluation.evaluate`: k samples per problem through `sample_sharded`, graded with
# `grade_many`; graded rows under `eval/graded/<model>/<split>.jsonl`). A model samples with its
# run's seed, so the base SLM and every stream's model at the same seed see the same random
# numbers: differences come from the weights. Samples are stored by weights, not by name: two runs
# with identical weights share them.

# %%
accuracy = accuracy_table(params, paths, splits, runs)
write_csv(paths.eval / "accuracy.csv", accuracy)
accuracy[accuracy["purpose"] != "grid"].pivot_table(index="model", columns="split", values="avg_at_k")

# %% [markdown]
# Share of samples (%) that ran into `eval.max_new_tokens` without stopping (graded wrong). A large
# share points at stop conditions the model does not reach (`slm.stop_tokens`, `slm.stop_strings`).

# %%
accuracy[accuracy["purpose"] != "grid"].pivot_table(index="model", columns="split", values="truncated_share")

# %% [markdown]
# ## Learning curves
# Avg@k of the checkpoints kept during training (`learning_curve.checkpoints`), on
# `learning_curve.splits`; step 0 is the base SLM and the last step the final model
# (`evaluation.learning_curve_table`).

# %%
write_csv(paths.eval / "learning_curves.csv", learning_curve_table(params, paths, accuracy, runs, splits))

# %% [markdown]
# ## Perplexity of each stream under the base SLM
# Token-weighted over each stream's response tokens (`evaluation.perplexity_table`).

# %%
base = backends.slm_path(params, paths)
model, tok = load_model(base, **backends.load_kwargs(params, base))
ppl = perplexity_table(model, tok, all_streams(params), paths, e.score_token_budget)
write_csv(paths.eval / "perplexity.csv", ppl)
ppl

# %% [markdown]
# ## Takeaway
# Utility and adaptation cost are now measured for every stream; 06 puts them next to reward and
# draws the paradox, 07 asks whether perplexity explains it.
#
# ## Try this
# - `eval.k` (4): more samples per problem shrink the sampling noise of Avg@k (cost grows linearly:
#   this is the longest stage of a toy run).
# - Add a split to `eval.splits` only if the world has it (the toy world has `test` and `hard`).
