"""Requests spread over one or several OpenAI-compatible endpoints (`vllm serve` on each node, or a
hosted API), with retries, and failover when an endpoint dies.

- Each endpoint takes at most `concurrency` requests at a time; a request goes to the live
  endpoint with the fewest in flight.
- 429, 408, 409, 5xx, timeouts and malformed responses: retried with exponential backoff and
  jitter (a `Retry-After` header is honoured up to the cap), up to `max_retries` times.
- With several endpoints, a refused or dropped connection marks the endpoint dead for a cool-down
  (doubling while it stays dead) and the request moves to another endpoint at once, without using
  up its retries: a run finishes as long as one endpoint lives. When every endpoint is dead, a
  request waits for the first cool-down to end; each failed try counts against `max_retries`, so
  a request fails once its endpoints have failed it that many times. A single endpoint simply
  retries with backoff.
- Other errors (400, 401, 404, ...) are not retried: they fail at once, naming the endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import openai

log = logging.getLogger("paradox.endpoints")

T = TypeVar("T")
RETRY_STATUS = {408, 409, 429}  # plus every 5xx


class EndpointError(RuntimeError):
    """A request that failed for good (after retries, or on a non-retryable answer)."""


def display_url(url: str) -> str:
    """The endpoint as it may appear in messages and logs: no credentials, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def describe(err: BaseException) -> str:
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}"
    if isinstance(err, openai.APITimeoutError):
        return "timeout"
    if isinstance(err, openai.APIConnectionError):
        return "connection error"
    return type(err).__name__


def retryable(err: BaseException) -> bool:
    if isinstance(err, openai.APIStatusError):
        return err.status_code in RETRY_STATUS or err.status_code >= 500
    return isinstance(err, openai.APIConnectionError | openai.APIResponseValidationError)


def unreachable(err: BaseException) -> bool:
    """The endpoint is gone (refused, reset), as opposed to slow or overloaded."""
    return isinstance(err, openai.APIConnectionError) and not isinstance(err, openai.APITimeoutError)


def api_key(env_name: str, where: str) -> str:
    key = os.environ.get(env_name)
    if not key:
        # A local `vllm serve` without --api-key accepts anything; a hosted API will answer 401.
        log.warning(
            "environment variable %s is not set; sending a placeholder API key to %s", env_name, where
        )
        return "EMPTY"
    return key


@dataclass
class _Endpoint:
    url: str
    client: openai.OpenAI
    in_flight: int = 0
    dead_until: float = 0.0
    strikes: int = 0  # consecutive connection failures


