"""The toy Oracle: rule-based, correct by construction, writing in its own notation.

It stands in for GPT-5.2 / Qwen2.5-Math-72B-Instruct behind the same interface as the real
(OpenAI-compatible) Oracle, `paradox.prompt_oracle.PromptOracle`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from paradox.problems import Problem
from paradox.prompt_oracle import FALLBACK_COUNTS
from paradox.toy import steps, styles

if TYPE_CHECKING:
    from paradox.locators import Locator


class ToyOracle:
    name = "toy-rule-oracle"

    def __init__(self, locator: Locator | None = None) -> None:
        """`locator`: where the first wrong step comes from (`oracle.locator: prm`: the PRM stand-in);
        None: the Oracle's own rule, the exact step checker."""
        self.locator = locator

    def refine(self, problem: Problem, trace: str) -> str:
        """Minimal logical repair of the trace, written in the Oracle's notation."""
        repaired, _ = steps.repair(trace, problem.meta)
        return steps.to_oracle_notation(repaired, problem.meta, fraction=1.0)

    def synthesize(self, problem: Problem, fallback: str | None = None) -> str:
        """The Oracle's own solution from scratch, in its own order of steps (the rule never fails:
        `fallback`, the real Oracle's substitute for an unusable answer, is never needed)."""
        return styles.render_synthesized(problem.meta)

    def rewrite_fraction(self, problem: Problem, trace: str, fraction: float) -> str:
        """The drift dial: the same repair, then a fraction of the lines in the Oracle's notation."""
        repaired, _ = steps.repair(trace, problem.meta)
        return steps.to_oracle_notation(repaired, problem.meta, fraction=fraction)

    def first_wrong_step(self, problem: Problem, trace: str) -> int | None:
        """The validator: index of the first wrong step, or None."""
        err = steps.first_wrong_step(trace, problem.meta)
        return None if err is None else err.index

    def rewrite_in_style(self, problem: Problem, trace: str) -> tuple[str, list[int]]:
        """Change only the wrong steps, in the trace's own wording; returns (trace, changed lines)."""
        return steps.repair(trace, problem.meta)

    # Batch versions, so notebooks call `*_many` for either world (the real Oracle runs them
    # concurrently); here simple loops returning exactly what the single calls return.
    def refine_many(self, problems: list[Problem], traces: list[str]) -> list[str]:
        return [self.refine(p, t) for p, t in zip(problems, traces, strict=True)]

    def synthesize_many(self, problems: list[Problem], fallbacks: list[str] | None = None) -> list[str]:
        return [self.synthesize(p) for p in problems]

    def locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]:
        if self.locator is not None:
            return self.locator.locate_many(problems, traces)
        return self.own_locate_many(problems, traces)

    def own_locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]:
        """The Oracle's own rule (the exact step checker), whatever the locator."""
        return [self.first_wrong_step(p, t) for p, t in zip(problems, traces, strict=True)]

    def rewrite_in_style_many(
        self, problems: list[Problem], traces: list[str], first_wrong: list[int | None]
    ) -> list[tuple[str, list[int]]]:
        """Traces with no wrong step are returned unchanged, as notebook 03 always did."""
        return [
            (t, []) if k is None else self.rewrite_in_style(p, t)
            for p, t, k in zip(problems, traces, first_wrong, strict=True)
        ]

    def rewrite_fraction_many(self, problems: list[Problem], traces: list[str], fraction: float) -> list[str]:
        return [self.rewrite_fraction(p, t, fraction) for p, t in zip(problems, traces, strict=True)]

    def stats(self) -> dict[str, int]:
        """The real Oracle's fallback counts, all zero: the rule never fails (same keys in both worlds);
        and the locator's, if one was handed over."""
        return dict.fromkeys(FALLBACK_COUNTS, 0) | (self.locator.stats() if self.locator is not None else {})

    def close(self) -> None:
        """Nothing of its own to free (the real Oracle stops its managed servers here)."""
        if self.locator is not None:
            self.locator.close()
