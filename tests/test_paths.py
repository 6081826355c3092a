"""Paths resolve from the project root wherever the process starts (JupyterLab starts kernels in
notebooks/, papermill at the root)."""

import subprocess
import sys
from pathlib import Path

import pytest

from paradox import paths
from paradox.params import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_root_found_from_a_subdirectory(monkeypatch):
    monkeypatch.delenv(paths.ROOT_ENV, raising=False)
    monkeypatch.chdir(ROOT / "notebooks")
    assert paths.project_root() == ROOT
    assert paths.resolve("runs") == ROOT / "runs"
    assert paths.RunPaths("toy").root == ROOT / "runs" / "toy"
    assert paths.RunPaths("toy").figures == ROOT / "runs" / "toy" / "figures"
    assert load_params("smoke").profile == "smoke"


def test_root_from_the_environment(monkeypatch, tmp_path):
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "base.yaml").write_text("seed: 0\n")
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))
    assert paths.project_root() == tmp_path.resolve()
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="PARADOX_ROOT"):
        paths.project_root()


def test_display_is_root_relative_and_local_or_hub(monkeypatch):
    monkeypatch.delenv(paths.ROOT_ENV, raising=False)
    monkeypatch.chdir(ROOT / "notebooks")
    assert paths.display(ROOT / "runs" / "toy" / "x.csv") == "runs/toy/x.csv"
    assert paths.display("/elsewhere/file") == "/elsewhere/file"
    assert paths.local_or_hub("params") == str(ROOT / "params")  # exists under the root
    assert paths.local_or_hub("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"  # a hub id stays


def test_params_errors_name_root_relative_files(monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")
    with pytest.raises(ParamsError, match=r"^params/no-such-profile\.yaml: params file not found"):
        load_params("no-such-profile")


def test_a_process_started_in_notebooks_finds_params_and_runs():
    code = (
        "from paradox.params import load_params; from paradox.paths import RunPaths; "
        "p = load_params('toy'); print(RunPaths(p.profile).root)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "notebooks",
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == str(ROOT / "runs" / "toy")
