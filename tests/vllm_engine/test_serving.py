"""Managed `vllm serve` processes (paradox.serving) on vLLM's CPU build: started, ready, stopped,
and never left behind: not when the start fails, not when a second server wants the same GPUs,
not when the process that started it is killed."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

_vllm = importlib.util.find_spec("vllm")
if _vllm is None or _vllm.origin is None:
    pytest.skip("vLLM is not installed in this environment", allow_module_level=True)

from paradox.serving import ServerError, ServeSpec, VLLMServer, group_alive  # noqa: E402

# Whole prefills on CPU (see VLLMGenerator.from_pretrained); eager: torch.compile costs ~45 s here.
CPU_ARGS = ("--no-enable-chunked-prefill",)


def spec_for(model, **kw) -> ServeSpec:
    return ServeSpec(
        model=str(model),
        served_name="toy-slm",
        dtype="float32",
        enforce_eager=True,
        extra_args=CPU_ARGS,
        start_timeout_s=600,
        **kw,
    )


def test_start_answer_stop(vllm_lm, tmp_path):
    server = VLLMServer(spec_for(vllm_lm), tmp_path / "logs", name="slm", lock_path=tmp_path / "gpu.lock")
    with server:
        assert server.healthy()
        body = b'{"model": "toy-slm", "prompt": "Question: 1 + 1?", "max_tokens": 4}'
        req = urllib.request.Request(
            f"{server.base_url}/completions", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 200
        pgid = server.proc.pid
        # A second server that wants the same GPUs fails at once, naming the holder.
        with pytest.raises(ServerError, match="holds .*gpu.lock.*slm"):
            VLLMServer(
                spec_for(vllm_lm), tmp_path / "logs", name="other", lock_path=tmp_path / "gpu.lock"
            ).start()
    assert server.proc is None and not group_alive(pgid)
    assert "--served-model-name toy-slm" in server.log_path.read_text()
    # The lock is free again.
    VLLMServer(spec_for(vllm_lm), tmp_path / "logs", lock_path=tmp_path / "gpu.lock")._acquire()


def test_failed_start_raises_with_the_log_and_leaves_nothing(tmp_path):
    server = VLLMServer(spec_for(tmp_path / "no-such-model"), tmp_path / "logs", name="bad")
    with pytest.raises(ServerError, match="exited with code"):
        server.start()
    assert server.proc is None


KILLED_PARENT = """
import sys, time
from paradox.serving import ServeSpec, VLLMServer
spec = ServeSpec(model=sys.argv[1], served_name="toy-slm", dtype="float32", enforce_eager=True,
                 extra_args=("--no-enable-chunked-prefill",), start_timeout_s=600)
s = VLLMServer(spec, sys.argv[2], name="orphan").start()
print(s.proc.pid, s.port, flush=True)
time.sleep(3600)
"""


def test_server_dies_with_a_killed_parent(vllm_lm, tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", KILLED_PARENT, str(vllm_lm), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    pid, port = map(int, parent.stdout.readline().split())
    os.kill(parent.pid, signal.SIGKILL)  # no atexit, no finally: only the death signal remains
    parent.wait()
    deadline = time.monotonic() + 120
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(1)
    alive = group_alive(pid)
    if alive:
        os.killpg(pid, signal.SIGKILL)
    assert not alive, "the server outlived the process that started it"
