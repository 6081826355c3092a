"""Error locators: Style-Aligned Refinement's step 2, "locate the erroneous step with an Oracle or a
validator" (docs/prm-locator.md). Each answers ProcessBench's question for a batch of traces: the
index of the earliest wrong step, or None (ProcessBench's -1: no error, or none located).

| locator | toy world | real world |
|---|---|---|
| the Oracle's own | `ToyOracle`'s rule (= the exact step checker) | `PromptOracle`'s `locate` prompt |
| a process reward model (`oracle.prm`) | `toy.prm.StandInPRM` (the checker with a stated error rate) | `prm.HFProcessReward`, `vllm_backend.VLLMProcessReward` |
| the truth | `ExactLocator` (the step checker) | none |

Step indices: the Oracle's prompt and the PRM index the same steps (`prompt_oracle.split_steps`); in
the toy world every locator indexes the problem's chain (`toy.steps.first_wrong_step`).
`oracle.locator` picks the one whose answers the rewrite follows (`backends.oracle` hands it to the
Oracle); notebook 03 runs the others beside it for the agreement table (`locator_agreement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from paradox.problems import Problem


class Locator(Protocol):
    name: str

    def locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]: ...

    def stats(self) -> dict[str, int]: ...  # what was not located and why (shown by notebook 03)

    def close(self) -> None: ...  # free the weights, if any


class LocatingOracle(Protocol):
    def own_locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]: ...


class OwnOracleLocator:
    """The Oracle's own locator, whichever locator the Oracle was handed: its `locate` prompt (real),
    its rule (toy). Its counts are the Oracle's (`locate_*` in `oracle.stats()`)."""

    def __init__(self, oracle: LocatingOracle, name: str) -> None:
        self.oracle, self.name = oracle, name

    def locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]:
        return self.oracle.own_locate_many(problems, traces)

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        """The Oracle is closed by its stage (it still has requests to send)."""


class ExactLocator:
    """The toy world's truth: the step checker against the problem's chain (`toy.steps`)."""

    name = "exact step checker"

    def locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]:
        from paradox.toy import steps

        out: list[int | None] = []
        for p, t in zip(problems, traces, strict=True):
            err = steps.first_wrong_step(t, p.meta)
            out.append(None if err is None else err.index)
        return out

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


def first_below(scores: Sequence[float], threshold: float) -> int | None:
    """The earliest step whose score (the PRM's probability that it is correct) is below `threshold`;
    None when every step is at or above it (ProcessBench's -1)."""
    return next((i for i, s in enumerate(scores) if s < threshold), None)
