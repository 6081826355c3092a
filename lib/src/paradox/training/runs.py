"""Which fine-tuning runs a profile asks for: one place, read by 04 (train), 05 (eval), 06/07 and make plan.

Main runs: every stream in `train.streams` x its losses x every seed in `train.seeds`. Drift-dial
streams use `drift.losses`. Grid runs: `grid.streams` x learning rates x batch sizes x
`grid.losses` at the first seed; a grid cell equal to the main setting reuses the main run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from paradox.params import Params
from paradox.streams import all_streams, is_drift


@dataclass(frozen=True)
class RunSpec:
    name: str  # directory under runs/<profile>/models/
    stream: str
    loss: str
    seed: int
    learning_rate: float
    batch_size: int
    purpose: str  # "main" | "grid"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def losses_for(params: Params, stream: str) -> tuple[str, ...]:
    return params.drift.losses if is_drift(stream) else params.train.losses


def main_runs(params: Params) -> list[RunSpec]:
    t = params.train
    return [
        RunSpec(f"{stream}-{loss}-s{seed}", stream, loss, seed, t.learning_rate, t.batch_size, "main")
        for stream in all_streams(params)
        for loss in losses_for(params, stream)
        for seed in t.seeds
    ]


def grid_runs(params: Params) -> list[RunSpec]:
    t, g = params.train, params.grid
    seed = t.seeds[0]
    runs = []
    for stream in g.streams:
        for loss in g.losses:
            for lr in g.learning_rates:
                for bs in g.batch_sizes:
                    if (lr, bs) == (t.learning_rate, t.batch_size):
                        continue  # the main run is this cell
                    runs.append(
                        RunSpec(
                            f"{stream}-{loss}-lr{lr:g}-bs{bs}-s{seed}", stream, loss, seed, lr, bs, "grid"
                        )
                    )
    return runs


def keeps_checkpoints(params: Params, run: RunSpec) -> bool:
    """Runs that feed the learning curves: main runs of `learning_curve.streams` and `.losses`, first seed."""
    lc = params.learning_curve
    return (
        lc.checkpoints > 0
        and run.purpose == "main"
        and run.stream in lc.streams
        and run.loss in lc.losses
        and run.seed == params.train.seeds[0]
    )


def training_runs(params: Params) -> list[RunSpec]:
    return main_runs(params) + grid_runs(params)
