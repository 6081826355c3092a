"""Fixtures for the vLLM adapters' tests: tiny models vLLM runs on CPU, shared engines, a server.

This directory runs only in the vLLM environment (`make test-vllm`, `.venv-vllm`); the main suite
ignores it (`collect_ignore` in tests/conftest.py). vLLM is imported inside the fixtures, so the
module itself imports anywhere.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from paradox.params import VLLMEngine

SERVED_NAME = "toy-slm"
# A plain turn format: the OpenAI-compatible server needs a chat template for /v1/chat/completions,
# and the reward model scores (system, user, assistant) conversations through it.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
STOP_EVERY = 16  # the tiny LM ends its answer right after about one token in STOP_EVERY
SERVER_START_TIMEOUT_S = float(os.environ.get("VLLM_TEST_SERVER_TIMEOUT", "600"))
# Test engines run eagerly (torch.compile costs ~45 s per engine on 2 cores) and in this process:
# vLLM otherwise starts an engine-core process and a worker process, each importing vLLM again
# (~50 s here, against ~5 s in-process). Production keeps vLLM's defaults.
FAST = VLLMEngine(enforce_eager=True)
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's CPU engine asks for it


def _config(tok, **kw):
    from transformers import LlamaConfig

    # Head size 32 (64 / 2): vLLM's CPU attention supports head sizes from 32 up, not the 16 of the
    # main suite's tiny_lm. 8192 positions so an OpenAI client's usual max_tokens fits the context;
    # the tiny KV cache (1 KiB per token) makes that free.
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=8192,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        **kw,
    )


@pytest.fixture(scope="session")
def vllm_tokenizer(splits):
    """The toy SLM's tokenizer (byte-level BPE trained as notebook 00 does), with a chat template."""
    from paradox.toy import slm

    corpus = slm.pretraining_corpus(splits["train"], "Question: {question}\nAnswer:\n", 0.1, 0)
    tok = slm.train_tokenizer([r["prompt"] + r["completion"] for r in corpus], 300)
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def vllm_lm(tmp_path_factory, vllm_tokenizer) -> Path:
    """A tiny random Llama saved with save_pretrained, edited so that its answers end (EOS) right
    after any of a sixteenth of its tokens: completions stop at varied lengths, as a real SLM's do,
    so both values of `truncated` occur, while attention and MLPs stay random and real.

    The edit: residual dimension 0 is 1 for the 'stop' tokens' embeddings and 0 for all others,
    no layer writes to it, and only the EOS row of the (untied) head reads it, strongly.
    """
    import torch
    from transformers import LlamaForCausalLM

    tok = vllm_tokenizer
    torch.manual_seed(0)
    model = LlamaForCausalLM(_config(tok, tie_word_embeddings=False))
    eos = tok.eos_token_id
    stop = [i for i in range(len(tok)) if i % STOP_EVERY == 3 and i not in (eos, tok.pad_token_id)]
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb[:, 0] = 0.0
        emb[stop, 0] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        head = model.lm_head.weight
        head[:, 0] = 0.0
        head[eos, 0] = 20.0  # after RMSNorm dimension 0 is ~8 at a stop token: EOS logit ~160
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = eos
    path = tmp_path_factory.mktemp("vllm_lm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def reward_lm(tmp_path_factory, vllm_tokenizer) -> Path:
    """A tiny random LlamaForSequenceClassification with one label: a reward model's shape."""
    import torch
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(1)
    model = LlamaForSequenceClassification(_config(vllm_tokenizer, num_labels=1))
    with torch.no_grad():
        model.score.weight.mul_(10)  # spread the scores (~1) so a mismatch cannot hide in tiny numbers
    path = tmp_path_factory.mktemp("reward_lm")
    model.save_pretrained(path)
    vllm_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def qwen_reward_lm(tmp_path_factory, vllm_tokenizer) -> Path:
    """A tiny reward model shaped like Qwen2.5-Math-RM-72B (tests/qwen_rm.py): `Qwen2ForRewardModel`,
    its own remote code for transformers, vLLM's own implementation for vLLM."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: qwen_rm
    from qwen_rm import build_qwen_rm

    return build_qwen_rm(
        tmp_path_factory.mktemp("qwen_reward_lm") / "rm", vllm_tokenizer, hidden_size=64, seed=2
    )


@pytest.fixture(scope="session")
def fast_engine() -> VLLMEngine:
    return FAST


@pytest.fixture(scope="module")
def vllm_generator(vllm_lm):
    """One engine per test module (starting one costs seconds). Not one per session: the test engines
    run in this process (FAST), where vLLM keeps its parallel groups in module globals, and closing any
    other in-process engine (a reward engine, a generator built from params) tears them down under
    every engine still alive here; its next step then fails ("pipeline model parallel group is not
    initialized"). Production engines keep vLLM's default engine process, which owns its own groups."""
    from paradox.vllm_backend import VLLMGenerator

    gen = VLLMGenerator.from_pretrained(str(vllm_lm), FAST, dtype="float32", seed=0)
    yield gen
    gen.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 60) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-n:])


@pytest.fixture(scope="session")
def vllm_server(vllm_lm, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """vLLM's OpenAI-compatible server on the tiny LM: yields (base_url, model_name), i.e.
    ("http://127.0.0.1:PORT/v1", "toy-slm"), and stops the server after the session."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = tmp_path_factory.mktemp("vllm_server") / "server.log"
    # The `vllm` console script fails under the package name vllm-cpu; the module entry point works.
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(vllm_lm),
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--no-enable-chunked-prefill",
    ]  # see VLLMGenerator.from_pretrained
    # The server runs its engine in its own processes, as vLLM does by default.
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"vLLM server exited with code {proc.returncode} before answering; "
                    f"log {log_path}:\n{_tail(log_path)}"
                )
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"vLLM server did not answer {base_url}/models within {SERVER_START_TIMEOUT_S:.0f} s; "
                    f"log {log_path}:\n{_tail(log_path)}"
                )
            time.sleep(1)
        yield base_url, SERVED_NAME
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(
                proc.pid, signal.SIGKILL
            )  # its own session: this reaches the engine core it spawned too
            proc.wait()
