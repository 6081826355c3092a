"""The toy Oracle: rule-based, correct by construction, writing in its own notation.

It stands in for GPT-5.2 / Qwen2.5-Math-72B-Instruct behind the same interface the real
(OpenAI-compatible) Oracle will implement.
"""

from __future__ import annotations

from paradox.problems import Problem
from paradox.toy import steps, styles


class ToyOracle:
    name = "toy-rule-oracle"

    def refine(self, problem: Problem, trace: str) -> str:
        """Minimal logical repair of the trace, written in the Oracle's notation."""
        repaired, _ = steps.repair(trace, problem.meta)
        return steps.to_oracle_notation(repaired, problem.meta, fraction=1.0)

    def synthesize(self, problem: Problem) -> str:
        """The Oracle's own solution from scratch, in its own order of steps."""
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
