"""A tiny reward model shaped like Qwen2.5-Math-RM-72B, and a tiny process reward model shaped like
Qwen2.5-Math-PRM-7B, built locally (no hub), for the main suite and tests/vllm_engine/.

Written here after the published structure of that checkpoint (its config.json and its remote code
`modeling_qwen2_rm.py`; nothing copied): `architectures: ["Qwen2ForRewardModel"]`, `model_type: qwen2`,
an `auto_map` to the checkpoint's own `configuration_qwen2_rm` / `modeling_qwen2_rm` modules,
`use_cache: true` and no `pad_token_id` in config.json; a Qwen2 body (`model.*`: RMSNorm, rotary
attention with q/k/v biases, SiLU MLP) and a per-token scalar head `score` = Linear(h, h), ReLU,
Linear(h, 1), whose forward returns the reward of the token before the first pad token (the last
token when there is no pad id), shape (batch, 1). It keeps what makes the original break on
transformers 5, each of which HFReward must get round:
  - the config class is a plain PretrainedConfig with no pad_token_id default, and the body reads
    `config.pad_token_id` when it is built (transformers 5 configs no longer default it);
  - the rotary cos/sin tables are non-persistent buffers computed in `__init__`, and `_init_weights`
    fills only Linear and Embedding weights (transformers 5 leaves such buffers uninitialised);
  - whenever `use_cache` is on, the forward makes a cache the 4.40 way
    (`DynamicCache.from_legacy_cache`, gone from transformers 5).
The weight names are the original's, so vLLM loads the same checkpoint with its own
`Qwen2ForRewardModel`.

The PRM (`build_qwen_prm`) is written after Qwen2.5-Math-PRM-7B's published config.json (architectures
["Qwen2ForProcessRewardModel"], the same auto_map modules, no pad_token_id, no num_labels) and its model
card (the head gives two logits per token; the score of a step is the softmax's class 1 at the
"<extra_0>" token after it); vLLM's own `Qwen2ForProcessRewardModel` (score = Linear(h, h), ReLU,
Linear(h, 2)) fixes the weight names. Its code is the same 4.40-era body with that head.

`reward_per_token=True` (a config key of this stand-in only) makes the forward return every token's
reward, (batch, seq, 1), to test a remote-code head that leaves the pooling to the caller.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

CONFIG_SOURCE = """
from transformers import PretrainedConfig


class Qwen2RMConfig(PretrainedConfig):
    # Like the original: a plain PretrainedConfig with the Qwen2 fields, and no pad_token_id unless given.
    model_type = "qwen2"

    def __init__(self, vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=2, hidden_act="silu", max_position_embeddings=1024,
                 rms_norm_eps=1e-6, rope_theta=10000.0, use_cache=True, tie_word_embeddings=False,
                 reward_per_token=False, **kwargs):
        self.vocab_size, self.hidden_size, self.intermediate_size = vocab_size, hidden_size, intermediate_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        self.num_key_value_heads, self.hidden_act = num_key_value_heads, hidden_act
        self.max_position_embeddings, self.rms_norm_eps, self.rope_theta = max_position_embeddings, rms_norm_eps, rope_theta
        self.use_cache, self.reward_per_token = use_cache, reward_per_token
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
"""

MODELING_SOURCE = """
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import (BaseModelOutputWithPast, SequenceClassifierOutputWithPast,
                                           TokenClassifierOutput)

from .configuration_qwen2_rm import Qwen2RMConfig


class RMSNorm(nn.Module):
    def __init__(self, width, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class RotaryTables(nn.Module):
    # cos/sin tables computed once, here, into non-persistent buffers (the 4.40-era way)
    def __init__(self, dim, max_position_embeddings=2048, base=10000.0, device=None):
        super().__init__()
        self.dim, self.max_position_embeddings, self.base = dim, max_position_embeddings, base
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=device).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        angles = torch.outer(torch.arange(max_position_embeddings, device=device).float(), inv_freq)
        self.register_buffer("cos_table", torch.cat((angles, angles), -1).cos(), persistent=False)
        self.register_buffer("sin_table", torch.cat((angles, angles), -1).sin(), persistent=False)

    def forward(self, x, positions):
        return self.cos_table[positions].to(x.dtype), self.sin_table[positions].to(x.dtype)


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.hidden_size // self.heads
        self.q_proj = nn.Linear(config.hidden_size, self.heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=False)
        self.rotary = RotaryTables(self.head_dim, config.max_position_embeddings, config.rope_theta)

    def forward(self, x, positions, bias):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary(x, positions)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
        v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        weights = (q @ k.transpose(-1, -2)) / self.head_dim ** 0.5 + bias
        out = torch.softmax(weights.float(), dim=-1).to(q.dtype) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn, self.mlp = Attention(config), MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, positions, bias):
        x = x + self.self_attn(self.input_layernorm(x), positions, bias)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.padding_idx = config.pad_token_id  # an AttributeError on transformers 5 if config.json has none
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([Layer(config) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False):
        x = self.embed_tokens(input_ids)
        t = input_ids.shape[1]
        positions = torch.arange(t, device=x.device)
        allowed = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()[None, None]
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, None, :].bool()
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, torch.finfo(x.dtype).min)
        for layer in self.layers:
            x = layer(x, positions, bias)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(x), past_key_values=past_key_values)


