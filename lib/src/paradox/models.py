"""Loading a causal LM and its tokenizer the one way every stage does (the toy SLM and a hub model
alike), and the identity of a model's weights (cache keys for samples and trained runs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from paradox.io import file_hash

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

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


def load_model(
    name_or_path: str, dtype: str = "float32", gguf_file: str | None = None, revision: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """AutoTokenizer + AutoModelForCausalLM, the same call for the toy SLM and a hub model."""
    kw: dict[str, Any] = {"revision": revision}
    if gguf_file:
        kw["gguf_file"] = gguf_file
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
