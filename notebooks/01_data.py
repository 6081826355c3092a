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
# # 01 · Data: the SLM's own traces (SLM-RFT) and the dataset's (Ground truth)
#
# Rejection-sampling fine-tuning (RFT) data as in the paper: sample k traces per training
# problem from the SLM at temperature 1.0, grade each, and keep one correct trace for every
# problem with at least one correct sample. Which correct trace is kept is not stated in the
# paper, so it is a parameter (`rft.choose`). The problems that survive are the problems of
# **every** stream below, so streams differ only in their traces.
#
# The Ground-truth stream is the dataset's own reference solution for the same problems.

# %% [markdown]
# - **Question.** Which problems can the SLM already solve, and what do its own correct traces look like?
# - **Reads** the problems and the SLM (00). **Writes** `runs/<profile>/data/` (samples, grades, summary)
#   and the first two streams, `runs/<profile>/streams/slm_rft.jsonl` and `ground_truth.jsonl`.
# - **Look for** how many problems survive rejection sampling (they are the problems of every stream)
#   and how differently the SLM and the dataset word the same solution.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"

# %%
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from paradox import backends, oracle_budget
from paradox.evaluation import grade_rows, truncated_share
from paradox.generation import SamplingSettings, sample_sharded
from paradox.grading import grade_many
from paradox.io import write_json, write_jsonl
from paradox.models import model_fingerprint
from paradox.oracle_budget import OracleTokenizer, trace_tokens
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.streams.rft import CLEANERS, select

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir))
print(f"profile={profile} params_hash={params.hash()}")

# %% [markdown]
# With `oracle.context_length` set, every Oracle prompt of stages 02-07 must fit the Oracle's
# context (docs/budgets.md). `make plan` checked the budgets with byte bounds; here, before any
# sampling, they are checked again with the Oracle's tokenizer, and a problem whose question is
# longer than `rft.max_question_tokens` (the Oracle's tokens) is dropped and counted. Kept traces
# longer than `rft.max_trace_tokens` are dropped after rejection sampling, below.

# %%
problems = backends.problem_source(params, paths).load("train")
dropped: dict[str, int] = {}
if params.rft.max_question_tokens is not None:
    oracle_tok = OracleTokenizer(params.oracle.tokenizer_name, params.oracle.chat_template_tokens)
    budget_lines, budget_errors = oracle_budget.check(params, oracle_tok)
    print("\n".join(budget_lines))
    if budget_errors:
        raise oracle_budget.BudgetError(f"profile '{profile}':\n" + "\n".join(budget_errors))
    fits = [
        oracle_tok.text_tokens(p.question) <= params.rft.max_question_tokens
        for p in tqdm(problems, desc="question tokens")
    ]
    dropped["dropped_long_question"] = fits.count(False)
    problems = [p for p, ok in zip(problems, fits, strict=True) if ok]
    print(
        f"dropped {dropped['dropped_long_question']} problem(s) with a question over "
        f"{params.rft.max_question_tokens} Oracle tokens (rft.max_question_tokens)"
    )
slm = backends.slm_path(params, paths)
gen = backends.generator(params, slm, params.sampling.batch_size, paths)
prompts = [backends.format_prompt(params, p.question, gen.tok) for p in problems]
print(f"{len(problems)} training problems; SLM: {slm}")

# %% [markdown]
# ## Sampling
# Samples are written in shards as they finish (`runs/<profile>/data/samples/`), so an
# interrupted run resumes at the first missing shard.

# %%
s, e = (
    params.sampling,
    params.eval,
)  # one grader for every stage, in e.grade_workers processes (0 = all cores)
settings = SamplingSettings(s.k, s.temperature, s.top_p, s.max_new_tokens, params.seed)
rows = sample_sharded(
    gen,
    model_fingerprint(slm),
    [p.id for p in problems],
    prompts,
    settings,
    paths.data / "samples",
    s.batch_size,
    desc="sampling SLM traces",
)
gen.close()  # the prompts are made; free the weights before grading and for the stages that follow
grade_rows(
    rows, problems, grade_workers=e.grade_workers, grade_timeout_s=e.grade_timeout_s, desc="grading samples"
)
prompt_of = dict(zip([p.id for p in problems], prompts, strict=True))
gold = {p.id: p.answer for p in problems}
write_jsonl(paths.data / "samples.jsonl", rows)

# %% [markdown]
# ## Rejection sampling
# A trace must still be correct once cleaned (`rft.clean`, the world's cleaning rule): the cleaned
# correct traces are re-graded at once, and `rft.choose` picks one per problem among those that
# pass (`streams.rft.select`).

