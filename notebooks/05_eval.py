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
# mean over splits (the paper averages its five benchmarks). The base SLM is evaluated too.
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
from paradox.generation import SamplingSettings, load_model, model_fingerprint, sample_sharded
from paradox.grading import grade
from paradox.io import read_jsonl, write_jsonl
from paradox.metrics import avg_at_k, perplexity, response_nll
from paradox.params import load_params
from paradox.paths import RunPaths

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir), Path(figures_dir))
print(f"profile={profile} params_hash={params.hash()}")

# %%
e = params.eval
source = backends.problem_source(params, paths)
splits = {name: source.load(name) for name in e.splits}
base = backends.slm_path(params, paths)
models = {"base": base} | {f"{s}-{loss}": str(paths.models / f"{s}-{loss}")
                           for s in params.train.streams for loss in params.train.losses}
print(f"{len(models)} models x {len(splits)} splits x k={e.k}")

# %% [markdown]
# ## Avg@k
# Every model samples with the same seed per split, so differences come from the weights.

# %%
acc_rows = []
for name, path in models.items():
    gen = backends.generator(params, path, e.batch_size)
    fingerprint = model_fingerprint(path)
    for split, probs in splits.items():
        prompts = [backends.format_prompt(params, p.question, gen.tok) for p in probs]
        settings = SamplingSettings(e.k, e.temperature, e.top_p, e.max_new_tokens, params.seed)
        rows = sample_sharded(gen, fingerprint, [p.id for p in probs], prompts, settings, paths.eval / "samples" / name / split,
                              e.batch_size, desc=f"{name}/{split}")
        gold = {p.id: p.answer for p in probs}
        for r in rows:
            r["correct"] = grade(r["text"], gold[r["id"]], truncated=r["truncated"], timeout_s=e.grade_timeout_s)
        write_jsonl(paths.eval / "graded" / f"{name}-{split}.jsonl", rows)
        stream, _, loss = name.partition("-")
        acc_rows.append({"model": name, "stream": stream, "loss": loss or "none", "split": split,
                         "avg_at_k": avg_at_k(rows), "k": e.k, "n_problems": len(probs)})
    del gen
accuracy = pd.DataFrame(acc_rows)
accuracy.to_csv(paths.eval / "accuracy.csv", index=False)
accuracy.pivot_table(index="model", columns="split", values="avg_at_k")

# %% [markdown]
# ## Perplexity of each stream under the base SLM

# %%
model, tok = load_model(base, **backends.load_kwargs(params, base))
ppl_rows = []
for stream in tqdm(params.train.streams, desc="streams"):
    rows = read_jsonl(paths.stream(stream))
    scored = response_nll(model, tok, [r["prompt"] for r in rows], [r["completion"] for r in rows],
                          batch_size=e.batch_size, desc=stream)
    ppl_rows.append({"stream": stream, "ppl": perplexity(scored), "n_tokens": sum(s.n_tokens for s in scored),
                     "n_traces": len(rows)})
ppl = pd.DataFrame(ppl_rows)
ppl.to_csv(paths.eval / "perplexity.csv", index=False)
ppl
