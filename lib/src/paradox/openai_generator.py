"""SLM sampling and evaluation through OpenAI-compatible completions endpoints (`vllm serve`).

`OpenAIGenerator` is the `Generator` protocol over `/v1/completions` on one or several servers
(`paradox.endpoints.EndpointPool`: spread, retried, failed over). It sends what the offline
engine (`VLLMGenerator`) computes, so both give the same samples for the same seeds:

- the prompt as token ids, encoded here by `tokenization.SequenceEncoder` (the ids training and
  scoring use), so the server sees exactly the sequence the offline engine sees (no server-side
  template or special tokens);
- n = k samples per request, temperature, top_p, top_k disabled, max_tokens, the stop conditions
  (`tokenization.Stops`: stop token ids and stop strings), and one seed per prompt derived as the
  offline engine derives it (from the shard's seed);
- every sampling field explicitly (repetition penalty 1, min_p 0), so a server's generation
  config defaults cannot change the sampling;
- the generated token ids back (`return_token_ids`), cut and decoded here by `Stops.finish` as
  the offline path does; `finish_reason == "length"` is the truncation flag.

Every request's answer is cached, one small JSON file per request written the moment it
arrives (keyed by the model's identity, the prompt ids and the sampling settings), so a killed
run resumes with no request sent twice, beyond those in flight when it died (at most the pool's
capacity).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paradox.endpoints import EndpointPool
from paradox.generation import Completion, SamplingSettings
from paradox.io import atomic_path, stable_hash
from paradox.oracle_client import thread_map
from paradox.tokenization import SequenceEncoder, Stops

log = logging.getLogger("paradox.openai_generator")

CACHE_VERSION = 1


def prompt_seeds(seed: int, n_prompts: int) -> list[int]:
    """One seed per prompt, as `VLLMGenerator` derives them from a call's seed."""
    return [int(x) for x in np.random.SeedSequence(seed).generate_state(n_prompts, dtype=np.uint32)]


class OpenAIGenerator:
    name = "openai"

    def __init__(
        self,
        tokenizer: Any,
        pool: EndpointPool,
        served_name: str,
        model_key: str,
        cache_dir: Path | str,
        stops: Stops | None = None,
        servers: Sequence[Any] = (),
    ) -> None:
        """`served_name`: the model name the endpoints serve; `model_key`: the identity of its
        weights (`generation.model_fingerprint`), part of every cache key; `stops`: as the
        offline generators resolve them (default: the tokenizer's EOS); `servers`: managed servers
        (`paradox.serving.VLLMServer`) this generator stops on `close()`."""
        self.tok, self.pool, self.served_name, self.model_key = tokenizer, pool, served_name, model_key
        self.cache_dir = Path(cache_dir)
        self.encoder = SequenceEncoder(tokenizer)
        self.stops = stops or Stops.resolve(tokenizer)
        self.servers = list(servers)

    # --- requests -------------------------------------------------------------------------------
    def request_body(self, ids: list[int], s: SamplingSettings, seed: int) -> dict[str, Any]:
        greedy = s.temperature == 0  # vLLM refuses n > 1 when greedy: one answer, repeated (as offline)
        return {
            "prompt": ids,
            "n": 1 if greedy else s.n,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_new_tokens,
            "seed": seed,
            "stop": list(self.stops.strings),
            # vLLM's extensions to the completions API (sent in the body by the openai client):
            "extra_body": {
                "top_k": 0,
                "min_p": 0.0,
                "repetition_penalty": 1.0,
                "stop_token_ids": list(self.stops.token_ids),
                "include_stop_str_in_output": False,
                "return_token_ids": True,
                "skip_special_tokens": True,
            },
        }

    def cache_path(self, body: dict[str, Any]) -> Path:
        key = stable_hash({"v": CACHE_VERSION, "model": self.model_key, **body}, n=32)
        return self.cache_dir / key[:2] / f"{key}.json"

    def _fetch(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        path = self.cache_path(body)
        try:
            cached: list[dict[str, Any]] = json.loads(path.read_text())["choices"]
            return cached
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("unreadable completion cache entry %s; requesting again", path)

        def send(client: Any) -> Any:
            return client.completions.create(model=self.served_name, **body)

        resp = self.pool.call(send, what="completion")
        choices = sorted(resp.choices, key=lambda c: c.index)
        out = []
        for c in choices:
            token_ids = getattr(c, "token_ids", None)
            if token_ids is None:
                extra = getattr(c, "model_extra", None) or {}
                token_ids = extra.get("token_ids")
            if token_ids is None:
                raise RuntimeError(
                    "the endpoint returned no token ids (return_token_ids): it is not a vLLM "
                    "server, or too old; the SLM backend 'openai' needs vLLM's completions API"
                )
            out.append({"token_ids": list(token_ids), "finish_reason": c.finish_reason})
        if len(out) != body["n"]:
            raise RuntimeError(f"asked for n={body['n']} completions, the endpoint returned {len(out)}")
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"choices": out}))
        return out

    # --- the Generator protocol -------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], s: SamplingSettings) -> list[list[Completion]]:
        ids = [self.encoder.prompt(p) for p in prompts]
        bodies = [
            self.request_body(list(x), s, seed)
            for x, seed in zip(ids, prompt_seeds(s.seed, len(ids)), strict=True)
        ]
        answers = thread_map(self._fetch, bodies, self.pool.capacity, desc=None)
        result = []
        for choices in answers:
            cs = [
                Completion(self.stops.finish(self.tok, c["token_ids"])[0], c["finish_reason"] == "length")
                for c in choices
            ]
            result.append(cs * s.n if s.temperature == 0 else cs)
        return result

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []
