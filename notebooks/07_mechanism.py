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
# # 07 · The mechanism, measured
#
# Table 1 says *what* happens; this notebook asks *why*, with the paper's mechanism analyses
# and two experiments beyond it. It reads the artifacts of 01-05 (plus forward passes of the
# base SLM, never training) and writes tables, figures and `REPORT.md`.
#
# 1. Segmented perplexity (Q1-Q4) of every stream under the base SLM.
# 2. Token-level loss attribution and the token-frequency shift from SLM-RFT to Oracle-Refined.
# 3. Semantic retention of each rewrite.
# 4. The mechanism table (PPL, reward, retention, utility).
# 5. Learning curves, the robustness grid (where the profile runs it), the drift dial.
# 6. Rank correlations of reward and of perplexity with utility, and the written verdict.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"
figures_dir = "figures"

# %%
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from paradox import backends
from paradox.io import read_jsonl, write_text
from paradox.metrics import fmt, lookup, perplexity, quarter_slices, response_nll, utility
from paradox.models import load_model
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.report import STREAM_STYLE, TOY_CAVEAT, save_figure, save_table, setup_style
from paradox.streams import (
    LOSS_TITLES,
    ORACLE_STREAMS,
    all_streams,
    drift_fraction,
    is_drift,
    label,
    table_streams,
)

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir), Path(figures_dir))
setup_style()
if params.world == "toy":
    print(TOY_CAVEAT)
fig_dir = paths.figures

# %%
streams = table_streams(params)
data = {s: read_jsonl(paths.stream(s)) for s in all_streams(params)}
base = backends.slm_path(params, paths)
model, tok = load_model(base, **backends.load_kwargs(params, base))
scored = {s: response_nll(model, tok, [r["prompt"] for r in rows], [r["completion"] for r in rows],
                          token_budget=params.eval.score_token_budget, desc=s) for s, rows in data.items()}
accuracy = pd.read_csv(paths.eval / "accuracy.csv")
util = utility(accuracy)
k = int(accuracy["k"].iloc[0])
stream_files = [paths.stream(s) for s in data]

# %% [markdown]
# ## 1. Segmented perplexity
#
# Each trace's response tokens are cut into four consecutive quarters of (nearly) equal length
# (`quarter_slices`: the quarters partition the tokens; with n tokens, quarter q holds tokens
# floor(q n / 4) to floor((q+1) n / 4) - 1). A stream's perplexity in quarter q is token-weighted
# over all its traces: exp(sum of NLL of the quarter-q tokens / number of quarter-q tokens).
# Response tokens only, as for the global value.

# %%
seg_rows = []
for s in streams:
    nll, cnt = np.zeros(4), np.zeros(4)
    for t in scored[s]:
        for q, sl in enumerate(quarter_slices(t.n_tokens)):
            nll[q] += sum(t.token_nll[sl])
            cnt[q] += sl.stop - sl.start
    seg_rows.append({"stream": s, "global": perplexity(scored[s]),
                     **{f"Q{q + 1}": float(np.exp(nll[q] / cnt[q])) for q in range(4)}})
seg = pd.DataFrame(seg_rows)
save_table(seg.assign(stream=seg["stream"].map(label)), fig_dir / "segmented_ppl", params, stream_files,
           caption="Perplexity of each stream's training traces under the base SLM, globally and in four "
                   "equal-length quarters of each response (token-weighted, response tokens only).",
           float_format="{:.3f}")
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for _, r in seg.iterrows():
    st = STREAM_STYLE[r["stream"]]
    ax.plot(["Q1", "Q2", "Q3", "Q4"], [r[f"Q{q}"] for q in range(1, 5)], color=st["color"],
            linestyle=st["linestyle"], marker=st["marker"], label=label(r["stream"]))
ax.set_yscale("log")
ax.set_xlabel("quarter of the response (by token position)")
ax.set_ylabel("perplexity under the base SLM (log scale)")
ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
save_figure(fig, fig_dir / "segmented_ppl", params, stream_files,
            "Perplexity of each stream in four equal-length quarters of its responses (token-weighted).")
seg

