"""HFReward on tiny local reward models (no hub here): a LlamaForSequenceClassification with one
output (the Skywork-Reward class) and a remote-code model shaped like Qwen2.5-Math-RM-72B
(`tests/qwen_rm.py`: Qwen2 body, per-token scalar head, 4.40-era cache code)."""

from __future__ import annotations

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
from paradox.reward_models import HFReward, format_chat, last_token_scores

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from qwen_rm import build_qwen_rm, last_token_rewards  # noqa: E402

CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def _tokenizer(tiny_lm: Path):
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    tok.chat_template = CHAT
    return tok


def _config(tok, **kw) -> dict:
    return dict(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        **kw,
    )


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
    return build_qwen_rm(tmp_path_factory.mktemp("qwen_rm") / "rm", _tokenizer(tiny_lm), seed=1)


def _problems_and_traces(n: int = 7) -> tuple[list[Problem], list[str]]:
    problems = [
        Problem(
            id=f"p{i}",
            question=f"Tom has {i + 2} apples and buys {i}. How many?",
            answer=str(2 * i + 2),
            reference_solution="",
            source="test",
        )
        for i in range(n)
    ]
    # lengths differ a lot, so every batch is padded
    traces = [
        " ".join([f"{i + 2} + {i} = {2 * i + 2}."] * (1 + 3 * (i % 4))) + f" \\boxed{{{2 * i + 2}}}"
        for i in range(n)
    ]
    return problems, traces


def _spec(path: Path, **kw) -> RewardModel:
    return RewardModel(**{"backend": "hf", "name_or_path": str(path), "max_length": 512, **kw})


def test_format_chat_puts_question_and_trace_in_their_roles(tiny_lm):
    tok = _tokenizer(tiny_lm)
    text = format_chat(tok, "What is 2+2?", "2+2=4, so \\boxed{4}.", SYSTEM)
    assert text == (
        f"<|system|>\n{SYSTEM}</s>\n<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n2+2=4, so \\boxed{{4}}.</s>\n"
    )
    assert not format_chat(tok, "q", "t", None).startswith("<|system|>")
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        format_chat(tok, "q", "t", None)


@pytest.mark.parametrize("head", ["seq_cls", "remote_code"])
def test_scores_are_finite_ordered_and_independent_of_batch_composition(head, seq_cls_rm, remote_code_rm):
    path = seq_cls_rm if head == "seq_cls" else remote_code_rm
    extra = {"trust_remote_code": True} if head == "remote_code" else {}
    problems, traces = _problems_and_traces()
    batched = HFReward(
        _spec(path, head=head, batch_size=3, system_prompt=SYSTEM, **extra), show_progress=False
    )
    single = HFReward(
        _spec(path, head=head, batch_size=1, system_prompt=SYSTEM, **extra), show_progress=False
    )
    a = batched.score_many(problems, traces)
    b = single.score_many(problems, traces)
    assert len(a) == len(traces) and all(math.isfinite(x) for x in a)
    assert len(set(a)) == len(a)  # a random model still tells these traces apart
    assert a == pytest.approx(b, abs=1e-5)  # batch composition does not move a score
    # order preserved: reversed inputs give reversed scores
    assert batched.score_many(problems[::-1], traces[::-1]) == pytest.approx(a[::-1], abs=1e-5)
    # equal to a plain unpadded forward pass, as a model card computes it
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok.encode(
        format_chat(tok, problems[0].question, traces[0], SYSTEM),
        add_special_tokens=False,
        return_tensors="pt",
    )
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
    prompt = rm.tok.encode(
        format_chat(rm.tok, problems[0].question, "", None).rsplit("</s>", 1)[0], add_special_tokens=False
    )
    n_prompt = len(prompt)
    assert ids[: n_prompt - 1] == full[: n_prompt - 1]  # the question is kept
    assert ids[-20:] == full[-20:]  # so is the end of the response (its answer and end of turn)
    assert "boxed{7}" in rm.tok.decode(ids)
    # a batch of a truncated and a short chat scores finite, same as one at a time
    short = "1 + 1 = 2. \\boxed{2}"
    both = rm.score_many(problems * 2, [trace, short])
    assert all(math.isfinite(x) for x in both)
    assert both == pytest.approx([rm.score(problems[0], trace), rm.score(problems[0], short)], abs=1e-5)


