"""Process reward models (PRMs) as Style-Aligned Refinement's error locator (`oracle.locator: prm`,
docs/prm-locator.md), behind `paradox.locators.Locator`.

The conventions are Qwen2.5-Math-PRM-7B's, as its model card, its config.json and vLLM's
`Qwen2ForProcessRewardModel` publish them:
- steps: the trace's blank-line paragraphs (the card: split a response at "\\n\\n"), or its lines when it
  has one paragraph: `prompt_oracle.split_steps`, the unit the Oracle's `locate` prompt indexes, so
  that both locators name the same steps;
- the chat: system = `oracle.prm_system_prompt` (the card's), user = the question, assistant = every
  step followed by the step separator `oracle.prm_step_separator` ("<extra_0>": the card joins the
  steps with it and puts one more after the last), rendered by the PRM's chat template without a
  generation prompt and encoded without adding special tokens (the template has them);
- the separator is ONE token of the PRM's vocabulary (checked when the tokenizer loads, and by
  `make plan` when the tokenizer is on this machine); a separator written inside a question or a step
  is removed first, so the k-th separator token ends step k;
- the head gives two logits per token (the checkpoint's `Qwen2ForProcessRewardModel`: Linear, ReLU,
  Linear to num_labels = 2); a step's score is softmax over the two at its separator, class 1 (the
  card: "the probability ... of this token being classified as positive"), in [0, 1];
- the first wrong step is the first score below `oracle.prm_threshold` (0.5: the positive class is
  less likely than the negative one); None when there is none (ProcessBench's -1).

Two backends give the same logits (tests: within 1e-4 on a tiny PRM of this layout, float32):
`HFProcessReward` (transformers: AutoModel with the checkpoint's own code, loaded by
`reward_models.load_scorer` with its transformers-5 fixes, `use_cache=False`; chats sorted by length
and batched up to `oracle.prm_token_budget` padded tokens, padded on the right with an attention mask,
so causal attention keeps every scored position blind to the pads after it) and
`vllm_backend.VLLMProcessReward` (vLLM's pooling runner and its own implementation, STEP pooling).

A chat longer than `oracle.prm_max_length` tokens loses its END (the first wrong step is what is
asked for, and the question and first steps come first): the steps cut off get no score. If no scored
step is below the threshold, such a trace is "not located" (None, as the Oracle's unusable locate
answer), counted `prm_truncated`. Answers are kept per (question, trace): the drift dial asks for the
same traces again and gets the same answers with no forward pass (and no weights: `close()` frees them).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from paradox.locators import first_below
from paradox.params import Oracle as OracleParams
from paradox.params import Params
from paradox.paths import local_or_hub
from paradox.problems import Problem
from paradox.prompt_oracle import split_steps

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# The architecture vLLM reads per-step scores from (STEP pooling of a 2-class head); its Qwen config
# hook defaults the step token to 151651, the id of "<extra_0>" in the Qwen PRMs' tokenizer.
VLLM_PRM_ARCHITECTURES = ("Qwen2ForProcessRewardModel",)


# --- the chat and its tokens ------------------------------------------------------------------------


def prm_chat(tokenizer: Any, question: str, steps: Sequence[str], system_prompt: str | None, sep: str) -> str:
    """The text the PRM scores (module docstring); the separator is removed from the question and
    the steps first, so that the chat holds exactly one per step."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer of {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; a PRM "
            "scores a chat (its tokenizer_config.json should have one)"
        )
    chat = [{"role": "system", "content": system_prompt}] if system_prompt else []
    chat += [
        {"role": "user", "content": question.replace(sep, "")},
        {"role": "assistant", "content": "".join(s.replace(sep, "") + sep for s in steps)},
    ]
    text: str = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
    return text


