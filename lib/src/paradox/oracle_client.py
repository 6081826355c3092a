"""A client for any OpenAI-compatible chat endpoint (a hosted API or a `vllm serve`d model).

- At most `concurrency` requests in flight (a semaphore around the HTTP call, so it also holds
  when several threads call `complete` at once).
- Retries with exponential backoff and jitter on 429, 408, 5xx, timeouts and dropped
  connections, up to `max_retries` (our own loop, not the openai client's, so retries are
  counted and the backoff is testable); a `Retry-After` header is honoured up to the cap.
- An on-disk cache: one small JSON file per (model, messages, sampling params), written
  atomically the moment its answer arrives, so an interrupted or repeated run never pays twice.
  The key and the files never hold the API key or the endpoint URL.
- A request that still fails raises `OracleError` naming the endpoint and the status; answers
  that arrived before it stay cached.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import openai
from tqdm.auto import tqdm

from paradox.io import atomic_path
from paradox.params import Oracle, stable_hash

log = logging.getLogger("paradox.oracle")

T = TypeVar("T")
R = TypeVar("R")

CACHE_VERSION = 1
RETRY_STATUS = {408, 409, 429}  # plus every 5xx


class OracleError(RuntimeError):
    """An Oracle request that failed for good (after retries, or on a non-retryable status)."""


def display_url(url: str) -> str:
    """The endpoint as it may appear in messages: no credentials, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def thread_map(fn: Callable[[T], R], items: Sequence[T], workers: int, desc: str | None = None) -> list[R]:
    """`[fn(x) for x in items]` on `workers` threads, results in input order, with a progress bar.

    On the first exception (or an interrupt), work not yet started is cancelled, running calls
    finish (their side effects, such as cache writes, happen), and the exception is raised.
    """
    if not items:
        return []
    results: list[Any] = [None] * len(items)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(items), desc=desc, unit="req", disable=desc is None) as bar:
        futures: dict[Future, int] = {pool.submit(fn, x): i for i, x in enumerate(items)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    err = fut.exception()
                    if err is not None:
                        raise err
                    results[futures[fut]] = fut.result()
                    bar.update(1)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise  # leaving the pool waits for the calls in flight
    return results


class OracleClient:
    """`complete(prompt) -> str` (fits `retention.Completer`) and `complete_many(prompts, desc)`."""

    def __init__(self, *, base_url: str, model: str, cache_dir: Path | str, api_key_env: str = "OPENAI_API_KEY",
                 temperature: float | None = 0.0, top_p: float | None = 1.0, max_tokens: int = 4096,
                 seed: int | None = None, token_limit_field: str = "max_tokens", concurrency: int = 8, max_retries: int = 6, timeout_s: float = 600.0,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0) -> None:
        self.base_url, self.model = base_url, model
        self.endpoint = display_url(base_url)
        self.cache_dir = Path(cache_dir)
        # None values are not sent (see `Oracle.temperature`); the token limit goes under the field the API wants.
        self.sampling = {"temperature": temperature, "top_p": top_p, token_limit_field: max_tokens, "seed": seed}
        self.concurrency, self.max_retries, self.timeout_s = concurrency, max_retries, timeout_s
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        api_key = os.environ.get(api_key_env)
        if not api_key:
            # A local `vllm serve` without --api-key accepts anything; a hosted API will answer 401.
            log.warning("environment variable %s is not set; sending a placeholder API key to %s",
                        api_key_env, self.endpoint)
            api_key = "EMPTY"
        # max_retries=0: retries are ours (counted, with our backoff); the timeout is per request.
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s)
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()

    @classmethod
    def from_params(cls, oracle: Oracle, cache_dir: Path | str) -> OracleClient:
        if oracle.backend != "openai" or not oracle.base_url or not oracle.model:
            raise ValueError("OracleClient needs oracle.backend 'openai' with base_url and model")
        return cls(base_url=oracle.base_url, model=oracle.model, cache_dir=cache_dir, api_key_env=oracle.api_key_env,
                   temperature=oracle.temperature, top_p=oracle.top_p, max_tokens=oracle.max_tokens,
                   seed=oracle.seed, token_limit_field=oracle.token_limit_field, concurrency=oracle.concurrency, max_retries=oracle.max_retries,
                   timeout_s=oracle.timeout_s)

    # --- counters -------------------------------------------------------------------------
    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._stats[what] += n

    def stats(self) -> dict[str, int]:
        """Counts so far: requests sent (every attempt), cache hits, retries, failures."""
        with self._lock:
            return {k: self._stats.get(k, 0) for k in ("requests", "cache_hits", "retries", "failures")}

    # --- cache ----------------------------------------------------------------------------
    def _messages(self, prompt: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": prompt}]

    def cache_key(self, prompt: str) -> str:
        """Hash of what determines the answer: model, messages, sampling params (no URL, no key)."""
        return stable_hash({"v": CACHE_VERSION, "model": self.model, "messages": self._messages(prompt),
                            **self.sampling}, n=32)

    def cache_path(self, prompt: str) -> Path:
        key = self.cache_key(prompt)
        return self.cache_dir / key[:2] / f"{key}.json"

    def cached(self, prompt: str) -> str | None:
        path = self.cache_path(prompt)
        try:
            return json.loads(path.read_text())["completion"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):  # unreadable entry: ask again, rewrite it
            log.warning("unreadable oracle cache entry %s; requesting again", path)
            return None

    def _store(self, prompt: str, completion: str, finish_reason: str | None) -> None:
        record = {"model": self.model, "messages": self._messages(prompt), "sampling": self.sampling,
                  "completion": completion, "finish_reason": finish_reason}
        with atomic_path(self.cache_path(prompt)) as tmp:
            tmp.write_text(json.dumps(record, ensure_ascii=False, sort_keys=True))

    # --- requests -------------------------------------------------------------------------
    def _backoff(self, attempt: int, err: Exception) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** attempt) * (0.5 + random.random() / 2)
        response = getattr(err, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        with contextlib.suppress(ValueError):  # an HTTP date: ignored, the exponential delay applies
            delay = max(delay, min(self.backoff_max_s, float(retry_after))) if retry_after else delay
        return delay

    @staticmethod
    def _describe(err: Exception) -> str:
        if isinstance(err, openai.APIStatusError):
            return f"HTTP {err.status_code}"
        if isinstance(err, openai.APITimeoutError):
            return "timeout"
        if isinstance(err, openai.APIConnectionError):
            return "connection error"
        return type(err).__name__

    @staticmethod
    def _retryable(err: Exception) -> bool:
        if isinstance(err, openai.APIStatusError):
            return err.status_code in RETRY_STATUS or err.status_code >= 500
        return isinstance(err, openai.APIConnectionError | openai.APIResponseValidationError)

    def _request(self, prompt: str) -> tuple[str, str | None]:
        kwargs = {k: v for k, v in self.sampling.items() if v is not None}
        for attempt in range(self.max_retries + 1):
            try:
                with self._slots:
                    self._count("requests")
                    resp = self._client.chat.completions.create(model=self.model, messages=self._messages(prompt),
                                                                **kwargs)
                choice = resp.choices[0] if resp.choices else None
                content = choice.message.content if choice is not None and choice.message else None
                # An empty or missing answer is the model's answer: returned (and cached) as "".
                return content or "", choice.finish_reason if choice is not None else None
            except openai.OpenAIError as err:
                what = self._describe(err)
                if not self._retryable(err) or attempt == self.max_retries:
                    self._count("failures")
                    detail = getattr(err, "message", "") or ""
                    tries = f"after {attempt + 1} attempt(s)" if self._retryable(err) else "(not retryable)"
                    raise OracleError(f"Oracle endpoint {self.endpoint} (model {self.model}) failed {tries}: "
                                      f"{what}: {str(detail)[:300]}") from None
                delay = self._backoff(attempt, err)
                self._count("retries")
                log.warning("oracle %s: %s, retry %d/%d in %.2f s", self.endpoint, what, attempt + 1,
                            self.max_retries, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def complete(self, prompt: str) -> str:
        """The endpoint's answer to one user message; from the cache when it was asked before."""
        hit = self.cached(prompt)
        if hit is not None:
            self._count("cache_hits")
            return hit
        completion, finish = self._request(prompt)
        self._store(prompt, completion, finish)
        return completion

    def complete_many(self, prompts: Iterable[str], desc: str | None = "oracle") -> list[str]:
        """Answers in input order; cached ones are read, the rest requested concurrently (each
        prompt once, even if repeated) and cached as each arrives."""
        prompts = list(prompts)
        answers: dict[str, str] = {}
        for p in dict.fromkeys(prompts):
            hit = self.cached(p)
            if hit is not None:
                answers[p] = hit
        self._count("cache_hits", sum(p in answers for p in prompts))
        todo = [p for p in dict.fromkeys(prompts) if p not in answers]
        before = self.stats()

        def fetch(p: str) -> str:
            completion, finish = self._request(p)
            self._store(p, completion, finish)
            return completion

        answers |= dict(zip(todo, thread_map(fetch, todo, self.concurrency, desc), strict=True))
        after = self.stats()
        log.info("oracle %s: %d prompts, %d from cache, %d requests, %d retries", desc or self.model,
                 len(prompts), len(prompts) - len(todo), after["requests"] - before["requests"],
                 after["retries"] - before["retries"])
        return [answers[p] for p in prompts]
