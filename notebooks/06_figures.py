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
# Reads the saved artifacts of notebooks 01-05 and never trains or samples. Every table
# (CSV, Markdown, LaTeX) and figure (PNG, PDF) gets a `.json` sidecar with the profile, the
# params hash, the git commit and hashes of its inputs. Utility is Avg@k averaged over the
# evaluation splits; with several seeds it is shown as mean ± 95% Student-t interval over seeds, and
# figures carry the interval as error bars.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"
figures_dir = "figures"

# %%
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from paradox.io import read_jsonl
from paradox.metrics import base_utility, fmt, lookup, utility
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.report import STREAM_STYLE, TOY_CAVEAT, save_figure, save_table, setup_style
from paradox.streams import LABELS, LOSS_TITLES, table_streams

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir), Path(figures_dir))
setup_style()
if params.world == "toy":
    print(TOY_CAVEAT)

# %%
streams = table_streams(params)
reward_files = {s: paths.rewards / f"{s}.jsonl" for s in streams}
acc_file, ppl_file, curves_file = paths.eval / "accuracy.csv", paths.eval / "perplexity.csv", paths.models / "loss_curves.csv"
reward = {s: pd.DataFrame(read_jsonl(f))["reward"].mean() for s, f in reward_files.items()}
accuracy = pd.read_csv(acc_file)
ppl = pd.read_csv(ppl_file).set_index("stream")["ppl"]
curves = pd.read_csv(curves_file)
k = int(accuracy["k"].iloc[0])
util = utility(accuracy)
base_mean, base_ci = base_utility(accuracy)
n_seeds = int(util["n_seeds"].max())
seeds_note = f"mean ± 95% Student-t interval over {n_seeds} seeds" if n_seeds > 1 else "one seed"
u = partial(lookup, util)  # u(stream, loss) -> (mean, ci95, n_seeds)


# %% [markdown]
# ## Table 1: perceived quality vs utility

# %%
rows, shown = [], []
for s in ["base", *streams]:
    sft, dft = (u("base", "none"),) * 2 if s == "base" else (u(s, "nll"), u(s, "dft"))
    rew, p = (float("nan"), float("nan")) if s == "base" else (reward[s], ppl[s])
    rows.append({"Stream": LABELS[s], "Reward": rew, "PPL": p, f"SFT Avg@{k}": sft[0], "SFT ci95": sft[1],
                 f"DFT Avg@{k}": dft[0], "DFT ci95": dft[1], "seeds": sft[2]})
    shown.append({"Stream": LABELS[s], "Reward": "n/a" if s == "base" else f"{rew:.2f}",
                  "PPL": "n/a" if s == "base" else f"{p:.3g}", f"SFT Avg@{k}": fmt(*sft), f"DFT Avg@{k}": fmt(*dft)})
table1 = pd.DataFrame(rows)
splits = ", ".join(sorted(accuracy["split"].unique()))
save_table(table1, paths.figures / "table1", params, [*reward_files.values(), acc_file, ppl_file],
           caption=f"Table 1. Mean reward, perplexity under the base SLM, and Avg@{k} (%, mean over the evaluation "
                   f"splits {splits}; {seeds_note}) after SFT and DFT on each stream.",
           display=pd.DataFrame(shown))
main = accuracy[accuracy["purpose"].isin(["main", "base"])]
by_split = main.groupby(["stream", "loss", "split"])["avg_at_k"].mean().unstack("split").reset_index()
save_table(by_split, paths.figures / "accuracy_by_split", params, [acc_file],
           caption=f"Avg@{k} (%) per evaluation split for every stream and loss ({seeds_note}).")
pd.DataFrame(shown)

# %% [markdown]
# ## Reward cross-check
# The paper's perceived quality is one reward model's score, cross-checked with others. What the
# cross-check has to show is the ORDER: whether every reward model ranks the streams as the main
# one does (the Oracle's streams on top), while utility runs the other way. Per stream, the mean
# reward under each model with its rank (1 = highest), and the DFT utility; per model, Spearman's
# rank correlation of its stream rewards with utility (negative: the paradox holds under that
# model). Only for profiles with `reward.cross_check`.

# %%
from scipy.stats import spearmanr

from paradox import cross_check