# %% [markdown]
# ## 2. Token-level loss attribution
#
# Which tokens carry the loss at the start of a trace? For each stream, the tokens with the
# largest summed NLL in Q1, and their share of all Q1 NLL. Then the token-frequency shift from
# SLM-RFT to Oracle-Refined: each token's frequency per 1,000 response tokens in both streams,
# and the largest increases and decreases.

# %%
def token_text(i: int) -> str:
    return repr(tok.decode([i]))


n_top = params.analysis.top_tokens
attr_rows = []
for s in streams:
    q1 = defaultdict(float)
    for t in scored[s]:
        sl = quarter_slices(t.n_tokens)[0]
        for tid, v in zip(t.token_ids[sl], t.token_nll[sl], strict=True):
            q1[tid] += v
    total = sum(q1.values())
    for rank, (tid, v) in enumerate(sorted(q1.items(), key=lambda kv: -kv[1])[:n_top], 1):
        attr_rows.append({"stream": label(s), "rank": rank, "token": token_text(tid), "sum_nll": v,
                          "share_of_q1_nll": v / total})
attribution = pd.DataFrame(attr_rows)
save_table(attribution, fig_dir / "q1_loss_tokens", params, stream_files,
           caption=f"The {n_top} tokens carrying the most summed NLL (nats) in Q1 of each stream, under the base SLM.",
           float_format="{:.3f}")


def per_1k(stream: str) -> pd.Series:
    c = Counter(tid for t in scored[stream] for tid in t.token_ids)
    n = sum(c.values())
    return pd.Series({tid: 1000 * v / n for tid, v in c.items()})


shift = pd.concat([per_1k("slm_rft").rename("rft"), per_1k("oracle_refined").rename("refined")], axis=1).fillna(0.0)
shift["change"] = shift["refined"] - shift["rft"]
top_up, top_down = shift.nlargest(n_top, "change"), shift.nsmallest(n_top, "change")
shift_table = pd.concat([top_up.assign(direction="increase"), top_down.assign(direction="decrease")])
shift_table = shift_table.assign(token=[token_text(int(i)) for i in shift_table.index]).reset_index(drop=True)
shift_table = shift_table[["direction", "token", "rft", "refined", "change"]]
save_table(shift_table, fig_dir / "token_shift", params, [paths.stream("slm_rft"), paths.stream("oracle_refined")],
           caption="Token frequency per 1,000 response tokens in SLM-RFT and Oracle-Refined: the largest increases "
                   "and decreases after refinement.")
fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(shift_table) + 1))
colors = [STREAM_STYLE["oracle_refined"]["color"] if c > 0 else STREAM_STYLE["slm_rft"]["color"]
          for c in shift_table["change"]]
hatches = ["//" if c > 0 else "" for c in shift_table["change"]]
bars = ax.barh(shift_table["token"], shift_table["change"], color=colors, edgecolor="black")
for b, h in zip(bars, hatches, strict=True):
    b.set_hatch(h)
ax.invert_yaxis()
ax.axvline(0, color="black", linewidth=0.8)
ax.set_xlabel("change in frequency per 1,000 tokens (Oracle-Refined minus SLM-RFT)")
ax.set_ylabel("token")
save_figure(fig, fig_dir / "token_shift", params, [paths.stream("slm_rft"), paths.stream("oracle_refined")],
            "Token-frequency shift from SLM-RFT to Oracle-Refined (hatched: more frequent after refinement).")
attribution.pivot_table(index="rank", columns="stream", values="token", aggfunc="first")

# %% [markdown]
# ## 3. Semantic retention
#
# For every rewrite, the share of the SLM-RFT trace's information atoms (quantities and
# intermediate equations) it keeps, on the judge's 1-5 scale (1 + 4 x share). In the toy world
# it is exact, computed from the parsed steps; real profiles use the LLM-judge prompt
# `params/prompts/retention_judge.txt` behind the same signature (`paradox.retention`). A
# repaired wrong value counts as *not* kept here, so a rewrite that fixes an error loses a little.
#
# With a real Oracle (`oracle.backend: openai`) the judge is the Oracle's endpoint with that
# prompt, asked concurrently and cached like every Oracle request; a judge answer with no score,
# and a pair too long for the Oracle's context (skipped by the client, counted as
# `skipped_retention_judge`), is left out of the mean and counted.