def separator_id(tokenizer: Any, sep: str, name: str) -> int:
    """The separator's token id; an error naming the model and the key unless it is one token."""
    ids = tokenizer.encode(sep, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(
            f"{name}: the step separator {sep!r} (oracle.prm_step_separator) is {len(ids)} tokens of "
            f"its tokenizer ({ids}), not one: its score could not be read at one position (Qwen's PRMs "
            "use '<extra_0>')"
        )
    return int(ids[0])


def config_errors(config: dict[str, Any], o: OracleParams) -> list[str]:
    """What in a PRM's config.json does not fit `oracle.prm_backend`."""
    archs = list(config.get("architectures") or [])
    if o.prm_backend == "vllm" and not set(archs) & set(VLLM_PRM_ARCHITECTURES):
        return [
            f"oracle.prm {o.prm}: prm_backend 'vllm' reads step scores from vLLM's STEP pooling of "
            f"{list(VLLM_PRM_ARCHITECTURES)}, but its config.json names {archs}; use prm_backend 'hf'"
        ]
    if o.prm_backend == "hf" and "AutoModel" not in (config.get("auto_map") or {}):
        return [
            f"oracle.prm {o.prm}: prm_backend 'hf' loads the checkpoint's own class (config.json "
            "auto_map.AutoModel, as Qwen2.5-Math-PRM's modeling_qwen2_rm.py), which it lacks: AutoModel "
            "would load the bare body with no step head"
        ]
    return []


def first_wrong(scores: Sequence[float], n_steps: int, threshold: float) -> tuple[int | None, bool]:
    """(first wrong step or None, whether the answer is "not located" because steps were cut off)."""
    k = first_below(scores, threshold)
    return k, k is None and len(scores) < n_steps


# --- the locator, whatever the backend ----------------------------------------------------------------


class PRMLocator:
    """A PRM as a `Locator`. Subclasses load the weights (`load`, which sets the tokenizer by
    `_use_tokenizer`) and give each chat's two logits at its separator tokens (`_step_logits`)."""

    backend = "?"

    def __init__(self, o: OracleParams, show_progress: bool = True) -> None:
        if not o.prm:
            raise ValueError("a PRM locator needs oracle.prm (a process reward model)")
        self.o, self.prm, self.show_progress = o, o.prm, show_progress
        self.name = f"PRM {o.prm} ({self.backend}, threshold {o.prm_threshold:g})"
        self.tok: Any = None
        self.sep_id = -1
        self.max_length = o.prm_max_length
        self._memo: dict[tuple[str, str], tuple[list[float], int]] = {}
        self._stats: Counter[str] = Counter()

    # -- subclass hooks ------------------------------------------------------------------------------

    def load(self) -> PRMLocator:
        raise NotImplementedError

    def _step_logits(self, chats: list[list[int]]) -> list[torch.Tensor]:
        """Per chat, its (separators, 2) logits, in order."""
        raise NotImplementedError

    def close(self) -> None:
        """Free the weights; the answers so far stay known."""

    # -- shared ----------------------------------------------------------------------------------------

    def _use_tokenizer(self, tok: Any, max_length: int | None = None) -> None:
        self.tok, self.sep_id = tok, separator_id(tok, self.o.prm_step_separator, self.name)
        self.max_length = min(self.o.prm_max_length, max_length or self.o.prm_max_length)

    def encode(self, question: str, trace: str) -> tuple[list[int], int]:
        """(token ids of the chat, cut to max_length; the number of steps of the trace)."""
        self.load()
        steps = split_steps(trace).items
        text = prm_chat(self.tok, question, steps, self.o.prm_system_prompt, self.o.prm_step_separator)
        ids: list[int] = self.tok(text, add_special_tokens=False)["input_ids"]
        found = ids.count(self.sep_id)
        if found != len(steps):
            raise ValueError(
                f"{self.name}: the chat of a {len(steps)}-step trace holds {found} separator tokens "
                f"({self.o.prm_step_separator!r}, id {self.sep_id}); its chat template adds or drops some"
            )
        return ids[: self.max_length], len(steps)

    def step_scores_many(self, problems: Sequence[Problem], traces: Sequence[str]) -> list[list[float]]:
        """Each trace's step scores (the probability that the step is correct), for the steps that fit
        in max_length; [] for a trace with no step."""
        memo = self._scored(problems, traces)
        return [memo[(p.question, t)][0] for p, t in zip(problems, traces, strict=True)]

    def _scored(
        self, problems: Sequence[Problem], traces: Sequence[str]
    ) -> dict[tuple[str, str], tuple[list[float], int]]:
        import torch

        if len(problems) != len(traces):
            raise ValueError(f"{len(problems)} problems but {len(traces)} traces")
        todo = list(dict.fromkeys((p.question, t) for p, t in zip(problems, traces, strict=True)))
        todo = [k for k in todo if k not in self._memo]
        if todo:
            encoded = [self.encode(q, t) for q, t in todo]
            scored = [i for i, (_, n) in enumerate(encoded) if n]
            logits = self._step_logits([encoded[i][0] for i in scored]) if scored else []
            for key, (_, n) in zip(todo, encoded, strict=True):
                self._memo[key] = ([], n)  # a trace with no step has no score; the others follow
            for i, lg in zip(scored, logits, strict=True):
                ids, n = encoded[i]
                want = ids.count(self.sep_id)
                if lg.dim() != 2 or lg.shape != (want, 2):
                    raise ValueError(
                        f"{self.name}: expected two logits (a 2-class head) at each of the {want} step "
                        f"separators of a chat, got shape {tuple(lg.shape)} (is this a PRM with that head?)"
                    )
                scores = torch.softmax(lg.float(), dim=-1)[:, 1].tolist()
                self._memo[todo[i]] = (scores, n)
                self._stats["prm_chats"] += 1
                self._stats["prm_truncated"] += first_wrong(scores, n, self.o.prm_threshold)[1]
        return self._memo

    def locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]:
        """The first step scored below the threshold, or None (none, or not located: module docstring)."""
        memo = self._scored(problems, traces)
        out: list[int | None] = []
        for p, t in zip(problems, traces, strict=True):
            scores, n = memo[(p.question, t)]
            out.append(first_wrong(scores, n, self.o.prm_threshold)[0])
        return out

    def stats(self) -> dict[str, int]:
        """Chats scored so far, and how many were cut before any step scored below the threshold."""
        return {k: self._stats[k] for k in ("prm_chats", "prm_truncated")}


