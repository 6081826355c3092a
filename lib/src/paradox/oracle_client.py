"""A client for any OpenAI-compatible chat endpoint (a hosted API or a `vllm serve`d model).

- One or several endpoints (`base_url` may be a list: one server per node), through
  `paradox.endpoints.EndpointPool`: at most `concurrency` requests in flight per endpoint, retries
  with exponential backoff and jitter on 429, 408, 5xx, timeouts and malformed answers, up to
  `max_retries` (counted; a `Retry-After` header is honoured up to the cap), and an endpoint that
  stops answering has its requests moved to the others.
- An on-disk cache: one small JSON file per (model, messages, sampling params), written
  atomically the moment its answer arrives. A repeated run pays nothing for answers it has. A
  run stopped by a failed request or Ctrl-C first lets the requests in flight finish and caches
  them; a run killed outright (SIGKILL, a lost node, a job's time limit) loses the answers in
  flight, so its resumption re-pays at most those requests: at most `oracle.concurrency` x the
  number of endpoints (the pool's capacity) per interruption (tests/test_oracle_client.py
  asserts the bound). An entry that is not a
  well-formed answer (not JSON, a completion that is not a string, a missing field) is counted
  as `cache_invalid`, asked again and overwritten, never a crash. The key and the files never
  hold the API key or the endpoint URL.
- A request that still fails raises `OracleError` naming the endpoint and the status; answers
  that arrived before it stay cached.
- With `context_length` set, every request fits the Oracle's context (`paradox.oracle_budget`):
  its prompt is counted with the Oracle's tokenizer and chat template, its completion limit (per
  kind of request, `oracle.answers`) is capped to what is left, and a request with less room than
  its kind's minimum is not sent. Such a request, and one the server refuses as too long (an HTTP
  400 about the context length, which older `vllm serve` versions send for prompt + max_tokens >
  max_model_len), comes back as a skipped `Answer` and is counted; any other 400 still fails. The
  cache key holds the completion limit actually sent.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletionMessageParam
from tqdm.auto import tqdm

from paradox.endpoints import EndpointError, EndpointPool, display_url
from paradox.io import atomic_path, stable_hash
from paradox.oracle_budget import Limits, OracleTokenizer, fit, limits
from paradox.params import AnswerTokens, Oracle, OracleAnswers

log = logging.getLogger("paradox.oracle")

T = TypeVar("T")
R = TypeVar("R")

CACHE_VERSION = 1
SKIPPED = "skipped"  # the finish reason of a request not sent (it did not fit) or refused as too long
# A 400 about the context: OpenAI's code, and the wording of vLLM's messages across versions ("This
# model's maximum context length is ...", "... longer than the maximum model length of ...",
# "max_tokens=... cannot be greater than max_model_len=...").
TOO_LONG = re.compile(
    r"context_length_exceeded|maximum context length|maximum model length|max_model_len", re.IGNORECASE
)
OTHER = "other"  # the kind of a request sent without one: oracle.max_tokens, no minimum


class OracleError(RuntimeError):
    """An Oracle request that failed for good (after retries, or on a non-retryable status)."""


@dataclass(frozen=True)
class Answer:
    """The endpoint's answer to one prompt, or a skipped request (text "", finish_reason SKIPPED)."""

    text: str
    finish_reason: str | None

    @property
    def skipped(self) -> bool:
        return self.finish_reason == SKIPPED

    @property
    def truncated(self) -> bool:  # cut at its completion limit
        return self.finish_reason == "length"


def answer_of(record: object) -> Answer | None:
    """The `Answer` a cache record holds, or None when it is not a well-formed one: a JSON object
    with a string `completion` and a `finish_reason` that is a string or null."""
    if not isinstance(record, dict) or not {"completion", "finish_reason"} <= record.keys():
        return None
    text, reason = record["completion"], record["finish_reason"]
    if not isinstance(text, str) or not (reason is None or isinstance(reason, str)):
        return None
    return Answer(text, reason)


def too_long(err: Exception) -> bool:
    """An HTTP 400 that says the request does not fit the model's context."""
    if not isinstance(err, openai.BadRequestError):
        return False
    return bool(TOO_LONG.search(f"{getattr(err, 'code', '') or ''} {getattr(err, 'message', '') or ''}"))


