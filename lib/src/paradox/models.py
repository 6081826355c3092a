"""Loading a causal LM and its tokenizer the one way every stage does (the toy SLM and a hub model
alike), and the identity of a model's weights (cache keys for samples and trained runs)."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from paradox.io import DoneMarker, file_hash
from paradox.paths import display, looks_local, stage_making

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(
    name_or_path: str, revision: str | None = None, gguf_file: str | None = None
) -> PreTrainedTokenizerBase:
    """AutoTokenizer with left padding (batched generation) and a pad token (EOS if it has none)."""
    kw: dict[str, Any] = {"revision": revision}
    if gguf_file:
        kw["gguf_file"] = gguf_file
    tok = AutoTokenizer.from_pretrained(name_or_path, **kw)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _safetensors_problem(f: Path) -> str | None:
    """Why `f` is not a whole safetensors file (header unreadable, or the file is shorter or
    longer than the tensors the header lists), or None."""
    try:
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError) as err:
        return f"{f.name}: unreadable safetensors header ({type(err).__name__})"
    size, want = f.stat().st_size, 8 + n + end
    return None if size == want else f"{f.name}: {size} bytes, its header lists {want}"


def model_dir_problems(path: Path | str) -> list[str]:
    """What keeps a saved model directory from loading: a missing or unparsable config.json, no
    weights, a shard its index lists but that is absent, a safetensors file cut short. Reads
    only headers and sizes (cheap for any model size). An empty list: it looks whole."""
    path = Path(path)
    if not path.is_dir():
        return ["missing"]
    problems = []
    try:
        json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        problems.append("config.json missing or unreadable")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            return [*problems, f"{index.name} unreadable"]
        problems += [f"{s} (listed in {index.name}) missing" for s in shards if not (path / s).is_file()]
    weights = sorted(path.glob("*.safetensors"))
    if not weights and not any(path.glob("*.bin")) and not any(path.glob("*.gguf")):
        problems.append("no weight files")
    problems += [p for f in weights if (p := _safetensors_problem(f))]
    return problems


def reusable_model_dir(path: Path | str) -> bool:
    """Whether a model directory a stage built before can be reused: False (rebuild it) when it
    is absent, or, with one log line naming it and what is wrong, when it is damaged."""
    path = Path(path)
    if not path.exists():
        return False
    problems = model_dir_problems(path)
    if problems:
        log.warning("%s: damaged (%s); rebuilding it", display(path), "; ".join(problems))
    return not problems


def check_local_model(name_or_path: str, gguf_file: str | None = None) -> None:
    """Before loading: a name that is (or looks like) a local path must be a whole model
    directory; else a clear error naming it and the stage that makes it, never the hub's
    "Repo id must be in the form ..." for a path taken for a hub id."""
    path = Path(name_or_path).expanduser()
    if not (path.exists() or looks_local(name_or_path)):
        return  # a hub id
    if path.is_file() or (gguf_file and path.is_dir()):
        return  # a single-file checkpoint (gguf) is the loader's to check
    problems = model_dir_problems(path) or DoneMarker(path, "").content_problems()
    if problems:
        raise FileNotFoundError(
            f"{name_or_path}: not a usable model directory ({'; '.join(problems)}); "
            f"it is made by {stage_making(path)}: rerun that stage"
        )


def load_model(
    name_or_path: str,
    dtype: str = "float32",
    gguf_file: str | None = None,
    revision: str | None = None,
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """AutoTokenizer + AutoModelForCausalLM, the same call for the toy SLM and a hub model."""
    kw: dict[str, Any] = {"revision": revision}
    if gguf_file:
        kw["gguf_file"] = gguf_file
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    check_local_model(name_or_path, gguf_file)
    tok = load_tokenizer(name_or_path, revision, gguf_file)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=DTYPES[dtype], **kw)
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")  # type: ignore[arg-type]  # transformers' @wraps(nn.Module.to) hides the bound self
    return model, tok


def model_fingerprint(name_or_path: str) -> str:
    """Identifies the weights: a hash of a local checkpoint's weight files (not of its logs or
    timings, so two runs that trained identical weights share one fingerprint), or the hub id."""
    path = Path(name_or_path)
    return file_hash(path, pattern="*.safetensors") if path.is_dir() else name_or_path