def token_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices in batches, longest first, each at most `budget` padded tokens (rows x its longest
    row; a row longer than the budget goes alone)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class HFProcessReward(PRMLocator):
    """The PRM under transformers: AutoModel with the checkpoint's own code (`trust_remote_code`)."""

    backend = "hf"

    def __init__(self, o: OracleParams, show_progress: bool = True) -> None:
        if o.prm_backend != "hf":
            raise ValueError(f"HFProcessReward needs oracle.prm_backend 'hf', got {o.prm_backend!r}")
        super().__init__(o, show_progress)
        self.model: Any = None

    def load(self) -> HFProcessReward:
        if self.model is not None:
            return self
        from transformers import AutoConfig, AutoModel

        from paradox.reward_models import load_scorer

        assert self.o.prm is not None
        kw = {"revision": self.o.prm_revision, "trust_remote_code": self.o.prm_trust_remote_code}
        config = AutoConfig.from_pretrained(local_or_hub(self.o.prm), **kw)  # before any weight is read
        if errors := config_errors(config.to_dict(), self.o):
            raise ValueError("; ".join(errors))
        model, tok, self._no_cache_kw = load_scorer(
            self.name,
            self.o.prm,
            AutoModel,
            revision=self.o.prm_revision,
            trust_remote_code=self.o.prm_trust_remote_code,
            dtype=self.o.prm_dtype,
            remote_code=True,
        )
        self._use_tokenizer(tok)
        self.model = model
        self.pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
        return self

    def close(self) -> None:
        import torch

        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _step_logits(self, chats: list[list[int]]) -> list[torch.Tensor]:
        import torch

        self.load()
        out: list[torch.Tensor] = [torch.empty(0)] * len(chats)
        batches = token_batches([len(c) for c in chats], self.o.prm_token_budget)
        for idx in tqdm(batches, desc=f"PRM ({self.prm})", unit="batch", disable=not self.show_progress):
            width = len(chats[idx[0]])
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # right padding
                ids[row, : len(chats[i])] = torch.tensor(chats[i], dtype=torch.long)
                mask[row, : len(chats[i])] = 1
            device = self.model.device
            with torch.inference_mode():
                res = self.model(
                    input_ids=ids.to(device), attention_mask=mask.to(device), **self._no_cache_kw
                )
            logits = res.logits if hasattr(res, "logits") else res[0]
            if logits.dim() != 3 or tuple(logits.shape[:2]) != (len(idx), width):
                raise ValueError(
                    f"{self.name}: expected logits per token, (batch, tokens, 2), got shape "
                    f"{tuple(logits.shape)} for {len(idx)} chats of up to {width} tokens"
                )
            for row, i in enumerate(idx):
                at = [j for j, t in enumerate(chats[i]) if t == self.sep_id]
                out[i] = logits[row, at].float().cpu()
        return out


