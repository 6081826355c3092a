"""A transparent reward rubric standing in for Qwen2.5-Math-RM-72B.

Modelling choice, stated before any result: like the real reward models the paper used, this
rubric rewards polish as well as correctness. It scores (max 2.0):
  correctness (0-1): half for the share of chain steps verified right, half for the final answer;
  explicitness (0-0.5): each step as a named symbolic quantity in math markup scores 1, a plain
    equation 0.5, a missing step 0 (mean over the chain's steps, times 0.5);
  format (0-0.5): a \\boxed{} answer 0.5, a plain "answer is n" / "#### n" 0.25.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from paradox.problems import Problem
from paradox.toy import steps, styles

NAMED_MARKUP = re.compile(r"\\\(.*[A-Za-z]_?\w*\s*=.*\\\)|\\\(\s*\d")


class RubricReward:
    name = "toy-rubric"

    def score(self, problem: Problem, trace: str) -> float:
        chain = problem.meta
        expected = styles.steps_of(chain)
        step_lines = [ln for ln in steps.read_lines(trace) if ln.kind == "step"]
        right = sum(1 for ln, want in zip(step_lines, expected, strict=False) if ln.equation == want)
        final_ok = steps.final_answer(trace) == str(chain["values"][-1])
        correctness = 0.5 * right / len(expected) + 0.5 * final_ok
        explicit = [1.0 if NAMED_MARKUP.search(ln.text) else 0.5 for ln in step_lines[: len(expected)]]
        explicitness = sum(explicit) / len(expected)
        fmt = 0.5 if "\\boxed{" in trace else 0.25 if steps.final_answer(trace) is not None else 0.0
        return round(correctness + 0.5 * explicitness + fmt, 4)

    def score_many(self, problems: Sequence[Problem], traces: Sequence[str]) -> list[float]:
        return [self.score(p, t) for p, t in zip(problems, traces, strict=True)]
