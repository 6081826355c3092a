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
# # 06 · Table 1 and the paper's figures
#
# - **Question.** Does the paradox appear: do the streams with the highest reward give the lowest
#   utility, and does perplexity line up with the loss?
# - **Reads** the rewards (02-03), accuracies, graded samples and perplexities (05) and the loss
#   curves (04); never trains or samples. **Writes** Table 1, accuracy per split and the figures
#   into `runs/<profile>/figures/`, each file with a `.json` sidecar (profile, params hash, git
#   commit, hashes of its inputs, caption).
# - **Look for** the slope in the quality-vs-utility figure (down, left to right, is the paradox)
#   and where SLM-RFT and Style-Aligned sit against the base SLM's line.
#
# Utility is Avg@k averaged over the evaluation splits. Its interval (Table 1's brackets, the
# figures' error bars) is a 95% percentile bootstrap over the evaluation problems, and over the
# seeds where there are several (`metrics.bootstrap_utility`): it stays within [0, 100] and a
# one-seed run has one too. Other tables give mean ± Student-t interval over seeds.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"

# %%
from functools import partial
from pathlib import Path

import pandas as pd

from paradox import cross_check, figures, tables
from paradox.io import read_csv, read_jsonl
from paradox.metrics import bootstrap_utility, interval, lookup, problem_accuracy, utility
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.report import TOY_CAVEAT, save_figure, save_table, setup_style
from paradox.streams import table_streams

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir))
setup_style()
if params.world == "toy":
    print(TOY_CAVEAT)

# %% [markdown]
# The inputs: mean reward per stream (02-03), Avg@k per model and split (05), perplexity per
# stream under the base SLM (05) and the training loss curves (04). Utility per (stream, loss) is
# the mean over splits per seed, then over seeds (`metrics.utility`).

# %%
streams = table_streams(params)
reward_files = {s: paths.rewards / f"{s}.jsonl" for s in streams}
acc_file, ppl_file, curves_file = (
    paths.eval / "accuracy.csv",
    paths.eval / "perplexity.csv",
    paths.models / "loss_curves.csv",
)
reward = {s: pd.DataFrame(read_jsonl(f))["reward"].mean() for s, f in reward_files.items()}
accuracy = read_csv(acc_file)
ppl = read_csv(ppl_file).set_index("stream")["ppl"]
curves = read_csv(curves_file)
k = int(accuracy["k"].iloc[0])
util = utility(accuracy)
n_seeds = int(util["n_seeds"].max())
seeds_note = f"mean ± 95% Student-t interval over {n_seeds} seeds" if n_seeds > 1 else "one seed"
seeds_word = f"mean of {n_seeds} seeds" if n_seeds > 1 else "one seed"
u = partial(lookup, util)  # u(stream, loss) -> (mean, ci95, n_seeds)
boot = bootstrap_utility(problem_accuracy(accuracy, paths.eval / "graded"), params.seed)
ui = partial(interval, boot)  # ui(stream, loss) -> (mean, lo, hi): the figures' error bars
bars_note = (
    "Error bars: 95% percentile bootstrap interval over the evaluation problems"
    + (" and the seeds" if n_seeds > 1 else "")
    + f" ({int(boot['n_problems'].max())} problems)."
)

# %% [markdown]
# ## Table 1: perceived quality vs utility
# The base SLM, then each stream: mean reward, perplexity and Avg@k after SFT and DFT
# (`tables.table1`); then Avg@k per evaluation split (`tables.accuracy_by_split`).

# %%
table1, table1_shown = tables.table1(u, streams, reward, ppl, k, ui)
splits = ", ".join(sorted(accuracy["split"].unique()))
save_table(
    table1,
    paths.figures / "table1",
    params,
    [*reward_files.values(), acc_file, ppl_file],
    caption=f"Table 1. Mean reward, perplexity under the base SLM, and Avg@{k} (%, mean over the evaluation "
    f"splits {splits}; {seeds_word}) after SFT and DFT on each stream; in brackets the 95% percentile "
    f"bootstrap interval over the evaluation problems{' and seeds' if n_seeds > 1 else ''}.",
    display=table1_shown,
)
save_table(
    tables.accuracy_by_split(accuracy),
    paths.figures / "accuracy_by_split",
    params,
    [acc_file],
    caption=f"Avg@{k} (%) per evaluation split for every stream and loss ({seeds_note}).",
)
table1_shown

