"""The Oracle client (and one PromptOracle call) against vLLM's OpenAI-compatible server serving
the tiny toy LM, through the fault proxy in front of it: injected 429, 500 and a timeout, the
concurrency limit, the cache, and a killed run resumed without repeating finished prompts.

The tiny LM writes nonsense; these tests check the plumbing, not the answers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

# The vLLM environment only (`make test-vllm`), even if collected elsewhere. Checked without importing
# vLLM, and a namespace package (any directory named vllm on sys.path) does not count.
_vllm = importlib.util.find_spec("vllm")
if _vllm is None or _vllm.origin is None:
    pytest.skip("vLLM is not installed in this environment", allow_module_level=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: fault_proxy, oracle_helpers
from fault_proxy import FaultServer  # noqa: E402
from oracle_helpers import KEY_ENV, cache_files, cached_prompts, kill_mid_run  # noqa: E402

from paradox.oracle_client import OracleClient  # noqa: E402
from paradox.params import OraclePrompts  # noqa: E402
from paradox.problems import Problem  # noqa: E402
from paradox.prompt_oracle import PromptOracle, load_prompts  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-test-vllm-not-a-real-key"
MAX_TOKENS = 16  # short answers keep a CPU server fast
TIMEOUT_S = 10.0  # the client's per-request limit; a warm server answers well within it


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture(scope="module")
def warm(vllm_server, tmp_path_factory) -> tuple[str, str]:
    """One request straight to the server first, so that a cold start is not taken for a timeout."""
    base_url, model = vllm_server
    client(base_url, model, tmp_path_factory.mktemp("warm"), timeout_s=600).complete(
        "Question: 1 + 1?\nAnswer:"
    )
    return base_url, model


@pytest.fixture
def proxy(warm):
    base_url, model = warm
    with FaultServer(upstream=base_url, timeout_delay_s=TIMEOUT_S + 2) as srv:
        yield srv, model


def client(url: str, model: str, cache: Path, **kw: object) -> OracleClient:
    opts: dict = {
        "api_key_env": KEY_ENV,
        "concurrency": 4,
        "max_retries": 4,
        "timeout_s": TIMEOUT_S,
        "max_tokens": MAX_TOKENS,
        "seed": 0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
    } | kw
    return OracleClient(base_url=url, model=model, cache_dir=cache, **opts)


def test_retries_through_injected_faults_reach_the_real_server(proxy, tmp_path):
    srv, model = proxy
    srv.schedule(["429", "500", "timeout"])
    c = client(srv.url, model, tmp_path)
    answer = c.complete("Question: Tom has 7 apples and gets 5 more. How many?\nAnswer:")
    assert isinstance(answer, str)
    assert [r.action for r in srv.chat_requests()] == ["429", "500", "timeout", "ok"]
    assert c.stats()["retries"] == 3 and c.stats()["failures"] == 0
    assert len(cache_files(tmp_path)) == 1
    again = client(srv.url, model, tmp_path)
    assert again.complete("Question: Tom has 7 apples and gets 5 more. How many?\nAnswer:") == answer
    assert len(srv.chat_requests()) == 4 and again.stats()["requests"] == 0
    for p in tmp_path.rglob("*"):
        assert not p.is_file() or SECRET not in p.read_text()


def test_concurrent_batch_in_order_within_the_limit(proxy, tmp_path):
    srv, model = proxy
    c = client(srv.url, model, tmp_path, concurrency=3)
    prompts = [f"Question: what is {i} + {i}?\nAnswer:" for i in range(10)]
    out = c.complete_many(prompts, desc=None)
    assert len(out) == 10 and all(isinstance(x, str) for x in out)
    assert srv.max_in_flight <= 3
    assert {r.prompt for r in srv.chat_requests()} == set(prompts)
    # Each cached answer is the one returned for its prompt (input order kept).
    assert [c.cached(p) for p in prompts] == out


def test_prompt_oracle_locate_and_refine(proxy, tmp_path):
    srv, model = proxy
    oracle = PromptOracle(
        client(srv.url, model, tmp_path, max_tokens=32),
        load_prompts(OraclePrompts().model_dump(), root=ROOT),
        name=model,
    )
    p = Problem(
        id="p",
        question="Tom has 7 apples and gets 5 more. How many?",
        answer="12",
        reference_solution="",
        source="test",
    )
    trace = "Tom has 7 apples.\n\nHe gets 5 more: 7 + 5 = 12.\n\nThe answer is 12."
    located = oracle.locate_many([p], [trace])
    assert located[0] is None or 0 <= located[0] < 3  # the tiny LM's answer is parsed or counted
    refined = oracle.refine_many([p], [trace])
    assert refined[0].strip()  # the model's text, or the original if it said nothing
    stats = oracle.stats()
    assert stats["requests"] == 2 and (located[0] is None or not stats.get("locate_unparsed"))


def test_killed_run_resumes_without_repeating(proxy, tmp_path):
    srv, model = proxy
    n = 30
    kill_mid_run(
        srv.url,
        model,
        tmp_path,
        n,
        after=8,
        log=tmp_path.parent / "client.log",
        max_tokens=MAX_TOKENS,
        deadline_s=300,
    )
    done = cached_prompts(tmp_path)
    assert 8 <= len(done) < n
    mark = len(srv.chat_requests())
    c = client(srv.url, model, tmp_path, seed=None)  # the killed run's sampling params: its cache keys
    prompts = [f"prompt {i}" for i in range(n)]
    out = c.complete_many(prompts, desc=None)
    resumed = [r.prompt for r in srv.chat_requests()[mark:]]
    assert not set(resumed) & done
    assert sorted(resumed) == sorted(set(prompts) - done)
    assert len(out) == n and cached_prompts(tmp_path) == set(prompts)