def thread_map(fn: Callable[[T], R], items: Sequence[T], workers: int, desc: str | None = None) -> list[R]:
    """`[fn(x) for x in items]` on `workers` threads, results in input order, with a progress bar.

    On the first exception (or an interrupt), work not yet started is cancelled, running calls
    finish (their side effects, such as cache writes, happen), and the exception is raised.
    """
    if not items:
        return []
    results: list[Any] = [None] * len(items)
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(items), desc=desc, unit="req", disable=desc is None) as bar,
    ):
        futures: dict[Future[R], int] = {pool.submit(fn, x): i for i, x in enumerate(items)}
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
    """`answer_many(prompts, kind=..., sources=...)` -> `Answer`s; `complete_many` / `complete` -> the
    answers' text, None for a skipped request (`complete` fits `retention.Completer`)."""

    def __init__(
        self,
        *,
        base_url: str | Sequence[str] | Callable[[], Sequence[str]],
        model: str,
        cache_dir: Path | str,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float | None = 0.0,
        top_p: float | None = 1.0,
        max_tokens: int = 4096,
        seed: int | None = None,
        token_limit_field: str = "max_tokens",
        concurrency: int = 8,
        max_retries: int = 6,
        timeout_s: float = 600.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        context_length: int | None = None,
        tokenizer: str | OracleTokenizer | None = None,
        context_margin: int = 16,
        chat_template_tokens: int | None = None,
        answers: OracleAnswers | None = None,
        replicas: int = 1,
    ) -> None:
        # A function returning the URLs: managed servers, started when the first request goes out.
        urls = base_url if callable(base_url) else [base_url] if isinstance(base_url, str) else list(base_url)
        self.model = model
        self.endpoint = "managed servers" if callable(urls) else ", ".join(display_url(u) for u in urls)
        self.cache_dir = Path(cache_dir)
        # None values are not sent (see `Oracle.temperature`); the token limit goes under the field the API wants.
        self.max_tokens, self.token_limit_field = max_tokens, token_limit_field
        self.sampling = {
            "temperature": temperature,
            "top_p": top_p,
            token_limit_field: max_tokens,
            "seed": seed,
        }
        self.concurrency, self.max_retries, self.timeout_s = concurrency, max_retries, timeout_s
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.context_length, self.context_margin = context_length, context_margin
        self.answers = answers or OracleAnswers()
        if context_length is not None and tokenizer is None:
            raise ValueError(
                "OracleClient: context_length needs a tokenizer to count prompts (oracle.tokenizer)"
            )
        self.tokenizer = (
            OracleTokenizer(tokenizer, chat_template_tokens) if isinstance(tokenizer, str) else tokenizer
        )
        # Requests go through an endpoint pool: several servers (one per node) share the load, and
        # one that dies has its requests retried on the others. Its retries and backoff are ours.
        self.pool = EndpointPool(
            urls,
            api_key_env=api_key_env,
            concurrency=concurrency,
            max_retries=max_retries,
            timeout_s=timeout_s,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            expected_endpoints=replicas,
        )
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()

    @classmethod
    def from_params(
        cls,
        oracle: Oracle,
        cache_dir: Path | str,
        base_urls: Sequence[str] | Callable[[], Sequence[str]] = (),
    ) -> OracleClient:
        """The client `oracle` describes; `base_urls` (managed servers, or a function starting them)
        replace the params' URLs."""
        if oracle.backend != "openai" or not (base_urls or oracle.base_urls) or not oracle.model:
            raise ValueError(
                "OracleClient needs oracle.backend 'openai' with a model and its endpoints "
                "(oracle.base_url, or the URLs of managed servers)"
            )
        urls = base_urls if callable(base_urls) else list(base_urls or oracle.base_urls)
        return cls(
            base_url=urls,
            model=oracle.model,
            replicas=oracle.serve.replicas if oracle.serve else 1,
            cache_dir=cache_dir,
            api_key_env=oracle.api_key_env,
            temperature=oracle.temperature,
            top_p=oracle.top_p,
            max_tokens=oracle.max_tokens,
            seed=oracle.seed,
            token_limit_field=oracle.token_limit_field,
            concurrency=oracle.concurrency,
            max_retries=oracle.max_retries,
            timeout_s=oracle.timeout_s,
            context_length=oracle.context_length,
            tokenizer=oracle.tokenizer_name if oracle.context_length is not None else None,
            context_margin=oracle.context_margin,
            chat_template_tokens=oracle.chat_template_tokens,
            answers=oracle.answers,
        )

    # --- counters -------------------------------------------------------------------------
    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._stats[what] += n

    def stats(self) -> dict[str, int]:
        """Counts so far: requests sent (every attempt), cache hits, invalid cache entries (asked
        again), retries, failures; requests
        skipped (did not fit, or refused as too long) and answers cut at their limit, in all and
        per kind (`skipped_<kind>`, `truncated_<kind>`, when any)."""
        base = ("requests", "cache_hits", "cache_invalid", "retries", "failures", "skipped", "truncated")
        pool = self.pool.stats()  # requests, retries, failures (and failovers, endpoints down)
        with self._lock:
            counts = Counter(self._stats) + Counter(pool)
        per_kind = {k: v for k, v in sorted(counts.items()) if k not in base and v}
        return {**{k: counts.get(k, 0) for k in base}, **per_kind}

    # --- cache ----------------------------------------------------------------------------
    def _messages(self, prompt: str) -> list[ChatCompletionMessageParam]:
        return [{"role": "user", "content": prompt}]

    def _sampling(self, limit: int | None) -> dict[str, Any]:
        return {**self.sampling, self.token_limit_field: self.max_tokens if limit is None else limit}

    def cache_key(self, prompt: str, limit: int | None = None) -> str:
        """Hash of what determines the answer: model, messages, sampling params with the completion
        limit sent (default: max_tokens) - no URL, no key."""
        return stable_hash(
            {
                "v": CACHE_VERSION,
                "model": self.model,
                "messages": self._messages(prompt),
                **self._sampling(limit),
            },
            n=32,
        )

    def cache_path(self, prompt: str, limit: int | None = None) -> Path:
        key = self.cache_key(prompt, limit)
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, prompt: str, limit: int | None) -> Answer | None:
        """The cached answer, or None: not cached, or an entry that is not a well-formed answer
        (unreadable, not JSON, a completion that is not a string, a missing field), which is
        counted as `cache_invalid`, asked again and overwritten."""
        path = self.cache_path(prompt, limit)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # unreadable or not JSON (a disk error, a hand edit)
            record = None
        answer = answer_of(record)
        if answer is None:
            log.warning("invalid oracle cache entry %s; requesting again, it will be overwritten", path)
            self._count("cache_invalid")
        return answer

    def cached(self, prompt: str, limit: int | None = None) -> str | None:
        hit = self._cached(prompt, limit)
        return None if hit is None else hit.text

    def _store(self, prompt: str, limit: int | None, answer: Answer) -> None:
        record = {
            "model": self.model,
            "messages": self._messages(prompt),
            "sampling": self._sampling(limit),
            "completion": answer.text,
            "finish_reason": answer.finish_reason,
        }
        with atomic_path(self.cache_path(prompt, limit)) as tmp:
            tmp.write_text(json.dumps(record, ensure_ascii=False, sort_keys=True))

    # --- fitting the context --------------------------------------------------------------
    def budget(self, kind: str) -> AnswerTokens:
        if kind == OTHER:
            return AnswerTokens(max_tokens=self.max_tokens, min_tokens=1)
        if kind not in type(self.answers).model_fields:
            raise ValueError(
                f"unknown kind of Oracle request {kind!r}; known: {[*type(self.answers).model_fields, OTHER]}"
            )
        tokens: AnswerTokens = getattr(self.answers, kind)
        return tokens

    def plan_request(
        self, prompt: str, kind: str = OTHER, source: str | None = None
    ) -> tuple[int | None, int | None]:
        """(completion limit to send or None to skip, prompt tokens or None when not counted)."""
        if self.context_length is None or self.tokenizer is None:
            return self.max_tokens, None
        n_source = self.tokenizer.text_tokens(source) if source else 0
        lim: Limits = limits(self.budget(kind), self.max_tokens, n_source)
        n_prompt = self.tokenizer.prompt_tokens(prompt)
        return fit(n_prompt, lim, self.context_length, self.context_margin), n_prompt

    # --- requests -------------------------------------------------------------------------
    def _check_usage(self, resp: Any, counted: int | None) -> None:
        """The server's prompt count may not exceed ours: a tokenizer that undercounts would let
        requests overflow the context (a wrong oracle.tokenizer fails here, on its first answer)."""
        used = getattr(getattr(resp, "usage", None), "prompt_tokens", None)
        if counted is not None and isinstance(used, int) and used > counted + self.context_margin:
            raise OracleError(
                f"Oracle endpoint {self.endpoint} (model {self.model}) counted {used} prompt tokens "
                f"where oracle.tokenizer {self.tokenizer.name if self.tokenizer else None!r} counted "
                f"{counted}: set oracle.tokenizer to the served model's tokenizer"
            )

    def _request(self, prompt: str, limit: int | None = None, counted: int | None = None) -> Answer:
        kwargs = {k: v for k, v in self._sampling(limit).items() if v is not None}
        refused: list[openai.OpenAIError] = []

        def send(client: openai.OpenAI) -> Any:
            try:
                return client.chat.completions.create(
                    model=self.model, messages=self._messages(prompt), **kwargs
                )
            except openai.OpenAIError as err:
                if too_long(
                    err
                ):  # the server's own verdict: skipped and counted, never an abort of the batch
                    refused.append(err)
                    return None
                raise

        try:
            resp = self.pool.call(send, what=f"Oracle endpoint (model {self.model})")
        except EndpointError as err:
            raise OracleError(str(err)) from None
        if resp is None:
            log.warning(
                "oracle %s: the request does not fit the context; skipped: %s",
                self.endpoint,
                str(getattr(refused[-1], "message", ""))[:200],
            )
            self._count("refused_too_long")
            return Answer("", SKIPPED)
        self._check_usage(resp, counted)
        choice = resp.choices[0] if resp.choices else None
        content = choice.message.content if choice is not None and choice.message else None
        # An empty or missing answer is the model's answer: returned (and cached) as "".
        return Answer(content or "", choice.finish_reason if choice is not None else None)

    def _tally(self, kind: str, answers: Iterable[Answer]) -> None:
        for a in answers:
            for what, flag in (("skipped", a.skipped), ("truncated", a.truncated)):
                if flag:
                    self._count(what)
                    self._count(f"{what}_{kind}")

    def answer_many(
        self,
        prompts: Iterable[str],
        *,
        kind: str = OTHER,
        sources: Sequence[str | None] | None = None,
        desc: str | None = "oracle",
    ) -> list[Answer]:
        """Answers in input order. Each distinct prompt is fitted to the context (its completion
        limit from `kind` and from its `source`, the text the answer rewrites), then read from the
        cache or requested concurrently (once, even if repeated) and cached as it arrives. A
        request that does not fit comes back skipped, unsent."""
        prompts = list(prompts)
        sources = [None] * len(prompts) if sources is None else list(sources)
        if len(sources) != len(prompts):
            raise ValueError(f"{len(sources)} sources for {len(prompts)} prompts")
        self.budget(kind)  # an unknown kind fails before any request
        source_of = dict(zip(prompts, sources, strict=True))
        unique = list(source_of)
        planned: dict[str, tuple[int | None, int | None]] = {}
        counting = self.context_length is not None and len(unique) > 1 and desc is not None
        for p in tqdm(unique, desc=f"{desc}: fitting the context", unit="prompt", disable=not counting):
            planned[p] = self.plan_request(p, kind, source_of[p])
        answers: dict[str, Answer] = {
            p: Answer("", SKIPPED) for p, (limit, _) in planned.items() if limit is None
        }
        for p in unique:
            if p not in answers and (hit := self._cached(p, planned[p][0])) is not None:
                answers[p] = hit
        hits = sum(p in answers and not answers[p].skipped for p in prompts)
        self._count("cache_hits", hits)
        todo = [p for p in unique if p not in answers]
        before = self.stats()

        def fetch(p: str) -> Answer:
            limit, counted = planned[p]
            answer = self._request(p, limit, counted)
            if not answer.skipped:
                self._store(p, limit, answer)
            return answer

        answers |= dict(zip(todo, thread_map(fetch, todo, self.pool.capacity, desc), strict=True))
        out = [answers[p] for p in prompts]
        self._tally(kind, out)
        after = self.stats()
        log.info(
            "oracle %s: %d prompts, %d from cache, %d requests, %d retries, %d skipped, %d truncated",
            desc or self.model,
            len(prompts),
            hits,
            after["requests"] - before["requests"],
            after["retries"] - before["retries"],
            sum(a.skipped for a in out),
            sum(a.truncated for a in out),
        )
        return out

    def complete_many(
        self,
        prompts: Iterable[str],
        desc: str | None = "oracle",
        *,
        kind: str = OTHER,
        sources: Sequence[str | None] | None = None,
        keep_truncated: bool = True,
    ) -> list[str | None]:
        """The answers' text in input order; None for a request that was skipped (did not fit),
        and, with `keep_truncated=False`, for an answer cut at its completion limit (a verdict
        parsed from a partial answer, such as the retention judge's score, is not one). Both are
        counted in `stats()`."""
        return [
            None if a.skipped or (a.truncated and not keep_truncated) else a.text
            for a in self.answer_many(prompts, kind=kind, sources=sources, desc=desc)
        ]

    def complete(self, prompt: str, kind: str = OTHER, source: str | None = None) -> str | None:
        """The endpoint's answer to one user message (from the cache when it was asked before);
        None when the request does not fit the context."""
        return self.complete_many([prompt], None, kind=kind, sources=[source])[0]
