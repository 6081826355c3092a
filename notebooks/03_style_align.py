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
# # 03 · Style-Aligned Refinement
#
# The paper's intervention: repair the logic, keep the SLM's wording. For each SLM-RFT trace:
#
# 1. keep the SLM's own trajectory;
# 2. locate the first erroneous step with a validator (`oracle.locator`: the Oracle, with the
#    `locate` prompt in a real world and the step-level arithmetic checker in the toy one; or a process
#    reward model, `prm`, such as Qwen2.5-Math-PRM-7B, whose toy stand-in is the checker with a stated
#    error rate; docs/prm-locator.md);
# 3. change only the erroneous steps, in the SLM's own wording;
# 4. check style consistency: the rewrite's perplexity under the SLM may grow by at most
#    `style_align.max_ppl_ratio`, and its character edit distance may be at most
#    `style_align.max_edit_ratio` of the original's length. A rejected rewrite falls back to the
#    original trace, and is counted.
#
# RFT traces end in a correct answer, so most have no wrong step and stay as they are; the
# ones that do (a slip that happened to cancel, a skipped step) are the ones repaired.

# %% [markdown]
# - **Question.** Can the logic be repaired without changing the SLM's wording?
# - **Reads** the SLM-RFT stream (01), the Oracle (02's backend) and the base SLM (for the style check).
# - **Writes** the Style-Aligned stream, the drift-dial streams (`drift_*`) and, with `selection`,
#   the Compat-Selected stream, with their rewards; the locator agreement table
#   (`figures/locator_agreement.*`) and each locator's answers (`data/locator_answers.jsonl`).
# - **Look for** how many traces were repaired, how many repairs the style check rejected, how
#   little a kept repair changes (the side-by-side view), and how often two locators agree.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"

# %%
from collections import Counter
from pathlib import Path

import torch
from IPython.display import display

from paradox import backends
from paradox.io import read_jsonl, write_json, write_jsonl
from paradox.metrics import perplexity, response_nll
from paradox.models import load_model
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.problems import Problem
from paradox.streams.style_align import decide
from paradox.trace_view import side_by_side

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir))
torch.manual_seed(params.seed)
print(f"profile={profile} params_hash={params.hash()}")

# %%
problems = {p["id"]: Problem.from_dict(p) for p in read_jsonl(paths.data / "kept_problems.jsonl")}
rft = read_jsonl(paths.stream("slm_rft"))
oracle = backends.oracle(params, paths)

# Locate for every trace with each locator (`backends.locators`: the one `oracle.locator` names and,
# with `oracle.compare_locators`, the other; the toy's exact checker too), then rewrite the traces the
# chosen one finds a wrong step in (batches: a real Oracle runs them concurrently). Real world: steps are
# blank-line paragraphs (lines for a one-paragraph trace) for the Oracle and the PRM alike; an unparseable
# locate answer counts as "not located", a malformed rewrite keeps the original; both counted.
rft_problems, rft_traces = [problems[r["id"]] for r in rft], [r["completion"] for r in rft]
located_by = backends.locators(params, oracle)
answers = {role: loc.locate_many(rft_problems, rft_traces) for role, loc in located_by.items()}
for loc in located_by.values():
    loc.close()  # a PRM's weights go (its answers stay known); the Oracle is closed at the end
first_wrong = answers[params.oracle.locator]
rewrites = oracle.rewrite_in_style_many(rft_problems, rft_traces, first_wrong)
located = [
    {"first_wrong": k, "rewrite": rewrite, "changed": changed}
    for k, (rewrite, changed) in zip(first_wrong, rewrites, strict=True)
]
n_wrong = sum(x["first_wrong"] is not None for x in located)
print(f"{n_wrong} of {len(rft)} RFT traces have a wrong step despite a correct final answer")
print(f"located by: {located_by[params.oracle.locator].name} (oracle.locator: {params.oracle.locator})")
print("oracle counts:", oracle.stats())

# %% [markdown]
# ## Do the locators agree?
# The rewrite follows one locator; the others ran beside it on the same traces. Each row compares a
# locator with a reference ProcessBench's way: among the traces where the reference names a wrong
# step, the share where the locator names the same one; among the others, the share where it names
# none; F1, their harmonic mean (`paradox.locator_agreement`). Against the toy's exact checker these
# are ProcessBench's scores; between two locators neither is the truth. The toy world's PRM is a
# stand-in (the checker with `toy.prm_standin_error_rate` of its answers replaced), not a model.

# %%
from paradox import locator_agreement
from paradox.report import save_table

missing = locator_agreement.why_missing(params, list(answers))
names = {role: loc.name for role, loc in located_by.items()}
notes = locator_agreement.toy_notes(params, located_by["prm"].stats() if "prm" in located_by else None)
agreement = locator_agreement.agreement_table(answers, names, missing, notes)
caption = (
    f"Error locators on the {len(rft)} SLM-RFT traces of 03 (correct final answers); the rewrite follows "
    f"{names[params.oracle.locator]}. Shares in %; F1 = harmonic mean of the two accuracies."
)
save_table(agreement, paths.figures / "locator_agreement", params, [paths.stream("slm_rft")], caption)
write_jsonl(
    paths.data / "locator_answers.jsonl",
    ({"id": r["id"], **{role: a[i] for role, a in answers.items()}} for i, r in enumerate(rft)),
)
display(agreement)

