"""Reward models from Hugging Face checkpoints (`reward.backend: hf`), behind the toy rubric's interface.

Two heads, as the paper's reward models need them:
  seq_cls      AutoModelForSequenceClassification with one output (Skywork-Reward class):
               score = logits[:, 0].
  remote_code  the checkpoint's own AutoModel class (trust_remote_code). Qwen2.5-Math-RM-72B's
               (`Qwen2ForRewardModel` in its `modeling_qwen2_rm.py`) is a Qwen2 body with a per-token
               scalar head (Linear-ReLU-Linear on every hidden state) whose forward returns the reward
               of ONE token per sequence, shape (batch, 1): the token before the first pad token (the
               last token when the config has no pad id), as its model card's `model(input_ids)[0]`
               reads it. An output with a reward per token, (batch, seq) or (batch, seq, 1), is read
               here at each sequence's last token.
Both score the same text: the chat (system prompt if any, user = question, assistant = trace)
rendered by the tokenizer's chat template without a generation prompt, encoded without adding
special tokens (the template already has them).

Remote code written for transformers 4.40 (the Qwen RM's) meets transformers 5 in three places,
each found by running a local copy of that code here, and each handled when the model loads:
  - its config.json has no pad_token_id and transformers 5 configs no longer default one, while
    its model reads `config.pad_token_id` when it is built: the config is loaded first and given
    the tokenizer's pad id;
  - its rotary tables are non-persistent buffers computed in `__init__`, which transformers 5
    leaves uninitialised (it builds on the meta device and expects `_init_weights` to fill them):
    they are recomputed (`rebuild_init_buffers`), or the scores are garbage;
  - asked for a cache, its forward converts one with `DynamicCache.from_legacy_cache`, gone from
    transformers 5: scoring is one forward pass, which runs with `use_cache=False` (and the
    config's `use_cache` off).

Batching: sequences are sorted by length, batched and padded on the RIGHT with an attention mask.
Both pooling conventions (the rightmost non-pad token, as transformers' *ForSequenceClassification
does; the token before the first pad, as the Qwen RM's remote code does) then pick each
sequence's own last token, and causal attention keeps that token blind to the pads after it, so
a score does not depend on which other traces share its batch. Both conventions fail if the pad
id occurs INSIDE a chat (a template that ends turns with it, or a trace that writes the pad token
out): such a batch is padded with an id that occurs in none of its chats, and the model's
`pad_token_id` is set to it for that forward pass, so the score is still the last token's.

Truncation: a chat longer than `max_length` tokens keeps its prompt part (system + question) and
the END of the response, dropping tokens from the start of the response. The score is read at
the last token, and the end of a solution (final answer, boxed result, end of turn) is what a
reward model weighs most; the question must stay for the trace to be judged at all. If the prompt
alone is too long, the chat is cut from the left. Truncated traces are counted in `n_truncated`.
The vLLM backends (`paradox.vllm_backend.VLLMReward`, offline; `paradox.reward_server.ServedReward`,
on vLLM pooling servers) encode with the same function.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from paradox.models import DTYPES
from paradox.params import RewardModel
from paradox.paths import local_or_hub
from paradox.problems import Problem

log = logging.getLogger(__name__)


def format_chat(tokenizer: Any, question: str, trace: str, system_prompt: str | None) -> str:
    """The text a reward model scores: system (optional), user = question, assistant = trace,
    rendered with the tokenizer's chat template, no generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer of {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
            "a reward model scores a chat (set tokenizer.chat_template)"
        )
    chat = [{"role": "system", "content": system_prompt}] if system_prompt else []
    chat += [{"role": "user", "content": question}, {"role": "assistant", "content": trace}]
    text: str = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
    return text


