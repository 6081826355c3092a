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
# # Tour · The Quality-Utility Paradox in four steps
#
# **The question.** Why does fine-tuning a small model on *better-looking* math solutions make it
# *worse* at math, and what fixes it?
#
# **What this notebook reads.** Only committed files: a published run's tables, figures and
# examples in `figures/<profile>/` (written by `make paper` then `make publish`) and the paper's
# own numbers (`paradox.paper`). It computes nothing heavy and runs in seconds, so you can read
# the whole story before running anything. The stage notebooks `00`-`07` are where each number
# is made; this tour tells the story in the paper's order instead of the pipeline's:
#
# 1. **The paradox**: the traces a reward model likes best teach the small model least.
# 2. **The mechanism**: those traces are written in a style the small model finds surprising
#    (high perplexity), and adapting to that style costs what the better logic gains.
# 3. **The fix**: repair only the wrong steps, in the small model's own words.
# 4. **What the toy does not show**: every claim of the paper, held against this run.
#
# **What to look for.** Where the reward axis and the utility axis disagree, and whether
# perplexity explains the disagreement.

# %% tags=["parameters"]
profile = "toy"

# %%
import pandas as pd
from IPython.display import Markdown, display

from paradox import paper, trace_view
from paradox.io import read_jsonl
from paradox.paths import resolve
from paradox.report import TOY_CAVEAT, saved_image

results = resolve(f"figures/{profile}")
if not (results / "table1.csv").is_file():
    raise FileNotFoundError(
        f"{results}/table1.csv: no published results for profile {profile!r}; run "
        f"`make paper PROFILE={profile}` then `make publish PROFILE={profile}`"
    )
toy = "Toy world" in (results / "table1.md").read_text()
table1 = pd.read_csv(results / "table1.csv")
examples = read_jsonl(results / "examples.jsonl")
Markdown(f"> **{TOY_CAVEAT}**" if toy else f"Results of profile `{profile}`.")

# %% [markdown]
# ## 1 · The paradox
#
# Five training sets ("streams") for the same problems, each used to fine-tune the same small
# model (SLM): its own correct samples (**SLM-RFT**, rejection sampling), the dataset's reference
# solutions (**Ground truth**), the SLM's traces rewritten by a strong Oracle (**Oracle-Refined**)
# or written by it from scratch (**Oracle-Synthesized**), and the fix of part 3
# (**Style-Aligned**). *Reward* is what a reward model thinks of the traces (perceived quality);
# *Avg@k* is the accuracy of the fine-tuned model (utility), after plain SFT and after DFT.

# %%
Markdown((results / "table1.md").read_text())

# %% [markdown]
# The same numbers as a picture: reward on the x axis, utility on the y axis. If reward measured
# what a trace teaches, the points would climb from left to right.

# %%
saved_image(results / "quality_vs_utility.png")

# %% [markdown]
# **Toy vs paper, side by side.** The paper fine-tunes Qwen2.5-Math-1.5B and reports Avg@16 over
# five benchmarks; this run is another model on other problems, so the digits do not compare.
# Orderings do: read each column pair top to bottom.

# %%
paper.side_by_side(table1).style.format(precision=2, na_rep="–").hide(axis="index")

# %% [markdown]
# ## 2 · The mechanism: adaptation cost
#
# The paper's explanation: a trace teaches well when the model already finds it likely. The
# measure is the **perplexity** of each stream's traces under the SLM *before* training (lower =
# closer to how the SLM writes). Plotted against utility:

# %%
saved_image(results / "ppl_vs_utility.png")

# %% [markdown]
# What a rewrite does to the wording, on one problem: the SLM's own trace next to the Oracle's
# rewrites. Words the rewrite added or changed are highlighted, words it dropped are struck out.

# %%
ex = examples[0]
print(ex["question"])
trace_view.side_by_side(
    {s: ex["traces"][s] for s in ("slm_rft", "oracle_refined", "oracle_synthesized") if s in ex["traces"]}
)

# %% [markdown]
# And where the surprise sits: every token of the SLM's trace and of the Oracle-Refined rewrite,
# coloured by its negative log-likelihood (NLL) under the base SLM, on one colour scale (darker =
# more surprising). Hover over a token for its value.

# %%
strips = {s: (ex["strips"][s]["tokens"], ex["strips"][s]["nll"]) for s in ("slm_rft", "oracle_refined")}
trace_view.strips_view(strips, title=ex["id"])

# %% [markdown]
# The paper finds the cost early in the response, where the notation is set: perplexity per
# quarter of the response, and the tokens whose frequency the rewrite changes most.

# %%
display(saved_image(results / "segmented_ppl.png"), saved_image(results / "token_shift.png"))

# %% [markdown]
# ## 3 · The fix: Style-Aligned Refinement
#
# Keep the SLM's trace, find its first wrong step, and rewrite only from there, in the SLM's own
# wording; keep the rewrite only if it stays close to the original (perplexity and edit ratio
# under thresholds). The example below compares the SLM's trace with its style-aligned repair.

# %%
repaired = next((e for e in examples if e["traces"].get("style_aligned") != e["traces"]["slm_rft"]), ex)
print(repaired["question"])
trace_view.side_by_side(
    {
        s: repaired["traces"][s]
        for s in ("slm_rft", "style_aligned", "oracle_refined")
        if s in repaired["traces"]
    }
)

# %% [markdown]
# The **drift dial** asks the causal question directly: the same repaired logic, with a fraction
# *f* of each trace written in the Oracle's notation. If style costs, utility should fall as *f*
# grows. The mechanism table collects perplexity, reward, retention (how much of the SLM's trace
# a rewrite keeps) and utility per stream.

# %%
display(saved_image(results / "drift_dial.png"))
Markdown((results / "mechanism.md").read_text())

# %% [markdown]
# ## 4 · What the toy does not show
#
# Each of the paper's claims as a direction (A beats B), checked in the paper's numbers and in this
# run (`paradox.paper.claims`; the margin is in the claim's unit, and with one seed a point or two
# of Avg@k is within sampling noise). Rows marked DIFFERS are where this run does not reproduce the
# paper; they are results, not bugs to tune away.

# %%
paper.claims(table1).style.format(precision=2, na_rep="–").hide(axis="index")

# %% [markdown]
# Why a toy run can differ, in the toy world's own terms (REPORT.md's caveats):
#
# - **Perplexity is per token.** The toy Oracle writes in a rigid, templated notation. Its tokens
#   are few and predictable, so its *per-token* perplexity can be *lower* than the SLM's varied
#   wording even though the SLM rarely writes that way: perplexity measures surprise, not the cost
#   of changing how the model writes. The paper's real Oracle is not templated.
# - **Reward is designed.** The toy reward rubric rewards polish by construction, so the reward
#   axis is a modelling choice, not a finding; ties at the rubric's maximum are common.
# - **Small numbers.** A few hundred problems and one seed: `make paper PROFILE=toy-full` runs
#   three seeds and shows which differences survive.
#
# **Takeaway.** Judge training data by what it teaches the learner, not by how good it looks:
# reward alone ranks the streams backwards here, and closeness to the learner's own wording
# (perplexity, edit size) is the missing half.
#
# **Try this.** `make lab`, then `07_mechanism` for the analyses and `TEACHING.md` for the knobs
# (the drift fraction, the style thresholds, the foreign-style share of pretraining), each with
# what it models and what it costs to rerun.
