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
# # 06 · Tables and figures
#
# Reads the saved artifacts of notebooks 01-05 and never trains or samples. Every table
# (CSV, Markdown, LaTeX) and figure (PNG, PDF) gets a `.json` sidecar with the profile, the
# params hash, the git commit and hashes of its inputs.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"
figures_dir = "figures"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from paradox.io import read_json, read_jsonl
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.report import STREAM_LABELS, STREAM_STYLE, TOY_CAVEAT, save_figure, save_table, setup_style

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir), Path(figures_dir))
setup_style()
if params.world == "toy":
    print(TOY_CAVEAT)

# %%
streams = list(params.train.streams)
reward_files = {s: paths.rewards / f"{s}.jsonl" for s in streams}
acc_file, ppl_file, curves_file = paths.eval / "accuracy.csv", paths.eval / "perplexity.csv", paths.models / "loss_curves.csv"
reward = {s: pd.DataFrame(read_jsonl(f))["reward"].mean() for s, f in reward_files.items()}
accuracy = pd.read_csv(acc_file)
ppl = pd.read_csv(ppl_file).set_index("stream")["ppl"]
curves = pd.read_csv(curves_file)
k = int(accuracy["k"].iloc[0])
mean_acc = accuracy.groupby(["stream", "loss"])["avg_at_k"].mean()  # mean over evaluation splits

# %% [markdown]
# ## Table 1: perceived quality vs utility

# %%
rows = [{"Stream": STREAM_LABELS["base"], "Reward": float("nan"), "PPL": float("nan"),
         f"SFT Avg@{k}": mean_acc[("base", "none")], f"DFT Avg@{k}": mean_acc[("base", "none")]}]
for s in streams:
    rows.append({"Stream": STREAM_LABELS[s], "Reward": reward[s], "PPL": ppl[s],
                 f"SFT Avg@{k}": mean_acc.get((s, "nll"), float("nan")),
                 f"DFT Avg@{k}": mean_acc.get((s, "dft"), float("nan"))})
table1 = pd.DataFrame(rows)
inputs = [*reward_files.values(), acc_file, ppl_file]
splits = ", ".join(sorted(accuracy["split"].unique()))
save_table(table1, paths.figures / "table1", params, inputs,
           caption=f"Table 1. Mean reward, perplexity under the base SLM, and Avg@{k} (%, mean over the "
                   f"evaluation splits {splits}) after SFT and DFT on each stream.")
by_split = accuracy.pivot_table(index=["model"], columns="split", values="avg_at_k").reset_index()
save_table(by_split, paths.figures / "accuracy_by_split", params, [acc_file],
           caption=f"Avg@{k} (%) per evaluation split for every model.")
table1

# %% [markdown]
# ## Quality vs utility, and perplexity vs utility

# %%
def scatter(x: dict, xlabel: str, stem: str, caption: str, inputs: list[Path]) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, loss, title in zip(axes, ("nll", "dft"), ("SFT (nll)", "DFT"), strict=True):
        for s in streams:
            if (s, loss) not in mean_acc:
                continue
            st = STREAM_STYLE[s]
            ax.scatter(x[s], mean_acc[(s, loss)], color=st["color"], marker=st["marker"], s=70,
                       edgecolor="black", label=STREAM_LABELS[s], zorder=3)
        ax.axhline(mean_acc[("base", "none")], color="grey", linestyle="--", linewidth=1, label="Base SLM")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(f"Avg@{k} (%, mean over splits)")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    save_figure(fig, paths.figures / stem, params, inputs, caption)


scatter(reward, "mean reward (perceived quality)", "quality_vs_utility",
        "Perceived quality (mean reward of the training traces) vs utility (Avg@k after fine-tuning).",
        [*reward_files.values(), acc_file])
scatter(ppl.to_dict(), "perplexity of the traces under the base SLM", "ppl_vs_utility",
        "Adaptation cost (perplexity of the training traces under the base SLM) vs utility (Avg@k).",
        [ppl_file, acc_file])

# %% [markdown]
# ## Training loss curves

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
for ax, loss, title in zip(axes, ("nll", "dft"), ("SFT (nll)", "DFT"), strict=True):
    for s in streams:
        c = curves[(curves["stream"] == s) & (curves["loss_type"] == loss)]
        st = STREAM_STYLE[s]
        ax.plot(c["step"], c["loss"], color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                markevery=max(1, len(c) // 6), label=STREAM_LABELS[s])
    ax.set_title(title)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (nats per token, log scale)")
axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
save_figure(fig, paths.figures / "loss_curves", params, [curves_file],
            "Training loss per step for each stream, SFT and DFT (DFT's loss is probability-weighted, "
            "so its scale differs).")

# %%
summary = read_json(paths.data / "summary.json")
print(f"RFT: {summary['n_solvable']} of {summary['n_problems']} training problems solvable with k={summary['k']}")
print(read_json(paths.data / "style_align_report.json"))
