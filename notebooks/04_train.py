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
# only difference is the traces.
#
# The runs come from `paradox.plan`: every stream x loss x seed (`train.seeds`), the drift-dial
# streams with `drift.losses`, and, where a profile asks for it, the robustness grid (learning
# rate x batch size). Runs that feed the learning curves keep `learning_curve.checkpoints`
# evenly spaced checkpoints. Each run is saved atomically with a key of its inputs, so an
# interrupted notebook resumes with the runs it has not finished, and a changed setting retrains.

# %% tags=["parameters"]
profile = "toy"
runs_dir = "runs"
figures_dir = "figures"

# %%
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from paradox import backends, plan
from paradox.generation import load_model, model_fingerprint
from paradox.io import DoneMarker, file_hash, read_json, read_jsonl
from paradox.launch import launch_training
from paradox.params import load_params, stable_hash
from paradox.paths import RunPaths
from paradox.train_run import make_job
from paradox.training import TrainSettings, copy_model, sft_train, steps_for

params = load_params(profile)
paths = RunPaths(profile, Path(runs_dir), Path(figures_dir))
print(f"profile={profile} params_hash={params.hash()}")

# %%
t, lc = params.train, params.learning_curve
base = backends.slm_path(params, paths)
base_key = model_fingerprint(base)  # the base weights (or hub id), not its logs: a rebuilt identical SLM keeps the runs
runs = plan.training_runs(params)
streams = {s: read_jsonl(paths.stream(s)) for s in dict.fromkeys(r.stream for r in runs)}
sizes = {s: len(rows) for s, rows in streams.items()}
assert len(set(sizes.values())) == 1, f"streams differ in size: {sizes}"
n = next(iter(sizes.values()))
print(f"{len(runs)} runs over {len(streams)} streams; {n} examples per stream")


# %% [markdown]
# Identical inputs give identical weights on a CPU (same data, settings, base model and seed),
# so a run whose key matches one already trained is copied, not retrained (e.g. a selected
# stream whose traces all come from one source stream).
#
# `train.launcher: inline` trains in this process (CPU or one GPU). `accelerate` starts
# `accelerate launch --config_file <train.accelerate_config> --num_processes <train.num_processes>
# -m paradox.train_run JOB` for each run (`paradox.launch`): every process trains, the main one
# saves the same files as an inline run (plus `launch.log`), and a failed launch stops the
# notebook with the log's tail and leaves no finished-looking model.

# %%
records = []
trained_by_key: dict[str, Path] = {}
for r in tqdm(runs, desc="training runs"):
    out = paths.models / r.name
    per_device, accum = t.split_batch(r.batch_size)  # r.batch_size is the effective batch
    settings = TrainSettings(
        loss_type=r.loss, learning_rate=r.learning_rate, batch_size=per_device, grad_accum=accum,
        max_steps=steps_for(n, r.batch_size, t.epochs), max_length=t.max_length, seed=r.seed,
        warmup_ratio=t.warmup_ratio, scheduler=t.scheduler, weight_decay=t.weight_decay, bf16=t.bf16,
        logging_steps=t.logging_steps, lora=t.lora, checkpoints=lc.checkpoints if plan.keeps_checkpoints(params, r) else 0,
        completion_end=params.slm.completion_end)
    key = stable_hash({"settings": repr(settings), "data": file_hash(paths.stream(r.stream)), "base": base_key})
    marker = DoneMarker(out, key)
    if not marker.is_done():
        if key in trained_by_key:
            copy_model(trained_by_key[key], out)
            print(f"{r.name}: same inputs as {trained_by_key[key].name}, copied")
        elif t.launcher == "accelerate":  # one `accelerate launch` per run, its output shown as it comes
            job = make_job(paths.stream(r.stream), out, base, settings, backends.load_kwargs(params, base),
                           gradient_checkpointing=t.gradient_checkpointing)
            launch_training(job, t.accelerate_config, t.num_processes)
        else:
            model, tok = load_model(base, **backends.load_kwargs(params, base))
            sft_train(model, tok, streams[r.stream], out, settings)
        marker.mark()
    source = trained_by_key.setdefault(key, out)
    info = read_json(out / "train_info.json")
    records.append({**r.to_dict(), "max_steps": info["max_steps"], "n_rows": info["n_rows"],
                    "copied_from": "" if source == out else source.name,
                    "seconds": info["seconds"] if source == out else 0.0})
runs_df = pd.DataFrame(records)
runs_df.to_csv(paths.models / "runs.csv", index=False)
trained = runs_df[runs_df["copied_from"] == ""]
print(f"{len(trained)} runs trained ({len(runs_df) - len(trained)} copied): {trained['seconds'].sum():.0f} s of "
      f"training, {trained['seconds'].median():.1f} s per run (median)")

# %% [markdown]
# ## Loss curves (main runs, first seed)

# %%
curves = []
for r in runs:
    if r.purpose != "main" or r.seed != t.seeds[0]:
        continue
    for h in read_json(paths.models / r.name / "log_history.json"):
        if "loss" in h:
            curves.append({"stream": r.stream, "loss_type": r.loss, "step": h["step"], "loss": h["loss"]})
pd.DataFrame(curves).to_csv(paths.models / "loss_curves.csv", index=False)
runs_df.groupby(["purpose", "loss"])["seconds"].describe()[["count", "mean", "max"]]
