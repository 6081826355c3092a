"""The process reward model on vLLM's pooling runner (`VLLMProcessReward`) against transformers
(`HFProcessReward`), on a tiny PRM of Qwen2.5-Math-PRM-7B's layout (tests/qwen_rm.py): vLLM runs its own
`Qwen2ForProcessRewardModel` with STEP pooling at the separator token, transformers the checkpoint's
remote code. Tolerance: 1e-4 on step scores in (0, 1), float32 on both sides."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from paradox.params import Oracle
from paradox.problems import Problem

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from qwen_rm import build_qwen_prm, qwen_prm_tokenizer, step_probabilities  # noqa: E402

TOLERANCE = 1e-4
TRACES = [
    "Tom has 2 apples.\n\nHe buys 3 more: 2 + 3 = 5.\n\nThe answer is \\boxed{5}.",
    "Start: 3 apples.\nBuy 1: 3 + 1 = 4.\nSo \\boxed{4}.",
    "\n\n".join(f"Step {j}: {j} + 1 = {j + 1}." for j in range(12)) + "\n\nThe answer is \\boxed{12}.",
    "One step only, \\boxed{8}.",
]


@pytest.fixture(scope="module")
def qwen_prm(tmp_path_factory, vllm_tokenizer) -> Path:
    tok = qwen_prm_tokenizer(copy.deepcopy(vllm_tokenizer))
    return build_qwen_prm(tmp_path_factory.mktemp("qwen_prm") / "prm", tok, hidden_size=64, seed=4)


def _o(path: Path, backend: str, **kw) -> Oracle:
    return Oracle(
        **{
            "backend": "openai",
            "base_url": "http://127.0.0.1:1/v1",
            "model": "m",
            "prm": str(path),
            "prm_backend": backend,
            "prm_trust_remote_code": True,
            "prm_dtype": "float32",
            **kw,
        }
    )


def test_vllm_and_transformers_give_the_same_step_scores(qwen_prm, fast_engine):
    from paradox.prm import HFProcessReward
    from paradox.vllm_backend import VLLMProcessReward

    problems = [
        Problem(
            id=f"p{i}",
            question=f"Tom has {i} apples. How many?",
            answer="1",
            reference_solution="",
            source="t",
        )
        for i in range(len(TRACES))
    ]
    full = HFProcessReward(_o(qwen_prm, "hf"), show_progress=False)
    ids, _ = full.encode(problems[2].question, TRACES[2])
    cut = [i for i, t in enumerate(ids) if t == full.sep_id][4] + 1  # the long trace keeps 5 of its 13 steps
    hf = HFProcessReward(_o(qwen_prm, "hf", prm_max_length=cut), show_progress=False)
    want = hf.step_scores_many(problems, TRACES)
    chats = [hf.encode(p.question, t)[0] for p, t in zip(problems, TRACES, strict=True)]
    assert [len(w) for w in want] == [
        3,
        3,
        5,
        1,
    ]  # the long one cut by prm_max_length, the same on both sides
    assert want == [pytest.approx(x, abs=1e-5) for x in step_probabilities(qwen_prm, chats, hf.sep_id)]
    for trust in (False, True):  # vLLM reads config.json with Qwen2Config, or with the checkpoint's class
        o = _o(qwen_prm, "vllm", prm_max_length=cut, prm_trust_remote_code=trust)
        rm = VLLMProcessReward(o, fast_engine, show_progress=False)
        try:
            got = rm.step_scores_many(problems, TRACES)
            assert [rm.encode(p.question, t)[0] for p, t in zip(problems, TRACES, strict=True)] == chats
            assert rm.locate_many(problems, TRACES) == hf.locate_many(problems, TRACES)
        finally:
            rm.close()
        assert [len(g) for g in got] == [len(w) for w in want]
        for g, w in zip(got, want, strict=True):
            assert g == pytest.approx(w, abs=TOLERANCE)
        flat = [x for g in got for x in g]
        assert all(0 < x < 1 for x in flat) and len(set(flat)) > len(flat) // 2


def test_vllm_refuses_a_checkpoint_without_a_step_head(qwen_reward_lm, fast_engine):
    from paradox.vllm_backend import VLLMProcessReward

    rm = VLLMProcessReward(_o(qwen_reward_lm, "vllm"), fast_engine, show_progress=False)
    with pytest.raises(ValueError, match=r"STEP pooling.*Qwen2ForRewardModel"):
        rm.load()
