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
# - **Question.** *Why* do the high-reward streams teach less? The paper's answer is adaptation
#   cost: the Oracle's wording is far from the SLM's. This notebook measures that, and runs two
#   experiments beyond the paper.
# - **Reads** the streams (01-03), accuracies (05) and the base SLM (forward passes only, never
#   training). **Writes** the mechanism tables and figures into `runs/<profile>/figures/`, a few
#   examples for the tour (`examples.jsonl`) and `REPORT.md`.
# - **Look for** where the toy world agrees with the paper and where it does not: each section
#   sets the paper's prediction beside what this run measured.
#
# 0. One problem, token by token, under the base SLM.
# 1. Segmented perplexity (Q1-Q4) of every stream under the base SLM.
# 2. Token-level loss attribution and the token-frequency shift from SLM-RFT to Oracle-Refined.
# 3. Semantic retention of each rewrite.
# 4. The mechanism table (PPL, reward, retention, utility).
# 5. Learning curves, the robustness grid (where the profile runs it), the drift dial.
# 6. Rank correlations of reward and of perplexity with utility, and the written verdict.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"

# %%
from functools import partial
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from paradox import backends, examples, figures, mechanism
from paradox.io import read_csv, read_jsonl, write_jsonl, write_text
from paradox.metrics import bootstrap_utility, interval, lookup, problem_accuracy, response_nll, utility
from paradox.models import load_model
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.report import TOY_CAVEAT, mechanism_report, save_figure, save_table, setup_style
from paradox.streams import all_streams, is_drift, label, table_streams
from paradox.trace_view import strips_view

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir))
setup_style()
if params.world == "toy":
    print(TOY_CAVEAT)
fig_dir = paths.figures

# %% [markdown]
# Every stream's traces are scored once under the base SLM (response tokens only, as in 05): the
# per-token NLLs feed sections 1-2, the utility table (mean, 95% interval, seeds) sections 4-6.

# %%
streams = table_streams(params)
data = {s: read_jsonl(paths.stream(s)) for s in all_streams(params)}
base = backends.slm_path(params, paths)
model, tok = load_model(base, **backends.load_kwargs(params, base))
scored = {
    s: response_nll(
        model,
        tok,
        [r["prompt"] for r in rows],
        [r["completion"] for r in rows],
        token_budget=params.eval.score_token_budget,
        desc=s,
    )
    for s, rows in data.items()
}
accuracy = read_csv(paths.eval / "accuracy.csv")
util = utility(accuracy)
u = partial(lookup, util)  # u(stream, loss) -> (mean, ci95, n_seeds)
ui = partial(interval, bootstrap_utility(problem_accuracy(accuracy, paths.eval / "graded"), params.seed))
k = int(accuracy["k"].iloc[0])
stream_files = [paths.stream(s) for s in data]
acc_ppl_files = [paths.eval / "accuracy.csv", paths.eval / "perplexity.csv"]

# %% [markdown]
# ## 0. One problem, token by token
# Where the base SLM is surprised: each token of the SLM's own trace and of the Oracle's rewrite,
# coloured by its NLL (the numbers perplexity averages). A few such problems, with every stream's
# trace, are saved as `examples.jsonl` beside the figures for the tour (`paradox.examples`).

# %%
questions = {p["id"]: p["question"] for p in read_jsonl(paths.data / "kept_problems.jsonl")}
picked = examples.pick_ids(data, 3)  # problems with a style-aligned repair first
records = examples.build(picked, data, questions, scored, tok)
write_jsonl(fig_dir / "examples.jsonl", records)
ex = records[0]
strips = {s: (ex["strips"][s]["tokens"], ex["strips"][s]["nll"]) for s in examples.STRIP_STREAMS}
strips_view(strips, title=f"{ex['id']}: {ex['question']}")

# %% [markdown]
# ## 1. Segmented perplexity
#
# Each trace's response tokens are cut into four consecutive quarters of (nearly) equal length:
# with n tokens, quarter q holds tokens floor(q n / 4) to floor((q+1) n / 4) - 1. A stream's
# perplexity in a quarter is token-weighted over its traces (`mechanism.segmented_ppl`). If
# adapting to a foreign notation is what costs, it should show early, where the notation is set.

# %%
seg = mechanism.segmented_ppl(scored, streams)
seg_shown = seg.assign(stream=seg["stream"].map(label))
save_table(
    seg_shown,
    fig_dir / "segmented_ppl",
    params,
    stream_files,
    caption="Perplexity of each stream's training traces under the base SLM, globally and in four "
    "equal-length quarters of each response (token-weighted, response tokens only).",
    float_format="{:.3f}",
)
save_figure(
    figures.segmented_ppl(seg),
    fig_dir / "segmented_ppl",
    params,
    stream_files,
    "Perplexity of each stream in four equal-length quarters of its responses (token-weighted); streams "
    "more than ten times above the rest are drawn in their own panel above the break.",
)
seg