def encode_chat(
    tokenizer: Any, question: str, trace: str, system_prompt: str | None, limit: int
) -> tuple[list[int], bool]:
    """(token ids of the chat, whether it was cut), cut to `limit` tokens as the module docstring says."""
    text = format_chat(tokenizer, question, trace, system_prompt)
    if not getattr(tokenizer, "is_fast", False):  # no offsets to find the response by: cut from the left
        ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
        return ids[-limit:], len(ids) > limit
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if len(ids) <= limit:
        return ids, False
    # Where the response starts in the rendered text: its opening, searched after the question
    # (a template may trim whitespace, so both are searched stripped).
    q, head = question.strip()[-64:], trace.strip()[:64]
    q_at = text.find(q) if q else -1
    start_char = text.find(head, q_at + len(q) if q_at >= 0 else 0) if head else -1
    if start_char < 0:
        return ids[-limit:], True
    n_prompt = next((i for i, (_, end) in enumerate(enc["offset_mapping"]) if end > start_char), len(ids))
    keep_tail = limit - n_prompt
    if keep_tail <= 0:
        return ids[-limit:], True
    return ids[:n_prompt] + ids[-keep_tail:], True


def last_token_scores(
    out: torch.Tensor, lengths: Sequence[int], name: str, per_token_ok: bool
) -> list[float]:
    """One score per sequence from a reward model's output for a right-padded batch: a pooled output
    (batch,) or (batch, 1) as it is; with `per_token_ok`, a reward per token, (batch, seq) or
    (batch, seq, 1), read at each sequence's last token (position length - 1)."""
    n, width = len(lengths), max(lengths)
    s = out.detach().float()
    if per_token_ok and s.dim() == 3 and s.shape[-1] == 1:
        s = s[..., 0]
    if s.dim() == 2 and s.shape[1] == 1:
        s = s[:, 0]
    elif per_token_ok and s.dim() == 2 and s.shape == (n, width):
        s = s[torch.arange(n), torch.tensor(lengths) - 1]
    if s.dim() != 1 or s.shape[0] != n:
        want = (
            "(batch, 1), or a reward per token (batch, seq[, 1])"
            if per_token_ok
            else "(batch, 1) (num_labels = 1)"
        )
        raise ValueError(
            f"{name}: expected one reward per sequence, {want}; got output of shape "
            f"{tuple(out.shape)} for {n} sequences of up to {width} tokens "
            "(is this a reward model with this head?)"
        )
    return s.cpu().tolist()