# %%
rft_by_id = {r["id"]: r["completion"] for r in data["slm_rft"]}
rewrites = [s for s in streams + [x for x in data if is_drift(x)] if s != "slm_rft"]
judge = backends.retention_scorer(params, paths)
retention, retention_unscored = {}, {}
for s in rewrites:
    scores = judge.score_many([(rft_by_id[r["id"]], r["completion"]) for r in data[s]], desc=f"retention {s}")
    got = [x for x in scores if x is not None]
    retention[s] = float(np.mean(got)) if got else float("nan")
    retention_unscored[s] = len(scores) - len(got)
print(f"retention by {judge.name}; answers without a score, per stream: {retention_unscored}; counts: {judge.stats()}")
judge.close()
pd.Series(retention, name="retention (1-5)").rename(index=label)

# %% [markdown]
# ## 4. The mechanism table

# %%
reward = {s: pd.DataFrame(read_jsonl(paths.rewards / f"{s}.jsonl"))["reward"].mean() for s in data}
ppl = pd.read_csv(paths.eval / "perplexity.csv").set_index("stream")["ppl"]
u = partial(lookup, util)  # u(stream, loss) -> (mean, ci95, n_seeds)

mech_rows, mech_shown = [], []
for s in sorted(streams, key=lambda s: ppl[s]):
    dft, sft = u(s, "dft"), u(s, "nll")
    mech_rows.append({"stream": s, "ppl": ppl[s], "reward": reward[s], "retention": retention.get(s, float("nan")),
                      "dft": dft[0], "dft_ci95": dft[1], "sft": sft[0], "sft_ci95": sft[1], "seeds": dft[2]})
    mech_shown.append({"Stream": label(s), "Global PPL": f"{ppl[s]:.3g}", "Reward": f"{reward[s]:.2f}",
                       "Retention": "reference" if s == "slm_rft" else f"{retention[s]:.2f}",
                       f"DFT Avg@{k}": fmt(*dft), f"SFT Avg@{k}": fmt(*sft)})
mechanism = pd.DataFrame(mech_rows)
save_table(mechanism, fig_dir / "mechanism", params, [paths.eval / "accuracy.csv", paths.eval / "perplexity.csv"],
           caption=f"Mechanism table: perplexity under the base SLM, mean reward, semantic retention (1-5) and "
                   f"Avg@{k} (%) after DFT and SFT, streams ordered by perplexity.", display=pd.DataFrame(mech_shown))
pd.DataFrame(mech_shown)

# %% [markdown]
# ## 5a. Learning curves
# Avg@k of checkpoints during training (`learning_curve`), first seed: does a stream's advantage
# hold "through most of training", as the paper says of Style-Aligned vs Oracle-Refined?

# %%
lc = pd.read_csv(paths.eval / "learning_curves.csv")
if not lc.empty:
    lc_mean = lc.groupby(["stream", "loss", "step"])["avg_at_k"].mean().reset_index()
    losses = sorted(lc_mean["loss"].unique())
    fig, axes = plt.subplots(1, len(losses), figsize=(4.8 * len(losses) + 1.8, 3.6), squeeze=False)
    for ax, loss in zip(axes[0], losses, strict=True):
        for s in streams:
            c = lc_mean[(lc_mean["stream"] == s) & (lc_mean["loss"] == loss)]
            if c.empty:
                continue
            st = STREAM_STYLE[s]
            ax.plot(c["step"], c["avg_at_k"], color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                    label=label(s))
        ax.set_title(LOSS_TITLES[loss])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"Avg@{k} (%, {', '.join(params.learning_curve.splits)})")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    save_figure(fig, fig_dir / "learning_curves", params, [paths.eval / "learning_curves.csv"],
                "Avg@k of checkpoints during fine-tuning (step 0 = base SLM), first seed.")

# %% [markdown]
# ## 5b. Robustness grid
# Learning rate x batch size for the grid streams (profiles with a `grid`); the paper reports
# SLM-RFT best in every cell.