# %%
cleaner = CLEANERS[params.rft.clean] if params.rft.clean else None
cleaned = sorted({(r["id"], cleaner(r["text"]) if cleaner else r["text"]) for r in rows if r["correct"]})
still = dict(
    zip(
        cleaned,
        grade_many(
            [(t, gold[pid], False) for pid, t in cleaned],
            workers=e.grade_workers,
            timeout_s=e.grade_timeout_s,
            desc="re-grading cleaned traces",
        ),
        strict=True,
    )
)
chosen = select(
    rows, params.rft.choose, params.seed, params.rft.clean, still_correct=lambda pid, text: still[pid, text]
)

# %% [markdown]
# A kept trace the Oracle's prompts cannot hold (over `rft.max_trace_tokens`, docs/budgets.md) is
# dropped and counted. A profile whose SLM solves none of the training problems stops here.

# %%
if params.rft.max_trace_tokens is not None:
    # both rft bounds are set or neither (params): oracle_tok is the tokenizer loaded above
    too_long = {
        pid
        for pid, text in tqdm(chosen.items(), desc="trace tokens")
        if trace_tokens(text, oracle_tok.text_tokens) > params.rft.max_trace_tokens
    }
    chosen = {pid: text for pid, text in chosen.items() if pid not in too_long}
    dropped["dropped_long_trace"] = len(too_long)
    print(
        f"dropped {len(too_long)} kept trace(s) over {params.rft.max_trace_tokens} Oracle tokens "
        "(rft.max_trace_tokens)"
    )
if not chosen:
    raise RuntimeError(
        f"profile '{profile}': the SLM solved none of the {len(problems)} training problems "
        f"with k={s.k}; there is nothing to fine-tune on (raise sampling.k or the SLM's training)"
    )

# %% [markdown]
# The summary of sampling and selection (`data/summary.json`): sample accuracy, the share of
# samples cut by `sampling.max_new_tokens` (graded wrong), and how many problems are solvable.

# %%
by_id = {p.id: p for p in problems}
kept = [by_id[pid] for pid in sorted(chosen)]
n_correct = Counter(r["id"] for r in rows if r["correct"])
summary = {
    "n_problems": len(problems),
    "k": s.k,
    "sample_accuracy": 100 * sum(r["correct"] for r in rows) / len(rows),
    "truncated_share": truncated_share(rows),
    "n_solvable": len(kept),
    "solvable_share": 100 * len(kept) / len(problems),
    "correct_per_solvable_problem": sum(n_correct.values()) / max(1, len(n_correct)),
    "rft_rule": params.rft.choose,
    **dropped,
}
for k_, v in summary.items():
    print(f"{k_:30s} {v:.2f}" if isinstance(v, float) else f"{k_:30s} {v}")
if summary["truncated_share"] > 5:
    print(
        f"WARNING: {summary['truncated_share']:.1f}% of the samples ran into sampling.max_new_tokens; "
        f"check the stop conditions (slm.stop_tokens {list(params.slm.stop_tokens)}, "
        f"slm.stop_strings {list(params.slm.stop_strings)})"
    )

# %% [markdown]
# The two streams of this stage, on the same kept problems and prompts: SLM-RFT (the chosen
# traces) and Ground truth (the dataset's reference solutions).

# %%
for name, traces in (("slm_rft", chosen), ("ground_truth", {p.id: p.reference_solution for p in kept})):
    write_jsonl(
        paths.stream(name),
        ({"id": p.id, "prompt": prompt_of[p.id], "completion": traces[p.id]} for p in kept),
    )
write_jsonl(paths.data / "kept_problems.jsonl", (p.to_dict() for p in kept))
write_json(paths.data / "summary.json", summary)

example = kept[0]
print(example.question)
print("\nSLM-RFT:\n" + chosen[example.id])
print("\nGround truth:\n" + example.reference_solution)

# %% [markdown]
# ## Takeaway
# RFT keeps only problems the SLM could already solve, in its own words; every stream below is
# built on exactly these problems, so the streams differ in wording and repairs, not in content.
#
# ## Try this
# - `sampling.k` (8): more samples keep more problems (more training data, more compute).
#   Cost: reruns 01 and everything after it.
# - `rft.choose` (`first`): `shortest` or `random` picks another correct trace per problem
#   (the paper does not say which it kept). Cost: reruns 01-07; sampling shards are reused.
