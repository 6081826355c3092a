"""Helpers shared by the Oracle client tests (main suite and tests/vllm_engine): cache inspection, a
client run in a subprocess that is killed mid-run, a tokenizer with a chat template built here, and a
fake endpoint whose answers can carry any status and body."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fault_proxy import FaultServer, chat_response

KEY_ENV = "PARADOX_TEST_ORACLE_KEY"

# The client in another process, over many prompts, so that it can be killed mid-run.
RUN_CLIENT = """
import sys
from paradox.oracle_client import OracleClient
url, model, cache, n, max_tokens, key_env = sys.argv[1:7]
c = OracleClient(base_url=url, model=model, cache_dir=cache, api_key_env=key_env, concurrency=2, max_retries=0,
                 timeout_s=60, max_tokens=int(max_tokens))
c.complete_many([f"prompt {i}" for i in range(int(n))], desc="run")
"""


def cache_files(cache: Path) -> list[Path]:
    """Finished cache entries (an interrupted atomic write leaves only a hidden .tmp file)."""
    return sorted(p for p in Path(cache).rglob("*.json") if not p.name.startswith("."))


def cached_prompts(cache: Path) -> set[str]:
    return {json.loads(p.read_text())["messages"][-1]["content"] for p in cache_files(cache)}


def kill_mid_run(
    url: str,
    model: str,
    cache: Path,
    n: int,
    after: int,
    log: Path,
    max_tokens: int = 4096,
    deadline_s: float = 120,
) -> None:
    """Run the client over `prompt 0` .. `prompt n-1` in a subprocess; SIGKILL it once `after`
    answers are cached."""
    args = [sys.executable, "-c", RUN_CLIENT, url, model, str(cache), str(n), str(max_tokens), KEY_ENV]
    with log.open("w") as fh:
        proc = subprocess.Popen(args, env=dict(os.environ), stdout=fh, stderr=fh)
        t0 = time.monotonic()
        try:
            while len(cache_files(cache)) < after:
                assert proc.poll() is None, f"client exited early:\n{log.read_text()}"
                assert time.monotonic() - t0 < deadline_s, f"client too slow:\n{log.read_text()}"
                time.sleep(0.01)
        finally:
            proc.kill()
            proc.wait()
    time.sleep(0.3)  # requests the dead client had already sent reach the server's record


# --- a tokenizer that counts bytes ------------------------------------------------------------------

# A ChatML-like turn format (as Qwen2.5's template lays out a user turn and the generation prompt).
BYTE_CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Tokens around a prompt: <|im_start|> + "user\n" (5) + <|im_end|> + "\n" + <|im_start|> + "assistant\n" (10).
BYTE_CHAT_OVERHEAD = 19


def byte_tokenizer(path: Path, chat_template: str | None = BYTE_CHAT) -> Path:
    """A byte-level BPE tokenizer with no merges, saved with save_pretrained: every UTF-8 byte of a
    text is one token, so counts are known by construction; special tokens are one token each."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    if chat_template is not None:
        tok.chat_template = chat_template
    tok.save_pretrained(path)
    return path


# --- a fake endpoint with any status and body ---------------------------------------------------------


class PayloadServer(FaultServer):
    """A FaultServer whose chat answers come from `payload(body)`: None for the usual echo answer, or
    (status, JSON object) sent as is - an error body, or a completion with its own finish_reason and
    usage."""

    def __init__(
        self, payload: Callable[[dict[str, Any]], tuple[int, dict[str, Any]] | None], **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.payload = payload

    def _answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, str], bytes]:
        got = self.payload(body) if body and "messages" in body else None
        if got is None:
            return super()._answer(method, path, headers, raw, body)
        status, obj = got
        return status, {"content-type": "application/json"}, json.dumps(obj).encode()


def completion(
    content: str, model: str = "fake-model", finish_reason: str = "stop", prompt_tokens: int = 1
) -> tuple[int, dict[str, Any]]:
    obj = chat_response(content, model)
    obj["choices"][0]["finish_reason"] = finish_reason
    obj["usage"]["prompt_tokens"] = prompt_tokens
    return 200, obj


# HTTP 400 bodies of real servers for a request that does not fit (numbers ours, wording theirs):
# vLLM 0.32 (vllm/renderers/params.py, error_response.py) for a prompt longer than max_model_len and
# for max_tokens above it; vLLM <= 0.9 (`serving_engine._validate_input`, {"object": "error", ...} at
# the top level) for prompt + max_tokens > max_model_len; OpenAI's API (code context_length_exceeded).
TOO_LONG_BODIES = {
    "vllm-0.32-prompt": {
        "error": {
            "message": "This model's maximum context length is 4096 tokens. However, your prompt contains 4321 input "
            "tokens, which exceeds this limit even without any output tokens. Please reduce the length of "
            "the input prompt. (parameter=input_tokens, value=4321)",
            "type": "BadRequestError",
            "param": "input_tokens",
            "code": 400,
        }
    },
    "vllm-0.32-max-tokens": {
        "error": {
            "message": "max_tokens=5000 cannot be greater than max_model_len=4096. Please request fewer output tokens. "
            "(parameter=max_tokens, value=5000)",
            "type": "BadRequestError",
            "param": "max_tokens",
            "code": 400,
        }
    },
    "vllm-0.9-total": {
        "object": "error",
        "message": "This model's maximum context length is 4096 tokens. However, you requested 4900 tokens (804 in "
        "the messages, 4096 in the completion). Please reduce the length of the messages or completion.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
    "openai": {
        "error": {
            "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 "
            "tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    },
}