# --- `make plan`: the PRM's files, where they are on this machine ---------------------------------------


def _local_files(o: OracleParams) -> tuple[Path | None, str]:
    """(the directory holding the PRM's config and tokenizer on this machine, or None; why not)."""
    assert o.prm is not None
    where = local_or_hub(o.prm)  # raises for a path that does not exist
    if Path(where).is_dir():
        return Path(where), ""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None, "huggingface_hub is not installed"
    cached = try_to_load_from_cache(repo_id=o.prm, filename="config.json", revision=o.prm_revision)
    if isinstance(cached, str):
        return Path(cached).parent, ""
    return None, "not in this machine's hub cache"


def _tokenizer_error(where: Path, o: OracleParams) -> str | None:
    sep = o.prm_step_separator
    if (where / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        ids = Tokenizer.from_file(str(where / "tokenizer.json")).encode(sep, add_special_tokens=False).ids
        if len(ids) == 1:
            return None
        return f"is {len(ids)} tokens of its tokenizer.json ({ids}), not one"
    cfg = where / "tokenizer_config.json"
    if cfg.is_file():
        added = json.loads(cfg.read_text()).get("added_tokens_decoder") or {}
        if any(t.get("content") == sep for t in added.values()):
            return None
        return "is not among the added tokens of its tokenizer_config.json"
    return "cannot be checked: the directory has no tokenizer.json or tokenizer_config.json"


def check(params: Params) -> tuple[list[str], list[str]]:
    """(lines, errors) for `make plan`: the PRM's config.json and tokenizer, checked from their files
    (nothing is loaded) when they are on this machine; otherwise they are checked when notebook 03
    loads the PRM (`PRMLocator.load`)."""
    o = params.oracle
    if o.prm is None:
        return [], []
    try:
        where, why = _local_files(o)
    except FileNotFoundError as err:
        return [], [f"oracle.prm: {err}"]
    if where is None:
        return [f"PRM {o.prm}: {why}; its config and tokenizer are checked when notebook 03 loads it"], []
    errors: list[str] = []
    if not (where / "config.json").is_file():
        errors.append(f"oracle.prm {o.prm}: no config.json in {where}")
    else:
        errors += config_errors(json.loads((where / "config.json").read_text()), o)
    bad = _tokenizer_error(where, o)
    if bad:
        errors.append(
            f"oracle.prm {o.prm}: the step separator {o.prm_step_separator!r} (oracle.prm_step_separator) {bad}"
        )
    lines = (
        []
        if errors
        else [f"PRM {o.prm}: config.json and the step separator {o.prm_step_separator!r} checked ({where})"]
    )
    return lines, errors


def preflight(params: Params) -> None:
    """Load the PRM's config and tokenizer (from the hub if need be: kilobytes and a tokenizer, no
    weights) and check them as `load` would, so that a wrong head or separator fails before sampling
    rather than in notebook 03, hours later. Nothing to do when 03 runs no PRM."""
    from transformers import AutoConfig, AutoTokenizer

    from paradox.gpu_memory import prm_runs

    o = params.oracle
    if not prm_runs(params):
        return
    assert o.prm is not None
    kw = {"revision": o.prm_revision, "trust_remote_code": o.prm_trust_remote_code}
    where = local_or_hub(o.prm)
    if errors := config_errors(AutoConfig.from_pretrained(where, **kw).to_dict(), o):
        raise ValueError("; ".join(errors))
    tok = AutoTokenizer.from_pretrained(where, **kw)
    name = f"PRM {o.prm}"
    separator_id(tok, o.prm_step_separator, name)
    prm_chat(tok, "question", ["step"], o.prm_system_prompt, o.prm_step_separator)  # it has a chat template
