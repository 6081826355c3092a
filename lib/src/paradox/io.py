"""Atomic file IO, content hashes and provenance sidecars.

Every artifact is written to a temporary name and moved into place, so an interrupted stage
never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from paradox.paths import display, project_root

# mkstemp creates 0600 files; a finished artifact gets the mode any new file would (0644 under the
# usual umask), so that a shared runs/ or a published figures/ stays readable by others.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Like atomic_path, for a directory (a saved model): built aside, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: Path | str, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]]) -> Path:
    with atomic_path(path) as tmp, tmp.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    return seal(path)


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """The records of a JSONL file, after `check_seal`; a line that is not JSON is an error naming
    the file and the line."""
    rows = []
    lines = check_seal(path).decode().split("\n")  # not splitlines: a raw U+2028 inside a record
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not a JSON record: {err}") from err
    return rows


def write_csv(path: Path | str, frame: Any) -> Path:
    """A pandas DataFrame as CSV (no index), atomically and sealed (`read_csv` checks it)."""
    return seal(write_text(path, frame.to_csv(index=False)))


def read_csv(path: Path | str, **kwargs: Any) -> Any:
    """`pandas.read_csv` of a file `check_seal` accepts."""
    import io

    import pandas as pd

    return pd.read_csv(io.BytesIO(check_seal(path)), **kwargs)


# --- seals: what a stage wrote, checked where a later stage reads it ---------------------------------
# A JSONL or CSV artifact gets `<name>.seal` beside it, written after it: its size, sha256 and the
# stage that wrote it (PARADOX_STAGE, which the Makefile sets for each notebook). A reader that finds
# the file changed or gone while its seal is there stops with `DamagedArtifact`, naming the file and
# the notebook to rerun, instead of computing on fewer or altered records. No seal (a file written
# by hand or by older code): the file is read as it is.

SEAL_SUFFIX = ".seal"


class DamagedArtifact(ValueError):
    """An artifact differs from what its stage wrote: rerun that stage."""


def seal_path(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(path.name + SEAL_SUFFIX)


def seal(path: Path | str) -> Path:
    """Record `path`'s size, sha256 and writing stage in its seal (after the file itself)."""
    data = Path(path).read_bytes()
    meta = {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "stage": os.environ.get("PARADOX_STAGE"),
    }
    write_text(seal_path(path), json.dumps(meta, sort_keys=True) + "\n")
    return Path(path)


def check_seal(path: Path | str) -> bytes:
    """The bytes of `path`, if they are what its stage wrote (or it has no seal); else
    `DamagedArtifact` naming the file and the notebook to rerun."""
    path = Path(path)
    try:
        meta = json.loads(seal_path(path).read_text())
        want_bytes, want_sha = int(meta["bytes"]), str(meta["sha256"])
    except FileNotFoundError:
        return path.read_bytes()  # no seal: written by hand or by older code
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        log.warning("%s: its seal %s cannot be read; the file is read unchecked", display(path), SEAL_SUFFIX)
        return path.read_bytes()
    if not path.exists():
        raise DamagedArtifact(f"{display(path)} is missing (its seal is there): {_remedy(path, meta)}")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if len(data) != want_bytes or sha != want_sha:
        raise DamagedArtifact(
            f"{display(path)} was changed after its stage wrote it ({len(data)} bytes, sha256 "
            f"{sha[:12]}; written: {want_bytes} bytes, {want_sha[:12]}): " + _remedy(path, meta)
        )
    return data


def _remedy(path: Path, meta: dict[str, Any]) -> str:
    stage = meta.get("stage")
    if not stage:
        return "rerun the notebook that writes it"
    run = next((p for p in path.parents if (p / "notebooks").is_dir()), None)
    if run is None:
        return f"rerun notebook {stage}"
    runs = "" if run.parent == project_root() / "runs" else f" RUNS={display(run.parent)}"
    return (
        f"rerun notebook {stage} (make: rm {display(run / 'notebooks' / (stage + '.ipynb'))} && "
        f"make paper PROFILE={run.name}{runs})"
    )


def stable_hash(obj: Any, n: int = 12) -> str:
    """sha256 of `obj` as canonical JSON (sorted keys): equal content, equal hash, on any machine."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def file_hash(path: Path | str, n: int = 16, pattern: str = "*") -> str:
    """sha256 of a file's content (its name does not count), or of every file under a directory
    matching `pattern` (relative names and contents)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob(pattern) if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:n]


