"""Helpers shared by the Oracle client tests (main suite and tests/vllm_engine): cache inspection and a
client run in a subprocess that is killed mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

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


def kill_mid_run(url: str, model: str, cache: Path, n: int, after: int, log: Path, max_tokens: int = 4096,
                 deadline_s: float = 120) -> None:
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
