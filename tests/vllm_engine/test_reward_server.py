"""Reward scoring through vLLM's pooling server (paradox.reward_server) on vLLM's CPU build: the same
scores as HFReward (transformers) and VLLMReward (vLLM's offline engine) for both heads - the tiny
sequence classifier (Skywork-Reward's shape) and the tiny Qwen2.5-Math-RM-shaped model with its
per-token head - from two managed server replicas started through params as a stage starts them,
a long chat cut the same way by all three; then the same servers given by URL (one of them dead),
their context read from the server, and a head the server's model lacks refused on load.

Tolerance: 1e-4 absolute on scores of magnitude ~1, float32 everywhere (the three run different
kernels and batch shapes; measured: served and offline vLLM scores are identical, both within
1e-6 of transformers).
"""

from __future__ import annotations

import importlib.util
import math
import socket
from pathlib import Path

import pytest

_vllm = importlib.util.find_spec("vllm")
if _vllm is None or _vllm.origin is None:
    pytest.skip("vLLM is not installed in this environment", allow_module_level=True)

from paradox import backends  # noqa: E402
from paradox.params import Reward, RewardModel, Serve, load_params  # noqa: E402
from paradox.paths import RunPaths  # noqa: E402
from paradox.problems import Problem  # noqa: E402
from paradox.reward_models import HFReward  # noqa: E402
from paradox.reward_server import ServedReward  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4
MAX_LENGTH = 256  # the long trace below is cut (~400 tokens), the others are not
SYSTEM = "Please reason step by step."
KEY_ENV = "PARADOX_TEST_REWARD_KEY"
LONG = " ".join(f"Step {j}: {j} + 1 = {j + 1}." for j in range(60)) + " So the answer is \\boxed{61}."
PROBLEMS = [
    Problem(
        id=f"p{i}",
        question=f"Tom has {i + 3} apples and gets {i + 1} more. How many?",
        answer=str(2 * i + 4),
        reference_solution="",
        source="test",
    )
    for i in range(10)
]
TRACES = [
    f"Tom has {i + 3} apples. Then he gets {i + 1} more, so {i + 3} + {i + 1} = {2 * i + 4}.\n"
    f"The answer is {2 * i + 4}."
    if i % 3
    else f"\\( n = {i + 3} + {i + 1} \\) \\boxed{{{2 * i + 4}}}"
    for i in range(9)
] + [LONG]


def _spec(path: Path, head: str, backend: str = "vllm_server", **kw) -> RewardModel:
    return RewardModel(
        **{
            "backend": backend,
            "name_or_path": str(path),
            "head": head,
            "system_prompt": SYSTEM,
            "max_length": MAX_LENGTH,
            "batch_size": 2,
            "api_key_env": KEY_ENV,
            **kw,
        }
    )


@pytest.fixture(scope="module", params=["seq_cls", "remote_code"])
def served(request, reward_lm, qwen_reward_lm, tmp_path_factory):
    """(head, checkpoint, adapter): two managed `vllm serve --runner pooling` replicas of one tiny
    reward model, started by `backends.reward_model` from params, as notebook 02 starts them. One
    model at a time (pytest finishes one param before the next)."""
    head = request.param
    path = reward_lm if head == "seq_cls" else qwen_reward_lm
    params = load_params("smoke", ROOT / "params")
    spec = _spec(path, head, serve=Serve(replicas=2, enforce_eager=True, start_timeout_s=600))
    params = params.model_copy(update={"reward": Reward.model_validate(spec.model_dump())})
    rm = backends.reward_model(params, paths=RunPaths("smoke", tmp_path_factory.mktemp("runs")))
    assert isinstance(rm, ServedReward)
    rm.show_progress = False
    try:
        rm.load()
        yield head, path, rm
        servers = list(rm.group.servers)
    finally:
        rm.close()
    assert len(servers) == 2 and not any(s.alive() for s in servers)  # close() stopped both


def test_the_same_scores_from_transformers_the_offline_engine_and_two_servers(served, fast_engine):
    from paradox.vllm_backend import VLLMReward

    head, path, rm = served
    hf = HFReward(_spec(path, head, "hf", trust_remote_code=head == "remote_code"), show_progress=False)
    want = hf.score_many(PROBLEMS, TRACES)
    with VLLMReward(_spec(path, head, "vllm"), fast_engine) as offline:
        got_offline = offline.score_many(PROBLEMS, TRACES)
        chats = [offline.encode(p.question, t) for p, t in zip(PROBLEMS, TRACES, strict=True)]
    before = rm.n_truncated
    got = rm.score_many(PROBLEMS, TRACES)
    assert rm.n_truncated - before == 1 and offline.n_truncated == 2 and hf.n_truncated == 1  # the long chat
    assert [rm.encode(p.question, t) for p, t in zip(PROBLEMS, TRACES, strict=True)] == chats  # the same ids
    assert [hf.encode(p.question, t) for p, t in zip(PROBLEMS, TRACES, strict=True)] == chats
    assert len(chats[-1]) == MAX_LENGTH and all(len(c) < MAX_LENGTH for c in chats[:-1])
    assert all(math.isfinite(x) for x in got) and len(set(got)) == len(got)
    assert got == pytest.approx(want, abs=TOL)
    assert got_offline == pytest.approx(want, abs=TOL)
    per_server = {k: v for k, v in rm.stats().items() if k.startswith("requests http")}
    assert len(per_server) == 2 and all(v > 0 for v in per_server.values())  # both replicas scored
    assert rm.score(PROBLEMS[1], TRACES[1]) == pytest.approx(want[1], abs=TOL)


def test_servers_given_by_url_one_dead_context_read_from_the_server(served):
    head, path, rm = served
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    urls = (dead, *(u.removesuffix("/v1") for u in rm.base_urls))  # given without /v1, as some write them
    given = ServedReward(
        _spec(path, head, base_url=urls, served_model_name=rm.served_name, max_length=4096),
        show_progress=False,
        backoff_base_s=0.01,
        dead_cooldown_s=60,
    )
    with given:
        got = given.score_many(PROBLEMS, TRACES)
        assert given.max_length == MAX_LENGTH  # the servers' max_model_len, read from /v1/models
        assert given.stats().get("failures", 0) == 0
    assert got == pytest.approx(rm.score_many(PROBLEMS, TRACES), abs=1e-6)


def test_a_head_the_served_model_lacks_is_refused_on_load(served):
    head, path, rm = served
    other = "seq_cls" if head == "remote_code" else "remote_code"
    wrong = ServedReward(
        _spec(path, other, base_url=rm.base_urls[0], served_model_name=rm.served_name), show_progress=False
    )
    # vLLM's answers: Qwen2ForRewardModel offers only token_classify; a sequence classifier is served
    # with classify as its pooling task
    said = (
        r"Supported tasks: \['token_classify'\]" if head == "remote_code" else "pooling_task.*token_classify"
    )
    with pytest.raises(
        ValueError, match=rf"head '{other}' scores with vLLM's pooling task .*HTTP 400.*{said}"
    ):
        wrong.load()
