"""SLM sampling through vLLM's OpenAI-compatible server (paradox.openai_generator) on vLLM's CPU
build: the same samples as the offline engine for the same seeds, spread over two servers, a
killed client resumed without repeating a finished request, and a run that survives one of its
two servers being killed mid-run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

_vllm = importlib.util.find_spec("vllm")
if _vllm is None or _vllm.origin is None:
    pytest.skip("vLLM is not installed in this environment", allow_module_level=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: fault_proxy
from fault_proxy import FaultServer  # noqa: E402

from paradox.endpoints import EndpointPool  # noqa: E402
from paradox.generation import SamplingSettings  # noqa: E402
from paradox.openai_generator import OpenAIGenerator  # noqa: E402
from paradox.serving import ServeSpec, VLLMServer  # noqa: E402

KEY_ENV = "PARADOX_TEST_SLM_KEY"
PROMPTS = [
    f"Question: Tom has {a} apples and gets {b} more. How many?\nAnswer:\n"
    for a, b in [(3, 4), (7, 5), (2, 9), (8, 1), (6, 6), (5, 3), (9, 2), (4, 8)]
]


@pytest.fixture(scope="module")
def servers(vllm_lm, tmp_path_factory):
    """Two `vllm serve` processes of the tiny LM, as two nodes would run them."""
    logs = tmp_path_factory.mktemp("serve-logs")
    spec = ServeSpec(
        model=str(vllm_lm),
        served_name="toy-slm",
        dtype="float32",
        enforce_eager=True,
        extra_args=("--no-enable-chunked-prefill",),
        start_timeout_s=600,
    )
    started = [VLLMServer(spec, logs, name=f"slm-{i}") for i in range(2)]
    try:
        for s in started:
            s.start()
        yield started
    finally:
        for s in started:
            s.stop()


def generator(vllm_tokenizer, urls, cache: Path, **pool_kw) -> OpenAIGenerator:
    pool = EndpointPool(
        urls,
        api_key_env=KEY_ENV,
        concurrency=2,
        max_retries=3,
        timeout_s=120,
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        dead_cooldown_s=60,
        **pool_kw,
    )
    return OpenAIGenerator(vllm_tokenizer, pool, "toy-slm", model_key="tiny", cache_dir=cache)


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_same_samples_as_the_offline_engine(servers, vllm_generator, vllm_tokenizer, tmp_path, temperature):
    s = SamplingSettings(n=3, temperature=temperature, top_p=1.0, max_new_tokens=24, seed=11)
    offline = vllm_generator.generate(PROMPTS, s)
    served = generator(vllm_tokenizer, [x.base_url for x in servers], tmp_path).generate(PROMPTS, s)
    assert served == offline
    assert {c.truncated for cs in offline for c in cs} == {True, False} or temperature == 0


def test_spread_over_both_servers_and_cached(servers, vllm_tokenizer, tmp_path):
    with FaultServer(upstream=servers[0].base_url) as a, FaultServer(upstream=servers[1].base_url) as b:
        gen = generator(vllm_tokenizer, [a.url, b.url], tmp_path)
        s = SamplingSettings(n=2, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=3)
        first = gen.generate(PROMPTS, s)
        assert (
            len(a.requests) > 0 and len(b.requests) > 0 and len(a.requests) + len(b.requests) == len(PROMPTS)
        )
        assert gen.generate(PROMPTS, s) == first  # from the cache
        assert len(a.requests) + len(b.requests) == len(PROMPTS)


RUN_CLIENT = """
import sys
from transformers import AutoTokenizer
from paradox.endpoints import EndpointPool
from paradox.generation import SamplingSettings
from paradox.openai_generator import OpenAIGenerator
model, url, cache, key_env = sys.argv[1:5]
tok = AutoTokenizer.from_pretrained(model)
pool = EndpointPool([url], api_key_env=key_env, concurrency=2, max_retries=0, timeout_s=120)
gen = OpenAIGenerator(tok, pool, "toy-slm", model_key="tiny", cache_dir=cache)
prompts = [f"Question: what is {i} + {i}?\\nAnswer:\\n" for i in range(40)]
gen.generate(prompts, SamplingSettings(n=2, temperature=1.0, top_p=1.0, max_new_tokens=24, seed=5))
"""


def test_killed_client_resumes_without_repeating(servers, vllm_lm, vllm_tokenizer, tmp_path):
    cache = tmp_path / "cache"
    with FaultServer(upstream=servers[0].base_url) as proxy:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_CLIENT, str(vllm_lm), proxy.url, str(cache), KEY_ENV],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while len(list(cache.rglob("*.json"))) < 10:
            assert proc.poll() is None and time.monotonic() < deadline, "client ended or too slow"
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        time.sleep(0.5)
        answered = {tuple(r.body["prompt"]) for r in proxy.requests}
        done = len(list(cache.rglob("*.json")))
        assert 10 <= done < 40
        mark = len(proxy.requests)
        gen = generator(vllm_tokenizer, [proxy.url], cache)
        prompts = [f"Question: what is {i} + {i}?\nAnswer:\n" for i in range(40)]
        out = gen.generate(
            prompts, SamplingSettings(n=2, temperature=1.0, top_p=1.0, max_new_tokens=24, seed=5)
        )
        resumed = [tuple(r.body["prompt"]) for r in proxy.requests[mark:]]
    assert len(out) == 40 and len(list(cache.rglob("*.json"))) == 40
    assert len(resumed) == 40 - done  # only the answers that never reached the cache are asked for
    repeated = set(resumed) & answered  # sent by the killed client, its answer lost with it
    assert len(repeated) <= 2  # at most the requests in flight at the kill (concurrency 2)


def test_run_finishes_when_one_server_dies_mid_run(servers, vllm_tokenizer, tmp_path):
    """Last in this module: it kills a server."""
    with FaultServer(upstream=servers[1].base_url) as b:
        gen = generator(vllm_tokenizer, [servers[0].base_url, b.url], tmp_path)
        prompts = [f"Question: what is {i} times 2?\nAnswer:\n" for i in range(30)]
        s = SamplingSettings(n=2, temperature=1.0, top_p=1.0, max_new_tokens=24, seed=9)

        def kill_b_after_some() -> None:
            while len(b.requests) < 3:
                time.sleep(0.01)
            servers[1].stop()
            b.stop()  # the node is gone: nothing answers at its address

        killer = threading.Thread(target=kill_b_after_some, daemon=True)
        killer.start()
        out = gen.generate(prompts, s)
        killer.join(timeout=120)
    assert len(out) == 30 and all(len(cs) == 2 for cs in out)
    assert not servers[1].alive() and servers[0].healthy()
    assert gen.pool.stats().get("endpoint_down", 0) >= 1
