"""The problem record every stage passes around, and the problem-source interface."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paradox.io import read_jsonl


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    # Gold final answer as one string (paradox.answers.canonical_gold, graded by paradox.grading):
    # LaTeX as published; several answers joined by ", " and graded as a set.
    answer: str
    reference_solution: str  # the dataset's own solution: the Ground-truth stream
    source: str  # split or benchmark name
    meta: dict[str, Any] = field(default_factory=dict)  # world-specific structure (toy: the chain)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Problem:
        return cls(**row)


class JsonlProblemSource:
    """Problems stored as `<root>/<split>.jsonl` (the toy world writes these in notebook 00)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def load(self, split: str) -> list[Problem]:
        path = self.root / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no problems for split '{split}' (has notebook 00 run?)")
        return [Problem.from_dict(row) for row in read_jsonl(path)]
