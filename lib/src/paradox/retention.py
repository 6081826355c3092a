"""Semantic retention: how much of an SLM trace's information a rewrite keeps.

Two measures behind one signature `(problem, original, rewrite) -> score on 1-5`:
- toy (exact): the trace's atoms are its quantities and its intermediate equations, parsed from
  its steps; retention = 1 + 4 x (share of the original's atoms found in the rewrite), so 5
  means everything kept, as on the paper's judge scale;
- judge (real profiles): an LLM judge with the prompt file `params/prompts/retention_judge.txt`
  (1-5 rubric, formatting ignored), through any client with `complete(prompt) -> str`.
"""

from __future__ import annotations

import re
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


class Completer(Protocol):
    def complete(self, prompt: str) -> str: ...


def load_prompt(path: Path | str) -> str:
    """The judge prompt; a relative path is taken from the project root (as params name it)."""
    text = resolve(path).read_text()
    for field in ("{original}", "{rewrite}"):
        if field not in text:
            raise ValueError(f"{path}: retention prompt lacks the {field} placeholder")
    return text


def judge_retention(client: Completer, prompt_template: str, original: str, rewrite: str) -> float | None:
    """The judge's 1-5 score, or None when its answer has no score (counted, never a crash)."""
    answer = client.complete(prompt_template.replace("{original}", original).replace("{rewrite}", rewrite))
    found = SCORE.findall(answer or "")
    return float(found[-1]) if found else None
