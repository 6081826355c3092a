"""Fine-tuning with TRL's SFTTrainer: `loss_type="nll"` (SFT) or `"dft"` (Dynamic Fine-Tuning).

One function serves the toy SLM's pretraining and every stream's fine-tuning. The model is
built in a temporary directory and moved into place when training finishes, so an interrupted
run never leaves a directory that looks like a trained model.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from paradox.io import atomic_dir, write_json
from paradox.params import Lora


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


def steps_for(n_examples: int, effective_batch_size: int, epochs: float) -> int:
    """Optimizer steps for `epochs` passes: the same for every stream (they share problems)."""
    return max(1, math.ceil(epochs * n_examples / effective_batch_size))


def copy_model(src: Path | str, dst: Path | str) -> None:
    """Copy a saved run (weights, tokenizer, logs, checkpoints) atomically."""
    with atomic_dir(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def sft_train(model: PreTrainedModel | str, tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, str]],
              out_dir: Path | str, s: TrainSettings) -> list[dict[str, Any]]:
    """Train on prompt/completion rows (loss on completion tokens only); save model, tokenizer, logs."""
    if not rows:
        raise ValueError(f"{out_dir}: no training rows")
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    peft_config = None
    if s.lora is not None and s.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(r=s.lora.r, lora_alpha=s.lora.alpha, lora_dropout=s.lora.dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    with atomic_dir(out_dir) as tmp:
        config = SFTConfig(
            output_dir=str(tmp / "trainer"),
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
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        trained = trainer.model
        if peft_config is not None:
            trained = trained.merge_and_unload()  # evaluation loads a plain checkpoint either way
        trained.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        history = [dict(h) for h in trainer.state.log_history]
        write_json(tmp / "log_history.json", history)
        write_json(tmp / "train_info.json", {"seconds": seconds, "n_rows": len(rows), **s.__dict__,
                                            "lora": s.lora.model_dump() if s.lora else None})
        for ckpt in sorted((tmp / "trainer").glob("checkpoint-*")):
            step = int(ckpt.name.split("-")[1])
            if step < s.max_steps:  # the last one is the final model itself
                tokenizer.save_pretrained(ckpt)
                (tmp / "checkpoints").mkdir(exist_ok=True)
                shutil.move(ckpt, tmp / "checkpoints" / f"step-{step}")
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    return history