def test_remote_code_head_needs_trust_remote_code(remote_code_rm):
    with pytest.raises(ValueError, match="trust_remote_code"):  # a params error, before any model loads
        _spec(remote_code_rm, head="remote_code")
    with pytest.raises(ValueError, match="trust_remote_code"):
        HFReward(
            RewardModel.model_construct(
                backend="hf", name_or_path=str(remote_code_rm), head="remote_code", trust_remote_code=False
            )
        )
    # vLLM runs its own implementation of the architecture: no remote code needed there
    assert _spec(remote_code_rm, backend="vllm", head="remote_code").trust_remote_code is False


def _qwen_spec(path: Path, **kw) -> RewardModel:
    return _spec(path, head="remote_code", trust_remote_code=True, system_prompt=SYSTEM, **kw)


def test_qwen_shaped_remote_code_fails_three_ways_on_transformers_5(remote_code_rm):
    """What the published code does when loaded the model card's way on transformers 5 (the fixture
    keeps each trait of it); HFReward must get round all three (next test)."""
    from transformers import AutoConfig, AutoModel

    cfg = json.loads((remote_code_rm / "config.json").read_text())
    # the published config's shape: its own classes, a cache on by default, no pad id
    assert cfg["architectures"] == ["Qwen2ForRewardModel"] and cfg["model_type"] == "qwen2"
    assert (
        set(cfg["auto_map"]) == {"AutoConfig", "AutoModel"} and cfg["use_cache"] and "pad_token_id" not in cfg
    )
    with pytest.raises(AttributeError, match="pad_token_id"):  # 1. cannot even be built
        AutoModel.from_pretrained(remote_code_rm, trust_remote_code=True)
    config = AutoConfig.from_pretrained(remote_code_rm, trust_remote_code=True)
    config.pad_token_id = 0
    model = AutoModel.from_pretrained(remote_code_rm, config=config, trust_remote_code=True)
    rotary = model.model.layers[0].self_attn.rotary
    want = 1.0 / (rotary.base ** (torch.arange(0, rotary.dim, 2).float() / rotary.dim))
    assert not torch.allclose(rotary.inv_freq, want)  # 2. its rotary tables are left uninitialised
    with pytest.raises(AttributeError, match="from_legacy_cache"):  # 3. the forward asks for a 4.40 cache
        model(input_ids=torch.tensor([[5, 6, 7]]))


def test_qwen_shaped_remote_code_is_scored_without_a_cache_at_the_last_token(remote_code_rm):
    problems, traces = _problems_and_traces()
    rm = HFReward(_qwen_spec(remote_code_rm, batch_size=3), show_progress=False)
    got = rm.score_many(problems, traces)
    chats = [rm.encode(p.question, t) for p, t in zip(problems, traces, strict=True)]
    assert got == pytest.approx(last_token_rewards(remote_code_rm, chats), abs=1e-5)
    assert rm.model.config.use_cache is False and len(set(got)) == len(got)
    rotary = rm.model.model.layers[0].self_attn.rotary
    want = 1.0 / (rotary.base ** (torch.arange(0, rotary.dim, 2).float() / rotary.dim))
    assert torch.allclose(rotary.inv_freq, want)


def test_a_pad_token_inside_a_chat_does_not_move_the_score(remote_code_rm):
    # The Qwen RM reads the token before the FIRST pad: a chat that contains the pad token (here the
    # tokenizer's "<pad>" written out in a trace) would be scored in its middle.
    problems, traces = _problems_and_traces(4)
    traces[1] = traces[1].replace(" \\boxed", " <pad> so \\boxed")
    rm = HFReward(_qwen_spec(remote_code_rm, batch_size=4), show_progress=False)
    chats = [rm.encode(p.question, t) for p, t in zip(problems, traces, strict=True)]
    assert rm.pad_id in chats[1] and not any(rm.pad_id in c for i, c in enumerate(chats) if i != 1)
    want = last_token_rewards(remote_code_rm, chats)
    assert rm.score_many(problems, traces) == pytest.approx(want, abs=1e-5)
    one = HFReward(_qwen_spec(remote_code_rm, batch_size=1), show_progress=False)
    assert one.score(problems[1], traces[1]) == pytest.approx(want[1], abs=1e-5)
    assert rm.model.config.pad_token_id == rm.pad_id  # restored after the batch