# %%
grid = accuracy[accuracy["purpose"].isin(["main", "grid"]) & accuracy["stream"].isin(params.grid.streams)
                & accuracy["loss"].isin(params.grid.losses) & (accuracy["seed"] == params.train.seeds[0])]
grid_table = pd.DataFrame()
if params.grid.streams:
    cells = grid.groupby(["loss", "learning_rate", "batch_size", "stream"])["avg_at_k"].mean().unstack("stream")
    cells = cells[[s for s in params.grid.streams if s in cells.columns]]
    cells["best"] = cells.idxmax(axis=1).map(label)
    grid_table = cells.rename(columns=label).reset_index()
    grid_table["learning_rate"] = grid_table["learning_rate"].map("{:g}".format)  # 2.5e-4, not 0.00
    save_table(grid_table, fig_dir / "robustness_grid", params, [paths.eval / "accuracy.csv"],
               caption=f"Robustness grid: Avg@{k} (%, mean over splits, first seed) per learning rate and batch size.")
grid_table

# %% [markdown]
# ## 5c. The drift dial (dose-response)
# Same logical repair, a growing fraction f of each trace in the Oracle's notation. If the
# mechanism is right, perplexity rises with f and utility falls with it.

# %%
drift = [s for s in data if is_drift(s)]
if drift:
    dl = params.drift.losses
    fig, axes = plt.subplots(1, len(dl), figsize=(4.8 * len(dl), 3.6), squeeze=False)
    for ax, loss in zip(axes[0], dl, strict=True):
        xs = [ppl[s] for s in drift]
        ys = [u(s, loss) for s in drift]
        ax.errorbar(xs, [y[0] for y in ys], yerr=[y[1] if y[2] > 1 else 0 for y in ys], color="black",
                    marker="o", linestyle="-", capsize=3)
        for s, x, y in zip(drift, xs, ys, strict=True):
            ax.annotate(f"f={drift_fraction(s):.2f}", (x, y[0]), textcoords="offset points", xytext=(5, 5))
        ax.set_title(LOSS_TITLES[loss])
        ax.set_xlabel("perplexity of the training traces under the base SLM")
        ax.set_ylabel(f"Avg@{k} (%, mean over splits)")
    save_figure(fig, fig_dir / "drift_dial", params, [paths.eval / "accuracy.csv", paths.eval / "perplexity.csv"],
                "Drift dial: the same logical repair with a fraction f of each trace rewritten in the Oracle's "
                "notation; utility against the measured perplexity.")
    drift_table = pd.DataFrame([{"f": drift_fraction(s), "ppl": ppl[s], "reward": reward[s],
                                 **{f"{loss} Avg@{k}": u(s, loss)[0] for loss in dl}} for s in drift])
    save_table(drift_table, fig_dir / "drift_dial", params, [paths.eval / "accuracy.csv", paths.eval / "perplexity.csv"],
               caption="Drift dial: fraction of lines in Oracle notation, perplexity, reward and utility.",
               float_format="{:.3f}")
    drift_table

# %% [markdown]
# ## 6. Correlations and the verdict
# Spearman rank correlation across the Table-1 streams (fine-tuned streams only) between mean
# reward and utility, and between perplexity and utility, for SFT and DFT. With a handful of
# streams a rank correlation is a description, not a test.

# %%
corr_rows = []
for loss in ("nll", "dft"):
    df = pd.DataFrame([{"reward": reward[s], "ppl": ppl[s], "utility": u(s, loss)[0]} for s in streams]).dropna()
    corr_rows.append({"loss": loss, "n_streams": len(df),
                      "spearman_reward_utility": df["reward"].corr(df["utility"], method="spearman"),
                      "spearman_ppl_utility": df["ppl"].corr(df["utility"], method="spearman")})
corr = pd.DataFrame(corr_rows)
save_table(corr, fig_dir / "correlations", params, [paths.eval / "accuracy.csv", paths.eval / "perplexity.csv"],
           caption="Spearman rank correlation across streams of mean reward vs utility and of perplexity vs utility.",
           float_format="{:.3f}")
corr