# %% [markdown]
# ## 2. Token-level loss attribution
#
# Which tokens carry the loss at the start of a trace? Per stream, the tokens with the largest
# summed NLL in Q1 and their share of all Q1 NLL (`mechanism.q1_attribution`); then the largest
# changes of a token's frequency per 1,000 response tokens from SLM-RFT to Oracle-Refined
# (`mechanism.token_shift`). Tokens are shown as their decoded text, quoted.

# %%
n_top = params.analysis.top_tokens
text = partial(mechanism.token_text, tok)
attribution = mechanism.q1_attribution(scored, streams, text, n_top)
save_table(
    attribution,
    fig_dir / "q1_loss_tokens",
    params,
    stream_files,
    caption=f"The {n_top} tokens carrying the most summed NLL (nats) in Q1 of each stream, under the base SLM.",
    float_format="{:.3f}",
)
shift_table = mechanism.token_shift(scored["slm_rft"], scored["oracle_refined"], text, n_top)
shift_files = [paths.stream("slm_rft"), paths.stream("oracle_refined")]
save_table(
    shift_table,
    fig_dir / "token_shift",
    params,
    shift_files,
    caption="Token frequency per 1,000 response tokens in SLM-RFT and Oracle-Refined: the largest increases "
    "and decreases after refinement.",
)
save_figure(
    figures.token_shift(shift_table),
    fig_dir / "token_shift",
    params,
    shift_files,
    "Token-frequency shift from SLM-RFT to Oracle-Refined, per 1,000 response tokens (hatched: more "
    "frequent after refinement; ␣ marks a space, ↵ a newline).",
)
attribution.pivot_table(index="rank", columns="stream", values="token", aggfunc="first")

# %% [markdown]
# ## 3. Semantic retention
#
# For every rewrite, the share of the SLM-RFT trace's information atoms (quantities, intermediate
# equations) it keeps, on the judge's 1-5 scale (1 + 4 x share). The toy world computes it
# exactly from the parsed steps (a repaired wrong value counts as *not* kept); real profiles ask
# the Oracle's endpoint with `params/prompts/retention_judge.txt` (`paradox.retention`), cached
# like every Oracle request. An answer without a score, or a pair too long for the Oracle's
# context (`skipped_retention_judge`), is left out of the mean and counted (`mechanism.mean_retention`).

# %%
rewrites = {s: data[s] for s in streams + [x for x in data if is_drift(x)] if s != "slm_rft"}
judge = backends.retention_scorer(params, paths)
retention, retention_unscored = mechanism.mean_retention(judge, data["slm_rft"], rewrites)
print(
    f"retention by {judge.name}; answers without a score, per stream: {retention_unscored}; counts: {judge.stats()}"
)
judge.close()
pd.Series(retention, name="retention (1-5)").rename(index=label)

# %% [markdown]
# ## 4. The mechanism table
# Per stream, ordered by perplexity: perplexity under the base SLM, mean reward, retention and
# utility after DFT and SFT (`mechanism.mechanism_table`). The paradox reads across a row pair:
# higher reward with lower utility.

# %%
reward = {s: pd.DataFrame(read_jsonl(paths.rewards / f"{s}.jsonl"))["reward"].mean() for s in data}
ppl = read_csv(paths.eval / "perplexity.csv").set_index("stream")["ppl"]
mechanism_full, mechanism_shown = mechanism.mechanism_table(streams, ppl, reward, retention, util, k)
save_table(
    mechanism_full,
    fig_dir / "mechanism",
    params,
    acc_ppl_files,
    caption=f"Mechanism table: perplexity under the base SLM, mean reward, semantic retention (1-5) and "
    f"Avg@{k} (%) after DFT and SFT, streams ordered by perplexity.",
    display=mechanism_shown,
)
mechanism_shown

# %% [markdown]
# ## 5a. Learning curves
# Avg@k of checkpoints during training (`learning_curve`), first seed: does a stream's advantage
# hold "through most of training", as the paper says of Style-Aligned vs Oracle-Refined?

# %%
lc = read_csv(paths.eval / "learning_curves.csv")
if not lc.empty:
    save_figure(
        figures.learning_curves(lc, streams, k, params.learning_curve.splits),
        fig_dir / "learning_curves",
        params,
        [paths.eval / "learning_curves.csv"],
        "Avg@k of checkpoints during fine-tuning (step 0 = base SLM), first seed.",
    )

# %% [markdown]
# ## 5b. Robustness grid
# Learning rate x batch size for the grid streams (profiles with a `grid`); the paper reports
# SLM-RFT best in every cell. Avg@k is the mean over splits at the first seed; the main run is
# the grid's centre cell (`mechanism.robustness_grid`).

