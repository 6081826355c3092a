"""The toy SLM: a ~1M-parameter Llama with its own byte-level BPE tokenizer, pretrained from
scratch on solutions in its native wording, so it has a native style of its own.

It is saved with `save_pretrained` and loaded everywhere with AutoModelForCausalLM /
AutoTokenizer, the path a hub model takes. The build is cached under a key made from its
config, its seed and the toy world's source code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from paradox.io import file_hash, stable_hash
from paradox.params import ToyWorld
from paradox.problems import Problem
from paradox.toy import styles

if TYPE_CHECKING:
    from paradox.training.trainer import TrainSettings

PAD, EOS = "<pad>", "</s>"


def cache_key(toy: ToyWorld, seed: int, prompt_template: str, attn_implementation: str | None = None) -> str:
    """Changes when the SLM's config, seed, prompt, attention kernel (another kernel rounds
    differently: other weights) or the toy world's text generators change; not with the toy keys
    that only later stages read (the PRM stand-in's error rate)."""
    here = Path(__file__).parent
    sources = {name: file_hash(here / name) for name in ("problems.py", "styles.py", "slm.py")}
    world = toy.model_dump(mode="json", include={"problems", "slm"})  # what pretraining reads
    parts = {"toy": world, "seed": seed, "prompt": prompt_template, "sources": sources}
    if attn_implementation:
        parts["attn"] = attn_implementation
    return stable_hash(parts)


def pretraining_corpus(
    problems: list[Problem], prompt_template: str, foreign_fraction: float, seed: int
) -> list[dict[str, str]]:
    """Prompt/completion pairs: mostly native wording, a small share in the other notations."""
    rng = random.Random(seed)
    rows = []
    for p in problems:
        if rng.random() < foreign_fraction:
            completion = rng.choice([styles.render_oracle, styles.render_dataset])(p.meta)
        else:
            completion = styles.render_native(p.meta, rng)
        rows.append({"prompt": prompt_template.format(question=p.question), "completion": completion})
    return rows


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes; no UNK) with digits split one by one, as many math LMs do."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    fast.padding_side = "left"  # decoder-only generation pads on the left
    return fast


def build_model(
    toy: ToyWorld, tokenizer: PreTrainedTokenizerFast, seed: int, attn_implementation: str | None = None
) -> LlamaForCausalLM:
    """A freshly initialised Llama of the toy's size, running `attn_implementation` (slm.attn_implementation;
    None: transformers' default)."""
    import torch

    torch.manual_seed(seed)
    a = toy.slm
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=a.hidden_size,
        num_hidden_layers=a.n_layers,
        num_attention_heads=a.n_heads,
        num_key_value_heads=a.n_heads,
        intermediate_size=a.intermediate_size,
        max_position_embeddings=a.max_position,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    if attn_implementation:
        config._attn_implementation = attn_implementation
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def pretrain_settings(toy: ToyWorld, n_examples: int, seed: int) -> TrainSettings:
    """How notebook 00 pretrains the SLM: plain next-token NLL over the corpus, short on purpose (the
    SLM must stay imperfect: it must leave problems to solve and traces to repair)."""
    from paradox.training.trainer import TrainSettings, steps_for

    a = toy.slm
    return TrainSettings(
        loss_type="nll",
        learning_rate=a.pretrain_lr,
        batch_size=a.pretrain_batch_size,
        grad_accum=1,
        max_length=a.max_position,
        seed=seed,
        warmup_ratio=0.05,
        logging_steps=25,
        max_steps=steps_for(n_examples, a.pretrain_batch_size, a.pretrain_epochs),
    )