# %%
def verdict(loss: str) -> str:
    rft = u("slm_rft", loss)
    oracle_streams = [s for s in ORACLE_STREAMS if s in streams]  # those this profile trains
    worse = [s for s in oracle_streams if u(s, loss)[0] < rft[0]]
    higher_reward = [s for s in oracle_streams if reward[s] > reward["slm_rft"]]
    shown = sorted(set(worse) & set(higher_reward))
    separated = [s for s in shown if u(s, loss)[0] + u(s, loss)[1] < rft[0] - rft[1]]
    if not shown:
        return "no: no higher-reward Oracle stream falls below SLM-RFT"
    sep = f"; intervals separated for {', '.join(label(s) for s in separated)}" if rft[2] > 1 else \
        "; one seed, so no interval: read it as an observation, not a measurement of its size"
    return f"yes for {', '.join(label(s) for s in shown)} (higher reward, lower utility than SLM-RFT){sep}"


verdicts = {loss: verdict(loss) for loss in ("nll", "dft")}
for loss, v in verdicts.items():
    print(f"paradox under {loss}: {v}")

# %%
def md(df: pd.DataFrame) -> str:
    # Learning rates keep their significant digits (2.5e-04 would print as 0.000 at .3f).
    return df.to_markdown(index=False, floatfmt=["g" if c == "learning_rate" else ".3f" for c in df.columns])


figure_links = "\n".join(f"- [{p.name}]({Path('../../figures') / profile / p.name})"
                          for p in sorted(fig_dir.glob("*.png")))
caveat = f"\n> {TOY_CAVEAT}\n" if params.world == "toy" else ""
# The caveats name what stands behind the numbers: the toy world's rules, or the real models and judge.
if params.world == "toy":
    grid_hint = " (see `toy-full`)"
    caveats = """- Perplexity is token-weighted over response tokens; a notation that is rigid and templated
  (the toy Oracle's) can have a *lower* per-token perplexity than the SLM's own varied wording
  even when the SLM has seen little of it; per-token perplexity measures surprise, not the cost
  of changing how the model writes.
- Retention in the toy world counts a repaired wrong value as not kept.
- The toy reward rubric rewards polish by construction (a modelling choice), so the reward axis
  is designed, not discovered.
"""
else:
    grid_hint = ""
    unscored = sum(retention_unscored.values())
    caveats = f"""- Perplexity is token-weighted over response tokens; per-token perplexity measures surprise,
  not the cost of changing how the model writes.
- Retention is the judgement of `{params.oracle.model}` with `{params.analysis.retention_prompt}`,
  which counts a corrected value as kept; {unscored} judge answer(s) without a score are left out of the means.
- Reward is the score of `{params.reward.name_or_path}` (`reward.backend: {params.reward.backend}`).
"""
report = f"""# Report: profile `{profile}`
{caveat}
Generated by `notebooks/07_mechanism` from the artifacts in `runs/{profile}/` (params hash
`{params.hash()}`). Utility = Avg@{k} (%), mean over the evaluation splits ({', '.join(params.eval.splits)});
{"mean ± 95% Student-t interval over " + str(int(util["n_seeds"].max())) + " seeds" if util["n_seeds"].max() > 1 else "one seed"}.

## Does the paradox appear?
- Under SFT (nll): {verdicts["nll"]}.
- Under DFT: {verdicts["dft"]}.

## Table 1
{(fig_dir / "table1.md").read_text().split(chr(10) + chr(10))[0]}

## Mechanism table
{md(pd.DataFrame(mech_shown))}

## Rank correlations across streams
{md(corr)}

Reading: a negative reward-utility correlation is the paradox in one number; a negative
perplexity-utility correlation says adaptation cost tracks the loss of utility.

## Segmented perplexity (Q1-Q4)
{md(seg.assign(stream=seg["stream"].map(label)))}

## Drift dial
{md(drift_table) if drift else "not run in this profile"}

## Robustness grid
{md(grid_table) if not grid_table.empty else "not run in this profile" + grid_hint}

## Caveats
{caveats}
## Figures
{figure_links}
"""
write_text(paths.root / "REPORT.md", report)
write_text(fig_dir / "REPORT.md", report)
print(report)