# %% [markdown]
# ## Style-consistency check
# Perplexity of the original and of the rewrite under the base SLM, for the traces that changed.

# %%
todo = [i for i, x in enumerate(located) if x["changed"]]
slm = backends.slm_path(params, paths)
model, tok = load_model(slm, **backends.load_kwargs(params, slm))
prompts = [rft[i]["prompt"] for i in todo]
budget = params.eval.score_token_budget
originals = [rft[i]["completion"] for i in todo]
rewrites = [located[i]["rewrite"] for i in todo]
scored_orig = response_nll(model, tok, prompts, originals, budget, desc="ppl original") if todo else []
scored_new = response_nll(model, tok, prompts, rewrites, budget, desc="ppl rewrite") if todo else []
ppl_orig, ppl_new = [perplexity([s]) for s in scored_orig], [perplexity([s]) for s in scored_new]
ppl = {i: (a, b) for i, a, b in zip(todo, ppl_orig, ppl_new, strict=True)}

# %% [markdown]
# Each trace is then kept, rewritten or rejected (`streams.style_align.decide`): a rewrite is
# accepted only when the SLM finds it about as likely as its own wording (perplexity ratio) and it
# edits little of the trace (edit ratio); the counts go to `style_align_report.json`.

# %%
out, decisions = [], []
sa = params.style_align
for i, (r, x) in enumerate(zip(rft, located, strict=True)):
    a, b = ppl.get(i, (1.0, 1.0))
    d = decide(r["completion"], x["rewrite"], len(x["changed"]), a, b, sa.max_ppl_ratio, sa.max_edit_ratio)
    out.append({**r, "completion": d.trace})
    decisions.append(
        {
            "id": r["id"],
            "status": d.status,
            "first_wrong": x["first_wrong"],
            "changed_lines": d.changed_lines,
            "ppl_ratio": d.ppl_ratio,
            "edit_ratio": d.edit_ratio,
        }
    )
write_jsonl(paths.stream("style_aligned"), out)
write_jsonl(paths.data / "style_align_decisions.jsonl", decisions)
counts = Counter(d["status"] for d in decisions)
report = {
    "n": len(rft),
    **{k: counts.get(k, 0) for k in ("unchanged", "rewritten", "rejected")},
    "max_ppl_ratio": sa.max_ppl_ratio,
    "max_edit_ratio": sa.max_edit_ratio,
}
write_json(paths.data / "style_align_report.json", report)
print(report)

# %%
examples = [i for i, d in enumerate(decisions) if d["status"] != "unchanged"][:2]
refined_file = paths.stream("oracle_refined")  # from 02: the Oracle's repair of the same trace
refined = {r["id"]: r["completion"] for r in read_jsonl(refined_file)} if refined_file.exists() else {}
for i in examples:  # the SLM's trace, the style-aligned rewrite (kept or rejected), the Oracle's
    d, pid = decisions[i], rft[i]["id"]
    traces = {"slm_rft": rft[i]["completion"], "Style-aligned rewrite": located[i]["rewrite"]}
    traces |= {"oracle_refined": refined[pid]} if pid in refined else {}
    display(side_by_side(traces, title=f"{pid}: {d['status']} (first wrong step {d['first_wrong']})"))

# %% [markdown]
# ## Reward of the Style-Aligned stream

# %%
reward = backends.reward_model(params, paths=paths)
scores = reward.score_many([problems[r["id"]] for r in out], [r["completion"] for r in out])
write_jsonl(
    paths.rewards / "style_aligned.jsonl",
    ({"id": r["id"], "reward": s} for r, s in zip(out, scores, strict=True)),
)
print(f"mean reward, Style-Aligned: {sum(scores) / len(scores):.3f}")

# %% [markdown]
# ## Beyond the paper (1): the drift dial
#
# Oracle refinement couples two changes: the logical repair and the notation. The drift dial
# separates them. Every trace gets the same logical repair (its wrong steps fixed in the SLM's
# wording), then a fraction f of its lines, the first ones, is rewritten in the Oracle's
# notation. f = 0 is the repair alone (Style-Aligned without its style check); f = 1 is exactly
# Oracle-Refined. Notebook 04 trains on each and notebook 07 plots utility against the measured
# perplexity: a dose-response test of the mechanism. With a real Oracle the unit is a step (as
# for the repair), and the `drift` prompt rewrites the first round(f n) steps in the Oracle's own
# notation while the rest is copied verbatim; the repair's requests come from the cache.

# %%
from paradox.streams import drift_stream

