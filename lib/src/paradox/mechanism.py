"""The mechanism analyses of notebook 07, as pure functions over scored traces and tables.

Inputs are what the earlier stages leave behind: `metrics.TraceNLL` lists (a stream's training
traces scored under the base SLM), mean rewards and perplexities per stream, and the utility
table of `metrics.utility` (rows (stream, loss): mean, ci95, n_seeds). Outputs are pandas frames
or plain dicts; nothing here reads files, loads models or draws.

- `segmented_ppl`: token-weighted perplexity globally and in four equal-length quarters.
- `q1_attribution`: the tokens carrying the most NLL in the first quarter.
- `token_shift`: token frequency per 1,000 response tokens, SLM-RFT vs Oracle-Refined.
- `mean_retention`: semantic retention of each rewrite (through a `RetentionScorer`).
- `mechanism_table`, `drift_table`, `robustness_grid`, `correlations`: the tables of 07.
- `verdict`: does the paradox appear under one loss, and are the intervals separated?
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from paradox.metrics import TraceNLL, fmt, lookup, perplexity, quarter_slices
from paradox.protocols import RetentionScorer
from paradox.streams import ORACLE_STREAMS, drift_fraction, label

QUARTERS = ("Q1", "Q2", "Q3", "Q4")
LOSSES = ("nll", "dft")  # SFT and DFT, in the order of the verdict and the correlations


class Decoder(Protocol):
    def decode(self, token_ids: list[int]) -> str: ...


def token_text(tokenizer: Decoder, token_id: int) -> str:
    """A token as tables show it: its decoded text, quoted (so whitespace and newlines stay visible)."""
    return repr(tokenizer.decode([token_id]))


def segmented_ppl(scored: Mapping[str, Sequence[TraceNLL]], streams: Sequence[str]) -> pd.DataFrame:
    """Columns stream, global, Q1-Q4. Quarter q of a trace holds its response tokens
    floor(q n / 4) .. floor((q + 1) n / 4) - 1 (`quarter_slices`); a stream's perplexity in a
    quarter is token-weighted over all its traces: exp(summed NLL / number of tokens)."""
    rows: list[dict[str, Any]] = []
    for s in streams:
        nll, cnt = np.zeros(4), np.zeros(4)
        for t in scored[s]:
            for q, sl in enumerate(quarter_slices(t.n_tokens)):
                nll[q] += sum(t.token_nll[sl])
                cnt[q] += sl.stop - sl.start
        rows.append(
            {
                "stream": s,
                "global": perplexity(scored[s]),
                **{QUARTERS[q]: float(np.exp(nll[q] / cnt[q])) for q in range(4)},
            }
        )
    return pd.DataFrame(rows)


def q1_nll_by_token(traces: Iterable[TraceNLL]) -> dict[int, float]:
    """Summed NLL of each token id over the first quarter of every trace (first-seen order)."""
    q1: defaultdict[int, float] = defaultdict(float)
    for t in traces:
        sl = quarter_slices(t.n_tokens)[0]
        for tid, v in zip(t.token_ids[sl], t.token_nll[sl], strict=True):
            q1[tid] += v
    return dict(q1)


def q1_attribution(
    scored: Mapping[str, Sequence[TraceNLL]], streams: Sequence[str], text: Callable[[int], str], n_top: int
) -> pd.DataFrame:
    """Per stream (by label), the `n_top` tokens with the largest summed Q1 NLL: columns stream,
    rank, token, sum_nll, share_of_q1_nll (of all Q1 NLL of the stream). Ties keep first-seen order."""
    rows: list[dict[str, Any]] = []
    for s in streams:
        q1 = q1_nll_by_token(scored[s])
        total = sum(q1.values())
        for rank, (tid, v) in enumerate(sorted(q1.items(), key=lambda kv: -kv[1])[:n_top], 1):
            rows.append(
                {
                    "stream": label(s),
                    "rank": rank,
                    "token": text(tid),
                    "sum_nll": v,
                    "share_of_q1_nll": v / total,
                }
            )
    return pd.DataFrame(rows)


def per_1k(traces: Iterable[TraceNLL]) -> pd.Series:
    """Frequency of each response token id per 1,000 response tokens (first-seen order)."""
    c = Counter(tid for t in traces for tid in t.token_ids)
    n = sum(c.values())
    return pd.Series({tid: 1000 * v / n for tid, v in c.items()})


def token_shift(
    rft: Sequence[TraceNLL], refined: Sequence[TraceNLL], text: Callable[[int], str], n_top: int
) -> pd.DataFrame:
    """The `n_top` largest increases, then the `n_top` largest decreases, of a token's frequency
    per 1,000 tokens from SLM-RFT to Oracle-Refined: columns direction, token, rft, refined, change
    (refined - rft; a token absent from one stream counts 0 there)."""
    shift = pd.concat([per_1k(rft).rename("rft"), per_1k(refined).rename("refined")], axis=1).fillna(0.0)
    shift["change"] = shift["refined"] - shift["rft"]
    top_up, top_down = shift.nlargest(n_top, "change"), shift.nsmallest(n_top, "change")
    table = pd.concat([top_up.assign(direction="increase"), top_down.assign(direction="decrease")])
    table = table.assign(token=[text(int(i)) for i in table.index]).reset_index(drop=True)
    return table[["direction", "token", "rft", "refined", "change"]]


def mean_retention(
    judge: RetentionScorer,
    rft_rows: Sequence[Mapping[str, Any]],
    rewrites: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[dict[str, float], dict[str, int]]:
    """(mean retention per rewrite stream, number of pairs the judge left unscored). Each rewrite
    row is paired with the SLM-RFT trace of the same id; unscored pairs are left out of the mean
    (nan when none is scored)."""
    rft_by_id = {r["id"]: r["completion"] for r in rft_rows}
    retention: dict[str, float] = {}
    unscored: dict[str, int] = {}
    for s, rows in rewrites.items():
        scores = judge.score_many(
            [(rft_by_id[r["id"]], r["completion"]) for r in rows], desc=f"retention {s}"
        )
        got = [x for x in scores if x is not None]
        retention[s] = float(np.mean(got)) if got else float("nan")
        unscored[s] = len(scores) - len(got)
    return retention, unscored


def mechanism_table(
    streams: Sequence[str],
    ppl: Mapping[str, float],
    reward: Mapping[str, float],
    retention: Mapping[str, float],
    util: pd.DataFrame,
    k: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(full-precision rows, display rows), streams ordered by perplexity. Display: PPL to 3
    significant digits, reward and retention to 2 decimals (SLM-RFT is the retention reference),
    utility as `metrics.fmt`."""
    rows: list[dict[str, Any]] = []
    shown: list[dict[str, str]] = []
    for s in sorted(streams, key=lambda s: ppl[s]):
        dft, sft = lookup(util, s, "dft"), lookup(util, s, "nll")
        rows.append(
            {
                "stream": s,
                "ppl": ppl[s],
                "reward": reward[s],
                "retention": retention.get(s, float("nan")),
                "dft": dft[0],
                "dft_ci95": dft[1],
                "sft": sft[0],
                "sft_ci95": sft[1],
                "seeds": dft[2],
            }
        )
        shown.append(
            {
                "Stream": label(s),
                "Global PPL": f"{ppl[s]:.3g}",
                "Reward": f"{reward[s]:.2f}",
                "Retention": "reference" if s == "slm_rft" else f"{retention[s]:.2f}",
                f"DFT Avg@{k}": fmt(*dft),
                f"SFT Avg@{k}": fmt(*sft),
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(shown)


def robustness_grid(
    accuracy: pd.DataFrame, grid_streams: Sequence[str], grid_losses: Sequence[str], seed: int
) -> pd.DataFrame:
    """Avg@k (mean over splits, one seed) per (loss, learning rate, batch size) cell and grid
    stream, and the best stream of each cell; empty when the profile has no grid. `accuracy` is
    eval/accuracy.csv (the main run is the grid's centre cell)."""
    if not grid_streams:
        return pd.DataFrame()
    grid = accuracy[
        accuracy["purpose"].isin(["main", "grid"])
        & accuracy["stream"].isin(grid_streams)
        & accuracy["loss"].isin(grid_losses)
        & (accuracy["seed"] == seed)
    ]
    cells = (
        grid.groupby(["loss", "learning_rate", "batch_size", "stream"])["avg_at_k"].mean().unstack("stream")
    )
    cells = cells[[s for s in grid_streams if s in cells.columns]]
    cells["best"] = cells.idxmax(axis=1).map(label)
    table = cells.rename(columns=label).reset_index()
    table["learning_rate"] = table["learning_rate"].map("{:g}".format)  # 2.5e-4, not 0.00
    return table


def drift_table(
    drift: Sequence[str],
    ppl: Mapping[str, float],
    reward: Mapping[str, float],
    util: pd.DataFrame,
    losses: Sequence[str],
    k: int,
) -> pd.DataFrame:
    """One row per drift-dial stream: f, ppl, reward and the mean utility under each loss."""
    return pd.DataFrame(
        [
            {
                "f": drift_fraction(s),
                "ppl": ppl[s],
                "reward": reward[s],
                **{f"{loss} Avg@{k}": lookup(util, s, loss)[0] for loss in losses},
            }
            for s in drift
        ]
    )


def dose_response(drift: pd.DataFrame) -> pd.DataFrame:
    """What the mechanism predicts along the drift dial, against what the run shows: Spearman's rank
    correlation of f with perplexity (predicted rising) and with each utility column (predicted
    falling). A description over a handful of points, not a test."""
    rows = []
    for col in drift.columns.drop("f"):
        if col == "reward":
            continue
        predicted = "rises" if col == "ppl" else "falls"
        rho = float(drift["f"].corr(drift[col], method="spearman"))
        shown = "n/a" if np.isnan(rho) else ("rises" if rho > 0 else "falls" if rho < 0 else "flat")
        rows.append({"with f": col, "mechanism predicts": predicted, "spearman": rho, "this run": shown})
    return pd.DataFrame(rows)


def correlations(
    streams: Sequence[str], reward: Mapping[str, float], ppl: Mapping[str, float], util: pd.DataFrame
) -> pd.DataFrame:
    """Spearman rank correlation across `streams` of mean reward vs utility and of perplexity vs
    utility, per loss (SFT, DFT); streams not trained under a loss are left out (n_streams)."""
    rows: list[dict[str, Any]] = []
    for loss in LOSSES:
        df = pd.DataFrame(
            [{"reward": reward[s], "ppl": ppl[s], "utility": lookup(util, s, loss)[0]} for s in streams]
        ).dropna()
        rows.append(
            {
                "loss": loss,
                "n_streams": len(df),
                "spearman_reward_utility": df["reward"].corr(df["utility"], method="spearman"),
                "spearman_ppl_utility": df["ppl"].corr(df["utility"], method="spearman"),
            }
        )
    return pd.DataFrame(rows)


def verdict(util: pd.DataFrame, reward: Mapping[str, float], streams: Sequence[str], loss: str) -> str:
    """Does the paradox appear under `loss`? Yes for every Oracle stream (of those trained) with a
    higher mean reward and a lower mean utility than SLM-RFT; with several seeds, also which of
    them lie below SLM-RFT with separated 95% intervals (mean + ci < RFT mean - RFT ci)."""
    rft = lookup(util, "slm_rft", loss)
    if rft[2] == 0:  # the profile does not train this loss (train.losses), e.g. the class profile
        return "not run: this profile does not train this loss"
    oracle_streams = [s for s in ORACLE_STREAMS if s in streams]
    worse = [s for s in oracle_streams if lookup(util, s, loss)[0] < rft[0]]
    higher_reward = [s for s in oracle_streams if reward[s] > reward["slm_rft"]]
    shown = sorted(set(worse) & set(higher_reward))
    if not shown:
        return "no: no higher-reward Oracle stream falls below SLM-RFT"
    separated = [s for s in shown if lookup(util, s, loss)[0] + lookup(util, s, loss)[1] < rft[0] - rft[1]]
    sep = (
        f"; intervals separated for {', '.join(label(s) for s in separated)}"
        if rft[2] > 1
        else "; one seed: Table 1's bootstrap intervals over problems say how large the gaps are"
    )
    return f"yes for {', '.join(label(s) for s in shown)} (higher reward, lower utility than SLM-RFT){sep}"
