"""HFReward on tiny local reward models (no hub here): a LlamaForSequenceClassification with one
output (the Skywork-Reward class) and a custom remote-code model shaped like Qwen2.5-Math-RM."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from paradox import backends
from paradox.params import Reward, RewardModel, load_params
from paradox.problems import Problem
from paradox.reward_models import HFReward, format_chat

ROOT = Path(__file__).resolve().parents[1]
CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

# A stand-in for Qwen2.5-Math-RM's remote code: Llama body, Linear-ReLU-Linear score head, pooled
# at the token before the first pad (its pooling convention, which needs right padding).
REMOTE_CODE = '''
import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


class TinyRMConfig(LlamaConfig):
    model_type = "tiny_rm"


class TinyRewardModel(PreTrainedModel):
    config_class = TinyRMConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        h = config.hidden_size
        self.score = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.score(hidden)
        last = (torch.eq(input_ids, self.config.pad_token_id).int().argmax(-1) - 1) % input_ids.shape[-1]
        pooled = logits[torch.arange(input_ids.shape[0]), last]
        return SequenceClassifierOutputWithPast(logits=pooled)
'''


def _tokenizer(tiny_lm: Path):
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    tok.chat_template = CHAT
    return tok


def _config(tok, **kw) -> dict:
    return dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None, **kw)


@pytest.fixture(scope="module")
def seq_cls_rm(tiny_lm, tmp_path_factory) -> Path:
    tok = _tokenizer(tiny_lm)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(LlamaConfig(num_labels=1, **_config(tok)))
    path = tmp_path_factory.mktemp("seq_cls_rm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def remote_code_rm(tiny_lm, tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("rm_src") / "modeling_tiny_rm.py"
    src.write_text(REMOTE_CODE)
    spec = importlib.util.spec_from_file_location("modeling_tiny_rm", src)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["modeling_tiny_rm"] = mod  # save_pretrained copies the class's source file
    spec.loader.exec_module(mod)
    mod.TinyRMConfig.register_for_auto_class()
    mod.TinyRewardModel.register_for_auto_class("AutoModel")
    tok = _tokenizer(tiny_lm)
    torch.manual_seed(1)
    model = mod.TinyRewardModel(mod.TinyRMConfig(**_config(tok)))
    path = tmp_path_factory.mktemp("remote_code_rm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    assert "auto_map" in json.loads((path / "config.json").read_text())
    del sys.modules["modeling_tiny_rm"]  # loading must go through trust_remote_code, not this import
    return path


def _problems_and_traces(n: int = 7) -> tuple[list[Problem], list[str]]:
    problems = [Problem(id=f"p{i}", question=f"Tom has {i + 2} apples and buys {i}. How many?", answer=str(2 * i + 2),
                        reference_solution="", source="test") for i in range(n)]
    # lengths differ a lot, so every batch is padded
    traces = [" ".join([f"{i + 2} + {i} = {2 * i + 2}."] * (1 + 3 * (i % 4))) + f" \\boxed{{{2 * i + 2}}}"
              for i in range(n)]
    return problems, traces


def _spec(path: Path, **kw) -> RewardModel:
    return RewardModel(**{"backend": "hf", "name_or_path": str(path), "max_length": 512, **kw})


def test_format_chat_puts_question_and_trace_in_their_roles(tiny_lm):
    tok = _tokenizer(tiny_lm)
    text = format_chat(tok, "What is 2+2?", "2+2=4, so \\boxed{4}.", SYSTEM)
    assert text == (f"<|system|>\n{SYSTEM}</s>\n<|user|>\nWhat is 2+2?</s>\n"
                    "<|assistant|>\n2+2=4, so \\boxed{4}.</s>\n")
    assert not format_chat(tok, "q", "t", None).startswith("<|system|>")
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        format_chat(tok, "q", "t", None)


@pytest.mark.parametrize("head", ["seq_cls", "remote_code"])
def test_scores_are_finite_ordered_and_independent_of_batch_composition(head, seq_cls_rm, remote_code_rm):
    path = seq_cls_rm if head == "seq_cls" else remote_code_rm
    extra = {"trust_remote_code": True} if head == "remote_code" else {}
    problems, traces = _problems_and_traces()
    batched = HFReward(_spec(path, head=head, batch_size=3, system_prompt=SYSTEM, **extra), show_progress=False)
    single = HFReward(_spec(path, head=head, batch_size=1, system_prompt=SYSTEM, **extra), show_progress=False)
    a = batched.score_many(problems, traces)
    b = single.score_many(problems, traces)
    assert len(a) == len(traces) and all(math.isfinite(x) for x in a)
    assert len(set(a)) == len(a)  # a random model still tells these traces apart
    assert a == pytest.approx(b, abs=1e-5)  # batch composition does not move a score
    # order preserved: reversed inputs give reversed scores
    assert batched.score_many(problems[::-1], traces[::-1]) == pytest.approx(a[::-1], abs=1e-5)
    # equal to a plain unpadded forward pass, as a model card computes it
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok.encode(format_chat(tok, problems[0].question, traces[0], SYSTEM), add_special_tokens=False,
                     return_tensors="pt")
    with torch.inference_mode():
        out = single.model(input_ids=ids)
    manual = (out.logits if head == "seq_cls" else out[0])[0, 0].item()
    assert a[0] == pytest.approx(manual, abs=1e-5)
    assert batched.score(problems[0], traces[0]) == pytest.approx(a[0], abs=1e-5)
    assert batched.name == f"hf:{path}" and batched.score_many([], []) == []


def test_longer_than_max_length_keeps_the_question_and_the_end_of_the_response(seq_cls_rm):
    problems, _ = _problems_and_traces(1)
    trace = " ".join(f"Step {j}: 1 + {j} = {j + 1}." for j in range(200)) + " So the answer is \\boxed{7}."
    rm = HFReward(_spec(seq_cls_rm, max_length=100, batch_size=2), show_progress=False)
    rm.load()
    full = rm.tok.encode(format_chat(rm.tok, problems[0].question, trace, None), add_special_tokens=False)
    ids = rm.encode(problems[0].question, trace)
    assert len(full) > 100 and len(ids) == 100 and rm.n_truncated == 1
    prompt = rm.tok.encode(format_chat(rm.tok, problems[0].question, "", None).rsplit("</s>", 1)[0],
                           add_special_tokens=False)
    n_prompt = len(prompt)
    assert ids[:n_prompt - 1] == full[:n_prompt - 1]  # the question is kept
    assert ids[-20:] == full[-20:]  # so is the end of the response (its answer and end of turn)
    assert "boxed{7}" in rm.tok.decode(ids)
    # a batch of a truncated and a short chat scores finite, same as one at a time
    short = "1 + 1 = 2. \\boxed{2}"
    both = rm.score_many(problems * 2, [trace, short])
    assert all(math.isfinite(x) for x in both)
    assert both == pytest.approx([rm.score(problems[0], trace), rm.score(problems[0], short)], abs=1e-5)


def test_remote_code_head_needs_trust_remote_code(remote_code_rm):
    with pytest.raises(ValueError, match="trust_remote_code"):
        HFReward(_spec(remote_code_rm, head="remote_code"))


def test_backends_build_hf_reward_and_cross_checks(seq_cls_rm):
    params = load_params("smoke", ROOT / "params")
    main = Reward(backend="hf", name_or_path=str(seq_cls_rm),
                  cross_check=(_spec(seq_cls_rm, batch_size=2), RewardModel(backend="toy")))
    params = params.model_copy(update={"reward": main})
    rm = backends.reward_model(params)
    assert isinstance(rm, HFReward) and rm.model is None  # weights load on first use
    checks = backends.cross_check_rewards(params)
    assert [type(c).__name__ for c in checks] == ["HFReward", "RubricReward"]
    assert checks[0].spec.batch_size == 2