def rebuild_init_buffers(model: torch.nn.Module) -> list[str]:
    """Recompute the non-persistent buffers that a checkpoint's own code computes in a module's
    `__init__` (the Qwen RM's rotary embeddings: `inv_freq` and cached cos/sin tables).

    transformers 5 builds a model on the meta device, loads the saved weights, and leaves every
    non-persistent buffer as uninitialised memory for the model's `_init_weights` to fill; code
    written for transformers 4.40 fills only Linear and Embedding weights there, so its rotary
    tables would stay garbage (NaN or random scores, silently). Each module that owns such buffers
    and nothing else (no parameters, no submodules) is built again from its own attributes
    (its constructor's arguments by name; `config` is the model's) and its buffers copied in.
    Returns the names of the modules rebuilt. A module that cannot be rebuilt so is an error.
    """
    rebuilt = []
    for name, module in model.named_modules():
        buffers = [b for b in module._non_persistent_buffers_set if module._buffers.get(b) is not None]
        if (
            not buffers
            or next(module.parameters(recurse=False), None) is not None
            or next(module.children(), None)
        ):
            continue
        kwargs: dict[str, Any] = {}
        for p in list(inspect.signature(type(module).__init__).parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name == "device":
                kwargs["device"] = "cpu"
            elif p.name == "config" and not hasattr(module, "config"):
                kwargs["config"] = model.config
            elif hasattr(module, p.name):
                kwargs[p.name] = getattr(module, p.name)
            elif p.default is p.empty:
                raise ValueError(
                    f"{type(model).__name__}: cannot recompute the buffers {buffers} of {name} "
                    f"({type(module).__name__}): its constructor needs '{p.name}', which it does not keep"
                )
        fresh = type(module)(**kwargs)
        for b in buffers:
            old = module._buffers[b]
            module._buffers[b] = fresh._buffers[b].to(device=old.device, dtype=old.dtype)
        rebuilt.append(name)
    return rebuilt


def _text_configs(config: Any) -> list[Any]:
    """The config that holds pad_token_id and use_cache (a multimodal model's text config) and the
    top-level one, each once: both are set alike, whichever a model's code reads."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return [text] if text is config else [text, config]


def load_scorer(
    name: str,
    name_or_path: str,
    auto_class: Any,
    *,
    revision: str | None,
    trust_remote_code: bool,
    dtype: str,
    remote_code: bool,
) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, the keyword that turns the cache off) of a scoring model, with the three
    transformers-5 fixes of the module docstring: the config's pad id from the tokenizer, no cache,
    and (`remote_code`) the buffers the checkpoint's own code computes in `__init__` recomputed.
    Used by `HFReward` and by the process reward model (`paradox.prm`)."""
    from transformers import AutoConfig, AutoTokenizer

    kw: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    where_from = local_or_hub(name_or_path)  # a local checkpoint is named from the project root
    tok = AutoTokenizer.from_pretrained(where_from, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # The config first: the model is built from it. Qwen2.5-Math-RM-72B's config.json has no
    # pad_token_id, and transformers 5 configs no longer default one, so its remote code (which
    # reads config.pad_token_id when it builds its embedding) cannot even be constructed without it.
    config = AutoConfig.from_pretrained(where_from, **kw)
    text_cfgs = _text_configs(config)
    if getattr(text_cfgs[0], "pad_token_id", None) is None:
        # Both pooling conventions need a pad id to batch; the tokenizer's (or EOS) is the usual
        # choice (a batch whose chats contain it pads with another id, see `HFReward._pad_for`).
        log.warning(
            "%s: its config has no pad_token_id; using the tokenizer's %r (id %d) to batch",
            name,
            tok.pad_token,
            tok.pad_token_id,
        )
        for c in text_cfgs:
            c.pad_token_id = tok.pad_token_id
    for c in text_cfgs:  # one forward pass per batch: no cache (see the module docstring)
        c.use_cache = False
    # device_map "auto" spreads a model too big for one GPU (a 72B RM) over all visible GPUs.
    where = {"device_map": "auto"} if torch.cuda.is_available() else {}
    model = auto_class.from_pretrained(where_from, config=config, dtype=DTYPES[dtype], **kw, **where)
    model.eval()
    if remote_code:
        rebuilt = rebuild_init_buffers(model)
        if rebuilt:
            log.info(
                "%s: recomputed the buffers its own code sets in __init__ in %d module(s) (%s, ...)",
                name,
                len(rebuilt),
                rebuilt[0],
            )
    params = inspect.signature(model.forward).parameters
    no_cache_kw = (
        {"use_cache": False}
        if "use_cache" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        else {}
    )
    return model, tok, no_cache_kw


def encode_batch(scorer: Any, problems: Sequence[Problem], traces: Sequence[str]) -> list[list[int]]:
    """What every reward backend does before it scores: one chat per (problem, trace), the model
    loaded, token ids cut to the scorer's max length as `encode_chat` cuts them (counted in
    `scorer.n_truncated`, one warning per call). `scorer` has `load()`, `encode(question, trace)`,
    `n_truncated`, `name`, `spec` (and `max_length` when the engine lowers it)."""
    if len(problems) != len(traces):
        raise ValueError(f"{len(problems)} problems but {len(traces)} traces")
    if not traces:
        return []
    scorer.load()
    max_length = getattr(scorer, "max_length", scorer.spec.max_length)
    before = scorer.n_truncated
    chats = [scorer.encode(p.question, t) for p, t in zip(problems, traces, strict=True)]
    if scorer.n_truncated > before:
        log.warning(
            "%s: %d of %d chats were longer than max_length %d and lost the start of their response",
            scorer.name,
            scorer.n_truncated - before,
            len(chats),
            max_length,
        )
    return chats


class HFReward:
    """A `RewardModel` spec with backend `hf`; `score_many(problems, traces)` like the toy rubric.

    The weights load on first use (`load()`), so a list of cross-check models can be built
    without holding them all in memory; `close()` frees them.
    """

    def __init__(self, spec: RewardModel, show_progress: bool = True) -> None:
        if spec.backend != "hf":
            raise ValueError(f"HFReward needs reward backend 'hf', got {spec.backend!r}")
        if spec.head == "remote_code" and not spec.trust_remote_code:
            # Without it AutoModel silently falls back to the bare base model, whose first output
            # is the hidden states, not a score.
            raise ValueError(
                f"reward model {spec.name_or_path}: head 'remote_code' runs the checkpoint's own "
                "code; set trust_remote_code: true for it"
            )
        self.spec = spec
        self.name = f"hf:{spec.name_or_path}"
        self.show_progress = show_progress
        self.n_truncated = 0  # chats cut to max_length so far
        self.model: Any = None
        self.tok: Any = None

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> HFReward:
        if self.model is not None:
            return self
        from transformers import AutoModel, AutoModelForSequenceClassification

        s = self.spec
        assert s.name_or_path is not None  # the params schema requires it for every backend but toy
        model, tok, self._no_cache_kw = load_scorer(
            self.name,
            s.name_or_path,
            AutoModelForSequenceClassification if s.head == "seq_cls" else AutoModel,
            revision=s.revision,
            trust_remote_code=s.trust_remote_code,
            dtype=s.dtype,
            remote_code=s.head == "remote_code",
        )
        cfg = _text_configs(model.config)[0]
        self.model, self.tok = model, tok
        self.pad_id, self.vocab_size = (
            int(cfg.pad_token_id),
            int(getattr(cfg, "vocab_size", None) or len(tok)),
        )
        return self

    def close(self) -> None:
        """Release the weights (a cross-check model is no longer needed once it has scored)."""
        self.model = self.tok = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- encoding ----------------------------------------------------------------------------

    def encode(self, question: str, trace: str) -> list[int]:
        """Token ids of the chat, cut to `max_length` (see the module docstring)."""
        self.load()
        ids, cut = encode_chat(self.tok, question, trace, self.spec.system_prompt, self.spec.max_length)
        self.n_truncated += cut
        return ids

    # -- scoring -----------------------------------------------------------------------------

    def _pad_for(self, batch: list[list[int]]) -> int:
        """The configured pad id, or, if it occurs in one of the batch's chats, the largest id that
        occurs in none (pooling reads the token before the first pad, or the last non-pad token)."""
        used = {t for x in batch for t in x}
        if self.pad_id not in used:
            return self.pad_id
        pad = next(i for i in range(self.vocab_size - 1, -1, -1) if i not in used)
        log.warning(
            "%s: pad id %d occurs inside a chat; this batch pads with id %d so that the model reads "
            "each chat's last token",
            self.name,
            self.pad_id,
            pad,
        )
        return pad

    @contextlib.contextmanager
    def _pad_id(self, pad: int) -> Iterator[None]:
        """The model's pad_token_id (which its pooling reads) set to `pad` for one forward pass."""
        cfgs = _text_configs(self.model.config)
        for c in cfgs:
            c.pad_token_id = pad
        try:
            yield
        finally:
            for c in cfgs:
                c.pad_token_id = self.pad_id

    @torch.inference_mode()
    def _forward(self, batch: list[list[int]]) -> list[float]:
        pad = self._pad_for(batch)
        width = max(len(x) for x in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, x in enumerate(batch):  # right padding
            ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
        device = self.model.device
        with self._pad_id(pad):
            out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), **self._no_cache_kw)
        scores = out.logits if self.spec.head == "seq_cls" else out[0]
        return last_token_scores(
            scores, [len(x) for x in batch], self.name, per_token_ok=self.spec.head == "remote_code"
        )

    def score_many(self, problems: Sequence[Problem], traces: Sequence[str]) -> list[float]:
        """One score per (problem, trace), in input order."""
        encoded = encode_batch(self, problems, traces)
        if not encoded:
            return []
        # Longest first: similar lengths share a batch (little padding) and an out-of-memory error
        # shows on the first batch, not after an hour.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        bs = self.spec.batch_size
        scores: list[float] = [0.0] * len(encoded)
        for start in tqdm(
            range(0, len(order), bs),
            desc=f"scoring ({self.name})",
            unit="batch",
            disable=not self.show_progress,
        ):
            idx = order[start : start + bs]
            for i, sc in zip(idx, self._forward([encoded[i] for i in idx]), strict=True):
                scores[i] = sc
        return scores

    def score(self, problem: Problem, trace: str) -> float:
        return self.score_many([problem], [trace])[0]