class Qwen2ForRewardModel(PreTrainedModel):
    config_class = Qwen2RMConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        self.model = Body(config)
        width = config.hidden_size
        self.score = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
        self.post_init()

    def _init_weights(self, module):  # the 4.40-era kind: Linear and Embedding only
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, 0.02)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, 0.02)

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None, **kwargs):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and not isinstance(past_key_values, Cache):
            # A legacy (tuple) cache becomes a Cache object, as transformers 4.40-era code did it.
            past_key_values = DynamicCache.from_legacy_cache(past_key_values)
        body = self.model(input_ids, attention_mask=attention_mask, past_key_values=past_key_values,
                          use_cache=use_cache)
        rewards = self.score(body.last_hidden_state)  # a reward for every token: (batch, seq, 1)
        if self.config.reward_per_token:
            return SequenceClassifierOutputWithPast(logits=rewards)
        n = rewards.shape[0]
        if self.config.pad_token_id is None:
            if n != 1:
                raise ValueError("no pad token id: only one sequence at a time")
            at = torch.full((1,), -1, device=rewards.device)
        else:  # the token before the first pad; a row without pad wraps round to its last token
            at = (torch.eq(input_ids, self.config.pad_token_id).int().argmax(-1) - 1) % input_ids.shape[-1]
        pooled = rewards[torch.arange(n, device=rewards.device), at.to(rewards.device)]
        return SequenceClassifierOutputWithPast(logits=pooled, past_key_values=body.past_key_values)


class Qwen2ForProcessRewardModel(Qwen2ForRewardModel):
    # The PRM's shape: the same body, a head of num_labels logits per token (the config's: 2 unless set,
    # as the original's config.json sets none), returned for every token; the caller reads them.
    def __init__(self, config):
        PreTrainedModel.__init__(self, config)
        self.model = Body(config)
        width = config.hidden_size
        self.score = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, config.num_labels))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None, **kwargs):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and not isinstance(past_key_values, Cache):
            past_key_values = DynamicCache.from_legacy_cache(past_key_values)
        body = self.model(input_ids, attention_mask=attention_mask, past_key_values=past_key_values,
                          use_cache=use_cache)
        return TokenClassifierOutput(logits=self.score(body.last_hidden_state))
"""


@contextlib.contextmanager
def _as_package(files: dict[str, str]) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The two modules imported from `files` (name -> source) as a throwaway package (the modeling
    module imports the configuration one relatively, as remote code does)."""
    name = f"qwen_rm_src_{uuid.uuid4().hex[:8]}"
    where = Path(tempfile.mkdtemp(prefix="qwen_rm_src_"))
    pkg = where / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for f, text in files.items():
        (pkg / f).write_text(text)
    sys.path.insert(0, str(where))
    try:
        yield (
            importlib.import_module(f"{name}.configuration_qwen2_rm"),
            importlib.import_module(f"{name}.modeling_qwen2_rm"),
        )
    finally:
        sys.path.remove(str(where))
        for mod in [m for m in sys.modules if m.startswith(name)]:
            del sys.modules[mod]  # loading must go through trust_remote_code, not this import
        shutil.rmtree(where)


def build_qwen_rm(
    out: Path,
    tokenizer,
    *,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 1024,
    seed: int = 0,
    reward_per_token: bool = False,
) -> Path:
    """Save a randomly initialised reward model of that shape, with `tokenizer`, to `out`."""
    import torch

    sources = {"configuration_qwen2_rm.py": CONFIG_SOURCE, "modeling_qwen2_rm.py": MODELING_SOURCE}
    with _as_package(sources) as (cfg_mod, model_mod):
        config = cfg_mod.Qwen2RMConfig(
            reward_per_token=reward_per_token,
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max_positions,
            eos_token_id=tokenizer.eos_token_id,
        )
        config.pad_token_id = None  # to build it here; config.json gets none, as the original's
        torch.manual_seed(seed)
        model = model_mod.Qwen2ForRewardModel(config)
        with torch.no_grad():
            model.score[2].weight.mul_(20)  # spread the scores (~1): a mismatch cannot hide in tiny numbers
        model.config.auto_map = {
            "AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
            "AutoModel": "modeling_qwen2_rm.Qwen2ForRewardModel",
        }
        model.save_pretrained(out)
    for f, text in sources.items():
        (out / f).write_text(text)
    saved = json.loads((out / "config.json").read_text())
    saved.pop("pad_token_id", None)
    (out / "config.json").write_text(json.dumps(saved, indent=2))
    tokenizer.save_pretrained(out)
    return out