def test_a_head_that_returns_every_tokens_reward_is_read_at_the_last_token(tiny_lm, tmp_path, remote_code_rm):
    per_token = build_qwen_rm(
        tmp_path / "rm", _tokenizer(tiny_lm), seed=1, reward_per_token=True
    )  # same weights
    problems, traces = _problems_and_traces()
    a = HFReward(_qwen_spec(per_token, batch_size=3), show_progress=False).score_many(problems, traces)
    b = HFReward(_qwen_spec(remote_code_rm, batch_size=3), show_progress=False).score_many(problems, traces)
    assert a == pytest.approx(b, abs=1e-5) and len(set(a)) == len(a)


def test_last_token_scores_reads_each_shape_or_says_what_it_got():
    lengths = [3, 1, 2]  # right padded to width 3
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [5.0, 6.0, 0.0]])
    assert last_token_scores(per_token, lengths, "rm", per_token_ok=True) == [3.0, 4.0, 6.0]
    assert last_token_scores(per_token[..., None], lengths, "rm", per_token_ok=True) == [3.0, 4.0, 6.0]
    pooled = torch.tensor([[0.5], [1.5], [2.5]])
    for ok in (True, False):
        assert last_token_scores(pooled, lengths, "rm", per_token_ok=ok) == [0.5, 1.5, 2.5]
        assert last_token_scores(pooled[:, 0], lengths, "rm", per_token_ok=ok) == [0.5, 1.5, 2.5]
    with pytest.raises(ValueError, match=r"rm: expected one reward per sequence.*\(3, 2\)"):
        last_token_scores(torch.zeros(3, 2), lengths, "rm", per_token_ok=False)  # two labels
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        last_token_scores(per_token, lengths, "rm", per_token_ok=False)  # per token, but a seq-cls head
    with pytest.raises(ValueError, match=r"\(3, 3, 8\)"):
        last_token_scores(
            torch.zeros(3, 3, 8), lengths, "rm", per_token_ok=True
        )  # hidden states, not rewards


def test_backends_build_hf_reward_and_cross_checks(seq_cls_rm):
    params = load_params("smoke", ROOT / "params")
    main = Reward(
        backend="hf",
        name_or_path=str(seq_cls_rm),
        cross_check=(_spec(seq_cls_rm, batch_size=2), RewardModel(backend="toy")),
    )
    params = params.model_copy(update={"reward": main})
    rm = backends.reward_model(params)
    assert isinstance(rm, HFReward) and rm.model is None  # weights load on first use
    checks = backends.cross_check_rewards(params)
    assert [type(c).__name__ for c in checks] == ["HFReward", "RubricReward"]
    assert checks[0].spec.batch_size == 2


def test_rebuild_init_buffers_recomputes_or_says_why_not():
    from torch import nn

    from paradox.reward_models import rebuild_init_buffers

    class Table(nn.Module):  # keeps its constructor's argument: can be rebuilt
        def __init__(self, n):
            super().__init__()
            self.n = n
            self.register_buffer("t", torch.arange(n).float(), persistent=False)

    class Opaque(nn.Module):  # does not: cannot
        def __init__(self, n):
            super().__init__()
            self.register_buffer("t", torch.arange(n).float(), persistent=False)

    model = nn.Sequential(nn.Linear(2, 2), Table(4))
    model[1].t.fill_(float("nan"))  # what transformers 5 leaves there
    assert rebuild_init_buffers(model) == ["1"] and model[1].t.tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match=r"cannot recompute the buffers \['t'\] of 1 \(Opaque\).*needs 'n'"):
        rebuild_init_buffers(nn.Sequential(nn.Linear(2, 2), Opaque(3)))
