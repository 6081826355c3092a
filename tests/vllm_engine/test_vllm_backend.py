"""VLLMGenerator and VLLMReward against their transformers counterparts, on tiny local models."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import pytest

from paradox.generation import HFGenerator, SamplingSettings, sample_sharded
from paradox.problems import Problem

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    "Question: Tom has 3 apples.\nAnswer:\n",
    "Question: Ana has 5 coins. She loses 2.\nAnswer:\n",
    "Question: x\nAnswer:\n",
    "Question: A box holds 12 pens. 4 are red.\nAnswer:\n",
]


def test_seeded_sampling_is_reproducible_and_reports_truncation(vllm_generator):
    s = SamplingSettings(n=8, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7)
    a, b = vllm_generator.generate(PROMPTS, s), vllm_generator.generate(PROMPTS, s)
    assert a == b
    assert len(a) == len(PROMPTS) and all(len(cs) == 8 for cs in a)
    assert vllm_generator.generate(PROMPTS, SamplingSettings(8, 1.0, 1.0, 12, seed=8)) != a
    assert len({c.text for c in a[0]}) > 1  # a prompt's samples differ from each other
    twin = vllm_generator.generate([PROMPTS[0], PROMPTS[0]], s)
    assert twin[0] != twin[1]  # each prompt draws its own random numbers (its own seed)
    flags = [c.truncated for cs in a for c in cs]
    # the tiny LM stops after ~1 token in 16: some answers end (EOS), others hit max_new_tokens
    assert any(flags) and not all(flags)


def test_seeded_sampling_of_a_batch_larger_than_one_engine_step(vllm_generator):
    # More prompt tokens than one step takes: vLLM-CPU crashed here while prefills could be split.
    prompts = [
        f"Question: Tom has {i} apples and {i % 7} pears. How many fruits?\nAnswer:\n" for i in range(400)
    ]
    budget = vllm_generator.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
    assert sum(len(x) for x in vllm_generator.tok(prompts)["input_ids"]) > budget
    s = SamplingSettings(n=2, temperature=1.0, top_p=1.0, max_new_tokens=4, seed=11)
    assert vllm_generator.generate(prompts, s) == vllm_generator.generate(prompts, s)


def test_truncated_means_stopped_by_max_tokens(vllm_generator):
    s = SamplingSettings(n=8, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=3)
    long = vllm_generator.generate(PROMPTS, SamplingSettings(8, 1.0, 1.0, 200, seed=3))
    short = vllm_generator.generate(PROMPTS, s)
    assert not any(c.truncated for cs in long for c in cs)  # every answer ends by itself within 200
    # Same seeds, fewer tokens: an answer that ended within 12 tokens is unchanged; the others are cut.
    for ls, ss in zip(long, short, strict=True):
        for lc, sc in zip(ls, ss, strict=True):
            if sc.truncated:
                # A cut can split a character's bytes (byte-level BPE): the cut text ends in U+FFFD.
                assert lc.text.startswith(sc.text.rstrip("\ufffd"))
            else:
                assert sc == lc


# Prompts with different endings: a random LM's greedy path follows mostly the last tokens.
GREEDY_PROMPTS = [
    *PROMPTS,
    "Question: Lee has 7 cards.\nAnswer:\nLee has",
    "Question: 9 birds\nAnswer:\n9 -",
    "Answer: the total is",
    "Tom gives 2 of his 8 apples to Ana, so",
    "12 * 3 =",
    "He",
]


def test_greedy_equals_hf_greedy(vllm_generator, vllm_lm):
    s = SamplingSettings(n=1, temperature=0.0, top_p=1.0, max_new_tokens=40, seed=0)
    hf = HFGenerator.from_pretrained(str(vllm_lm), batch_size=16).generate(GREEDY_PROMPTS, s)
    ours = vllm_generator.generate(GREEDY_PROMPTS, s)
    assert ours == hf
    assert any(c.truncated for cs in ours for c in cs) and not all(c.truncated for cs in ours for c in cs)
    # greedy with n > 1: n copies (vLLM itself refuses n > 1 without sampling)
    twice = vllm_generator.generate(GREEDY_PROMPTS, SamplingSettings(2, 0.0, 1.0, 40, seed=0))
    assert twice == [cs * 2 for cs in ours]


def test_sample_sharded_with_vllm(vllm_generator, tmp_path):
    ids = [f"p{i}" for i in range(len(PROMPTS))]
    s = SamplingSettings(n=3, temperature=1.0, top_p=1.0, max_new_tokens=10, seed=1)
    rows = sample_sharded(vllm_generator, "tiny", ids, PROMPTS, s, tmp_path, batch_size=3)
    assert len(rows) == len(PROMPTS) * 3 and {r["id"] for r in rows} == set(ids)
    assert len(list(tmp_path.glob("shard-*.jsonl"))) == 2
    assert sample_sharded(vllm_generator, "tiny", ids, PROMPTS, s, tmp_path, batch_size=3) == rows


def test_backends_generator_builds_vllm_from_params(vllm_lm, vllm_generator, fast_engine):
    from paradox import backends
    from paradox.params import load_params
    from paradox.vllm_backend import VLLMGenerator

    p = load_params("smoke", ROOT / "params")
    p = p.model_copy(
        update={"sampling": p.sampling.model_copy(update={"backend": "vllm"}), "vllm": fast_engine}
    )
    with backends.generator(p, str(vllm_lm), batch_size=4) as gen:
        assert isinstance(gen, VLLMGenerator) and gen.name == "vllm"
        s = SamplingSettings(2, 1.0, 1.0, 8, seed=5)
        assert gen.generate(PROMPTS, s) == vllm_generator.generate(PROMPTS, s)


def test_data_parallel_is_refused_with_a_way_out():
    from paradox.params import VLLMEngine
    from paradox.vllm_backend import VLLMGenerator

    with pytest.raises(ValueError, match="data-parallel-size"):
        VLLMGenerator.from_pretrained("unused", VLLMEngine(data_parallel_size=2))


TRACES = [
    "Tom has 3 apples. Then he gets 2 more, so 3 + 2 = 5.\nThe answer is 5.",
    "3 + 2 = 5",
    "\\( n_1 = 3 + 2 = 5 \\) \\boxed{5}",
]


def _hf_scores(path: Path, system: str | None, question: str, traces: list[str]) -> list[float]:
    """The reward as the model's own transformers forward pass gives it: logit of the last token."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    sys_turn = [{"role": "system", "content": system}] if system else []
    out = []
    for t in traces:
        chat = [*sys_turn, {"role": "user", "content": question}, {"role": "assistant", "content": t}]
        text = tok.apply_chat_template(chat, tokenize=False)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out.append(model(**enc).logits[0, 0].item())
    return out


