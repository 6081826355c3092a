"""Reward scoring on vLLM pooling servers (`reward.backend: vllm_server`), for data parallelism
across GPUs and nodes: vLLM's offline `LLM` refuses `data_parallel_size > 1`, its server does not.

The servers run `vllm serve MODEL --runner pooling`: managed ones (`reward.serve`: this module
starts `serve.replicas` servers of `serve.data_parallel_size` x `serve.tensor_parallel_size` GPUs
each on first use, under the machine's GPU lock, and `close()` stops them), or servers you run
(`reward.base_url`, one URL or a list, e.g. one per node). Requests are spread over the servers,
retried and failed over by `paradox.endpoints.EndpointPool`; `reward.batch_size` chats go in one
request and `reward.concurrency` requests are in flight per server (vLLM batches them itself).

What a server is asked, and why (vLLM's pooling API as its 0.32 server publishes it; the routes
are at the server's root, not under /v1):
  - `POST /pooling` with `input` = a list of token-id lists: the ids `HFReward` and `VLLMReward`
    score (`reward_models.encode_chat`: the chat template rendered here, cut to max_length here,
    `add_special_tokens: false`), so the server neither renders nor tokenizes anything;
  - `task` = "classify" for a `seq_cls` head (one pooled logit per chat, `data` = [logit]) and
    "token_classify" for the Qwen RM's per-token head (vLLM's `Qwen2ForRewardModel` offers only
    that: `data` = one [reward] per token, read here at the chat's last token). A server whose
    model lacks the task answers 400 naming the tasks it has: that is checked on `load()` with a
    one-chat request, before any trace is scored;
  - `use_activation: false`: the raw value, as the transformers forward pass gives it (vLLM's
    classify default is a sigmoid).
`GET /v1/models` gives the served names and each server's `max_model_len`: a chat is cut to the
smallest of `reward.max_length` and those, so no server refuses a chat as too long.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paradox.endpoints import EndpointError, EndpointPool, describe, display_url
from paradox.params import RewardModel
from paradox.paths import local_or_hub
from paradox.problems import Problem

log = logging.getLogger(__name__)

TASKS = {"seq_cls": "classify", "remote_code": "token_classify"}


def api_url(url: str) -> str:
    """A server's OpenAI-style base URL (`.../v1`, as EndpointPool's clients want it), given with or
    without the `/v1`."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def server_root(base_url: Any) -> str:
    """Where vLLM's pooling routes live: the server's root, the base URL without its `/v1`."""
    return str(base_url).rstrip("/").removesuffix("/v1")


def read_scores(answer: Any, chats: Sequence[Sequence[int]], task: str, where: str) -> list[float]:
    """One score per chat from a `/pooling` answer (`{"data": [{"index", "data"}, ...]}`): the one
    logit of `classify`, the last token's reward of `token_classify`. Anything else is an error that
    names the server and what came back (a model with another head, a server that is not vLLM)."""
    items = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(items, list) or len(items) != len(chats) or not all(isinstance(x, dict) for x in items):
        raise ValueError(
            f"{where}: expected {len(chats)} pooling results, got "
            f"{len(items) if isinstance(items, list) else type(answer).__name__}"
        )
    scores = []
    for item, ids in zip(sorted(items, key=lambda x: x.get("index", 0)), chats, strict=True):
        data = item.get("data")
        if task == "token_classify":
            # one [reward] per token, as vLLM's ALL pooling returns it for Qwen2ForRewardModel
            if not (isinstance(data, list) and len(data) == len(ids) and isinstance(data[-1], list)):
                got = f"{len(data)} rows" if isinstance(data, list) else type(data).__name__
                raise ValueError(f"{where}: expected a reward per token, {len(ids)} rows of 1, got {got}")
            data = data[-1]
        if not (isinstance(data, list) and len(data) == 1 and isinstance(data[0], int | float)):
            raise ValueError(
                f"{where}: expected one reward value per chat (num_labels = 1), got {str(data)[:80]}"
            )
        scores.append(float(data[0]))
    return scores


