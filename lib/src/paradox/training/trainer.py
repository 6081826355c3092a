"""Fine-tuning with TRL's SFTTrainer: `loss_type="nll"` (SFT) or `"dft"` (Dynamic Fine-Tuning).

One function serves the toy SLM's pretraining and every stream's fine-tuning. The model is
built in a temporary directory and moved into place when training finishes, so an interrupted
run never leaves a directory that looks like a trained model. The same function runs in each
process of an `accelerate launch` (see `paradox.training.job` and `paradox.training.launch`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import SFTConfig, SFTTrainer

from paradox.io import atomic_dir, write_json
from paradox.params import Lora
from paradox.tokenization import SequenceEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    loss_type: str  # "nll" | "dft"
    learning_rate: float
    batch_size: int
    grad_accum: int
    max_steps: int
    max_length: int
    seed: int
    warmup_ratio: float = 0.0
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    bf16: bool = False
    logging_steps: int = 5
    lora: Lora | None = None
    checkpoints: int = 0  # evenly spaced checkpoints to keep (for learning curves); the final model is extra
    completion_end: str = (
        "eos"  # the token ending every completion (slm.completion_end): what generation stops on
    )


def steps_for(n_examples: int, effective_batch_size: int, epochs: float) -> int:
    """Optimizer steps for `epochs` passes: the same for every stream (they share problems)."""
    return max(1, math.ceil(epochs * n_examples / effective_batch_size))


def copy_model(src: Path | str, dst: Path | str) -> None:
    """Copy a saved run (weights, tokenizer, logs, checkpoints) atomically."""
    with atomic_dir(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def world_size() -> int:
    """Processes in this training job: `accelerate launch` / torchrun set WORLD_SIZE; inline it is 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def _shared_dir(out_dir: Path, config: SFTConfig) -> Iterator[Path]:
    """`atomic_dir` for several processes: the main process makes the temporary directory and tells
    the others its name; all write into it; once every process is done with it, the main process
    moves it into place. A failed run leaves only a hidden `.<name>.*.tmp` (which `launch_training`
    removes when the launch fails)."""
    from accelerate.utils import broadcast_object_list

    _ = config.device  # sets up the process group the Trainer will use (same timeout, same backend)
    state = config.distributed_state
    main = state.is_main_process
    made = None
    if main:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        made = tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent)
    tmp = Path(broadcast_object_list([made])[0])
    try:
        yield tmp
        state.wait_for_everyone()  # collective saves are finished on every process
        if main:
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(tmp, out_dir)
        state.wait_for_everyone()  # no process returns before the model is in place
    finally:
        if main and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class LogLines(TrainerCallback):
    """One printed line per logging step ("step 25/470  loss 2.310  12s"). In a notebook the
    Trainer's own progress bar is an HTML widget, which papermill's log (`make paper`) never shows."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        if state.is_world_process_zero and logs and "loss" in logs:
            took = time.perf_counter() - self.t0
            print(
                f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.3f}  {took:.0f}s",
                flush=True,
            )


def _sft_config(
    s: TrainSettings, output_dir: Path, model_init_kwargs: dict[str, Any] | None, gradient_checkpointing: bool
) -> SFTConfig:
    extra: dict[str, Any] = {}
    if model_init_kwargs is not None:  # only when the model is given as a path (multi-process runs)
        extra["model_init_kwargs"] = model_init_kwargs
    return SFTConfig(
        # Always passed: TRL's SFTConfig turns it on by default, which made `false` in params a no-op
        # (and cost the toy's CPU runs a recomputed forward pass per step).
        gradient_checkpointing=gradient_checkpointing,
        output_dir=str(output_dir),
        loss_type=s.loss_type,
        learning_rate=s.learning_rate,
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum,
        max_steps=s.max_steps,
        max_length=s.max_length,
        warmup_steps=round(s.warmup_ratio * s.max_steps),
        lr_scheduler_type=s.scheduler,
        weight_decay=s.weight_decay,
        bf16=s.bf16,
        logging_steps=s.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if s.checkpoints else "no",
        save_steps=math.ceil(s.max_steps / (s.checkpoints + 1)) if s.checkpoints else 500,
        save_only_model=True,
        report_to="none",
        seed=s.seed,
        data_seed=s.seed,
        completion_only_loss=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        **extra,
    )


def tokenized_dataset(
    tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, str]], completion_end: str = "eos"
) -> Dataset:
    """Prompt/completion rows as the token ids sampling and scoring use (`tokenization.SequenceEncoder`:
    BOS once where the tokenizer's convention has one, the completion ending with `completion_end`),
    with TRL's `completion_mask` (loss on the completion and its end token). TRL takes a dataset with
    `input_ids` as it is: no second BOS, no EOS appended, labels from the mask, truncation to
    max_length (SFTTrainer._prepare_dataset)."""
    enc = SequenceEncoder(tokenizer, completion_end)
    data: dict[str, list[list[int]]] = {"input_ids": [], "completion_mask": []}
    for n, r in enumerate(rows):
        try:
            ids, mask = enc.pair(r["prompt"], r["completion"])
        except ValueError as err:
            raise ValueError(f"training row {n} (id {r.get('id', '?')}): {err}") from err
        data["input_ids"].append(ids)
        data["completion_mask"].append(mask)
    return Dataset.from_dict(data)


def sft_train(
    model: PreTrainedModel | str,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict[str, str]],
    out_dir: Path | str,
    s: TrainSettings,
    *,
    model_init_kwargs: dict[str, Any] | None = None,
    gradient_checkpointing: bool = False,
    log_lines: bool = False,
) -> list[dict[str, Any]]:
    """Train on prompt/completion rows (loss on completion tokens only, see `tokenized_dataset`);
    save model, tokenizer, logs.

    Under `accelerate launch` (WORLD_SIZE > 1) every process calls this and trains; the main
    process alone writes the logs and moves the finished directory into place. `model` may be a
    path, loaded by TRL with `model_init_kwargs` (so FSDP can load it sharded).
    """
    if not rows:
        raise ValueError(f"{out_dir}: no training rows")
    out_dir = Path(out_dir)
    dataset = tokenized_dataset(tokenizer, rows, s.completion_end)
    too_long = sum(len(ids) > s.max_length for ids in dataset["input_ids"])
    if too_long:  # TRL keeps the first max_length tokens: these completions lose their end token
        log.warning(
            "%s: %d of %d training examples are longer than max_length %d and are cut (without their "
            "end token)",
            out_dir.name,
            too_long,
            len(rows),
            s.max_length,
        )
    peft_config = None
    if s.lora is not None and s.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=s.lora.r,
            lora_alpha=s.lora.alpha,
            lora_dropout=s.lora.dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    if world_size() == 1:
        with atomic_dir(out_dir) as tmp:
            config = _sft_config(s, tmp / "trainer", model_init_kwargs, gradient_checkpointing)
            return _train_into(tmp, config, model, tokenizer, dataset, peft_config, s, len(rows), log_lines)
    # The processes must agree on one directory, and agreeing needs the process group that the
    # config sets up: the config comes first, its output_dir is set once the name is known.
    config = _sft_config(
        s, out_dir.parent / f".{out_dir.name}.pending", model_init_kwargs, gradient_checkpointing
    )
    with _shared_dir(out_dir, config) as tmp:
        config.output_dir = str(tmp / "trainer")
        return _train_into(tmp, config, model, tokenizer, dataset, peft_config, s, len(rows))


def _train_into(
    tmp: Path,
    config: SFTConfig,
    model: PreTrainedModel | str,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    peft_config: Any,
    s: TrainSettings,
    n_rows: int,
    log_lines: bool = False,
) -> list[dict[str, Any]]:
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[LogLines()] if log_lines else None,
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    main = trainer.accelerator.is_main_process
    n_proc = trainer.accelerator.num_processes
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        _save_sharded(trainer, tmp, config, main)
    elif main:  # one process, or DDP (every process holds the whole model): the inline way
        trained: Any = trainer.model  # a PeftModel with LoRA (merge_and_unload), else a PreTrainedModel
        if peft_config is not None:
            trained = trained.merge_and_unload()  # evaluation loads a plain checkpoint either way
        trained.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    history = [dict(h) for h in trainer.state.log_history]
    if main:
        write_json(tmp / "log_history.json", history)
        # world_size only for multi-process runs, so an inline run's files stay as they were
        more = {"world_size": n_proc} if n_proc > 1 else {}
        write_json(
            tmp / "train_info.json",
            {
                "seconds": seconds,
                "n_rows": n_rows,
                **s.__dict__,
                "lora": s.lora.model_dump() if s.lora else None,
                **more,
            },
        )
        for ckpt in sorted((tmp / "trainer").glob("checkpoint-*")):
            step = int(ckpt.name.split("-")[1])
            if step < s.max_steps:  # the last one is the final model itself
                tokenizer.save_pretrained(ckpt)
                (tmp / "checkpoints").mkdir(exist_ok=True)
                shutil.move(ckpt, tmp / "checkpoints" / f"step-{step}")
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    return history


def _save_sharded(trainer: SFTTrainer, tmp: Path, config: SFTConfig, main: bool) -> None:
    """FSDP / DeepSpeed: the weights are spread over the processes. `trainer.save_model` gathers
    them (every process must call it) and the main process writes model and tokenizer, as TRL
    does. A LoRA adapter is then merged into the base on the main process alone."""
    trainer.save_model(str(tmp))
    if not main:
        return
    if not any(tmp.glob("*.safetensors")):
        raise RuntimeError(
            f"{tmp}: no weights saved; with FSDP set fsdp_state_dict_type: FULL_STATE_DICT "
            "in the accelerate config (a sharded state dict is not a loadable model)"
        )
    (tmp / "training_args.bin").unlink(missing_ok=True)  # not in an inline run's directory either
    if (tmp / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        # typed `dict | str | None`: TrainingArguments turns a JSON string into a dict in __post_init__
        init_kwargs = cast("dict[str, Any] | None", config.model_init_kwargs)
        kw = {k: v for k, v in (init_kwargs or {}).items() if k in ("dtype", "revision")}
        merged = AutoPeftModelForCausalLM.from_pretrained(tmp, **kw).merge_and_unload()
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            (tmp / f).unlink(missing_ok=True)
        merged.save_pretrained(tmp)
