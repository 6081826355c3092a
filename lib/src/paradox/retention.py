"""Semantic retention: how much of an SLM trace's information a rewrite keeps, on the paper's
judge scale (1-5), behind one interface (`RetentionScorer.score_many(pairs)`, pairs of
(original, rewrite)); `backends.retention_scorer` picks one for the profile:

- the toy world: exact, from the parsed steps (`paradox.toy.retention.ExactRetention`);
- real profiles: an LLM judge (`JudgeRetention`) with the prompt file
  `params/prompts/retention_judge.txt` (1-5 rubric, formatting ignored), asked through the Oracle
  client as requests of kind `retention_judge` (their own completion budget; a pair that does not
  fit the Oracle's context is skipped, counted, and unscored).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from paradox.paths import resolve

SCORE = re.compile(r"score\s*[:=]\s*([1-5])\b", re.IGNORECASE)


JUDGE_KIND = "retention_judge"  # the Oracle client's kind of request (oracle.answers.retention_judge)


class Completer(Protocol):
    def complete(self, prompt: str) -> str | None: ...


class BatchJudge(Protocol):
    def complete_many(
        self, prompts: list[str], desc: str | None = ..., *, kind: str = ..., keep_truncated: bool = ...
    ) -> list[str | None]: ...


def load_prompt(path: Path | str) -> str:
    """The judge prompt; a relative path is taken from the project root (as params name it)."""
    text = resolve(path).read_text()
    for field in ("{original}", "{rewrite}"):
        if field not in text:
            raise ValueError(f"{path}: retention prompt lacks the {field} placeholder")
    return text


def judge_prompt(prompt_template: str, original: str, rewrite: str) -> str:
    return prompt_template.replace("{original}", original).replace("{rewrite}", rewrite)


def parse_score(answer: str | None) -> float | None:
    """The last "Score: N" (N in 1-5) of a judge's answer; None for no score or no answer."""
    found = SCORE.findall(answer or "")
    return float(found[-1]) if found else None


def judge_retention(client: Completer, prompt_template: str, original: str, rewrite: str) -> float | None:
    """The judge's 1-5 score, or None when its answer has no score (counted, never a crash)."""
    return parse_score(client.complete(judge_prompt(prompt_template, original, rewrite)))


def judge_retention_many(
    client: BatchJudge, prompt_template: str, pairs: Sequence[tuple[str, str]], desc: str | None = "retention"
) -> list[float | None]:
    """Scores of (original, rewrite) pairs, asked concurrently as `retention_judge` requests; None for
    an answer without a score, for a pair that did not fit the judge's context and for an answer cut
    at its limit (a "Score: N" in it may be one the judge had not settled on; counted by the client
    as `truncated_retention_judge`)."""
    answers = client.complete_many(
        [judge_prompt(prompt_template, o, r) for o, r in pairs], desc, kind=JUDGE_KIND, keep_truncated=False
    )
    return [parse_score(a) for a in answers]


class JudgeRetention:
    """A `RetentionScorer` on an LLM judge: the Oracle (`oracle`, whose `client` sends the requests
    and whose `close()` stops any managed server) with the prompt at `prompt_path`."""

    def __init__(self, oracle: Any, prompt_path: Path | str, name: str) -> None:
        self.oracle, self.prompt, self.name = oracle, load_prompt(prompt_path), name

    def score_many(
        self, pairs: Sequence[tuple[str, str]], desc: str | None = "retention"
    ) -> list[float | None]:
        return judge_retention_many(self.oracle.client, self.prompt, pairs, desc=desc)

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = self.oracle.client.stats()
        return stats

    def close(self) -> None:
        self.oracle.close()
