"""Semantic retention in the toy world, exact: a trace's information atoms are its quantities and
its intermediate equations, parsed from its steps; retention = 1 + 4 x (share of the original's
atoms found in the rewrite), on the paper's judge scale (5 = everything kept). A repaired wrong
value counts as not kept, so a rewrite that fixes an error loses a little."""

from __future__ import annotations

import re
from collections.abc import Sequence

from paradox.toy import steps

# ("eq", x, op, b, y) for an equation, ("q", n) for a quantity
Atom = tuple[str | int, ...]


def toy_atoms(trace: str) -> set[Atom]:
    """Quantities stated and equations computed, notation-free."""
    atoms: set[Atom] = set()
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


class ExactRetention:
    """The `retention.RetentionScorer` of the toy world: exact, never unscored."""

    name = "toy exact atoms"

    def score_many(self, pairs: Sequence[tuple[str, str]], desc: str | None = None) -> list[float | None]:
        return [toy_retention(o, r) for o, r in pairs]

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        """Nothing to free."""
