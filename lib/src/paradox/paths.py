"""Where each stage reads and writes, for one profile. Notebooks get every path from here.

Relative paths (in params, in notebook parameters, in pointers between stages) are relative to
the project root, whatever the working directory: papermill starts kernels at the root, while
JupyterLab starts them in `notebooks/`. The root is `$PARADOX_ROOT` if set, else the nearest
directory holding `params/base.yaml` above the working directory, else above this package (an
editable install from a clone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "PARADOX_ROOT"
MARKER = Path("params") / "base.yaml"


def _find_root(start: Path) -> Path | None:
    for d in (start, *start.parents):
        if (d / MARKER).is_file():
            return d
    return None


def project_root() -> Path:
    """The project's root directory (see the module docstring)."""
    env = os.environ.get(ROOT_ENV)
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / MARKER).is_file():
            raise FileNotFoundError(f"${ROOT_ENV}={env}: no {MARKER} there; point it at the project's root")
        return root
    cwd = Path.cwd().resolve()
    found = _find_root(cwd) or _find_root(Path(__file__).resolve().parent)
    if found is None:
        raise FileNotFoundError(
            f"cannot find the project root (a directory with {MARKER}) above {cwd}; "
            f"start from inside the project or set ${ROOT_ENV}"
        )
    return found


def resolve(path: Path | str) -> Path:
    """`path` itself if absolute, else the same path under the project root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def display(path: Path | str) -> str:
    """`path` relative to the project root when it lies inside it (what artifacts and messages
    record, so they do not depend on where the project was cloned), else as given."""
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(project_root()))
    except (ValueError, FileNotFoundError):
        return str(path)


LOCAL_PREFIXES = ("runs/", "./", "../", "/", "~")


def looks_local(name_or_path: str) -> bool:
    """A name meant as a local path, never a hub id (`org/name`): one that starts like a path."""
    return name_or_path.startswith(LOCAL_PREFIXES) or name_or_path in (".", "..", "runs")


def stage_making(path: Path | str) -> str:
    """Which notebook writes `path` (for messages about a missing or damaged artifact)."""
    parts = Path(path).parts
    if ".cache" in parts and "slm" in parts or "world" in parts:
        return "notebook 00 (00_toy_world)"
    if "models" in parts:
        return "notebook 04 (04_train)"
    if "eval" in parts:
        return "notebook 05 (05_eval)"
    return "the stage or person that put it there"


def local_or_hub(name_or_path: str) -> str:
    """A model or dataset named in params: a local path (resolved from the root) if one exists
    there, else the string unchanged (a hub id such as `Qwen/Qwen2.5-Math-1.5B`). A name that
    starts like a path (`runs/`, `./`, `../`, `/`, `~`) but does not exist is an error naming it,
    not a hub id the hub then refuses."""
    path = Path(name_or_path).expanduser()
    local = path if path.is_absolute() else project_root() / path
    if local.exists():
        return str(local)
    if looks_local(name_or_path):
        raise FileNotFoundError(
            f"{name_or_path}: no such local path ({local}); it is made by {stage_making(local)}"
        )
    return name_or_path


@dataclass(frozen=True)
class RunPaths:
    profile: str
    runs_dir: Path = Path("runs")

    def __post_init__(self) -> None:  # resolved once, from the root, whatever the working directory
        object.__setattr__(self, "runs_dir", resolve(self.runs_dir))

    @property
    def root(self) -> Path:
        return self.runs_dir / self.profile

    @property
    def world(self) -> Path:  # toy problems and the pointer to the toy SLM (notebook 00)
        return self.root / "world"

    @property
    def slm_cache(self) -> Path:  # toy SLMs, keyed by config hash, shared by profiles
        return self.runs_dir / ".cache" / "slm"

    @property
    def data(self) -> Path:  # samples and RFT selection (01)
        return self.root / "data"

    @property
    def streams(self) -> Path:  # one JSONL per training stream (01-03)
        return self.root / "streams"

    @property
    def rewards(self) -> Path:  # reward per trace per stream (02-03)
        return self.root / "rewards"

    @property
    def models(self) -> Path:  # fine-tuned models (04)
        return self.root / "models"

    @property
    def eval(self) -> Path:  # evaluation samples, accuracy and perplexity tables (05)
        return self.root / "eval"

    @property
    def figures(
        self,
    ) -> Path:  # tables and figures (06, 07); `make publish` copies them to figures/<profile>/
        return self.root / "figures"

    def stream(self, name: str) -> Path:
        return self.streams / f"{name}.jsonl"
