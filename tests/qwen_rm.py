"""A tiny reward model shaped like Qwen2.5-Math-RM-72B, built locally (no hub), for the main suite and
tests/vllm_engine/.

Written here after the published structure of that checkpoint (its config.json and its remote code
`modeling_qwen2_rm.py`, not copied): `architectures: ["Qwen2ForRewardModel"]`, `model_type: qwen2`,
an `auto_map` to the checkpoint's own `configuration_qwen2_rm` / `modeling_qwen2_rm` modules,
`use_cache: true` and no `pad_token_id` in the config; the model is a Qwen2 body (`model.*`) plus a
per-token scalar head `score` = Linear(h, h), ReLU, Linear(h, 1), and its forward returns the reward
of the token before the first pad token (the last token when there is no pad), shape (batch, 1).
Like the original, the forward turns a missing cache into one the transformers 4.40 way
(`DynamicCache.from_legacy_cache`) whenever `use_cache` is on, so it fails on transformers 5 unless
the caller asks for no cache. The weight names are the original's, so vLLM loads the same
checkpoint with its own `Qwen2ForRewardModel`.

`reward_per_token=True` (a config key of this stand-in only) makes the forward return every token's
reward, (batch, seq, 1), to test a remote-code head that leaves the pooling to the caller.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import uuid
from pathlib import Path

CONFIG_SOURCE = '''
from transformers import Qwen2Config


class Qwen2RMConfig(Qwen2Config):
    model_type = "qwen2"

    def __init__(self, reward_per_token=False, **kwargs):
        self.reward_per_token = reward_per_token
        super().__init__(**kwargs)
'''

MODELING_SOURCE = '''
import torch
from torch import nn
from transformers import PreTrainedModel, Qwen2Model
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import SequenceClassifierOutputWithPast

from .configuration_qwen2_rm import Qwen2RMConfig


class Qwen2ForRewardModel(PreTrainedModel):
    config_class = Qwen2RMConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        width = config.hidden_size
        self.score = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, **kwargs):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and not isinstance(past_key_values, Cache):
            # A legacy (tuple) cache becomes a Cache object, as transformers 4.40-era code did it.
            past_key_values = DynamicCache.from_legacy_cache(past_key_values)
        body = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache)
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
'''


def build_qwen_rm(out: Path, tokenizer, *, hidden_size: int = 32, layers: int = 2, heads: int = 2,
                  max_positions: int = 1024, seed: int = 0, reward_per_token: bool = False) -> Path:
    """Save a randomly initialised reward model of that shape, with `tokenizer`, to `out`."""
    import torch

    pkg_name = f"qwen_rm_src_{uuid.uuid4().hex[:8]}"
    src = out.parent / f"{out.name}-src"
    pkg = src / pkg_name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "configuration_qwen2_rm.py").write_text(CONFIG_SOURCE)
    (pkg / "modeling_qwen2_rm.py").write_text(MODELING_SOURCE)
    sys.path.insert(0, str(src))
    try:
        cfg_mod = importlib.import_module(f"{pkg_name}.configuration_qwen2_rm")
        model_mod = importlib.import_module(f"{pkg_name}.modeling_qwen2_rm")
        config = cfg_mod.Qwen2RMConfig(
            reward_per_token=reward_per_token, vocab_size=len(tokenizer), hidden_size=hidden_size,
            intermediate_size=2 * hidden_size, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=heads, max_position_embeddings=max_positions, use_cache=True,
            tie_word_embeddings=False, pad_token_id=None, bos_token_id=None, eos_token_id=tokenizer.eos_token_id)
        torch.manual_seed(seed)
        model = model_mod.Qwen2ForRewardModel(config)
        with torch.no_grad():
            model.score[2].weight.mul_(20)  # spread the scores (~1): a mismatch cannot hide in tiny numbers
        model.config.auto_map = {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
                                 "AutoModel": "modeling_qwen2_rm.Qwen2ForRewardModel"}
        model.save_pretrained(out)
    finally:
        sys.path.remove(str(src))
        for name in [m for m in sys.modules if m.startswith(pkg_name)]:
            del sys.modules[name]  # loading must go through trust_remote_code, not this import
    for f in ("configuration_qwen2_rm.py", "modeling_qwen2_rm.py"):
        shutil.copy(pkg / f, out / f)
    shutil.rmtree(src)
    tokenizer.save_pretrained(out)
    return out


def last_token_rewards(path: Path, sequences: list[list[int]]) -> list[float]:
    """The per-token head read at the last token of each UNPADDED sequence, through the body and
    head modules directly (no pooling, no cache): the reward the model assigns to a whole chat."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path, trust_remote_code=True, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for ids in sequences:
            hidden = model.model(input_ids=torch.tensor([ids]), use_cache=False).last_hidden_state
            out.append(model.score(hidden)[0, -1, 0].item())
    return out