for f in params.drift.fractions:
    name = drift_stream(f)
    rows = [
        {**r, "completion": c}
        for r, c in zip(rft, oracle.rewrite_fraction_many(rft_problems, rft_traces, f), strict=True)
    ]
    write_jsonl(paths.stream(name), rows)
    drift_rewards = reward.score_many([problems[r["id"]] for r in rows], [r["completion"] for r in rows])
    write_jsonl(
        paths.rewards / f"{name}.jsonl",
        ({"id": r["id"], "reward": v} for r, v in zip(rows, drift_rewards, strict=True)),
    )
    print(f"{name}: f={f:.2f}, mean reward {sum(drift_rewards) / len(drift_rewards):.3f}")
oracle.close()  # the Oracle's last request of this stage (a managed server stops here)

# %% [markdown]
# ## Cross-check reward models
# As in notebook 02: every model in `reward.cross_check` scores the Style-Aligned stream and the
# drift-dial streams, one model at a time after the main model is freed
# (`rewards/cross_check/<model>/<stream>.jsonl`). The compatibility-aware selection below keeps a
# candidate's scores, so its stream is not scored again.

# %%
from paradox import cross_check

cross_check.free(reward)
if params.reward.cross_check:
    cross_check.score_streams(
        params, paths, problems, ["style_aligned", *(drift_stream(f) for f in params.drift.fractions)]
    )

# %% [markdown]
# ## Beyond the paper (2): compatibility-aware selection
#
# The paper closes by calling for data selection that judges traces by reward *and* by learner
# compatibility. Here is the simplest such rule: for each problem, among its candidate traces
# (`selection.candidates`), keep the one maximising
#
#     reward - lambda * log PPL(trace | SLM)
#
# where log PPL is the trace's mean response-token NLL under the base SLM and lambda is
# `selection.lam`. The result is one more training stream, `compat_selected`.

# %%
from paradox.streams.selection import select_compatible

cand = {}  # candidate stream -> {problem id: (reward, mean NLL per token under the SLM, row)}
for c in params.selection.candidates if params.selection.enabled else []:
    rows = read_jsonl(paths.stream(c))
    prompts_c, traces_c = [r["prompt"] for r in rows], [r["completion"] for r in rows]
    scored = response_nll(model, tok, prompts_c, traces_c, budget, desc=f"ppl {c}")
    rewards_c = {x["id"]: x["reward"] for x in read_jsonl(paths.rewards / f"{c}.jsonl")}
    cand[c] = {
        r["id"]: (rewards_c[r["id"]], sc.nll / max(1, sc.n_tokens), r)
        for r, sc in zip(rows, scored, strict=True)
    }

# %% [markdown]
# Per problem, the candidate with the best reward-compatibility trade-off is chosen
# (`streams.selection.select_compatible`); the stream, its rewards and every choice are stored.

# %%
if params.selection.enabled:
    choice = select_compatible(
        {c: {i: v[:2] for i, v in d.items()} for c, d in cand.items()}, params.selection.lam
    )
    write_jsonl(paths.stream("compat_selected"), [cand[choice[r["id"]]][r["id"]][2] for r in rft])
    chosen_rewards = ({"id": r["id"], "reward": cand[choice[r["id"]]][r["id"]][0]} for r in rft)
    write_jsonl(paths.rewards / "compat_selected.jsonl", chosen_rewards)
    rewards_of = {i: {f"{k}_reward": cand[k][i][0] for k in cand} for i in choice}
    log_ppl_of = {i: {f"{k}_log_ppl": cand[k][i][1] for k in cand} for i in choice}
    per_problem = ({"id": i, "chosen": c, **rewards_of[i], **log_ppl_of[i]} for i, c in choice.items())
    write_jsonl(paths.data / "compat_selection.jsonl", per_problem)
    print("chosen source per problem:", dict(Counter(choice.values())))
    if params.reward.cross_check:
        cross_check.copy_selected(params, paths, {r["id"]: choice[r["id"]] for r in rft})

# %% [markdown]
# ## Takeaway
# Most RFT traces need no repair; the few that do are repaired in place, and the style check
# keeps a repair only if the SLM would still find it natural. The drift dial makes the same repair
# in more and more of the Oracle's notation: the causal test of "style costs".
#
# ## Try this
# - `style_align.max_ppl_ratio` (1.25) and `style_align.max_edit_ratio` (0.35): how far a repair may
#   move from the SLM's wording before it is rejected. Models how strict the style check is.
#   Cost: reruns 03-07.
# - `drift.fractions`: more points on the dial (each adds one training run per loss in 04 and an
#   evaluation in 05). `selection.lam` (1.0): the price of one nat of perplexity in reward units for
#   compatibility-aware selection; TEACHING.md asks why no λ ≥ 0 picks SLM-RFT here.
# - `oracle.locator: prm` rewrites where the PRM (toy: its stand-in) finds the error instead of the
#   Oracle, and `toy.prm_standin_error_rate` (0.1) sets how often the stand-in is wrong: how much a noisy
#   validator changes the repaired stream. Models a cheap validator in place of a 72B Oracle call.
#   Cost: reruns 03-07 (the agreement table alone: 03).
