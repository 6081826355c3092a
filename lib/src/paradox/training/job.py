"""`python -m paradox.training.job JOB.json`: one fine-tuning run described by a job file.

This is what `accelerate launch` starts in every process (see `paradox.training.launch`); each process
reads the same job and calls `paradox.training.sft_train`, which trains in all of them and lets
the main one write the result. It also runs as a single plain process.

The job file (JSON, see `make_job`):
  rows             JSONL file of prompt/completion rows (a stream)
  output_dir       where the trained model goes (moved into place only when training succeeds)
  model            base model: a local directory or a hub id
  load_kwargs      dtype / revision / gguf_file for the base model (as `backends.load_kwargs`)
  settings         the `TrainSettings` fields
  gradient_checkpointing   trade compute for activation memory (train.gradient_checkpointing)
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paradox.io import read_json, read_jsonl
from paradox.params import Lora

if TYPE_CHECKING:
    from paradox.training.trainer import TrainSettings

# paradox.training.trainer (torch, transformers, TRL) is imported only once the job's rows have been read:
# a bad job then fails in a second or two, not after every process has paid for those imports.


def make_job(
    rows: Path | str,
    output_dir: Path | str,
    model: str,
    settings: TrainSettings,
    load_kwargs: dict[str, Any] | None = None,
    gradient_checkpointing: bool = False,
) -> dict[str, Any]:
    """A job as a JSON-ready dict; paths are made absolute (the launched processes may start elsewhere)."""
    from paradox.training.trainer import TrainSettings

    model_path = Path(model)
    return {
        "rows": str(Path(rows).resolve()),
        "output_dir": str(Path(output_dir).resolve()),
        "model": str(model_path.resolve()) if model_path.exists() else model,  # a hub id stays as it is
        "load_kwargs": dict(load_kwargs or {}),
        "settings": {f.name: getattr(settings, f.name) for f in fields(TrainSettings)}
        | {"lora": settings.lora.model_dump() if settings.lora else None},
        "gradient_checkpointing": gradient_checkpointing,
    }


def settings_from_job(job: dict[str, Any]) -> TrainSettings:
    from paradox.training.trainer import TrainSettings

    s = dict(job["settings"])
    unknown = set(s) - {f.name for f in fields(TrainSettings)}
    if unknown:
        raise ValueError(f"job settings: unknown field(s) {sorted(unknown)}")
    if s.get("lora") is not None:
        s["lora"] = Lora(**s["lora"])
    return TrainSettings(**s)


def run_job(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Train the job in this process (one of several under `accelerate launch`)."""
    rows = read_jsonl(job["rows"])  # fails before any process group or directory exists
    settings = settings_from_job(job)
    from paradox.models import load_tokenizer
    from paradox.training.trainer import sft_train, world_size

    load = {k: v for k, v in job.get("load_kwargs", {}).items() if v is not None}
    tok = load_tokenizer(job["model"], load.get("revision"), load.get("gguf_file"))
    rank, world = int(os.environ.get("RANK", "0")), world_size()
    print(
        f"[paradox.training.job] rank {rank}: world size {world}; {len(rows)} rows; "
        f"{settings.loss_type} for {settings.max_steps} steps -> {job['output_dir']}",
        flush=True,
    )
    # The model goes to TRL as a path: each process loads it itself (FSDP can load it sharded).
    return sft_train(
        job["model"],
        tok,
        rows,
        job["output_dir"],
        settings,
        model_init_kwargs=load,
        gradient_checkpointing=bool(job.get("gradient_checkpointing", False)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m paradox.training.job", description=__doc__.splitlines()[0]
    )
    parser.add_argument("job", type=Path, help="job file (JSON), see paradox.training.job.make_job")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    history = run_job(read_json(args.job))
    if int(os.environ.get("RANK", "0")) == 0:
        losses = [h["loss"] for h in history if "loss" in h]
        print(
            f"[paradox.training.job] done: {len(losses)} loss logs, last loss "
            f"{losses[-1] if losses else float('nan'):.4f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