class EndpointPool:
    def __init__(
        self,
        base_urls: str | Sequence[str] | Callable[[], Sequence[str]],
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        max_retries: int = 6,
        timeout_s: float = 600.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        dead_cooldown_s: float = 15.0,
        expected_endpoints: int = 1,
    ) -> None:
        """`base_urls`: the endpoints, or a function that returns them when the first request is
        about to go out (managed servers start then, so a stage whose answers are all cached
        starts none); `expected_endpoints` sizes `capacity` until then."""
        self.api_key_env, self.timeout_s = api_key_env, timeout_s
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff_base_s, self.backoff_max_s, self.dead_cooldown_s = (
            backoff_base_s,
            backoff_max_s,
            dead_cooldown_s,
        )
        self.expected_endpoints = expected_endpoints
        self._cond = threading.Condition()
        self._stats: Counter[str] = Counter()
        self._connect_fn: Callable[[], Sequence[str]] | None = base_urls if callable(base_urls) else None
        self._endpoints: list[_Endpoint] = []
        self._connect_error: BaseException | None = None
        if not callable(base_urls):  # else connected on first use, through _connect_fn
            self._connect([base_urls] if isinstance(base_urls, str) else list(base_urls))

    def _connect(self, urls: Sequence[str]) -> None:
        urls = list(urls)
        if not urls:
            raise ValueError("EndpointPool needs at least one base URL")
        key = api_key(self.api_key_env, ", ".join(map(display_url, urls)))
        # max_retries=0: retries are ours (counted, with our backoff and failover).
        self._endpoints = [
            _Endpoint(u, openai.OpenAI(base_url=u, api_key=key, max_retries=0, timeout=self.timeout_s))
            for u in urls
        ]

    @property
    def endpoints(self) -> list[_Endpoint]:
        """The endpoints; a lazy pool connects (starting its servers) on first use."""
        with self._cond:
            if not self._endpoints and self._connect_fn is not None:
                if self._connect_error is not None:  # one failed start is the answer for every request
                    raise self._connect_error
                try:
                    self._connect(self._connect_fn())
                except BaseException as err:
                    self._connect_error = err
                    raise
            return self._endpoints

    @property
    def connected(self) -> bool:
        return bool(self._endpoints)

    @property
    def label(self) -> str:
        if not self._endpoints:
            return "endpoints not started yet"
        return ", ".join(display_url(e.url) for e in self._endpoints)

    @property
    def capacity(self) -> int:
        """Requests that can be in flight at once over all endpoints (a thread pool's size)."""
        return self.concurrency * (len(self._endpoints) or self.expected_endpoints)

    def count(self, what: str, n: int = 1) -> None:
        with self._cond:
            self._stats[what] += n

    def stats(self) -> dict[str, int]:
        with self._cond:
            return dict(self._stats)

    # --- choosing an endpoint ------------------------------------------------------------------
    def _acquire(self) -> _Endpoint | float:
        """A live endpoint with a free slot (taken), or the seconds until the first dead one revives
        when every endpoint is dead. Waits while live endpoints are all busy."""
        with self._cond:
            while True:
                now = time.monotonic()
                live = [e for e in self.endpoints if e.dead_until <= now]
                if not live:
                    return min(e.dead_until for e in self.endpoints) - now
                free = [e for e in live if e.in_flight < self.concurrency]
                if free:
                    e = min(free, key=lambda x: x.in_flight)
                    e.in_flight += 1
                    return e
                self._cond.wait(timeout=1.0)

    def _release(self, e: _Endpoint, err: BaseException | None) -> None:
        with self._cond:
            e.in_flight -= 1
            if err is None:
                e.strikes, e.dead_until = 0, 0.0
            elif unreachable(err) and len(self.endpoints) > 1:  # one endpoint: plain retries with backoff
                e.strikes += 1
                e.dead_until = time.monotonic() + min(300.0, self.dead_cooldown_s * 2 ** (e.strikes - 1))
                self._stats["endpoint_down"] += 1
                log.warning(
                    "endpoint %s unreachable (%s); trying the others", display_url(e.url), describe(err)
                )
            self._cond.notify_all()

    def _backoff(self, attempt: int, err: BaseException | None) -> float:
        delay: float = min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * (0.5 + random.random() / 2)
        response = getattr(err, "response", None)
        retry_after: str | None = response.headers.get("retry-after") if response is not None else None
        with contextlib.suppress(ValueError):  # an HTTP date: ignored, the exponential delay applies
            delay = max(delay, min(self.backoff_max_s, float(retry_after))) if retry_after else delay
        return delay

    # --- one request ----------------------------------------------------------------------------
    def call(self, fn: Callable[[openai.OpenAI], T], what: str = "request") -> T:
        """`fn(client)` on an endpoint, with retries and failover (see the module docstring)."""
        attempt = 0
        while True:
            got = self._acquire()
            if isinstance(got, float):  # every endpoint is dead: wait for the first to be tried again
                time.sleep(max(0.0, got) + random.random() * 0.1)
                continue
            e = got
            self.count("requests")
            try:
                result = fn(e.client)
            except openai.OpenAIError as err:
                self._release(e, err)
                if unreachable(err) and any(
                    x is not e and x.dead_until <= time.monotonic() for x in self.endpoints
                ):
                    self.count("failovers")
                    continue  # another endpoint lives: go there now, the retry budget untouched
                if not retryable(err) or attempt >= self.max_retries:
                    self.count("failures")
                    detail = str(getattr(err, "message", "") or "")[:300]
                    tries = f"after {attempt + 1} attempt(s)" if retryable(err) else "(not retryable)"
                    raise EndpointError(
                        f"{what} to {display_url(e.url)} failed {tries}: {describe(err)}: {detail}"
                    ) from None
                delay = self._backoff(attempt, err)
                attempt += 1
                self.count("retries")
                log.warning(
                    "%s: %s from %s, retry %d/%d in %.2f s",
                    what,
                    describe(err),
                    display_url(e.url),
                    attempt,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
                continue
            except BaseException:
                self._release(e, None)
                raise
            self._release(e, None)
            return result