def test_vllm_reward_matches_transformers(reward_lm, fast_engine):
    from paradox.params import RewardModel
    from paradox.reward_models import HFReward
    from paradox.vllm_backend import VLLMReward

    problem = Problem(
        id="p",
        question="Tom has 3 apples and gets 2 more. How many?",
        answer="5",
        reference_solution="",
        source="test",
    )
    spec = RewardModel(backend="vllm", name_or_path=str(reward_lm))
    with VLLMReward(spec, fast_engine) as rm:
        assert rm.name == f"vllm:{reward_lm}"
        for system in (None, "Rate the solution."):
            rm.spec = spec.model_copy(update={"system_prompt": system})  # one engine for both
            got = rm.score_many([problem] * len(TRACES), TRACES)
            want = _hf_scores(reward_lm, system, problem.question, TRACES)
            assert len(got) == len(TRACES) and all(math.isfinite(x) for x in got)
            assert got == pytest.approx(want, abs=1e-4)
            assert len(set(got)) == len(TRACES)  # the score depends on the trace
            hf_spec = rm.spec.model_copy(update={"backend": "hf"})
            assert got == pytest.approx(
                HFReward(hf_spec, show_progress=False).score_many([problem] * 3, TRACES), abs=1e-4
            )  # the transformers backend scores the same chat
        assert rm.score(problem, TRACES[0]) == pytest.approx(got[0], abs=1e-5)


