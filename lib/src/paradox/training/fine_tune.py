"""Fine-tune the base SLM on every run of the plan: notebook 04's work.

`fine_tune_all(params, paths)` walks `training_runs(params)` in order. Each run is trained
inline (TRL in this process) or by `accelerate launch` (`paradox.training.launch`), saved atomically, and
marked with a key of its inputs (settings, the stream's content, the base weights), so an
interrupted stage resumes with the runs it has not finished and a changed setting retrains.
Identical inputs give identical weights on a CPU, so a run whose key matches one already trained
in this stage is copied, not retrained (e.g. a selected stream whose traces all come from one
source stream).

Several nodes (`train.num_machines` > 1): every node calls this with the same params, in the same
order, and each launch is one job over all of them; the main node (MACHINE_RANK=0) writes every
file (models come from the job's main process), the others only take part in the launches. On
the other nodes it runs as `python -m paradox.training.fine_tune PROFILE` (`make train-node`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from paradox import backends
from paradox.io import DoneMarker, file_hash, read_json, read_jsonl, stable_hash, write_csv
from paradox.models import load_model, model_fingerprint, reusable_model_dir
from paradox.params import Params, ParamsError, load_params
from paradox.paths import RunPaths
from paradox.training.job import make_job
from paradox.training.launch import Machines, launch_training
from paradox.training.runs import RunSpec, keeps_checkpoints, training_runs
from paradox.training.trainer import TrainSettings, copy_model, sft_train, steps_for


def settings_for(params: Params, run: RunSpec, n_examples: int) -> TrainSettings:
    """The TrainSettings of one run: the run's loss, seed, learning rate and (effective) batch;
    the rest from `params.train`; checkpoints only for runs that feed the learning curves."""
    t = params.train
    per_device, accum = t.split_batch(run.batch_size)  # run.batch_size is the effective batch
    return TrainSettings(
        loss_type=run.loss,
        learning_rate=run.learning_rate,
        batch_size=per_device,
        grad_accum=accum,
        max_steps=steps_for(n_examples, run.batch_size, t.epochs),
        max_length=t.max_length,
        seed=run.seed,
        warmup_ratio=t.warmup_ratio,
        scheduler=t.scheduler,
        weight_decay=t.weight_decay,
        bf16=t.bf16,
        logging_steps=t.logging_steps,
        lora=t.lora,
        checkpoints=params.learning_curve.checkpoints if keeps_checkpoints(params, run) else 0,
        completion_end=params.slm.completion_end,
    )


def load_streams(params: Params, paths: RunPaths, runs: list[RunSpec]) -> dict[str, list[dict[str, Any]]]:
    """Every stream the runs need; they must share their problems (same size), or training would
    compare streams on different data."""
    streams = {s: read_jsonl(paths.stream(s)) for s in dict.fromkeys(r.stream for r in runs)}
    sizes = {s: len(rows) for s, rows in streams.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"streams under {paths.streams} differ in size: {sizes}; rerun notebooks 01-03")
    return streams


def fine_tune_all(params: Params, paths: RunPaths, machines: Machines | None = None) -> pd.DataFrame | None:
    """Train every run; return the runs table (also written to `models/runs.csv`), or None on a
    node other than the main one."""
    t = params.train
    if machines is None:
        machines = Machines.from_env(t.num_machines) if t.launcher == "accelerate" else Machines()
    base = backends.slm_path(params, paths)
    base_key = model_fingerprint(
        base
    )  # the weights (or hub id), not logs: a rebuilt identical SLM keeps the runs
    runs = training_runs(params)
    streams = load_streams(params, paths, runs)
    n = len(next(iter(streams.values())))
    print(
        f"{len(runs)} runs over {len(streams)} streams; {n} examples per stream"
        + (f"; machine {machines.rank} of {machines.num_machines}" if machines.num_machines > 1 else "")
    )
    records = []
    trained_by_key: dict[str, Path] = {}
    for r in tqdm(runs, desc="training runs"):
        out = paths.models / r.name
        settings = settings_for(params, r, n)
        parts = {"settings": repr(settings), "data": file_hash(paths.stream(r.stream)), "base": base_key}
        if params.slm.attn_implementation:  # another kernel rounds differently: other weights
            parts["attn"] = params.slm.attn_implementation
        key = stable_hash(parts)
        marker = DoneMarker(out, key)
        if not (marker.is_done() and reusable_model_dir(out)):
            if key in trained_by_key:
                if machines.is_main:
                    copy_model(trained_by_key[key], out)
                    print(f"{r.name}: same inputs as {trained_by_key[key].name}, copied")
            elif t.launcher == "accelerate":  # one `accelerate launch` per run, its output shown as it comes
                job = make_job(
                    paths.stream(r.stream),
                    out,
                    base,
                    settings,
                    backends.load_kwargs(params, base),
                    gradient_checkpointing=t.gradient_checkpointing,
                )
                assert t.accelerate_config is not None  # the params schema requires it with this launcher
                launch_training(job, t.accelerate_config, t.num_processes, machines=machines)
            else:
                model, tok = load_model(base, **backends.load_kwargs(params, base))
                sft_train(
                    model,
                    tok,
                    streams[r.stream],
                    out,
                    settings,
                    gradient_checkpointing=t.gradient_checkpointing,
                )
            if machines.is_main:
                marker.mark()
        source = trained_by_key.setdefault(key, out)
        if machines.is_main:
            info = read_json(out / "train_info.json")
            records.append(
                {
                    **r.to_dict(),
                    "max_steps": info["max_steps"],
                    "n_rows": info["n_rows"],
                    "copied_from": "" if source == out else source.name,
                    "seconds": info["seconds"] if source == out else 0.0,
                }
            )
    if not machines.is_main:
        return None
    runs_df = pd.DataFrame(records)
    write_csv(paths.models / "runs.csv", runs_df)
    return runs_df


def main(argv: list[str] | None = None) -> int:
    """`python -m paradox.training.fine_tune PROFILE`: this node's part of every training run (the other
    nodes of a multi-node job; the main node runs notebook 04)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m paradox.training.fine_tune PROFILE", file=sys.stderr)
        return 2
    try:
        params = load_params(args[0])
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    fine_tune_all(params, RunPaths(params.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
