"""Multi-process training from a notebook: `accelerate launch` of `python -m paradox.training.job JOB`.

`launch_training` writes the job file, runs

    accelerate launch --config_file CFG --num_processes N --main_process_port PORT -m paradox.training.job JOB

(plus `--num_machines M --machine_rank R --main_process_ip IP` for a job over several nodes)

as a subprocess (through this interpreter, `python -m accelerate.commands.launch`, so the same
environment runs it), prints its output line by line as it comes, keeps the log, and returns the
log history the run saved. A failed launch raises with the tail of the log and leaves nothing
that looks finished: `sft_train` moves the model into place only after every process is done,
and its temporary directory is removed here if the processes were killed before they could.

Configs live in `params/accelerate/` (`fsdp.yaml`: one node of 8 GPUs; `cpu-2proc.yaml`: two CPU
processes, for tests).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paradox.io import read_json, write_json
from paradox.paths import resolve

# "FileNotFoundError: ..." as Python prints an exception; the launcher's own reports of a child
# that failed say nothing about why.
ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Interrupt)(: |$)")
LAUNCHER_ERRORS = re.compile(r"^(\w+\.)*(ChildFailedError|CalledProcessError)\b")


class LaunchError(RuntimeError):
    """`accelerate launch` of a training run failed; the message ends with the log's tail."""


def free_port() -> int:
    """A TCP port free now, for the rendezvous: two launches on one machine must not share 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Machines:
    """Where this process sits in a training job over several nodes (accelerate's multi-node
    launch: every node runs the same `accelerate launch`, each with its own rank).

    One node: rank 0, and a free rendezvous port is chosen per launch. Several nodes: every node
    must agree on the main node's address and port, so they come from the environment, named
    after accelerate's own flags: MACHINE_RANK (0 on the main node), MAIN_PROCESS_IP,
    MAIN_PROCESS_PORT (default 29500). `runs/` must be on a filesystem every node shares.
    """

    num_machines: int = 1
    rank: int = 0
    main_ip: str | None = None
    main_port: int | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, num_machines: int, environ: Mapping[str, str] = os.environ) -> Machines:
        if num_machines == 1:
            return cls()
        missing = [k for k in ("MACHINE_RANK", "MAIN_PROCESS_IP") if not environ.get(k)]
        if missing:
            raise LaunchError(
                f"train.num_machines is {num_machines}: set {' and '.join(missing)} on every node "
                "(MACHINE_RANK=0 on the main node, 1.. on the others; MAIN_PROCESS_IP = the main "
                "node's address; optionally MAIN_PROCESS_PORT, default 29500)"
            )
        try:
            rank, port = int(environ["MACHINE_RANK"]), int(environ.get("MAIN_PROCESS_PORT") or 29500)
        except ValueError as err:
            raise LaunchError(f"MACHINE_RANK and MAIN_PROCESS_PORT must be integers: {err}") from None
        if not 0 <= rank < num_machines:
            raise LaunchError(f"MACHINE_RANK={rank} is outside 0..{num_machines - 1} (train.num_machines)")
        return cls(num_machines, rank, environ["MAIN_PROCESS_IP"], port)


def launch_command(
    job_file: Path | str,
    accelerate_config: Path | str,
    num_processes: int,
    main_process_port: int | None = None,
    machines: Machines | None = None,
) -> list[str]:
    """`num_processes` counts every process of the job, over all machines (as accelerate does)."""
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(accelerate_config),
        "--num_processes",
        str(num_processes),
    ]
    if machines is not None and machines.num_machines > 1:
        cmd += [
            "--num_machines",
            str(machines.num_machines),
            "--machine_rank",
            str(machines.rank),
            "--main_process_ip",
            str(machines.main_ip),
        ]
        main_process_port = machines.main_port
    if main_process_port:
        cmd += ["--main_process_port", str(main_process_port)]
    return [*cmd, "-m", "paradox.training.job", str(job_file)]


def _remove_leftovers(out_dir: Path) -> None:
    """`sft_train`'s temporary directory, if its processes were killed before they cleaned up."""
    for tmp in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


def print_now(line: str) -> None:
    print(line, flush=True)  # shown as it comes, in a notebook too


def launch_training(
    job: dict[str, Any],
    accelerate_config: Path | str,
    num_processes: int,
    *,
    echo: Callable[[str], None] | None = print_now,
    env: dict[str, str] | None = None,
    main_process_port: int | None = None,
    machines: Machines | None = None,
    tail_lines: int = 40,
) -> list[dict[str, Any]]:
    """Run one training job (see `paradox.training.job.make_job`) on `num_processes` processes (over
    all of `machines`: call it on every node, each with its own `Machines.from_env`).

    Returns the run's log history (its `log_history.json`, written by the job's main process). The
    whole launch log is kept as `launch.log` in the trained model's directory (`launch.machine-R.log`
    from a node other than the main one), or as `<name>.launch.log` beside it when the launch fails.
    """
    machines = machines or Machines()
    out_dir = Path(job["output_dir"])
    config = resolve(accelerate_config)  # params name it from the project root
    if not config.is_file():
        raise FileNotFoundError(f"{config}: accelerate config not found")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    suffix = "" if machines.is_main else f".machine-{machines.rank}"
    failed_log = out_dir.parent / f"{out_dir.name}{suffix}.launch.log"
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # Progress bars redraw with carriage returns, which arrive here as separate lines: a redraw
    # every 10 s keeps the notebook readable.
    child_env.setdefault("TQDM_MININTERVAL", "10")
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    cause: str | None = None  # the first exception a training process printed
    with tempfile.TemporaryDirectory(prefix="paradox-launch-") as work:
        job_file, log_file = Path(work) / "job.json", Path(work) / "launch.log"
        write_json(job_file, job)
        cmd = launch_command(job_file, config, num_processes, main_process_port or free_port(), machines)
        if echo:
            echo("$ " + " ".join(cmd))
        # Its own session, so an interrupt (a notebook's stop button) can end every process of it.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=child_env,
            start_new_session=True,
        )
        try:
            with log_file.open("w") as log:
                log.write("$ " + " ".join(cmd) + "\n")
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    line = line.rstrip("\n")
                    tail.append(line)
                    if cause is None and ERROR_LINE.match(line) and not LAUNCHER_ERRORS.match(line):
                        cause = line
                    if echo:
                        echo(line)
            rc = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            _remove_leftovers(out_dir)
            raise
        if rc != 0 or not (out_dir / "log_history.json").is_file():
            _remove_leftovers(out_dir)
            shutil.copyfile(log_file, failed_log)
            why = (
                f"exit code {rc}"
                if rc != 0
                else f"it exited 0 but {out_dir} has no log_history.json"
                + ("" if machines.is_main else " (is runs/ on a filesystem every node shares?)")
            )
            raise LaunchError(
                f"accelerate launch of {out_dir.name} failed ({why}): {cause or 'see the log'}\n"
                f"full log: {failed_log}\n--- last {len(tail)} lines ---\n" + "\n".join(tail)
            )
        shutil.copyfile(log_file, out_dir / ("launch.log" if machines.is_main else f"launch{suffix}.log"))
    failed_log.unlink(missing_ok=True)  # an earlier failed attempt's log is now stale
    history: list[dict[str, Any]] = read_json(out_dir / "log_history.json")
    return history
