"""From per-split, per-seed accuracies to the numbers tables and figures show.

Utility of a (stream, loss) = Avg@k averaged over evaluation splits (the paper's mean over its
benchmarks), computed per seed; the headline is the mean over seeds with a 95% interval.
"""

from __future__ import annotations

import pandas as pd

from paradox.metrics import mean_ci95


def utility(accuracy: pd.DataFrame, purpose: str = "main") -> pd.DataFrame:
    """Rows (stream, loss) with columns mean, ci95, n_seeds. `accuracy` is eval/accuracy.csv."""
    acc = accuracy[accuracy["purpose"].isin([purpose, "base"])]
    per_seed = acc.groupby(["stream", "loss", "seed"])["avg_at_k"].mean().reset_index()
    rows = []
    for (stream, loss), g in per_seed.groupby(["stream", "loss"]):
        m, h = mean_ci95(g["avg_at_k"].tolist())
        rows.append({"stream": stream, "loss": loss, "mean": m, "ci95": h, "n_seeds": len(g)})
    return pd.DataFrame(rows).set_index(["stream", "loss"])


def lookup(util: pd.DataFrame, stream: str, loss: str) -> tuple[float, float, int]:
    """(mean, ci95, n_seeds) of one (stream, loss) in `utility(...)`; (nan, nan, 0) if it was not run."""
    if (stream, loss) not in util.index:
        return float("nan"), float("nan"), 0
    row = util.loc[(stream, loss)]
    return float(row["mean"]), float(row["ci95"]), int(row["n_seeds"])


def base_utility(accuracy: pd.DataFrame) -> tuple[float, float]:
    u = utility(accuracy).loc[("base", "none")]
    return float(u["mean"]), float(u["ci95"])


def fmt(mean: float, ci: float, n: int) -> str:
    """'12.3 ± 1.4' when there are several seeds, '12.3' otherwise."""
    if pd.isna(mean):
        return "n/a"
    return f"{mean:.2f} ± {ci:.2f}" if n > 1 else f"{mean:.2f}"
