"""Fault injection over a whole `smoke` run (issue 11): damage one artifact of a finished run (cut,
overwrite, delete) or SIGKILL a stage at a random moment, rerun the stage that reads it through
`make` as a user would, and classify what happens:

- recovered: rc 0 and every result of the run byte-identical to the undamaged run;
- refused: rc != 0 with a message that names the damaged file or the notebook to rerun; rerunning
  that notebook (the remedy the message gives) then restores the identical results;
- silently wrong: rc 0 with different results (must never happen), or a refusal whose remedy
  does not restore them, or a message that names nothing.

Every fault works on its own copy of the run (`make ... RUNS=<tmp>`), drawn from a catalogue with a
fixed seed. The default draws one fault of each kind (`make test`); PARADOX_FAULTS=N draws N, and
PARADOX_FAULTS_SEED another seed. Counts go to faults.json in the
test's tmp directory and are printed."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "smoke"
# Default: one fault of each kind (what `make test` runs, ~3 min); PARADOX_FAULTS=N: N drawn freely.
N_FAULTS = int(os.environ.get("PARADOX_FAULTS", "0"))
SEED = int(os.environ.get("PARADOX_FAULTS_SEED", "11"))

pytestmark = pytest.mark.pipeline

# What each stage reads that an earlier run left (globs relative to runs/smoke/), and which
# notebook writes it: the consumer is rerun after the damage, the producer is the remedy.
CATALOGUE: list[tuple[str, str, str]] = [
    # (glob, consumer stage, producer stage)
    ("eval/samples/*/*/shard-*.jsonl", "05_eval", "05_eval"),
    ("eval/samples/*/*/shard-*.jsonl.done", "05_eval", "05_eval"),
    ("eval/samples/*", "05_eval", "05_eval"),
    ("models/*/model.safetensors", "05_eval", "04_train"),
    ("models/*/config.json", "05_eval", "04_train"),
    ("models/*", "05_eval", "04_train"),
    ("streams/*.jsonl", "05_eval", "02_oracle_refine"),
    ("eval/accuracy.csv", "06_figures", "05_eval"),
    ("eval/perplexity.csv", "06_figures", "05_eval"),
    ("rewards/*.jsonl", "06_figures", "02_oracle_refine"),
    ("models/loss_curves.csv", "06_figures", "04_train"),
    ("eval/learning_curves.csv", "07_mechanism", "05_eval"),
    ("data/kept_problems.jsonl", "03_style_align", "01_data"),
    ("streams/slm_rft.jsonl", "03_style_align", "01_data"),
]
KINDS = ("truncate", "corrupt", "delete", "kill")
STAGES = ("00_toy_world", "01_data", "02_oracle_refine", "03_style_align", "04_train", "05_eval")
# The results: every number a stage writes (not notebooks, timings, logs or markers).
RESULT_SUFFIXES = {".csv", ".md", ".tex", ".jsonl", ".safetensors"}
IGNORED = {"timings.csv"}


@dataclass
class Fault:
    kind: str
    target: str  # relative to the run directory ("" for a kill)
    stage: str  # rerun after the damage (for a kill: the stage killed)
    producer: str  # rerun when the stage refuses (the remedy its message should name)
    detail: str = ""


def results(run: Path) -> dict[str, str]:
    """sha256 of every result file of the run, by relative name; a CSV without its wall-time
    column (`seconds`, e.g. models/runs.csv: how long each run trained, never the same twice)."""
    out = {}
    for f in sorted(run.rglob("*")):
        rel = f.relative_to(run)
        if (
            f.is_file()
            and f.suffix in RESULT_SUFFIXES
            and f.name not in IGNORED
            and "notebooks" not in rel.parts
        ):
            data = f.read_bytes()
            header = data.split(b"\n", 1)[0].decode(errors="replace").split(",")
            if f.suffix == ".csv" and "seconds" in header:
                drop = header.index("seconds")
                rows = csv.reader(io.StringIO(data.decode(errors="replace")))
                data = "\n".join(",".join(r[:drop] + r[drop + 1 :]) for r in rows).encode()
            out[str(rel)] = hashlib.sha256(data).hexdigest()
    return out


def make(runs: Path, *targets: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", *targets, f"PROFILE={PROFILE}", f"RUNS={runs}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stage_target(runs: Path, stage: str) -> str:
    return str(runs / PROFILE / "notebooks" / f"{stage}.ipynb")


def rerun(runs: Path, stage: str) -> subprocess.CompletedProcess:
    """Run `stage` again as a user would after noticing a problem: its finished notebook goes, and
    make rebuilds that target (the stages before it are up to date and stay untouched)."""
    (runs / PROFILE / "notebooks" / f"{stage}.ipynb").unlink(missing_ok=True)
    return make(runs, stage_target(runs, stage))


def damage(path: Path, kind: str, rng: random.Random) -> str:
    if kind == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        return "deleted"
    if path.is_dir():  # cut or overwrite one file inside it
        path = rng.choice(sorted(p for p in path.rglob("*") if p.is_file() and p.stat().st_size))
    data = path.read_bytes()
    if kind == "truncate":
        keep = rng.randrange(0, len(data))
        path.write_bytes(data[:keep])
        return f"{path.name}: {len(data)} -> {keep} bytes"
    at = rng.randrange(0, len(data))
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    if junk == data[at : at + len(junk)]:
        junk = bytes(b ^ 0xFF for b in junk)
    path.write_bytes(data[:at] + junk + data[at + len(junk) :])
    return f"{path.name}: {len(junk)} bytes overwritten at {at}"


def draw(rng: random.Random, run: Path, n: int) -> list[Fault]:
    """n faults of kinds drawn at random; n = 0: one of each kind, in a random order."""
    kinds = rng.sample(KINDS, len(KINDS)) if n == 0 else []
    faults: list[Fault] = []
    while len(faults) < (n or len(KINDS)):
        kind = kinds[len(faults)] if kinds else rng.choice(KINDS)
        if kind == "kill":
            stage = rng.choice(("04_train", "05_eval", "03_style_align"))
            faults.append(Fault("kill", "", stage, stage))
            continue
        pattern, stage, producer = rng.choice(CATALOGUE)
        hits = sorted(run.glob(pattern))
        if not hits:
            continue
        target = rng.choice(hits)
        if kind != "delete" and target.is_dir() and not any(p.is_file() for p in target.rglob("*")):
            continue
        faults.append(Fault(kind, str(target.relative_to(run)), stage, producer))
    return faults


def error_lines(out: str) -> list[str]:
    """The exception lines of a failed stage (papermill prints the cell's traceback)."""
    return [line for line in out.splitlines() if re.search(r"\w(Error|Exception|Artifact)\b: \S", line)]


def names_something(out: str, fault: Fault) -> bool:
    """A refusal must name the damaged artifact (its file or directory name) or the notebook to rerun."""
    target = Path(fault.target)
    words = {target.name, target.parent.name, fault.producer, f"notebook {fault.producer[:2]}"}
    words |= {f"{fault.producer[:2]} ", f"{fault.producer[:2]})", f"{fault.producer[:2]},"}
    return any(w and w in line for line in error_lines(out) for w in words - {"", "."})


def kill_at_random(runs: Path, stage: str, rng: random.Random) -> str:
    (runs / PROFILE / "notebooks" / f"{stage}.ipynb").unlink(missing_ok=True)
    proc = subprocess.Popen(
        ["make", stage_target(runs, stage), f"PROFILE={PROFILE}", f"RUNS={runs}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    after = rng.uniform(4.0, 16.0)  # past papermill's and the kernel's start-up, into the work
    time.sleep(after)
    # the whole tree, the kernel included (jupyter_client starts it in a session of its own)
    tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    return f"SIGKILL after {after:.1f} s"


def test_faults_are_recovered_or_refused_never_silently_wrong(smoke_run, tmp_path):
    run = ROOT / "runs" / PROFILE
    base = results(run)
    assert base, "the smoke run wrote no results"
    rng = random.Random(SEED)
    faults = draw(rng, run, N_FAULTS)
    counts = {"injected": 0, "recovered": 0, "refused": 0, "silently_wrong": 0}
    log = []
    for i, fault in enumerate(faults):
        runs = tmp_path / f"f{i}"
        shutil.copytree(run, runs / PROFILE, symlinks=True)  # copy2: mtimes kept, make sees it finished
        if fault.kind == "kill":
            fault.detail = kill_at_random(runs, fault.stage, rng)
        else:
            fault.detail = damage(runs / PROFILE / fault.target, fault.kind, rng)
        counts["injected"] += 1
        proc = rerun(runs, fault.stage)
        out = proc.stdout + proc.stderr
        after = results(runs / PROFILE)
        if proc.returncode == 0:
            outcome = "recovered" if after == base else "silently_wrong"
        elif not names_something(out, fault):
            outcome = "silently_wrong"  # a failure that names nothing
        else:  # the remedy: the notebook the message names (seals know their stage), else the writer's
            named = re.findall(r"rerun notebook (\w+)", "\n".join(error_lines(out)))
            fault.producer = named[-1] if named else fault.producer
            fixed = rerun(runs, fault.producer)
            if fixed.returncode == 0 and fault.producer != fault.stage:
                fixed = make(runs, stage_target(runs, fault.stage))
            outcome = (
                "refused" if fixed.returncode == 0 and results(runs / PROFILE) == base else "silently_wrong"
            )
        leftovers = [str(p.relative_to(runs)) for p in runs.rglob("*.tmp")]
        if leftovers:
            outcome = "silently_wrong"
        counts[outcome] += 1
        changed = sorted(k for k in base.keys() | after.keys() if base.get(k) != after.get(k))
        entry = {**fault.__dict__, "rc": proc.returncode, "outcome": outcome, "changed": changed[:5]}
        entry["message"] = error_lines(out)[-2:]
        entry["leftovers"] = leftovers
        log.append(entry)
        print(json.dumps(entry))
        shutil.rmtree(runs)
    (tmp_path / "faults.json").write_text(
        json.dumps({"seed": SEED, "counts": counts, "faults": log}, indent=1)
    )
    print(json.dumps(counts))
    wrong = [e for e in log if e["outcome"] == "silently_wrong"]
    assert not wrong, json.dumps(wrong, indent=1)
    assert counts["injected"] == (N_FAULTS or len(KINDS))
