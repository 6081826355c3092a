"""Reward models from Hugging Face checkpoints (`reward.backend: hf`), behind the toy rubric's interface.

Two heads, as the paper's reward models need them:
  seq_cls      AutoModelForSequenceClassification with one output (Skywork-Reward class):
               score = logits[:, 0].
  remote_code  the checkpoint's own AutoModel class (trust_remote_code) whose first output is the
               score (Qwen2.5-Math-RM-72B's model card: `model(input_ids)[0]`).
Both score the same text: the chat (system prompt if any, user = question, assistant = trace)
rendered by the tokenizer's chat template without a generation prompt, encoded without adding
special tokens (the template already has them).

Batching: sequences are sorted by length, batched and padded on the RIGHT with an attention mask.
Both pooling conventions (the rightmost non-pad token, as transformers' *ForSequenceClassification
does; the token before the first pad, as the Qwen RM's remote code does) then pick each
sequence's own last token, and causal attention keeps that token blind to the pads after it, so
a score does not depend on which other traces share its batch.

Truncation: a chat longer than `max_length` tokens keeps its prompt part (system + question) and
the END of the response, dropping tokens from the start of the response. The score is read at
the last token, and the end of a solution (final answer, boxed result, end of turn) is what a
reward model weighs most; the question must stay for the trace to be judged at all. If the prompt
alone is too long, the chat is cut from the left. Truncated traces are counted in `n_truncated`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from paradox.generation import DTYPES
from paradox.params import RewardModel
from paradox.paths import local_or_hub
from paradox.problems import Problem

log = logging.getLogger(__name__)

# The system prompt of Qwen2.5-Math-RM-72B's model card (profiles set it as reward.system_prompt).
QWEN_MATH_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


def format_chat(tokenizer: Any, question: str, trace: str, system_prompt: str | None) -> str:
    """The text a reward model scores: system (optional), user = question, assistant = trace,
    rendered with the tokenizer's chat template, no generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer of {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
                         "a reward model scores a chat (set tokenizer.chat_template)")
    chat = [{"role": "system", "content": system_prompt}] if system_prompt else []
    chat += [{"role": "user", "content": question}, {"role": "assistant", "content": trace}]
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)


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
            raise ValueError(f"reward model {spec.name_or_path}: head 'remote_code' runs the checkpoint's own "
                             "code; set trust_remote_code: true for it")
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
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        s = self.spec
        kw: dict[str, Any] = {"revision": s.revision, "trust_remote_code": s.trust_remote_code}
        where_from = local_or_hub(s.name_or_path)  # a local checkpoint is named from the project root
        tok = AutoTokenizer.from_pretrained(where_from, **kw)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        # device_map "auto" spreads a model too big for one GPU (a 72B RM) over all visible GPUs.
        where = {"device_map": "auto"} if torch.cuda.is_available() else {}
        cls = AutoModelForSequenceClassification if s.head == "seq_cls" else AutoModel
        model = cls.from_pretrained(where_from, dtype=DTYPES[s.dtype], **kw, **where)
        model.eval()
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        if cfg.pad_token_id is None:
            # Both pooling conventions need a pad id to batch; the tokenizer's (or EOS) is the usual
            # choice. If a chat ENDS with that token, pooling reads the token before it (batched or not).
            cfg.pad_token_id = tok.pad_token_id
            model.config.pad_token_id = tok.pad_token_id
            log.warning("%s: its config has no pad_token_id; using the tokenizer's %r (id %d) to batch",
                        self.name, tok.pad_token, tok.pad_token_id)
        self.model, self.tok = model, tok
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
        text = format_chat(self.tok, question, trace, self.spec.system_prompt)
        limit = self.spec.max_length
        if not getattr(self.tok, "is_fast", False):  # no offsets to find the response by: cut from the left
            ids = self.tok.encode(text, add_special_tokens=False)
            if len(ids) > limit:
                self.n_truncated += 1
            return ids[-limit:]
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = enc["input_ids"]
        if len(ids) <= limit:
            return ids
        self.n_truncated += 1
        # Where the response starts in the rendered text: its opening, searched after the question
        # (a template may trim whitespace, so both are searched stripped).
        q, head = question.strip()[-64:], trace.strip()[:64]
        q_at = text.find(q) if q else -1
        start_char = text.find(head, q_at + len(q) if q_at >= 0 else 0) if head else -1
        if start_char < 0:
            return ids[-limit:]
        n_prompt = next((i for i, (_, end) in enumerate(enc["offset_mapping"]) if end > start_char), len(ids))
        keep_tail = limit - n_prompt
        if keep_tail <= 0:
            return ids[-limit:]
        return ids[:n_prompt] + ids[-keep_tail:]

    # -- scoring -----------------------------------------------------------------------------

    @torch.inference_mode()
    def _forward(self, batch: list[list[int]]) -> list[float]:
        pad = self.tok.pad_token_id
        width = max(len(x) for x in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, x in enumerate(batch):  # right padding
            ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, :len(x)] = 1
        device = self.model.device
        out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device))
        scores = out.logits if self.spec.head == "seq_cls" else out[0]
        if scores.dim() == 2:
            scores = scores[:, 0]
        if scores.dim() != 1 or scores.shape[0] != len(batch):
            raise ValueError(f"{self.name}: expected one score per sequence, got output of shape "
                             f"{tuple(scores.shape)} (is this a reward model with head '{self.spec.head}'?)")
        return scores.float().cpu().tolist()

    def score_many(self, problems: Sequence[Problem], traces: Sequence[str]) -> list[float]:
        """One score per (problem, trace), in input order."""
        if len(problems) != len(traces):
            raise ValueError(f"{len(problems)} problems but {len(traces)} traces")
        if not traces:
            return []
        self.load()
        before = self.n_truncated
        encoded = [self.encode(p.question, t) for p, t in zip(problems, traces, strict=True)]
        # Longest first: similar lengths share a batch (little padding) and an out-of-memory error
        # shows on the first batch, not after an hour.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        bs = self.spec.batch_size
        scores: list[float] = [0.0] * len(encoded)
        for start in tqdm(range(0, len(order), bs), desc=f"scoring ({self.name})", unit="batch",
                          disable=not self.show_progress):
            idx = order[start:start + bs]
            for i, sc in zip(idx, self._forward([encoded[i] for i in idx]), strict=True):
                scores[i] = sc
        if self.n_truncated > before:
            log.warning("%s: %d of %d chats were longer than max_length %d and lost the start of their response",
                        self.name, self.n_truncated - before, len(encoded), self.spec.max_length)
        return scores

    def score(self, problem: Problem, trace: str) -> float:
        return self.score_many([problem], [trace])[0]
