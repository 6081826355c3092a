"""Semantic retention: how much of an SLM trace's information a rewrite keeps.

Two measures behind one signature `(problem, original, rewrite) -> score on 1-5`:
- toy (exact): the trace's atoms are its quantities and its intermediate equations, parsed from
  its steps; retention = 1 + 4 x (share of the original's atoms found in the rewrite), so 5
  means everything kept, as on the paper's judge scale;
- judge (real profiles): an LLM judge with the prompt file `params/prompts/retention_judge.txt`
  (1-5 rubric, formatting ignored), through any client with `complete(prompt) -> str`, or, batched,
  through the Oracle client as requests of kind `retention_judge` (their own completion budget; a
  pair that does not fit the Oracle's context is skipped, counted, and unscored).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from paradox.paths import resolve
from paradox.toy import steps

SCORE = re.compile(r"score\s*[:=]\s*([1-5])\b", re.IGNORECASE)


def toy_atoms(trace: str) -> set[tuple]:
    """Quantities stated and equations computed, notation-free."""
    atoms: set[tuple] = set()
    for line in steps.read_lines(trace):
        if line.equation is not None:
            x, op, b, y = line.equation
            atoms |= {("eq", x, op, b, y), ("q", x), ("q", b), ("q", y)}
        elif line.kind == "intro":
            atoms |= {("q", int(n)) for n in re.findall(r"(?<![\w])\d+", line.text)}
    return atoms


def toy_retention_share(original: str, rewrite: str) -> float:
    kept = toy_atoms(original)
    return len(kept & toy_atoms(rewrite)) / len(kept) if kept else 1.0


def toy_retention(original: str, rewrite: str) -> float:
    """1-5, like the judge: 1 + 4 x share of the original's atoms the rewrite keeps."""
    return 1.0 + 4.0 * toy_retention_share(original, rewrite)


JUDGE_KIND = "retention_judge"  # the Oracle client's kind of request (oracle.answers.retention_judge)


class Completer(Protocol):
    def complete(self, prompt: str) -> str | None: ...


class BatchJudge(Protocol):
    def complete_many(self, prompts: list[str], desc: str | None = ..., *, kind: str = ...) -> list[str | None]: ...


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


def judge_retention_many(client: BatchJudge, prompt_template: str, pairs: Sequence[tuple[str, str]],
                         desc: str | None = "retention") -> list[float | None]:
    """Scores of (original, rewrite) pairs, asked concurrently as `retention_judge` requests; None for
    an answer without a score and for a pair that did not fit the judge's context."""
    answers = client.complete_many([judge_prompt(prompt_template, o, r) for o, r in pairs], desc, kind=JUDGE_KIND)
    return [parse_score(a) for a in answers]
