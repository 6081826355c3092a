"""The tables of notebook 06 (Table 1, accuracy per split, the reward cross-check), as pure
functions over the utility lookup and per-stream numbers. Each returns the full-precision frame
(CSV) and, where the paper's form differs, the display frame (Markdown, LaTeX) for
`report.save_table`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from scipy.stats import spearmanr

from paradox.metrics import fmt
from paradox.streams import BASE, LABELS

Utility = Callable[[str, str], tuple[float, float, int]]  # (stream, loss) -> (mean, ci95, n_seeds)


Interval = Callable[[str, str], tuple[float, float, float]]  # (stream, loss) -> (mean, lo, hi)


def _fmt_interval(mean: float, lo: float, hi: float) -> str:
    """'16.00 [12.12, 20.00]'; 'n/a' for a loss that was not run."""
    return "n/a" if math.isnan(mean) else f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def table1(
    u: Utility,
    streams: Sequence[str],
    reward: Mapping[str, float],
    ppl: Mapping[str, float],
    k: int,
    ui: Interval,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1: the base SLM, then each stream: mean reward, perplexity under the base SLM and
    Avg@k after SFT and DFT (the base SLM's one utility in both columns; no reward or PPL), with
    the 95% bootstrap interval of `ui` (`metrics.bootstrap_utility`: over problems and seeds, so
    it stays within [0, 100] and a one-seed run has one too). `u` gives the seed count."""
    rows: list[dict[str, Any]] = []
    shown: list[dict[str, str]] = []
    for s in [BASE, *streams]:
        keys = [(BASE, "none")] * 2 if s == BASE else [(s, "nll"), (s, "dft")]
        (sft, dft), n_seeds = [ui(*key) for key in keys], u(*keys[0])[2]
        rew, p = (float("nan"), float("nan")) if s == BASE else (reward[s], ppl[s])
        rows.append(
            {
                "Stream": LABELS[s],
                "Reward": rew,
                "PPL": p,
                f"SFT Avg@{k}": sft[0],
                "SFT lo": sft[1],
                "SFT hi": sft[2],
                f"DFT Avg@{k}": dft[0],
                "DFT lo": dft[1],
                "DFT hi": dft[2],
                "seeds": n_seeds or u(*keys[1])[2],
            }
        )
        shown.append(
            {
                "Stream": LABELS[s],
                "Reward": "n/a" if s == BASE else f"{rew:.2f}",
                "PPL": "n/a" if s == BASE else f"{p:.3g}",
                f"SFT Avg@{k}": _fmt_interval(*sft),
                f"DFT Avg@{k}": _fmt_interval(*dft),
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(shown)


def accuracy_by_split(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Avg@k per split (columns) for every (stream, loss) of the main runs and the base SLM, mean
    over seeds."""
    main = accuracy[accuracy["purpose"].isin(["main", "base"])]
    return main.groupby(["stream", "loss", "split"])["avg_at_k"].mean().unstack("split").reset_index()


def cross_check(
    xc: pd.DataFrame, u: Utility, streams: Sequence[str], k: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """From `cross_check.reward_table` (columns reward:<model>, rank:<model>, one row per stream):
    (the table with DFT and SFT utility added, its display form 'reward (rank)', and per reward
    model the Spearman correlation of its stream rewards with utility under each loss; nan where
    a loss was not trained)."""
    models = [c.removeprefix("reward:") for c in xc.columns if c.startswith("reward:")]
    xc = xc.copy()
    xc[f"DFT Avg@{k}"], xc[f"SFT Avg@{k}"] = [[u(s, loss)[0] for s in streams] for loss in ("dft", "nll")]
    shown = pd.DataFrame(
        {
            "Stream": [LABELS[s] for s in streams],
            **{
                m: [f"{r:.2f} ({n})" for r, n in zip(xc[f"reward:{m}"], xc[f"rank:{m}"], strict=True)]
                for m in models
            },
            f"DFT Avg@{k}": [fmt(*u(s, "dft")) for s in streams],
        }
    )
    rho = pd.DataFrame(
        [
            {
                "model": m,
                **{
                    f"spearman_{loss}": (
                        spearmanr(xc[f"reward:{m}"], xc[col]).statistic
                        if xc[col].notna().all()
                        else float("nan")
                    )
                    for loss, col in (("dft", f"DFT Avg@{k}"), ("sft", f"SFT Avg@{k}"))
                },
            }
            for m in models
        ]
    )
    return xc, shown, rho