def git_commit() -> str:
    """HEAD's commit, suffixed '-dirty' when the work tree has changes; 'unknown' outside git."""
    try:
        root = project_root()
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=root
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
        )
    except (OSError, subprocess.CalledProcessError):  # FileNotFoundError (no root, no git) is an OSError
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def write_sidecar(
    artifact: Path | str,
    *,
    profile: str,
    params_hash: str,
    inputs: Iterable[Path | str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """`<artifact>.json`: what made this file (profile, params hash, commit, input hashes)."""
    artifact = Path(artifact)
    meta = {
        "artifact": artifact.name,
        "profile": profile,
        "params_hash": params_hash,
        "git_commit": git_commit(),
        "inputs": {display(p): file_hash(p) for p in inputs},  # root-relative: the same on every clone
        **(extra or {}),
    }
    return write_json(artifact.with_name(artifact.name + ".json"), meta)


def artifact_summary(path: Path | str) -> dict[str, Any]:
    """What a done-marker records of an artifact, so a damaged one is told from a finished one.

    A file: its line count (`rows`) and the sha256 of its bytes. A directory (a saved model):
    every file's size by relative name (`files`) and its modification time and sha256
    (`content`). A check compares the sizes, and hashes again only the files whose modification
    time changed (`summary_problems`): a checkpoint of billions of weights is not read in full on
    every rerun, yet a file overwritten in place at the same size is caught.
    """
    path = Path(path)
    if path.is_dir():
        files = [f for f in sorted(path.rglob("*")) if f.is_file()]
        return {
            "files": {str(f.relative_to(path)): f.stat().st_size for f in files},
            "content": {str(f.relative_to(path)): [f.stat().st_mtime_ns, _sha256(f)] for f in files},
        }
    h, rows = hashlib.sha256(), 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            rows += chunk.count(b"\n")
    return {"rows": rows, "sha256": h.hexdigest()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def summary_problems(path: Path | str, recorded: dict[str, Any]) -> list[str]:
    """How `path` differs from the summary a done-marker recorded (empty: it does not)."""
    path = Path(path)
    if not path.is_dir():
        now = artifact_summary(path)
        return [
            f"rows {recorded.get('rows')} -> {now['rows']}" if k == "rows" else f"{k} changed"
            for k in now
            if now[k] != recorded.get(k)
        ]
    sizes = {str(f.relative_to(path)): f.stat().st_size for f in sorted(path.rglob("*")) if f.is_file()}
    if sizes != recorded.get("files"):
        return ["files changed"]
    changed = []
    for rel, (mtime_ns, sha) in (recorded.get("content") or {}).items():  # (older markers: sizes only)
        f = path / rel
        if f.stat().st_mtime_ns != mtime_ns and _sha256(f) != sha:
            changed.append(f"{rel} changed")
    return changed


class DoneMarker:
    """Resumable units of work: `<path>.done` (one small JSON file, written after the artifact)
    holds the key of the config that produced `path` and `artifact_summary(path)`.

    A unit whose marker matches the current key and whose artifact still matches the summary is
    skipped. A changed config, a marker of the older key-only format, or an artifact that was cut,
    edited or removed since (or that cannot be read) means "redo it", with one log line naming the
    file: never trusted silently, never an error that stays on every rerun.
    """

    def __init__(self, path: Path | str, key: str) -> None:
        self.path, self.key = Path(path), key
        self.marker = self.path.with_name(self.path.name + ".done")

    def is_done(self) -> bool:
        if not self.marker.is_file():
            return False
        try:
            recorded = json.loads(self.marker.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            recorded = None
        if not isinstance(recorded, dict) or "key" not in recorded:
            log.warning(
                "%s: done-marker of an older format or unreadable; rebuilding %s",
                display(self.marker),
                display(self.path),
            )
            return False
        if recorded["key"] != self.key:
            return False  # other settings: the ordinary redo, nothing damaged
        if not self.path.exists():
            log.warning("%s: marked done but missing; rebuilding it", display(self.path))
            return False
        try:
            problems = summary_problems(self.path, recorded)
        except (OSError, TypeError, ValueError) as err:
            log.warning("%s: unreadable (%s); rebuilding it", display(self.path), err)
            return False
        if problems:
            log.warning(
                "%s: differs from what was marked done (%s); rebuilding it",
                display(self.path),
                ", ".join(problems),
            )
            return False
        return True

    def content_problems(self) -> list[str]:
        """Whatever the key: how the artifact differs from what its marker recorded (empty when it
        does not, or when there is no readable marker to compare with)."""
        try:
            recorded = json.loads(self.marker.read_text())
            return summary_problems(self.path, recorded) if isinstance(recorded, dict) else []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError):
            return []

    def mark(self) -> None:
        write_json(self.marker, {"key": self.key, **artifact_summary(self.path)})
