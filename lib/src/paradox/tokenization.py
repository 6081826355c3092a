"""One token sequence per (prompt, completion), and the conditions that end a completion.

Sampling, fine-tuning and perplexity scoring must see the same ids for the same text, or the
model is trained on (and scored on) something other than what it generates from. The rules,
in one place (`SequenceEncoder`):

- The prompt is the text `backends.format_prompt` made (any chat template already applied),
  encoded without the tokenizer's special tokens, then given a BOS in front if and only if the
  tokenizer's own convention starts a text with one (Llama 3, DeepSeek: yes; Qwen2.5: it has no
  BOS) and the text does not start with it already (a Llama chat template writes its BOS).
- The completion is encoded on its own (no special tokens) and appended to the prompt's ids:
  prompt ids are then exactly those generation starts from. Prompts end on a newline (checked in
  params and `format_prompt`), so the completion starts on a token boundary.
- Training appends the completion's end token (`slm.completion_end`: EOS or one of the stop
  tokens), so a fine-tuned model learns to stop where generation stops. Scoring leaves it out.

`Stops` turns `slm.stop_tokens` / `slm.stop_strings` into what both generators pass to their
engines, and cuts a generated id sequence into the returned text the same way for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

EOS = "eos"  # slm.completion_end: the tokenizer's own end-of-sequence token


def _name(tok: Any) -> str:
    return getattr(tok, "name_or_path", "") or type(tok).__name__


def single_token_id(tok: Any, token: str, key: str) -> int:
    """The id of `token`, which must encode to exactly one id (a special or added token)."""
    ids: list[int] = tok(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(
            f"{key}: {token!r} is not one token of the tokenizer {_name(tok)} "
            f"(it encodes to {len(ids)} ids); name a special token of this model family"
        )
    return ids[0]


def leading_bos(tok: Any) -> int | None:
    """The BOS id the tokenizer puts in front of a text by its own convention, or None.

    Read from what the tokenizer does (its post-processor / add_bos_token), not from its config
    keys: Qwen2.5 has no BOS, Llama 3 adds one through tokenizer.json, DeepSeek through
    add_bos_token. Only a leading BOS is supported; anything else it adds is an error.
    """
    probe = "1 + 1"
    plain: list[int] = tok(probe, add_special_tokens=False)["input_ids"]
    full: list[int] = tok(probe)["input_ids"]
    if len(full) > len(plain) and full[-1:] == [tok.eos_token_id]:
        full = full[:-1]  # an appended EOS (add_eos_token): training adds its own end token instead
    if full == plain:
        return None
    if full == [tok.bos_token_id, *plain] and tok.bos_token_id is not None:
        bos: int = tok.bos_token_id
        return bos
    raise ValueError(
        f"tokenizer {_name(tok)}: it wraps a text in special tokens other than a leading BOS "
        f"({full} for {plain}); paradox.tokenization supports a leading BOS only"
    )


class SequenceEncoder:
    """Token ids of prompts and completions for one tokenizer (see the module docstring)."""

    def __init__(self, tokenizer: Any, completion_end: str = EOS) -> None:
        self.tok = tokenizer
        self.bos_id = leading_bos(tokenizer)
        if completion_end == EOS:
            if tokenizer.eos_token_id is None:
                raise ValueError(
                    f"tokenizer {_name(tokenizer)} has no EOS token: set slm.completion_end to a stop token"
                )
            self.end_id = tokenizer.eos_token_id
        else:
            self.end_id = single_token_id(tokenizer, completion_end, "slm.completion_end")

    def prompt(self, text: str) -> list[int]:
        ids: list[int] = self.tok(text, add_special_tokens=False)["input_ids"]
        if self.bos_id is None:
            return ids
        if ids[:2] == [self.bos_id, self.bos_id]:
            raise ValueError(
                f"prompt starts with BOS twice (the prompt template and the chat template both "
                f"write it?): {text[:80]!r}"
            )
        return ids if ids[:1] == [self.bos_id] else [self.bos_id, *ids]

    def completion(self, text: str, end: bool = True) -> list[int]:
        """The completion's ids, followed by the end token when `end` (training); a completion whose
        text already holds the end token (or EOS) would teach the model to stop mid-answer."""
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        bad = {self.end_id, self.tok.eos_token_id} & set(ids)
        if bad:
            raise ValueError(
                f"completion contains the end-of-completion token(s) "
                f"{self.tok.convert_ids_to_tokens(sorted(bad))}: {text[:80]!r}"
            )
        return [*ids, self.end_id] if end else ids

    def pair(self, prompt: str, completion: str) -> tuple[list[int], list[int]]:
        """(input_ids, completion_mask) of one training example: 1 on the completion and its end token."""
        p, c = self.prompt(prompt), self.completion(completion)
        return [*p, *c], [0] * len(p) + [1] * len(c)


def _as_ids(value: int | Iterable[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


@dataclass(frozen=True)
class Stops:
    """What ends a completion: a stop token (EOS, the model's generation_config eos ids,
    `slm.stop_tokens`) or a stop string (`slm.stop_strings`)."""

    token_ids: tuple[int, ...]
    strings: tuple[str, ...] = ()
    configured: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # (stop_tokens, stop_strings) as in params

    @classmethod
    def resolve(
        cls,
        tok: Any,
        stop_tokens: Sequence[str] = (),
        stop_strings: Sequence[str] = (),
        generation_eos: int | Iterable[int] | None = None,
    ) -> Stops:
        """Stop ids for this tokenizer; a stop token that is not one token of it is an error."""
        ids = [*_as_ids(tok.eos_token_id), *_as_ids(generation_eos)]
        ids += [single_token_id(tok, t, "slm.stop_tokens") for t in stop_tokens]
        if not ids:
            raise ValueError(f"tokenizer {_name(tok)}: no EOS and no stop token; generation would never stop")
        if any(not s for s in stop_strings):
            raise ValueError("slm.stop_strings: an empty stop string would stop every completion at once")
        return cls(tuple(dict.fromkeys(ids)), tuple(stop_strings), (tuple(stop_tokens), tuple(stop_strings)))

    def key(self) -> dict[str, list[str]] | None:
        """The params' part of the stop conditions, for cache keys (EOS comes with the model)."""
        tokens, strings = self.configured
        return {"tokens": list(tokens), "strings": list(strings)} if tokens or strings else None

    def finish(self, tok: Any, ids: Sequence[int]) -> tuple[str, bool]:
        """(text, stopped) of generated ids: the ids before the first stop token, decoded without
        special tokens, cut before the first stop string, stripped. `stopped` is True when a stop
        token or stop string ended it (False: it ran to the token limit)."""
        ids = list(ids)
        cut = next((i for i, t in enumerate(ids) if t in self.token_ids), None)
        text = tok.decode(ids if cut is None else ids[:cut], skip_special_tokens=True)
        hits = [i for i in (text.find(s) for s in self.strings) if i >= 0]
        if hits:
            text = text[: min(hits)]
        return text.strip(), cut is not None or bool(hits)
