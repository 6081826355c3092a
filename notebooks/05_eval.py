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

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"
figures_dir = "figures"

# %%
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from paradox import backends
from paradox.generation import SamplingSettings, sample_sharded
from paradox.grading import grade_many
from paradox.io import read_jsonl, write_jsonl
from paradox.metrics import avg_at_k, perplexity, response_nll
from paradox.models import load_model, model_fingerprint
from paradox.params import load_params
from paradox.paths import RunPaths
from paradox.streams import all_streams
from paradox.training.runs import keeps_checkpoints, training_runs

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir), Path(figures_dir))
print(f"profile={profile} params_hash={params.hash()}")

# %%
e, lc = params.eval, params.learning_curve
source = backends.problem_source(params, paths)
splits = {name: source.load(name) for name in e.splits}
base = backends.slm_path(params, paths)
runs = training_runs(params)
print(f"{len(runs)} fine-tuned models + the base SLM, on {len(splits)} splits, k={e.k}")


truncated_share: dict[tuple[str, str], float] = {}  # (tag, split) -> % of samples cut by max_new_tokens


def evaluate(path: str, tag: str, seed: int, split_names) -> dict[str, float]:
    """Avg@k of one checkpoint on the given splits; samples and grades land under eval/. The share
    of samples that hit the token limit (graded wrong) goes to `truncated_share`."""
    fingerprint = model_fingerprint(path)
    scores = {}
    gen = backends.generator(params, path, e.batch_size, paths, purpose="eval")
    for split in split_names:
        probs = splits[split]
        prompts = [backends.format_prompt(params, p.question, gen.tok) for p in probs]
        settings = SamplingSettings(e.k, e.temperature, e.top_p, e.max_new_tokens, seed)
        # Samples are stored by weights, not by name: two runs with identical weights share them.
        rows = sample_sharded(gen, fingerprint, [p.id for p in probs], prompts, settings,
                              paths.eval / "samples" / f"{fingerprint}-s{seed}" / split, e.batch_size,
                              desc=f"{tag}/{split}")
        gold = {p.id: p.answer for p in probs}
        verdicts = grade_many([(r["text"], gold[r["id"]], r["truncated"]) for r in rows], workers=e.grade_workers,
                              timeout_s=e.grade_timeout_s, desc=f"grading {tag}/{split}")
        for r, ok in zip(rows, verdicts, strict=True):
            r["correct"] = ok
        write_jsonl(paths.eval / "graded" / tag / f"{split}.jsonl", rows)
        scores[split] = avg_at_k(rows)
        truncated_share[(tag, split)] = 100 * sum(r["truncated"] for r in rows) / len(rows) if rows else float("nan")
    gen.close()  # one model in memory at a time (a vLLM engine claims most of the GPU)
    return scores


# %% [markdown]
# ## Avg@k of every model
# A model samples with its run's seed, so the base SLM and every stream's model at the same
# seed see the same random numbers: differences come from the weights.

# %%
acc_rows = []
common = {"k": e.k}
for seed in params.train.seeds:
    for split, v in evaluate(base, f"base-s{seed}", seed, e.splits).items():
        acc_rows.append({"model": f"base-s{seed}", "stream": "base", "loss": "none", "seed": seed,
                         "learning_rate": 0.0, "batch_size": 0, "purpose": "base", "split": split,
                         "avg_at_k": v, "truncated_share": truncated_share[(f"base-s{seed}", split)],
                         "n_problems": len(splits[split]), **common})
for r in tqdm(runs, desc="models"):
    for split, v in evaluate(str(paths.models / r.name), r.name, r.seed, e.splits).items():
        acc_rows.append({"model": r.name, **{k: v_ for k, v_ in r.to_dict().items() if k != "name"},
                         "split": split, "avg_at_k": v, "truncated_share": truncated_share[(r.name, split)],
                         "n_problems": len(splits[split]), **common})
accuracy = pd.DataFrame(acc_rows)
accuracy.to_csv(paths.eval / "accuracy.csv", index=False)
accuracy[accuracy["purpose"] != "grid"].pivot_table(index="model", columns="split", values="avg_at_k")

# %% [markdown]
# Share of samples (%) that ran into `eval.max_new_tokens` without stopping (graded wrong). A large
# share points at stop conditions the model does not reach (`slm.stop_tokens`, `slm.stop_strings`).

# %%
accuracy[accuracy["purpose"] != "grid"].pivot_table(index="model", columns="split", values="truncated_share")

# %% [markdown]
# ## Learning curves
# Avg@k of the checkpoints kept during training (`learning_curve.checkpoints`), on
# `learning_curve.splits`; step 0 is the base SLM and the last step the final model.

# %%
lc_rows = []
max_steps_of = pd.read_csv(paths.models / "runs.csv").set_index("name")["max_steps"]
seed0 = params.train.seeds[0]
base_scores = accuracy[(accuracy["model"] == f"base-s{seed0}")].set_index("split")["avg_at_k"]
for r in runs:
    if not keeps_checkpoints(params, r):
        continue
    ckpt_dir = paths.models / r.name / "checkpoints"
    final = accuracy[accuracy["model"] == r.name].set_index("split")["avg_at_k"]
    points = {0: {s: base_scores[s] for s in lc.splits}}
    for ckpt in sorted(ckpt_dir.iterdir(), key=lambda p: int(p.name.split("-")[1])):
        step = int(ckpt.name.split("-")[1])
        points[step] = evaluate(str(ckpt), f"{r.name}/{ckpt.name}", r.seed, lc.splits)
    points[int(max_steps_of[r.name])] = {s: final[s] for s in lc.splits}
    for step, scores in sorted(points.items()):
        for split, v in scores.items():
            lc_rows.append({"stream": r.stream, "loss": r.loss, "seed": r.seed, "step": step, "split": split,
                            "avg_at_k": v})
pd.DataFrame(lc_rows, columns=["stream", "loss", "seed", "step", "split", "avg_at_k"]).to_csv(
    paths.eval / "learning_curves.csv", index=False)

# %% [markdown]
# ## Perplexity of each stream under the base SLM

# %%
model, tok = load_model(base, **backends.load_kwargs(params, base))
ppl_rows = []
for stream in tqdm(all_streams(params), desc="streams"):
    rows = read_jsonl(paths.stream(stream))
    scored = response_nll(model, tok, [r["prompt"] for r in rows], [r["completion"] for r in rows],
                          token_budget=e.score_token_budget, desc=stream)
    ppl_rows.append({"stream": stream, "ppl": perplexity(scored), "n_tokens": sum(s.n_tokens for s in scored),
                     "n_traces": len(rows)})
ppl = pd.DataFrame(ppl_rows)
ppl.to_csv(paths.eval / "perplexity.csv", index=False)
ppl
