"""The interfaces the stages talk to. A world (toy or real) is a set of adapters behind them, picked
by `paradox.backends` from the params; the notebooks never see which world is behind them.

| interface | toy world | real world |
|---|---|---|
| `ProblemSource` | `problems.JsonlProblemSource` | `hf_sources.HFProblemSource` |
| `Generator` (the SLM) | `generation.HFGenerator` | `HFGenerator`, `vllm_backend.VLLMGenerator`, `openai_generator.OpenAIGenerator` |
| `Oracle` | `toy.oracle.ToyOracle` | `prompt_oracle.PromptOracle` |
| `RewardScorer` | `toy.reward.RubricReward` | `reward_models.HFReward`, `vllm_backend.VLLMReward`, `reward_server.ServedReward` |
| `RetentionScorer` | `toy.retention.ExactRetention` | `retention.JudgeRetention` |
| `locators.Locator` (error locator) | `toy.prm.StandInPRM`, the Oracle's rule | `prm.HFProcessReward`, `vllm_backend.VLLMProcessReward`, the Oracle's `locate` prompt |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from paradox.generation import Completion, SamplingSettings
    from paradox.problems import Problem
    from paradox.tokenization import Stops


class ProblemSource(Protocol):
    def load(self, split: str) -> list[Problem]: ...


class Generator(Protocol):
    name: str
    stops: Stops

    def generate(self, prompts: Sequence[str], s: SamplingSettings) -> list[list[Completion]]: ...

    def close(self) -> None: ...  # free the weights or stop the servers (they hold most of a GPU's memory)


class Oracle(Protocol):
    """Refines, synthesizes, locates the first wrong step, rewrites in the SLM's style, drifts; every
    method takes a batch (a real Oracle sends the batch's requests concurrently)."""

    name: str

    def refine_many(self, problems: list[Problem], traces: list[str]) -> list[str]: ...

    # fallbacks: each problem's SLM-RFT trace, kept where the Oracle's answer is unusable
    def synthesize_many(self, problems: list[Problem], fallbacks: list[str] | None = None) -> list[str]: ...

    # The first wrong step (index or None) from the profile's locator (oracle.locator: the Oracle's
    # own, or a PRM it was handed); own_locate_many: the Oracle's own answer whatever the locator.
    def locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]: ...

    def own_locate_many(self, problems: list[Problem], traces: list[str]) -> list[int | None]: ...

    def rewrite_in_style_many(
        self, problems: list[Problem], traces: list[str], first_wrong: list[int | None]
    ) -> list[tuple[str, list[int]]]: ...

    def rewrite_fraction_many(
        self, problems: list[Problem], traces: list[str], fraction: float
    ) -> list[str]: ...

    def stats(self) -> dict[str, int]: ...  # fallbacks and requests so far (shown by the notebooks)

    def close(self) -> None: ...  # stop managed servers, if any


class RewardScorer(Protocol):
    """Perceived quality: one score per (problem, trace)."""

    name: str

    def score_many(self, problems: Sequence[Problem], traces: Sequence[str]) -> list[float]: ...


class RetentionScorer(Protocol):
    """Semantic retention on the judge's 1-5 scale, per (original, rewrite) pair; None = no score."""

    name: str

    def score_many(self, pairs: Sequence[tuple[str, str]], desc: str | None = ...) -> list[float | None]: ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...
