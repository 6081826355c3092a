"""Tiny stand-ins for the paper SLMs' tokenizers: the same special tokens, BOS/EOS conventions and
(our own, equivalent) chat templates as each real family, on a small byte-level BPE vocabulary,
plus tiny random Llama models that end their answers with a chosen stop token.

What each family publishes (sources in docs/model-families.md):
- Qwen2.5-Math (1.5B, 7B base): no BOS token (nothing is put in front of a text); EOS and pad
  <|endoftext|>; chat turns <|im_start|>role\\n ... <|im_end|>\\n; with no system message the
  template writes the system turn "Please reason step by step, and put your final answer within
  \\boxed{}."; generation_config eos_token_id <|endoftext|>.
- Llama 3.2 (3B base): BOS <|begin_of_text|> put in front of every text by tokenizer.json's
  post-processor, EOS <|end_of_text|>, no pad token; its chat template starts with the BOS itself
  (header tokens <|start_header_id|>, <|end_header_id|>, turn end <|eot_id|>).
- DeepSeekMath 7B base: add_bos_token (BOS <｜begin▁of▁sentence｜>), EOS <｜end▁of▁sentence｜>,
  no chat template.
- toy: the project's own SLM (EOS </s>, pad <pad>, no BOS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

COT = "Please reason step by step, and put your final answer within \\boxed{}."

# Our own templates with the published behaviour (no tool-calling branches).
QWEN_MATH_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + COT.replace("\\", "\\\\") + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for m in messages %}{%- if not (loop.first and m['role'] == 'system') %}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Llama 3's template also writes "Cutting Knowledge Date" / "Today Date" lines into the system turn;
# they do not touch BOS, turn markers or stops, so they are left out here.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set sys = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set sys = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + sys + '<|eot_id|>' }}"
    "{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    profile: str | None  # the paper profile that drives a model of this family
    specials: tuple[str, ...]
    eos: str
    bos: str | None = None  # put in front of every text by the tokenizer (post-processor)
    pad: str | None = None
    chat_template: str | None = None
    end: str = ""  # the token a finished answer ends with (the profile's completion_end); EOS if empty
    extra: dict = field(default_factory=dict)

    @property
    def end_token(self) -> str:
        return self.end or self.eos


QWEN = Family(
    "qwen2.5-math",
    "paper-qwen2.5-math-1.5b",
    ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    eos="<|endoftext|>",
    pad="<|endoftext|>",
    chat_template=QWEN_MATH_TEMPLATE,
    end="<|im_end|>",
)
LLAMA3 = Family(
    "llama-3.2",
    "paper-llama-3.2-3b",
    ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    eos="<|end_of_text|>",
    bos="<|begin_of_text|>",
    chat_template=LLAMA3_TEMPLATE,
)
DEEPSEEK = Family(
    "deepseek-math",
    "paper-deepseekmath-7b",
    ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    eos="<｜end▁of▁sentence｜>",
    bos="<｜begin▁of▁sentence｜>",
)
PAPER_FAMILIES = (QWEN, LLAMA3, DEEPSEEK)

CORPUS = [
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\n"
    "Please reason step by step, and put your final answer within \\boxed{}.\nAnswer:\n"
    "Tom starts with 3 apples. He buys 5 more, so 3 + 5 = 8. The answer is \\boxed{8}.",
    "Let $x$ be the number of coins. Then $2x + 4 = 10$, so $x = 3$. Therefore the answer is $\\boxed{3}$.",
    "To find the sum, we add the numbers: \\( 12 + 30 = 42 \\). Question: what is 6 * 7? Answer: 42",
    "First, we compute the product. Next, we subtract 4 from the result. Finally, the total is 17.",
]


def build_tokenizer(family: Family, vocab_size: int = 400):
    """A byte-level BPE tokenizer (any text encodes; digits split) with the family's conventions."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(family.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    if family.bos:  # as Llama 3's tokenizer.json does (and DeepSeek's add_bos_token)
        bos_id = tok.token_to_id(family.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A $B", special_tokens=[(family.bos, bos_id)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=family.bos, eos_token=family.eos, pad_token=family.pad
    )
    if family.chat_template:
        fast.chat_template = family.chat_template
    return fast


def save_stop_prone_lm(tok, path: Path, end_token: str | None, every: int = 9, seed: int = 0) -> Path:
    """A tiny random Llama (head size 32, as vLLM's CPU attention needs) that ends its answer with
    `end_token` right after about one token in `every`, so answers end at varied lengths and both
    values of `truncated` occur; saved with its tokenizer. generation_config lists the EOS (as the
    families' generation_config.json do), not `end_token`.

    The edit: residual dimension 0 is 1 for the chosen tokens' embeddings and 0 for all others, no
    layer writes to it, and only the `end_token` row of the (untied) head reads it, strongly.
    `end_token` None: no edit (a plain random model, whose answers rarely end).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    special = set(tok.all_special_ids) | {tok.convert_tokens_to_ids(t) for t in tok.get_added_vocab()}
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    chosen = [i for i in range(len(tok)) if i % every == 4 and i not in special]
    with torch.no_grad():
        if end_token is None:
            chosen = []
        emb = model.model.embed_tokens.weight
        emb[:, 0] = 0.0
        emb[chosen, 0] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        head = model.lm_head.weight
        head[:, 0] = 0.0
        if end_token is not None:
            head[tok.convert_tokens_to_ids(end_token), 0] = 20.0
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