LONG = " ".join(f"Step {j}: {j} + 1 = {j + 1}." for j in range(60)) + " So the answer is \\boxed{61}."


def test_vllm_reads_the_qwen_reward_heads_last_token_as_transformers_does(qwen_reward_lm, fast_engine):
    """Both backends on a Qwen2ForRewardModel-shaped checkpoint: vLLM's own implementation (per-token
    rewards, `token_classify`) and the checkpoint's remote code under transformers (pooled in its
    forward, no cache), on the same chats, cut the same way when too long. Tolerance 1e-4 on scores
    of magnitude ~1 (float32 on both sides)."""
    import sys

    from paradox.params import RewardModel
    from paradox.reward_models import HFReward
    from paradox.vllm_backend import VLLMReward

    sys.path.insert(0, str(ROOT / "tests"))
    from qwen_rm import last_token_rewards

    problem = Problem(
        id="p",
        question="Tom has 3 apples and gets 2 more. How many?",
        answer="5",
        reference_solution="",
        source="test",
    )
    traces = [*TRACES, LONG]
    spec = RewardModel(
        backend="vllm",
        name_or_path=str(qwen_reward_lm),
        head="remote_code",
        system_prompt="Please reason step by step.",
        max_length=256,
    )
    hf = HFReward(spec.model_copy(update={"backend": "hf", "trust_remote_code": True}), show_progress=False)
    want = hf.score_many([problem] * len(traces), traces)
    chats = [hf.encode(problem.question, t) for t in traces]
    assert hf.n_truncated == 2 and len(chats[-1]) == 256  # the long chat alone, cut (once per encode)
    assert want == pytest.approx(last_token_rewards(qwen_reward_lm, chats), abs=1e-5)
    # vLLM reads config.json with transformers' Qwen2Config, or with the checkpoint's own config class
    for trust in (False, True):
        with VLLMReward(spec.model_copy(update={"trust_remote_code": trust}), fast_engine) as rm:
            got = rm.score_many([problem] * len(traces), traces)
            assert [rm.encode(problem.question, t) for t in traces] == chats  # the same tokens on both sides
        assert all(math.isfinite(x) for x in got) and len(set(got)) == len(got)
        assert got == pytest.approx(want, abs=1e-4)


def test_vllm_reward_head_must_fit_the_checkpoint(qwen_reward_lm, fast_engine):
    from paradox.params import RewardModel
    from paradox.vllm_backend import VLLMReward

    rm = VLLMReward(
        RewardModel(backend="vllm", name_or_path=str(qwen_reward_lm), head="seq_cls"), fast_engine
    )
    with pytest.raises(
        ValueError, match=r"Qwen2ForRewardModel.*token_classify.*needs 'classify'; set head: remote_code"
    ):
        rm.load()


def test_vllm_server_fixture_answers_chat(vllm_server):
    """The fixture the Oracle-client tests use: an OpenAI-compatible server on the tiny LM."""
    base_url, model = vllm_server
    assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1") and model == "toy-slm"
    with urllib.request.urlopen(f"{base_url}/models", timeout=10) as resp:
        assert [m["id"] for m in json.load(resp)["data"]] == [model]
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "1 + 1 ="}],
        "max_tokens": 8,
        "temperature": 0.0,
    }
    req = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        choice = json.load(resp)["choices"][0]
    assert choice["finish_reason"] in ("stop", "length") and isinstance(choice["message"]["content"], str)