# %%
grid_table = mechanism.robustness_grid(
    accuracy, params.grid.streams, params.grid.losses, params.train.seeds[0]
)
if not grid_table.empty:
    save_table(
        grid_table,
        fig_dir / "robustness_grid",
        params,
        [paths.eval / "accuracy.csv"],
        caption=f"Robustness grid: Avg@{k} (%, mean over splits, first seed) per learning rate and batch size.",
    )
grid_table

# %% [markdown]
# ## 5c. The drift dial (dose-response)
# Same logical repair, a growing fraction f of each trace in the Oracle's notation. If the
# mechanism is right, perplexity rises with f and utility falls with it; the last table sets
# that prediction beside this run (`mechanism.dose_response`).

# %%
drift = [s for s in data if is_drift(s)]
drift_table = mechanism.drift_table(drift, ppl, reward, util, params.drift.losses, k) if drift else None
if drift:
    save_figure(
        figures.drift_dial(drift, ppl, ui, params.drift.losses, k),
        fig_dir / "drift_dial",
        params,
        acc_ppl_files,
        "Drift dial: the same logical repair with a fraction f of each trace rewritten in the "
        "Oracle's notation; utility (error bars: 95% percentile bootstrap interval over the evaluation "
        "problems, and the seeds where there are several) and the measured perplexity against f.",
    )
    save_table(
        drift_table,
        fig_dir / "drift_dial",
        params,
        acc_ppl_files,
        caption="Drift dial: fraction of lines in Oracle notation, perplexity, reward and utility.",
        float_format="{:.3f}",
    )
    display(drift_table)
mechanism.dose_response(drift_table) if drift_table is not None else "no drift dial in this profile"

# %% [markdown]
# ## 6. Correlations and the verdict
# Spearman rank correlation across the Table-1 streams (fine-tuned streams only) between mean
# reward and utility, and between perplexity and utility, for SFT and DFT. With a handful of
# streams a rank correlation is a description, not a test.

# %%
corr = mechanism.correlations(streams, reward, ppl, util)
save_table(
    corr,
    fig_dir / "correlations",
    params,
    acc_ppl_files,
    caption="Spearman rank correlation across streams of mean reward vs utility and of perplexity vs utility.",
    float_format="{:.3f}",
)
corr

# %% [markdown]
# The verdict per loss (`mechanism.verdict`): the paradox appears when a trained Oracle stream has
# a higher mean reward and a lower utility than SLM-RFT; with several seeds it also names the
# streams whose 95% intervals lie apart from SLM-RFT's.

# %%
verdicts = {loss: mechanism.verdict(util, reward, streams, loss) for loss in mechanism.LOSSES}
for loss, v in verdicts.items():
    print(f"paradox under {loss}: {v}")

# %% [markdown]
# ## REPORT.md
# The run's summary (`report.mechanism_report`), in `runs/<profile>/` and beside the figures: the
# verdicts, Table 1 (from 06), the tables above, this world's caveats and links to every figure.

# %%
report_args = dict(
    params=params,
    k=k,
    n_seeds=int(util["n_seeds"].max()),
    verdicts=verdicts,
    table1_md=(fig_dir / "table1.md").read_text(),
    mechanism=mechanism_shown,
    correlations=corr,
    segmented=seg_shown,
    drift=drift_table,
    grid=grid_table,
    n_unscored=sum(retention_unscored.values()),
    figure_names=[p.name for p in sorted(fig_dir.glob("*.png"))],
)
report = mechanism_report(**report_args)  # links to figures/<name>, from runs/<profile>/
write_text(paths.root / "REPORT.md", report)
write_text(fig_dir / "REPORT.md", mechanism_report(**report_args, figures_link=""))  # links beside it
Markdown(report)

# %% [markdown]
# ## Takeaway
# The paradox (06) and its mechanism are separate claims. The sections above set the paper's
# prediction beside this run: in the toy world the Oracle's rigid notation is *cheap per token*
# once started, so global perplexity need not rise with the Oracle's share of a trace even where
# utility falls. The tour (`tour.ipynb`, part 4) lists every claim of the paper with this run's
# verdict.
#
# ## Try this
# - `selection.lam` (1.0): compatibility-aware selection scores reward − λ·log PPL. In
#   `runs/<profile>/data/compat_selection.jsonl`, can any λ ≥ 0 make it choose SLM-RFT where
#   Oracle-Refined has both the higher reward and the lower perplexity? (TEACHING.md, question 3.)
#   Cost: reruns 03-07.
# - `drift.fractions`: a finer dial (e.g. `[0, 0.1, 0.2, 0.3, 0.5, 1]`) tests whether the drop is
#   gradual or a threshold; each fraction adds a training run and an evaluation.