if params.reward.cross_check:
    xc = cross_check.reward_table(params, paths, streams)
    models = [c.removeprefix("reward:") for c in xc.columns if c.startswith("reward:")]
    xc[f"DFT Avg@{k}"], xc[f"SFT Avg@{k}"] = [[u(s, loss)[0] for s in streams] for loss in ("dft", "nll")]
    xc_shown = pd.DataFrame({"Stream": [LABELS[s] for s in streams],
                             **{m: [f"{r:.2f} ({n})" for r, n in zip(xc[f"reward:{m}"], xc[f"rank:{m}"], strict=True)]
                                for m in models},
                             f"DFT Avg@{k}": [fmt(*u(s, "dft")) for s in streams]})
    xc_inputs = [*cross_check.input_files(params, paths, streams), acc_file]
    save_table(xc, paths.figures / "reward_cross_check", params, xc_inputs, display=xc_shown,
               caption="Mean reward of each stream's training traces under the main and the cross-check reward "
                       f"models (rank among the streams in brackets, 1 = highest), and Avg@{k} after DFT.")
    rho = pd.DataFrame([{"model": m, **{f"spearman_{loss}": (spearmanr(xc[f"reward:{m}"], xc[col]).statistic
                                                             if xc[col].notna().all() else float("nan"))
                                        for loss, col in (("dft", f"DFT Avg@{k}"), ("sft", f"SFT Avg@{k}"))}}
                        for m in models])
    save_table(rho, paths.figures / "reward_cross_check_spearman", params, xc_inputs,
               caption=f"Spearman rank correlation, across the {len(streams)} training streams, of each reward "
                       f"model's mean reward with Avg@{k} after DFT and after SFT (n/a: a loss not trained, or no differences to rank).")
    print(xc_shown.to_markdown(index=False), rho.to_markdown(index=False, floatfmt=".2f"), sep="\n\n")
else:
    print("reward.cross_check is empty: no cross-check reward models in this profile")

# %% [markdown]
# ## Quality vs utility, and perplexity vs utility

# %%
def scatter(x: dict, xlabel: str, stem: str, caption: str, inputs: list[Path], logx: bool = False) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True, layout="constrained")
    for ax, loss, title in zip(axes, LOSS_TITLES, LOSS_TITLES.values(), strict=True):
        for s in streams:
            m, ci, n = u(s, loss)
            if n == 0:
                continue
            st = STREAM_STYLE[s]
            face = dict(markerfacecolor="none", markeredgecolor=st["color"], markersize=14, markeredgewidth=2,
                        zorder=4) if st.get("hollow") else dict(markeredgecolor="black", markersize=8, zorder=3)
            ax.errorbar(x[s], m, yerr=ci if n > 1 else None, color=st["color"], marker=st["marker"],
                        linestyle="none", capsize=3, label=LABELS[s], **face)
        ax.axhline(base_mean, color="grey", linestyle="--", linewidth=1, label="Base SLM")
        if logx:
            ax.set_xscale("log")
        ax.set_title(title)
    fig.supxlabel(xlabel, fontsize="medium")
    axes[0].set_ylabel(f"Avg@{k} (%, mean over splits)")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    save_figure(fig, paths.figures / stem, params, inputs, f"{caption} Error bars: {seeds_note}.")


scatter(reward, "mean reward of the training traces (perceived quality)", "quality_vs_utility",
        "Perceived quality (mean reward of the training traces) vs utility (Avg@k after fine-tuning).",
        [*reward_files.values(), acc_file])
scatter(ppl.to_dict(), "perplexity of the traces under the base SLM (log scale)", "ppl_vs_utility",
        "Adaptation cost (perplexity of the training traces under the base SLM) vs utility (Avg@k).",
        [ppl_file, acc_file], logx=True)

# %% [markdown]
# ## Training loss curves

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
for ax, loss, title in zip(axes, LOSS_TITLES, LOSS_TITLES.values(), strict=True):
    for s in streams:
        c = curves[(curves["stream"] == s) & (curves["loss_type"] == loss)]
        st = STREAM_STYLE[s]
        ax.plot(c["step"], c["loss"], color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                markevery=max(1, len(c) // 6), label=LABELS[s])
    ax.set_title(title)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (nats per token, log scale)")
axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
save_figure(fig, paths.figures / "loss_curves", params, [curves_file],
            "Training loss per step for each stream (first seed), SFT and DFT (DFT's loss is "
            "probability-weighted, so its scale differs).")