class ServedReward:
    """A `RewardModel` spec with backend `vllm_server`; `score_many(problems, traces)` like the toy
    rubric, the same scores as `HFReward` and `VLLMReward` (tests/vllm_engine/test_reward_server.py).

    `log_dir` (server logs) and `lock_path` (the machine's GPU lock) matter for managed servers only.
    Nothing starts before `load()` (the first `score_many`), so a list of cross-check models can be
    built at once; `close()` stops managed servers.
    """

    def __init__(
        self,
        spec: RewardModel,
        *,
        log_dir: Path | str | None = None,
        lock_path: Path | None = None,
        seed: int = 0,
        show_progress: bool = True,
        **pool_kw: Any,
    ) -> None:
        if spec.backend != "vllm_server":
            raise ValueError(f"ServedReward needs reward backend 'vllm_server', got {spec.backend!r}")
        if spec.serve is not None and log_dir is None:
            raise ValueError(
                f"reward model {spec.name_or_path}: managed servers (serve) need a log directory"
            )
        self.spec, self.seed, self.show_progress, self.pool_kw = spec, seed, show_progress, pool_kw
        self.log_dir, self.lock_path = (Path(log_dir) if log_dir else None), lock_path
        self.task = TASKS[spec.head]
        self.served_name = spec.served_model_name or spec.name_or_path
        self.name = f"vllm_server:{spec.name_or_path}"
        self.n_truncated = 0  # chats cut to max_length so far
        self.group: Any = None  # managed servers (paradox.serving.ServerGroup)
        self.pool: EndpointPool | None = None
        self.tok: Any = None
        self.max_length = spec.max_length

    # -- starting and stopping -----------------------------------------------------------------

    def _serve(self) -> list[str]:
        """Start the managed servers; their base URLs."""
        from paradox.serving import ServerGroup, ServeSpec

        s, sv = self.spec, self.spec.serve
        assert sv is not None and self.log_dir is not None and s.name_or_path is not None
        extra = (
            *sv.extra_args,
            *(("--revision", s.revision) if s.revision else ()),
            *(("--trust-remote-code",) if s.trust_remote_code else ()),
        )
        spec = ServeSpec(
            model=local_or_hub(s.name_or_path),
            served_name=self.served_name,
            runner="pooling",
            tensor_parallel_size=sv.tensor_parallel_size,
            data_parallel_size=sv.data_parallel_size,
            gpu_memory_utilization=sv.gpu_memory_utilization,
            # the longest chat is max_length tokens: a longer context only takes memory
            max_model_len=sv.max_model_len or s.max_length,
            dtype=s.dtype if sv.dtype == "auto" else sv.dtype,
            seed=self.seed,
            enforce_eager=sv.enforce_eager,
            extra_args=extra,
            env=sv.env,
            start_timeout_s=sv.start_timeout_s,
        )
        stem = "reward-" + "".join(c if c.isalnum() or c in "-._" else "_" for c in Path(s.name_or_path).name)
        self.group = ServerGroup(spec, sv.replicas, self.log_dir, name=stem, lock_path=self.lock_path).start()
        return list(self.group.base_urls)

    def load(self) -> ServedReward:
        if self.pool is not None:
            return self
        from transformers import AutoTokenizer

        s = self.spec
        assert s.name_or_path is not None
        # The chat is rendered and encoded here, by the model's own tokenizer, as the other backends do.
        self.tok = AutoTokenizer.from_pretrained(
            local_or_hub(s.name_or_path), revision=s.revision, trust_remote_code=s.trust_remote_code
        )
        urls = self._serve() if s.serve is not None else [api_url(u) for u in s.base_urls]
        try:
            kw: dict[str, Any] = {
                "api_key_env": s.api_key_env,
                "concurrency": s.concurrency,
                "max_retries": s.max_retries,
                "timeout_s": s.timeout_s,
            } | self.pool_kw
            self.pool = EndpointPool(urls, **kw)
            self._check_servers()
        except BaseException:
            self.close()
            raise
        return self

    def _check_servers(self) -> None:
        """Every server that answers serves the model under its name; chats fit the smallest context;
        the model's head offers the task (one short chat scored)."""
        import openai

        assert self.pool is not None
        listed: dict[str, Any] = {}
        for e in self.pool.endpoints:
            try:
                listed[e.url] = e.client.models.list()
            except openai.APIConnectionError as err:  # down for now: the pool fails over from it
                log.warning("%s: %s does not answer (%s)", self.name, display_url(e.url), describe(err))
            except openai.OpenAIError as err:
                raise ValueError(
                    f"{self.name}: {display_url(e.url)} answered {describe(err)} to /v1/models: "
                    f"{str(getattr(err, 'message', ''))[:300]}"
                ) from None
        if not listed:  # none answers now: wait for one, with the pool's retries
            listed[self.pool.label] = self.pool.call(
                lambda client: client.models.list(), what=f"{self.name}: models"
            )
        lengths = []
        for url, models in listed.items():
            by_id = {m.id: m for m in models.data}
            if self.served_name not in by_id:
                raise ValueError(
                    f"{self.name}: the server at {display_url(url)} serves {sorted(by_id)}, not "
                    f"{self.served_name!r} (set reward.served_model_name to the name it serves)"
                )
            served_len = (by_id[self.served_name].model_extra or {}).get("max_model_len")
            if isinstance(served_len, int):
                lengths.append(served_len)
        if lengths and min(lengths) < self.spec.max_length:
            log.warning(
                "%s: the servers' max_model_len is %d, below max_length %d: chats are cut to %d tokens",
                self.name,
                min(lengths),
                self.spec.max_length,
                min(lengths),
            )
            self.max_length = min(lengths)
        from paradox.reward_models import encode_chat

        probe, _ = encode_chat(self.tok, "1 + 1 = ?", "2", self.spec.system_prompt, self.max_length)
        try:
            self._score_request([probe])
        except EndpointError as err:
            fits = {"token_classify": "head: remote_code", "classify": "head: seq_cls"}
            raise ValueError(
                f"{self.name}: head '{self.spec.head}' scores with vLLM's pooling task '{self.task}'; "
                f"a one-chat request failed: {err} ("
                + "; ".join(f"task {t} is {h}" for t, h in fits.items())
                + ")"
            ) from None

    def close(self) -> None:
        """Stop managed servers (given servers are left running)."""
        group, self.group, self.pool = self.group, None, None
        if group is not None:
            group.stop()

    def __enter__(self) -> ServedReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_urls(self) -> list[str]:
        """The servers scoring (managed or given), once loaded."""
        return [e.url for e in self.pool.endpoints] if self.pool is not None else []

    # -- scoring -------------------------------------------------------------------------------

    def encode(self, question: str, trace: str) -> list[int]:
        """Token ids of the chat, cut to max_length as `HFReward` cuts it (question and end of response kept)."""
        from paradox.reward_models import encode_chat

        self.load()
        ids, cut = encode_chat(self.tok, question, trace, self.spec.system_prompt, self.max_length)
        self.n_truncated += cut
        return ids

    def _score_request(self, chats: list[list[int]]) -> list[float]:
        """One `/pooling` request of a few chats, on whichever server the pool picks."""
        assert self.pool is not None
        body = {
            "model": self.served_name,
            "input": chats,
            "task": self.task,
            "use_activation": False,
            "add_special_tokens": False,
            "encoding_format": "float",
        }

        def send(client: Any) -> tuple[str, Any]:
            answer = client.post(f"{server_root(client.base_url)}/pooling", cast_to=object, body=body)
            return str(client.base_url).rstrip("/"), answer

        url, answer = self.pool.call(send, what=f"{self.name}: pooling")
        self.pool.count(f"requests {display_url(url)}")
        return read_scores(answer, chats, self.task, f"{self.name} at {display_url(url)}")

    def score_many(self, problems: Sequence[Problem], traces: Sequence[str]) -> list[float]:
        """One score per (problem, trace), in input order."""
        from paradox.oracle_client import thread_map
        from paradox.reward_models import encode_batch

        chats = encode_batch(self, problems, traces)
        if not chats:
            return []
        assert self.pool is not None
        bs = self.spec.batch_size
        batches = [chats[i : i + bs] for i in range(0, len(chats), bs)]
        answers = thread_map(
            self._score_request,
            batches,
            self.pool.capacity,
            desc=f"scoring ({self.name})" if self.show_progress else None,
        )
        return [score for batch in answers for score in batch]

    def score(self, problem: Problem, trace: str) -> float:
        return self.score_many([problem], [trace])[0]

    def stats(self) -> dict[str, int]:
        """Requests sent, retried, failed over, and answered per server ("requests <url>")."""
        return self.pool.stats() if self.pool is not None else {}
