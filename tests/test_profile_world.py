"""The Makefile on a fresh checkout: the stages it schedules come from `profile_world.py` (standard
library only, run before .venv exists) and agree with `paradox.params`; on a machine where
nvidia-smi works the environment it builds gets vLLM, elsewhere the CPU torch as before."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paradox.params import main as params_main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "lib" / "src" / "paradox" / "profile_world.py"
PROFILES = sorted(p.stem for p in (ROOT / "params").glob("*.yaml") if p.stem != "base")
REAL = "paper-qwen2.5-math-1.5b"


def _reader(profile: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # -S -I: no site-packages and no user paths, so the script can only use the standard library
    return subprocess.run(
        [sys.executable, "-S", "-I", str(SCRIPT), profile], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_reader_agrees_with_paradox_params_on_every_profile(profile, capsys):
    assert params_main(["--world", profile]) == 0
    want = capsys.readouterr().out.strip()
    got = _reader(profile)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == want


def test_reader_sees_both_worlds_and_the_extends_chain():
    assert _reader("toy").stdout.split() == ["toy", "params/base.yaml", "params/toy.yaml"]
    assert _reader("paper-qwen2.5-math-7b").stdout.split() == [
        "real",
        "params/base.yaml",
        "params/paper-qwen2.5-math-1.5b.yaml",
        "params/paper-qwen2.5-math-7b.yaml",
    ]


@pytest.mark.parametrize(
    "text,error",
    [
        ("{world: real}\n", "flow-style"),
        ("world: |\n  real\n", "plain one-line value"),
        ("world:\n", "plain one-line value"),
        ("world: maybe\n", "world is 'maybe'"),
        ("extends: base\n", "must name another profile"),
        ("extends: loop\n", "cycle"),
        ("extends: nowhere\n", "nowhere.yaml: params file not found"),
    ],
)
def test_reader_refuses_what_it_cannot_read_for_sure(tmp_path, text, error):
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "base.yaml").write_text("world: toy\n")
    (tmp_path / "params" / "loop.yaml").write_text("extends: loop\n")
    (tmp_path / "params" / "p.yaml").write_text(text)
    out = _reader("p", tmp_path)
    assert out.returncode == 2 and out.stdout == "" and error in out.stderr


def test_reader_takes_quotes_and_comments(tmp_path):
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "base.yaml").write_text("# comment\nworld: toy   # the default\n")
    (tmp_path / "params" / "a.yaml").write_text("---\ndescription: 'x: y'\nworld: \"real\"  # here\n")
    (tmp_path / "params" / "b.yaml").write_text(
        "extends: 'a'\ntrain:\n  world: toy\n"
    )  # nested: not the world
    assert _reader("b", tmp_path).stdout.split() == [
        "real",
        "params/base.yaml",
        "params/a.yaml",
        "params/b.yaml",
    ]


# --- the Makefile in a fresh checkout ------------------------------------------------------------


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The working tree's files as git sees them (tracked, and new but not ignored): no .venv, no runs/."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    dest = tmp_path_factory.mktemp("checkout")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    assert not (dest / ".venv").exists() and (dest / "Makefile").is_file()
    return dest


def _fake_nvidia_smi(bin_dir: Path, works: bool) -> dict:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n" + ("echo 'GPU 0: NVIDIA H100 (UUID: GPU-0)'\nexit 0\n" if works else "exit 9\n")
    )
    tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _make_n(checkout: Path, env: dict, *args: str) -> str:
    proc = subprocess.run(["make", "-n", *args], cwd=checkout, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_fresh_checkout_schedules_no_toy_stage_for_a_real_profile(checkout, tmp_path):
    env = _fake_nvidia_smi(tmp_path / "bin", works=False)
    real = _make_n(checkout, env, "paper", f"PROFILE={REAL}")
    assert "python3 -m venv .venv" in real  # nothing built yet
    assert "00_toy_world" not in real
    assert [s for s in ("01_data", "07_mechanism") if f"notebooks/partial/{s}.ipynb" in real] == [
        "01_data",
        "07_mechanism",
    ]
    toy = _make_n(checkout, env, "paper", "PROFILE=toy")
    assert "notebooks/partial/00_toy_world.ipynb" in toy


def test_fresh_checkout_stages_depend_on_every_params_file_of_the_profile(checkout, tmp_path):
    env = _fake_nvidia_smi(tmp_path / "bin", works=False)
    db = _make_n(checkout, env, "-p", "paper", "PROFILE=paper-qwen2.5-math-7b")
    rule = next(
        ln for ln in db.splitlines() if ln.startswith("runs/paper-qwen2.5-math-7b/notebooks/01_data.ipynb:")
    )
    prereqs = rule.split(":", 1)[1].split()
    for f in ("params/base.yaml", "params/paper-qwen2.5-math-1.5b.yaml", "params/paper-qwen2.5-math-7b.yaml"):
        assert f in prereqs
    assert "runs/paper-qwen2.5-math-7b/notebooks/00_toy_world.ipynb" not in prereqs


@pytest.mark.parametrize(
    "works,override,gpu", [(True, None, True), (False, None, False), (True, "", False), (False, "1", True)]
)
def test_the_environment_gets_vllm_where_nvidia_smi_works(checkout, tmp_path, works, override, gpu):
    env = _fake_nvidia_smi(tmp_path / "bin", works=works)
    args = ["venv"] + ([] if override is None else [f"GPU={override}"])
    out = _make_n(checkout, env, *args)
    installs = [ln for ln in out.splitlines() if "pip install" in ln]
    if gpu:
        assert installs[-1].endswith("-e '.[dev,gpu]'") and not any("torch==" in ln for ln in installs)
        assert "assert torch.version.cuda" in out and "touch .venv/.installed-gpu" in out
    else:
        assert any(ln.endswith("torch==2.13.0") for ln in installs) and installs[-1].endswith("-e '.[dev]'")
        assert "vllm" not in out and "touch .venv/.installed\n" in out


@pytest.mark.parametrize("name", ["../x", "..", "a/b", ".hidden", "x;rm", "a b", "-x"])
def test_make_refuses_a_profile_name_that_is_not_a_plain_name(name):
    """PROFILE becomes runs/$(PROFILE) in `make clean`'s rm -rf: refused before any rule runs."""
    proc = subprocess.run(
        ["make", "-n", "clean", f"PROFILE={name}"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode != 0 and "is not a profile name" in proc.stderr
    assert "rm -rf" not in proc.stdout