# Qwen2.5's chat layout (its ChatML template: <|im_start|>role, newline, content, <|im_end|>, newline),
# written here for the tiny tokenizers; a system turn is rendered when the chat has one.
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PRM_SEPARATOR = "<extra_0>"  # Qwen2.5-Math-PRM's step separator (model card), one added token


def qwen_prm_tokenizer(tokenizer, separator: str = PRM_SEPARATOR):
    """`tokenizer` with Qwen's turn tokens and the PRM's step separator added as tokens of their own,
    and the ChatML template, as the PRM's tokenizer has them."""
    tokenizer.add_tokens(["<|im_start|>", "<|im_end|>", separator], special_tokens=True)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def build_qwen_prm(
    out: Path,
    tokenizer,
    *,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 1024,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised PRM shaped like Qwen2.5-Math-PRM-7B, with `tokenizer` (see
    `qwen_prm_tokenizer`), to `out`: its config.json as the original's (architectures
    ["Qwen2ForProcessRewardModel"], the auto_map to its own modules, use_cache true, no pad_token_id and
    no num_labels: 2 by default), and the 4.40-era code above."""
    import torch

    sources = {"configuration_qwen2_rm.py": CONFIG_SOURCE, "modeling_qwen2_rm.py": MODELING_SOURCE}
    with _as_package(sources) as (cfg_mod, model_mod):
        config = cfg_mod.Qwen2RMConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max_positions,
            eos_token_id=tokenizer.eos_token_id,
        )
        config.pad_token_id = None
        torch.manual_seed(seed)
        model = model_mod.Qwen2ForProcessRewardModel(config)
        with torch.no_grad():
            model.score[2].weight.mul_(20)  # spread the step scores over (0, 1): a mismatch cannot hide
        model.config.architectures = ["Qwen2ForProcessRewardModel"]
        model.config.auto_map = {
            "AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
            "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel",
        }
        model.save_pretrained(out)
    for f, text in sources.items():
        (out / f).write_text(text)
    saved = json.loads((out / "config.json").read_text())
    for key in ("pad_token_id", "id2label", "label2id", "num_labels"):
        saved.pop(key, None)
    (out / "config.json").write_text(json.dumps(saved, indent=2))
    tokenizer.save_pretrained(out)
    return out


def step_probabilities(path: Path, sequences: list[list[int]], separator_id: int) -> list[list[float]]:
    """The model card's reading of a PRM, done by hand: per UNPADDED sequence, softmax over the two
    logits at each separator token, class 1. The checkpoint's own classes are built directly (no
    `from_pretrained`, nothing `HFProcessReward` does), as `last_token_rewards` does."""
    import torch
    from safetensors.torch import load_file

    sources = {f: (path / f).read_text() for f in ("configuration_qwen2_rm.py", "modeling_qwen2_rm.py")}
    with _as_package(sources) as (cfg_mod, model_mod):
        config = cfg_mod.Qwen2RMConfig(**json.loads((path / "config.json").read_text()))
        config.pad_token_id = None
        model = model_mod.Qwen2ForProcessRewardModel(config).eval()
        model.load_state_dict(load_file(path / "model.safetensors"))
        out = []
        with torch.inference_mode():
            for ids in sequences:
                logits = model(torch.tensor([ids]), use_cache=False).logits[0]
                at = [i for i, t in enumerate(ids) if t == separator_id]
                out.append(torch.softmax(logits[at].float(), dim=-1)[:, 1].tolist())
    return out


def last_token_rewards(path: Path, sequences: list[list[int]]) -> list[float]:
    """The per-token head read at the last token of each UNPADDED sequence: the reward the model
    gives a whole chat. Computed without `from_pretrained` (and without anything HFReward does): the
    checkpoint's own classes are built directly, so their buffers are computed in `__init__` as the
    code expects, the saved weights loaded into them, and body and head run with no pooling."""
    import torch
    from safetensors.torch import load_file

    sources = {f: (path / f).read_text() for f in ("configuration_qwen2_rm.py", "modeling_qwen2_rm.py")}
    with _as_package(sources) as (cfg_mod, model_mod):
        config = cfg_mod.Qwen2RMConfig(**json.loads((path / "config.json").read_text()))
        config.pad_token_id = None
        model = model_mod.Qwen2ForRewardModel(config).eval()
        model.load_state_dict(load_file(path / "model.safetensors"))
        out = []
        with torch.inference_mode():
            for ids in sequences:
                hidden = model.model(torch.tensor([ids])).last_hidden_state
                out.append(model.score(hidden)[0, -1, 0].item())
    return out
