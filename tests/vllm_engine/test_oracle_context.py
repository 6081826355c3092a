"""Fitting Oracle requests into the context, against vLLM's real OpenAI-compatible server (CPU build,
the tiny LM of conftest.py, max_model_len = its 8,192 positions): the client counts a prompt exactly
as the server does, a request vLLM refuses as too long comes back skipped and counted (never an
abort), and a counted client never sends one.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_vllm = importlib.util.find_spec("vllm")
if _vllm is None or _vllm.origin is None:
    pytest.skip("vLLM is not installed in this environment", allow_module_level=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: fault_proxy, oracle_helpers
from fault_proxy import FaultServer  # noqa: E402
from oracle_helpers import KEY_ENV  # noqa: E402

from paradox.oracle_budget import OracleTokenizer  # noqa: E402
from paradox.oracle_client import OracleClient  # noqa: E402

CONTEXT = 8192  # the server's max_model_len: the tiny LM's max_position_embeddings


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-vllm-context")


@pytest.fixture(scope="module")
def proxy(vllm_server):
    base_url, model = vllm_server
    with FaultServer(upstream=base_url) as srv:
        yield srv, model


def client(url: str, model: str, cache: Path, **kw: object) -> OracleClient:
    opts: dict = {
        "api_key_env": KEY_ENV,
        "concurrency": 2,
        "max_retries": 2,
        "timeout_s": 600.0,
        "seed": 0,
        "backoff_base_s": 0.05,
        "max_tokens": 8,
    } | kw
    return OracleClient(base_url=url, model=model, cache_dir=cache, **opts)


def long_prompt(n_lines: int) -> str:
    return "\n".join(f"Question {i}: Tom has {i} apples and gets 5 more. How many?" for i in range(n_lines))


def test_the_client_counts_a_prompt_as_vllm_does(vllm_server, vllm_lm):
    import openai

    base_url, model = vllm_server
    tok = OracleTokenizer(str(vllm_lm), chat_template_tokens=64)
    api = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    for prompt in ("", "Question: 1 + 1?\nAnswer:", long_prompt(40), "Tom: \\( 7 + 5 = 12 \\) {braces} é"):
        resp = api.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=1
        )
        assert resp.usage.prompt_tokens == tok.prompt_tokens(prompt), prompt[:40]


def test_a_request_vllm_refuses_as_too_long_is_skipped_and_counted(proxy, vllm_lm, tmp_path):
    srv, model = proxy
    tok = OracleTokenizer(str(vllm_lm))
    too_long = long_prompt(600)
    assert tok.prompt_tokens(too_long) > CONTEXT
    uncounted = client(srv.url, model, tmp_path / "a")  # sends everything: the server's verdict decides
    mark = len(srv.chat_requests())
    out = uncounted.complete_many(["Question: 2 + 2?\nAnswer:", too_long], desc=None, kind="refine")
    assert isinstance(out[0], str) and out[1] is None
    assert uncounted.stats()["refused_too_long"] == 1 and uncounted.stats()["skipped_refine"] == 1
    # max_tokens above max_model_len: refused too (vLLM 0.32: "cannot be greater than max_model_len")
    assert client(srv.url, model, tmp_path / "b", max_tokens=CONTEXT + 1).complete("Question: 3 + 3?") is None
    assert len(srv.chat_requests()) == mark + 3
    # Counted, the over-long prompt is never sent, and the short one asks for what is left at most.
    counted = client(
        srv.url, model, tmp_path / "c", context_length=CONTEXT, tokenizer=str(vllm_lm), max_tokens=CONTEXT
    )
    mark = len(srv.chat_requests())
    out = counted.complete_many(["Question: 4 + 4?\nAnswer:", too_long], desc=None)
    assert isinstance(out[0], str) and out[1] is None and counted.stats()["skipped"] == 1
    [sent] = srv.chat_requests()[mark:]
    assert sent.body["max_tokens"] == CONTEXT - 16 - tok.prompt_tokens("Question: 4 + 4?\nAnswer:")
