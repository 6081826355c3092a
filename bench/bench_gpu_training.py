"""Training throughput and model FLOPs utilisation (MFU) of a randomly initialised model with
Qwen2.5-Math-1.5B's architecture, through the project's trainer path (TRL SFTTrainer).

Usage on a GPU machine (`make venv` with a GPU installs the gpu extra):
  .venv/bin/python bench/bench_gpu_training.py [--steps 30] [--batch 8] [--seq 1024]
      [--padding-free] [--liger] [--attn flash_attention_2] [--peak-tflops 989]
On a CPU, `--tiny` runs the same code on a 2-layer model, to check the script itself.

Weights are random (no hub download): throughput does not depend on the values. Examples are
random token sequences of lengths drawn around --seq (as SFT traces vary), completion-only loss.
Reports tokens/s over the timed steps (the first --warmup steps excluded) and MFU = achieved
model FLOP/s (6 x linear weights + attention, per token; `flops.py`) / the GPU's peak: the
--peak-tflops you give (a datasheet's dense bf16 figure: H100 SXM 989, H200 989, A100 312) and,
for comparison, a bf16 matmul measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from flops import forward_flops_per_token, matmul_flops  # noqa: E402

# Qwen2.5-Math-1.5B's config.json (as published on its model card's repository)
QWEN25_MATH_15B = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=4096,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
TINY = dict(
    QWEN25_MATH_15B,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=512,
)


class StepTimer:
    """Wall time of each optimizer step (a TrainerCallback without importing transformers at the top)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        outer = self
        self.times: list[float] = []

        class _CB(TrainerCallback):
            def on_step_begin(self, *a, **k):  # noqa: ANN002, ANN003
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                outer._t0 = time.perf_counter()

            def on_step_end(self, *a, **k):  # noqa: ANN002, ANN003
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                outer.times.append(time.perf_counter() - outer._t0)

        self.callback = _CB()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="sequences per device step")
    ap.add_argument("--seq", type=int, default=1024, help="mean tokens per example")
    ap.add_argument("--padding-free", action="store_true", help="TRL padding_free (needs flash attention)")
    ap.add_argument("--liger", action="store_true", help="TRL use_liger_kernel (needs liger-kernel)")
    ap.add_argument(
        "--attn", default=None, help="attn_implementation (default: flash_attention_2 if installed)"
    )
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's datasheet dense bf16 TFLOP/s")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model: check the script on a CPU")
    a = ap.parse_args()

    from datasets import Dataset
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    attn = a.attn or ("flash_attention_2" if importlib.util.find_spec("flash_attn") and cuda else "sdpa")
    config = Qwen2Config(**(TINY if a.tiny else QWEN25_MATH_15B))
    config._attn_implementation = attn
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16 if cuda else torch.float32)
    rng = torch.Generator().manual_seed(0)
    n = a.batch * (a.steps + 1)
    lengths = torch.clamp(torch.normal(float(a.seq), a.seq / 4, (n,), generator=rng), 16, 2 * a.seq).long()
    ids = [torch.randint(10, config.vocab_size, (int(L),), generator=rng).tolist() for L in lengths]
    data = Dataset.from_dict(
        {"input_ids": ids, "completion_mask": [[0] * 8 + [1] * (len(x) - 8) for x in ids]}
    )
    tok = _tokenizer(config.vocab_size)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out,
            per_device_train_batch_size=a.batch,
            max_steps=a.steps,
            learning_rate=1e-5,
            bf16=cuda,
            padding_free=a.padding_free,
            max_length=None if a.padding_free else 2 * a.seq,
            use_liger_kernel=a.liger,
            gradient_checkpointing=True,
            completion_only_loss=True,
            logging_steps=10**6,
            save_strategy="no",
            report_to="none",
            use_cpu=not cuda,
        )
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[timer.callback]
        )
        trainer.train()
    timed = timer.times[a.warmup :]
    tokens_per_step = float(lengths.float().mean()) * a.batch
    tok_s = tokens_per_step / statistics.median(timed)
    per_token = 3 * forward_flops_per_token(model, float(lengths.float().mean()) / 2)
    achieved = tok_s * per_token
    device = torch.cuda.get_device_name() if cuda else "CPU"
    measured = matmul_flops(
        8192 if cuda else 1024, 10, torch.bfloat16 if cuda else torch.float32, "cuda" if cuda else "cpu"
    )
    print(
        f"{device}; {'tiny' if a.tiny else 'Qwen2.5-Math-1.5B'} config, random weights, attn {attn}, "
        f"padding_free {a.padding_free}, liger {a.liger}, batch {a.batch} x ~{a.seq} tokens"
    )
    print(
        f"training: {tok_s:,.0f} tokens/s (median of {len(timed)} steps); model {achieved / 1e12:.2f} TFLOP/s"
    )
    print(
        f"MFU vs measured {'bf16' if cuda else 'fp32'} matmul ({measured / 1e12:.1f} TFLOP/s): {achieved / measured:.1%}"
    )
    if a.peak_tflops:
        print(f"MFU vs datasheet peak ({a.peak_tflops:g} TFLOP/s): {achieved / (a.peak_tflops * 1e12):.1%}")


def _tokenizer(vocab: int):
    """A word-level tokenizer over the ids: the trainer needs a processing class (for padding)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    return PreTrainedTokenizerFast(tokenizer_object=t, pad_token="t1", eos_token="t2")


if __name__ == "__main__":
    main()
