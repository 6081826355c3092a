"""The toy world's stand-in for a process reward model. It is NOT a model and learns nothing.

A real PRM (Qwen2.5-Math-PRM-7B, `paradox.prm`) is a validator that is cheap per trace and sometimes
wrong. The toy world has an exact validator, the step checker (`toy.steps.first_wrong_step`), so its
"PRM" is that checker made wrong on purpose, at a stated rate: for a share `error_rate` of the traces,
drawn per (seed, problem, trace) and so the same in every run and in any batch order, its answer is
replaced by another one drawn uniformly from the answers the checker could give for that problem (a
chain index, the final answer's index, or "no error"). The rest of the time it is the checker.

It lets the toy run show the locator agreement table of the real world (notebook 03) and lets
`oracle.locator: prm` run with a noisy validator; its numbers say how the table reads, not how good any
PRM is. It uses its own random generator, never the global ones (the toy's other outputs stay as they
were).
"""

from __future__ import annotations

import hashlib
import random

from paradox.problems import Problem
from paradox.toy import steps, styles


class StandInPRM:
    def __init__(self, error_rate: float, seed: int) -> None:
        if not 0 <= error_rate <= 1:
            raise ValueError(f"error_rate must lie in [0, 1], got {error_rate}")
        self.error_rate, self.seed = error_rate, seed
        self.name = f"PRM stand-in (exact step checker, {error_rate:.0%} of answers replaced; not a model)"
        self._replaced = 0

    def _rng(self, problem: Problem, trace: str) -> random.Random:
        key = hashlib.sha256(f"{self.seed}\0{problem.id}\0{trace}".encode()).digest()
        return random.Random(int.from_bytes(key[:8], "big"))

    def locate(self, problem: Problem, trace: str) -> int | None:
        err = steps.first_wrong_step(trace, problem.meta)
        truth = None if err is None else err.index
        rng = self._rng(problem, trace)
        if rng.random() >= self.error_rate:
            return truth
        # Every answer the checker can give: a chain step, the final answer (index len(chain)), or none.
        answers: list[int | None] = [None, *range(len(styles.steps_of(problem.meta)) + 1)]
        self._replaced += 1
        return rng.choice([a for a in answers if a != truth])

    def locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]:
        return [self.locate(p, t) for p, t in zip(problems, traces, strict=True)]

    def stats(self) -> dict[str, int]:
        """How many answers so far were replaced (the stand-in's deliberate errors)."""
        return {"prm_standin_replaced": self._replaced}

    def close(self) -> None:
        pass
