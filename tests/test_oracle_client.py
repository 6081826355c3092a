"""The OpenAI-compatible Oracle client against a fake endpoint that injects faults (fault_proxy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fault_proxy import FaultServer
from oracle_helpers import (
    BYTE_CHAT_OVERHEAD,
    KEY_ENV,
    RUN_CLIENT,
    TOO_LONG_BODIES,
    PayloadServer,
    byte_tokenizer,
    cache_files,
    cached_prompts,
    completion,
    kill_mid_run,
)

from paradox.io import stable_hash
from paradox.oracle_budget import BudgetError
from paradox.oracle_client import OracleClient, OracleError, display_url
from paradox.params import AnswerTokens, OracleAnswers

SECRET = "sk-test-not-a-real-key-7f3a9c"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def client(url: str, cache: Path, **kw: object) -> OracleClient:
    """Fast settings: tiny backoff, short timeout."""
    opts: dict = {
        "model": "fake-model",
        "api_key_env": KEY_ENV,
        "concurrency": 4,
        "max_retries": 4,
        "timeout_s": 5.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    } | kw
    return OracleClient(base_url=url, cache_dir=cache, **opts)


def test_retries_through_429_500_timeout_and_dropped_connection(tmp_path):
    with FaultServer(timeout_delay_s=1.5) as srv:
        srv.schedule(["429", "500", "timeout", "drop", "503"])
        c = client(srv.url, tmp_path, timeout_s=0.5, max_retries=5)
        assert c.complete("hello") == "echo: hello"
        actions = [r.action for r in srv.chat_requests()]
    assert actions == ["429", "500", "timeout", "drop", "503", "ok"]
    assert c.stats() == {
        "requests": 6,
        "cache_hits": 0,
        "cache_invalid": 0,
        "retries": 5,
        "failures": 0,
        "skipped": 0,
        "truncated": 0,
    }
    assert len(cache_files(tmp_path)) == 1


def test_concurrency_limit_is_respected(tmp_path):
    with FaultServer(delay_s=0.15) as srv:
        c = client(srv.url, tmp_path, concurrency=3)
        prompts = [f"p{i}" for i in range(12)]
        t0 = time.monotonic()
        out = c.complete_many(prompts, desc=None)
        elapsed = time.monotonic() - t0
    assert out == [f"echo: p{i}" for i in range(12)]  # input order
    assert srv.max_in_flight == 3  # never more than the limit, and the limit is used
    assert elapsed < 12 * 0.15  # really concurrent


def test_cache_hit_makes_no_request_and_repeats_are_asked_once(tmp_path):
    with FaultServer() as srv:
        first = client(srv.url, tmp_path)
        assert first.complete_many(["a", "b", "a"], desc=None) == ["echo: a", "echo: b", "echo: a"]
        assert len(srv.chat_requests()) == 2  # "a" asked once
        again = client(srv.url, tmp_path)  # a new run on the same cache
        assert again.complete_many(["b", "a"], desc=None) == ["echo: b", "echo: a"]
        assert again.complete("a") == "echo: a"
        assert len(srv.chat_requests()) == 2
    assert again.stats()["cache_hits"] == 3 and again.stats()["requests"] == 0


def test_cache_key_changes_with_sampling_params_only(tmp_path, monkeypatch):
    base = client("http://127.0.0.1:1/v1", tmp_path)
    keys = {base.cache_key("q")}
    for change in ({"temperature": 0.7}, {"top_p": 0.9}, {"max_tokens": 17}, {"seed": 3}, {"model": "other"}):
        keys.add(client("http://127.0.0.1:1/v1", tmp_path, **change).cache_key("q"))
    assert len(keys) == 6
    assert base.cache_key("q2") != base.cache_key("q")
    # Neither the endpoint nor the key is part of the key (a proxy or a new key reuses the cache).
    monkeypatch.setenv(KEY_ENV, "sk-another")
    assert client("https://user:pw@example.org/v1?token=x", tmp_path).cache_key("q") == base.cache_key("q")
    with FaultServer() as srv:
        client(srv.url, tmp_path).complete("q")
        client(srv.url, tmp_path, temperature=0.7, seed=3).complete("q")  # a new key: asked again
        bodies = [r.body for r in srv.chat_requests()]
    assert len(bodies) == 2
    assert bodies[0]["temperature"] == 0.0 and "seed" not in bodies[0]
    assert bodies[1]["temperature"] == 0.7 and bodies[1]["seed"] == 3 and bodies[1]["max_tokens"] == 4096


def test_api_key_reaches_server_but_no_file(tmp_path):
    with FaultServer() as srv:
        c = client(srv.url, tmp_path)
        c.complete_many(["x", "y"], desc=None)
        auth = {r.headers.get("authorization") for r in srv.chat_requests()}
    assert auth == {f"Bearer {SECRET}"}
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for p in files:
        text = p.read_text()
        assert SECRET not in text and "127.0.0.1" not in text, p


def test_failure_after_retries_is_clear_and_keeps_finished_answers(tmp_path):
    rule = lambda body: "500" if body["messages"][-1]["content"] == "bad" else None  # noqa: E731
    with FaultServer(rule=rule, delay_s=0.05) as srv:
        c = client(srv.url, tmp_path, concurrency=3, max_retries=2)
        with pytest.raises(OracleError) as err:
            c.complete_many(["good0", "good1", "bad"], desc=None)
        n_bad = sum(r.prompt == "bad" for r in srv.chat_requests())
    msg = str(err.value)
    assert display_url(srv.url) in msg and "fake-model" in msg and "HTTP 500" in msg and "3 attempt" in msg
    assert SECRET not in msg
    assert n_bad == 3  # one try and two retries
    assert cached_prompts(tmp_path) == {"good0", "good1"}
    assert c.stats()["failures"] == 1


def test_non_retryable_status_fails_at_once(tmp_path):
    with FaultServer() as srv:
        srv.schedule(["401"])
        with pytest.raises(OracleError, match="HTTP 401"):
            client(srv.url, tmp_path).complete("q")
        assert len(srv.chat_requests()) == 1
    assert not cache_files(tmp_path)


def test_empty_answer_is_returned_and_cached(tmp_path):
    with FaultServer(responder=lambda body: "") as srv:
        c = client(srv.url, tmp_path)
        assert c.complete("q") == ""
        assert c.complete("q") == ""
        assert len(srv.chat_requests()) == 1


@pytest.mark.parametrize(
    "entry",
    [
        '{"completion": null, "finish_reason": "stop"}',  # not a string (was a TypeError on every rerun)
        '{"completion": 42, "finish_reason": "stop"}',
        '{"completion": ["a"], "finish_reason": "stop"}',
        '{"completion": "half", "finish_reason": 7}',
        '{"finish_reason": "stop"}',  # a missing field
        '{"completion": "cut?"}',  # unknown whether it was cut at its limit
        '["echo: q", "stop"]',  # not an object
        '{"completion": "echo',  # not JSON (a torn hand edit)
    ],
)
def test_an_invalid_cache_entry_is_asked_again_counted_and_overwritten(tmp_path, entry):
    with FaultServer() as srv:
        first = client(srv.url, tmp_path)
        assert first.complete("q") == "echo: q"
        path = first.cache_path("q")
        path.write_text(entry)
        again = client(srv.url, tmp_path)
        assert again.complete("q") == "echo: q"  # never a crash, never the broken value
        assert len(srv.chat_requests()) == 2  # asked again, once
        assert again.stats()["cache_invalid"] == 1 and again.stats()["cache_hits"] == 0
        assert json.loads(path.read_text())["completion"] == "echo: q"  # overwritten
        third = client(srv.url, tmp_path)
        assert third.complete("q") == "echo: q" and len(srv.chat_requests()) == 2  # a hit now
        assert third.stats()["cache_invalid"] == 0


def test_killed_run_resumes_without_repeating_finished_prompts(tmp_path):
    n = 60
    prompts = [f"prompt {i}" for i in range(n)]
    with FaultServer(delay_s=0.05) as srv:
        kill_mid_run(srv.url, "fake-model", tmp_path, n, after=10, log=tmp_path.parent / "client.log")
        done = cached_prompts(tmp_path)
        assert 10 <= len(done) < n
        mark = len(srv.chat_requests())
        c = client(srv.url, tmp_path, concurrency=4)
        assert c.complete_many(prompts, desc=None) == [f"echo: {p}" for p in prompts]
        resumed = [r.prompt for r in srv.chat_requests()[mark:]]
    assert not set(resumed) & done  # nothing finished is asked again
    assert sorted(resumed) == sorted(set(prompts) - done)  # everything else exactly once
    assert c.stats()["cache_hits"] == len(done)
    assert cached_prompts(tmp_path) == set(prompts)


def test_a_killed_run_re_pays_at_most_the_requests_in_flight(tmp_path):
    """The resume guarantee, exactly: answers cached are never paid again; a SIGKILL loses the
    answers in flight, at most `concurrency` (2 in the killed client, one endpoint). Here the
    bound is reached: the server holds every answer after the fifth until the client is dead."""
    n, concurrency, quick = 20, 2, 5
    prompts = [f"prompt {i}" for i in range(n)]
    release = threading.Event()

    def answer(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        if int(prompt.split()[1]) >= quick:
            release.wait(30)  # in flight until the kill
        return f"echo: {prompt}"

    args = [sys.executable, "-c", RUN_CLIENT, "", "fake-model", str(tmp_path), str(n), "4096", KEY_ENV]
    with FaultServer(responder=answer) as srv:
        args[3] = srv.url
        proc = subprocess.Popen(
            args, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            while len(cache_files(tmp_path)) < quick or len(srv.chat_requests()) < quick + concurrency:
                assert proc.poll() is None and time.monotonic() < deadline, "the client did not get going"
                time.sleep(0.01)
            time.sleep(0.3)  # a client that sent more than its concurrency would show it now
        finally:
            proc.kill()
            proc.wait()
        release.set()
        done = cached_prompts(tmp_path)
        sent = [r.prompt for r in srv.chat_requests()]
        lost = set(sent) - done  # paid for, never cached
        assert len(sent) == len(set(sent)) == quick + concurrency  # each asked once, `concurrency` in flight
        assert len(done) == quick and len(lost) == concurrency
        c = client(srv.url, tmp_path, concurrency=4)
        assert c.complete_many(prompts, desc=None) == [f"echo: {p}" for p in prompts]
        resumed = [r.prompt for r in srv.chat_requests()[len(sent) :]]
    assert sorted(resumed) == sorted(set(prompts) - done)  # the lost ones and the never sent, once each
    assert len(sent) + len(resumed) == n + concurrency  # paid in all: n, plus the in-flight, no more
    assert c.stats()["cache_hits"] == quick


def test_reasoning_model_request_fields(tmp_path):
    """GPT-5-class APIs reject sampling params and want max_completion_tokens: params can say so."""
    with FaultServer() as srv:
        c = client(
            srv.url,
            tmp_path,
            temperature=None,
            top_p=None,
            max_tokens=99,
            token_limit_field="max_completion_tokens",
        )
        assert c.complete("q") == "echo: q"
        [req] = srv.chat_requests()
    assert req.body["max_completion_tokens"] == 99
    assert not {"max_tokens", "temperature", "top_p"} & set(req.body)


# --- every request fits the context ----------------------------------------------------------------

ANSWERS = OracleAnswers(
    refine=AnswerTokens(max_tokens=20, min_tokens=10, per_source_token=1.0),
    retention_judge=AnswerTokens(max_tokens=8, min_tokens=4),
)
MARGIN = 4


@pytest.fixture(scope="module")
def bytes_tok(tmp_path_factory) -> str:
    """One token per UTF-8 byte, a ChatML-like chat template: every count is known by construction."""
    return str(byte_tokenizer(tmp_path_factory.mktemp("byte_tok")))


def fitted(url: str, cache: Path, tok: str, context: int = 200, **kw: object) -> OracleClient:
    return client(
        url, cache, context_length=context, tokenizer=tok, context_margin=MARGIN, answers=ANSWERS, **kw
    )


def test_every_request_is_counted_and_capped_to_what_is_left_or_not_sent(tmp_path, bytes_tok):
    # A prompt of n bytes is n + 19 tokens with its chat template: with context 200 and margin 4,
    # 177 - n are left. A refine of a 30-token trace asks for 20 + 30 and needs at least 10 + 30.
    source = "x" * 30
    short, mid, long_ = "a" * 100, "b" * 130, "c" * 140  # 77, 47 and 37 tokens left
    with FaultServer() as srv:
        c = fitted(srv.url, tmp_path, bytes_tok)
        out = c.complete_many([short, mid, long_, short], kind="refine", sources=[source] * 4, desc=None)
        sent = {r.prompt: r.body["max_tokens"] for r in srv.chat_requests()}
    assert BYTE_CHAT_OVERHEAD == 19
    assert out == [f"echo: {short}", f"echo: {mid}", None, f"echo: {short}"]
    assert sent == {short: 50, mid: 47}  # the full limit; capped to what is left; the third never sent
    assert len(srv.chat_requests()) == 2
    stats = c.stats()
    assert stats["skipped"] == 1 and stats["skipped_refine"] == 1 and stats["requests"] == 2


def test_each_kind_asks_for_its_own_budget(tmp_path, bytes_tok):
    with FaultServer() as srv:
        c = fitted(srv.url, tmp_path, bytes_tok, context=4096)
        c.complete("judge this", kind="retention_judge")
        c.complete("refine this", kind="refine", source="y" * 100)
        c.complete("anything")  # no kind: oracle.max_tokens, capped to the context
        limits = [r.body["max_tokens"] for r in srv.chat_requests()]
    assert limits == [8, 20 + 100, 4096 - MARGIN - BYTE_CHAT_OVERHEAD - len("anything")]
    with pytest.raises(ValueError, match="unknown kind of Oracle request 'refin'"):
        c.complete("x", kind="refin")


def test_cache_key_holds_the_completion_limit_sent(tmp_path, bytes_tok):
    prompt, source = "q" * 100, "s" * 30
    with FaultServer() as srv:
        fitted(srv.url, tmp_path, bytes_tok).complete(prompt, kind="refine", source=source)  # asks for 50
        fitted(srv.url, tmp_path, bytes_tok).complete(prompt, kind="refine", source=source)  # from the cache
        fitted(srv.url, tmp_path, bytes_tok, context=170).complete(
            prompt, kind="refine", source=source
        )  # 47 left
        sent = [r.body["max_tokens"] for r in srv.chat_requests()]
    assert sent == [50, 47]
    # An uncounted client keys as before (model, messages, sampling with max_tokens): old caches still hit.
    old = stable_hash(
        {
            "v": 1,
            "model": "fake-model",
            "messages": [{"role": "user", "content": "q"}],
            "temperature": 0.0,
            "top_p": 1.0,
            "max_tokens": 4096,
            "seed": None,
        },
        n=32,
    )
    assert client("http://127.0.0.1:1/v1", tmp_path).cache_key("q") == old


@pytest.mark.parametrize("server", sorted(TOO_LONG_BODIES))
def test_a_context_length_400_is_skipped_and_counted_not_an_abort(tmp_path, server):
    def too_long(body):
        return (400, TOO_LONG_BODIES[server]) if body["messages"][-1]["content"] == "long" else None

    with PayloadServer(too_long) as srv:
        c = client(srv.url, tmp_path)
        assert c.complete_many(["a", "long", "b"], desc=None, kind="refine") == ["echo: a", None, "echo: b"]
        assert sum(r.prompt == "long" for r in srv.chat_requests()) == 1  # not retried
    stats = c.stats()
    assert stats["skipped"] == 1 and stats["skipped_refine"] == 1 and stats["refused_too_long"] == 1
    assert stats["failures"] == 0
    assert cached_prompts(tmp_path) == {"a", "b"}  # a refusal is not cached


def test_any_other_400_still_fails_loudly(tmp_path):
    body = {
        "error": {
            "message": "temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)",
            "type": "BadRequestError",
            "param": "temperature",
            "code": 400,
        }
    }
    with (
        PayloadServer(lambda b: (400, body)) as srv,
        pytest.raises(OracleError, match="HTTP 400.*temperature"),
    ):
        client(srv.url, tmp_path).complete("q")


def test_answers_cut_at_their_limit_are_counted(tmp_path):
    with PayloadServer(lambda b: completion("the critique goes on and", finish_reason="length")) as srv:
        c = client(srv.url, tmp_path)
        [a] = c.answer_many(["q"], kind="locate", desc=None)
    assert a.truncated and a.text == "the critique goes on and"
    assert c.stats()["truncated"] == 1 and c.stats()["truncated_locate"] == 1
    again = client("http://127.0.0.1:1/v1", tmp_path)  # from the cache, still known to be cut
    assert (
        again.answer_many(["q"], kind="locate", desc=None) == [a] and again.stats()["truncated_locate"] == 1
    )


def test_a_tokenizer_that_cannot_count_fails_before_any_request(tmp_path, bytes_tok):
    plain = byte_tokenizer(tmp_path / "plain", chat_template=None)
    with FaultServer() as srv:
        with pytest.raises(BudgetError, match="oracle.tokenizer '.*no-such-tokenizer' could not be loaded"):
            client(
                srv.url, tmp_path, context_length=4096, tokenizer=str(tmp_path / "no-such-tokenizer")
            ).complete("q")
        with pytest.raises(BudgetError, match="has no chat template"):
            client(srv.url, tmp_path, context_length=4096, tokenizer=str(plain)).complete("q")
        with pytest.raises(BudgetError, match="adds 19 tokens .* raise oracle.chat_template_tokens to 19"):
            client(
                srv.url, tmp_path, context_length=4096, tokenizer=bytes_tok, chat_template_tokens=10
            ).complete("q")
        assert not srv.chat_requests()
    with pytest.raises(ValueError, match="context_length needs a tokenizer"):
        client("http://127.0.0.1:1/v1", tmp_path, context_length=4096)


def test_a_server_counting_more_prompt_tokens_than_the_tokenizer_fails_at_once(tmp_path, bytes_tok):
    """A wrong oracle.tokenizer undercounts, and requests would overflow: the first answer says so."""
    with (
        PayloadServer(lambda b: completion("fine", prompt_tokens=500)) as srv,
        pytest.raises(OracleError, match="counted 500 prompt tokens where oracle.tokenizer .* counted 20"),
    ):
        fitted(srv.url, tmp_path, bytes_tok, context=4096).complete("q")
    with PayloadServer(lambda b: completion("fine", prompt_tokens=22)) as srv:  # within the margin: fine
        assert fitted(srv.url, tmp_path, bytes_tok, context=4096).complete("q2") == "fine"
