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
# # 04 · Fine-tune the SLM on each stream: SFT and DFT
#
# TRL's `SFTTrainer` on prompt/completion pairs (loss on the completion only), once with
# `loss_type="nll"` (standard SFT) and once with `loss_type="dft"` (Dynamic Fine-Tuning: each
# token's NLL weighted by its own detached probability). Every stream trains on the **same
# problems, for the same number of steps, from the same base model, with the same seed**: the
# only difference is the traces. Loss curves are saved for notebook 06.
#
# Each run is saved atomically with a key of its inputs, so an interrupted notebook resumes
# with the runs it has not finished, and a changed setting retrains.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"
figures_dir = "figures"

# %%
from pathlib import Path

import pandas as pd

from paradox import backends
from paradox.generation import load_model
from paradox.io import DoneMarker, file_hash, read_json, read_jsonl
from paradox.params import load_params, stable_hash
from paradox.paths import RunPaths
from paradox.training import TrainSettings, sft_train, steps_for

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir), Path(figures_dir))
print(f"profile={profile} params_hash={params.hash()}")

# %%
t = params.train
base = backends.slm_path(params, paths)
streams = {s: read_jsonl(paths.stream(s)) for s in t.streams}
sizes = {s: len(rows) for s, rows in streams.items()}
assert len(set(sizes.values())) == 1, f"streams differ in size: {sizes}"
n = next(iter(sizes.values()))
max_steps = steps_for(n, t.batch_size, t.grad_accum, t.epochs)
print(f"{len(streams)} streams x {len(t.losses)} losses; {n} examples each; {max_steps} steps per run")

# %%
runs = []
for stream, rows in streams.items():
    for loss in t.losses:
        out = paths.models / f"{stream}-{loss}"
        settings = TrainSettings(loss_type=loss, learning_rate=t.learning_rate, batch_size=t.batch_size,
                                 grad_accum=t.grad_accum, max_steps=max_steps, max_length=t.max_length,
                                 seed=params.seed, warmup_ratio=t.warmup_ratio, scheduler=t.scheduler,
                                 weight_decay=t.weight_decay, bf16=t.bf16, logging_steps=t.logging_steps,
                                 lora=t.lora)
        key = stable_hash({"settings": repr(settings), "data": file_hash(paths.stream(stream)), "base": base,
                           "base_hash": file_hash(Path(base)) if Path(base).is_dir() else base})
        marker = DoneMarker(out, key)
        if marker.is_done():
            print(f"{stream}-{loss}: up to date")
        else:
            print(f"{stream}-{loss}: training")
            model, tok = load_model(base, **backends.load_kwargs(params, base))
            sft_train(model, tok, rows, out, settings)
            marker.mark()
        runs.append({"stream": stream, "loss": loss, "path": str(out), **read_json(out / "train_info.json")})

# %%
curves = []
for r in runs:
    for h in read_json(Path(r["path"]) / "log_history.json"):
        if "loss" in h:
            curves.append({"stream": r["stream"], "loss_type": r["loss"], "step": h["step"], "loss": h["loss"]})
pd.DataFrame(curves).to_csv(paths.models / "loss_curves.csv", index=False)
pd.DataFrame(runs)[["stream", "loss", "seconds", "max_steps", "n_rows"]].to_csv(paths.models / "runs.csv", index=False)
pd.DataFrame(runs)[["stream", "loss", "seconds", "max_steps"]]