# %% [markdown]
# ## Reward cross-check
# The paper's perceived quality is one reward model's score, cross-checked with others. What the
# cross-check has to show is the ORDER: whether every reward model ranks the streams as the main
# one does (the Oracle's streams on top), while utility runs the other way. Per stream, the mean
# reward under each model with its rank (1 = highest), and the DFT utility; per model, Spearman's
# rank correlation of its stream rewards with utility (negative: the paradox holds under that
# model). Only for profiles with `reward.cross_check` (`tables.cross_check`).

# %%
if params.reward.cross_check:
    xc, xc_shown, rho = tables.cross_check(cross_check.reward_table(params, paths, streams), u, streams, k)
    xc_inputs = [*cross_check.input_files(params, paths, streams), acc_file]
    save_table(
        xc,
        paths.figures / "reward_cross_check",
        params,
        xc_inputs,
        display=xc_shown,
        caption="Mean reward of each stream's training traces under the main and the cross-check reward "
        f"models (rank among the streams in brackets, 1 = highest), and Avg@{k} after DFT.",
    )
    save_table(
        rho,
        paths.figures / "reward_cross_check_spearman",
        params,
        xc_inputs,
        caption=f"Spearman rank correlation, across the {len(streams)} training streams, of each reward "
        f"model's mean reward with Avg@{k} after DFT and after SFT (n/a: a loss not trained, or no differences to rank).",
    )
    print(xc_shown.to_markdown(index=False), rho.to_markdown(index=False, floatfmt=".2f"), sep="\n\n")
else:
    print("reward.cross_check is empty: no cross-check reward models in this profile")

# %% [markdown]
# ## Quality vs utility, and perplexity vs utility
# Utility after fine-tuning against the mean reward of the training traces (the paradox: the
# highest-reward streams are not the most useful), and against their perplexity under the base
# SLM (the proposed mechanism: adaptation cost). One panel per loss (`figures.utility_scatter`).

# %%
save_figure(
    figures.utility_scatter(
        reward, ui, streams, ui("base", "none"), k, "mean reward of the training traces (perceived quality)"
    ),
    paths.figures / "quality_vs_utility",
    params,
    [*reward_files.values(), acc_file],
    "Perceived quality (mean reward of the training traces) vs utility (Avg@k after fine-tuning); dashed "
    f"line and grey band: the base SLM. {bars_note}",
)
save_figure(
    figures.utility_scatter(
        ppl.to_dict(),
        ui,
        streams,
        ui("base", "none"),
        k,
        "perplexity of the traces under the base SLM",
        break_off_scale=True,
    ),
    paths.figures / "ppl_vs_utility",
    params,
    [ppl_file, acc_file],
    "Adaptation cost (perplexity of the training traces under the base SLM) vs utility (Avg@k); a stream "
    "more than ten times above the rest sits on a broken-off part of the x axis, ticked at its value. "
    f"{bars_note}",
)

# %% [markdown]
# ## Training loss curves
# Training loss per optimizer step for each stream, first seed (`figures.loss_curves`).

# %%
save_figure(
    figures.loss_curves(curves, streams),
    paths.figures / "loss_curves",
    params,
    [curves_file],
    "Training loss per step for each stream (first seed). SFT: mean NLL per response token; DFT: mean "
    "of p(token) x NLL(token), the probability-weighted NLL that TRL's loss_type='dft' minimises, on its "
    "own scale.",
)

# %% [markdown]
# ## Takeaway
# Reward and utility rank the streams differently; Table 1 and the first figure are the paradox
# as this run measured it, and the intervals say which gaps are larger than sampling noise.
#
# ## Try this
# - Read `runs/<profile>/figures/accuracy_by_split.md`: does the ordering hold on the `hard` split
#   alone? (No rerun needed.)
# - `make paper PROFILE=toy-full` repeats everything with three seeds and the robustness grid, and
#   shows which differences survive (about three times the `toy` run's time).
