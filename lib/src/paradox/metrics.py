"""Utility and adaptation-cost metrics.

Avg@k: for each problem the mean correctness of its k samples, then the mean over problems
(not pass@k). Perplexity: token-weighted over response tokens only, i.e.
exp(sum of response-token NLL / number of response tokens) over a whole stream; the prompt
conditions but is not scored, and the end-of-sequence token is not scored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

if TYPE_CHECKING:  # torch is imported where a model is scored: the tables and figures need none
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def avg_at_k(
    rows: Sequence[dict[str, Any]],
    expected_ids: Sequence[str] | None = None,
    k: int | None = None,
    source: str = "rows",
) -> float:
    """Rows {id, correct}; several per id. Mean over ids of the per-id mean, in percent.

    With `expected_ids` and `k`, the rows must hold exactly k samples for every expected id and
    nothing else: a score over fewer problems or samples would look like a result (ValueError
    naming `source` and what is missing or extra).
    """
    per: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        per[r["id"]].append(bool(r["correct"]))
    if expected_ids is not None:
        problems = []
        missing = [i for i in expected_ids if i not in per]
        extra = sorted(set(per) - set(expected_ids))
        if missing:
            problems.append(
                f"{len(missing)} of {len(expected_ids)} problems have no samples (e.g. {missing[:3]})"
            )
        if extra:
            problems.append(f"{len(extra)} ids not among the problems (e.g. {extra[:3]})")
        if k is not None:
            wrong = {i: len(v) for i, v in per.items() if len(v) != k}
            if wrong:
                shown = dict(list(wrong.items())[:3])
                problems.append(f"{len(wrong)} problems without exactly k={k} samples (id: count {shown})")
        if problems:
            raise ValueError(f"{source}: incomplete samples, Avg@k refused: " + "; ".join(problems))
    if not per:
        return float("nan")
    return 100.0 * sum(sum(v) / len(v) for v in per.values()) / len(per)


@dataclass(frozen=True)
class TraceNLL:
    nll: float  # summed over response tokens
    n_tokens: int
    token_nll: list[float]  # per response token, in order
    token_ids: list[int] = field(default_factory=list)  # the response tokens themselves


DEFAULT_TOKEN_BUDGET = 16384  # as eval.score_token_budget in the schema
LOGIT_CHUNK_BYTES = (
    1 << 28
)  # float32 logits of one slice of positions: 256 MiB (~440 positions at a 152K vocabulary)


def micro_batches(lengths: Sequence[int], token_budget: int, max_rows: int | None = None) -> list[list[int]]:
    """Indices grouped so that rows x longest length <= token_budget (a longer sequence goes alone),
    longest first (an out-of-memory shows up at once), at most `max_rows` per group."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        # sorted longest first: the group's first member sets its padded width
        if g and (len(g) + 1) * lengths[g[0]] <= token_budget and (max_rows is None or len(g) < max_rows):
            g.append(i)
        else:
            groups.append([i])
    return groups


def _body_and_head(model: PreTrainedModel) -> tuple[torch.nn.Module, torch.nn.Linear]:
    """(the transformer without its LM head, the head): token log-probs are computed from the last
    hidden states slice by slice, never as full [batch, length, vocabulary] logits. (The head is the
    lm_head nn.Linear of a causal LM, as typed; transformers leaves it unannotated.)"""
    body, head = model.base_model, model.get_output_embeddings()
    if body is model or head is None:
        raise ValueError(f"{type(model).__name__}: no separate base model and LM head to score with")
    return body, head


def _check_head(
    model: PreTrainedModel, body: torch.nn.Module, head: torch.nn.Module, ids: torch.Tensor
) -> None:
    """The model's logits must be head(last hidden state): a family that scales or caps its logits
    would be scored wrong, so that is an error (checked on a few positions of one sequence)."""
    import torch

    ids = ids[:1, :8]
    want = model(input_ids=ids).logits.float()
    got = head(body(input_ids=ids).last_hidden_state).float()
    if not torch.allclose(want, got, rtol=1e-3, atol=1e-3 * max(1.0, want.abs().max().item())):
        raise ValueError(
            f"{type(model).__name__}: its logits are not lm_head(last hidden state) (logit scaling or "
            "soft-capping?); metrics.response_nll cannot score this model family"
        )


def _token_nll(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk: int
) -> torch.Tensor:
    """-log p(target) for each row of `hidden` [n, H], logits of at most `chunk` rows at a time."""
    import torch

    out = []
    for j in range(0, hidden.shape[0], chunk):
        logits = head(hidden[j : j + chunk]).float()
        out.append(
            torch.logsumexp(logits, dim=-1) - logits.gather(-1, targets[j : j + chunk, None]).squeeze(-1)
        )
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def response_nll(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    batch_size: int | None = None,
    desc: str = "scoring",
    logit_chunk_bytes: int = LOGIT_CHUNK_BYTES,
) -> list[TraceNLL]:
    """NLL of each response given its prompt, on the token sequence training uses
    (`tokenization.SequenceEncoder`: prompt ids as generation sees them, then the response's own
    ids; its end token is not scored), so the response's tokens are exactly those the model is
    trained on.

    Memory: micro-batches of at most `token_budget` padded tokens (`eval.score_token_budget`; at
    most `batch_size` sequences if given), and the vocabulary-sized logits only for slices of the
    response positions (`logit_chunk_bytes` of float32 at a time), never for a whole batch. A
    trace's score does not depend on the traces scored beside it (up to float rounding).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    import torch

    with torch.inference_mode():
        return _response_nll(
            model, tokenizer, prompts, responses, token_budget, batch_size, desc, logit_chunk_bytes
        )


def _response_nll(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    token_budget: int,
    batch_size: int | None,
    desc: str,
    logit_chunk_bytes: int,
) -> list[TraceNLL]:
    import torch

    from paradox.tokenization import SequenceEncoder

    enc = SequenceEncoder(tokenizer)
    p_ids = [enc.prompt(p) for p in prompts]
    r_ids = [enc.completion(r, end=False) for r in responses]
    for i, a in enumerate(p_ids):
        if not a:
            raise ValueError(f"prompt {i} is empty: the first response token would have no context")
    body, head = _body_and_head(model)
    device = model.device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    chunk = max(1, logit_chunk_bytes // (4 * head.weight.shape[0]))
    result: list[TraceNLL | None] = [None] * len(prompts)
    checked = False
    for group in tqdm(
        micro_batches([len(a) + len(b) for a, b in zip(p_ids, r_ids, strict=True)], token_budget, batch_size),
        desc=desc,
        unit="batch",
    ):
        seqs = [p_ids[i] + r_ids[i] for i in group]
        width = max(len(x) for x in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        rows: list[int] = []
        cols: list[int] = []
        for k, (i, x) in enumerate(
            zip(group, seqs, strict=True)
        ):  # right padding: positions 0..n-1 in every row
            ids[k, : len(x)] = torch.tensor(x)
            mask[k, : len(x)] = 1
            # token t is predicted at position t-1: response tokens sit at len(a) .. len(a)+len(b)-1
            start = len(p_ids[i]) - 1
            rows += [k] * len(r_ids[i])
            cols += range(start, start + len(r_ids[i]))
        ids, mask = ids.to(device), mask.to(device)
        if not checked:
            _check_head(model, body, head, ids)
            checked = True
        hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
        rows_t, cols_t = torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)
        nll = (
            _token_nll(
                head,
                hidden[rows_t.to(device), cols_t.to(device)],
                ids[rows_t.to(device), (cols_t + 1).to(device)],
                chunk,
            )
            .cpu()
            .tolist()
        )
        pos = 0
        for i in group:
            vals = nll[pos : pos + len(r_ids[i])]
            pos += len(r_ids[i])
            result[i] = TraceNLL(float(sum(vals)), len(vals), vals, list(r_ids[i]))
    return result  # type: ignore[return-value]  # every slot was filled by the loop


def quarter_slices(n: int) -> list[slice]:
    """Four consecutive slices partitioning range(n) into (nearly) equal parts: quarter q is
    [floor(q n / 4), floor((q + 1) n / 4))."""
    return [slice(q * n // 4, (q + 1) * n // 4) for q in range(4)]


def perplexity(scored: Sequence[TraceNLL]) -> float:
    """Token-weighted perplexity over a collection of responses."""
    n = sum(s.n_tokens for s in scored)
    return math.exp(sum(s.nll for s in scored) / n) if n else float("nan")


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95% Student-t interval (0 for one value).

    t, not the normal 1.96: with the 3 seeds of a toy run the normal interval would be 2.2x too
    narrow (t_0.975 with 2 degrees of freedom is 4.30).
    """
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    if n == 1:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, float(stats.t.ppf(0.975, n - 1)) * math.sqrt(var / n)


# --- from per-split, per-seed accuracies to the numbers tables and figures show ------------------
# Utility of a (stream, loss) = Avg@k averaged over evaluation splits (the paper's mean over its
# benchmarks), computed per seed; the headline is the mean over seeds with a 95% interval.


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
    row = cast("pd.Series[float]", util.loc[(stream, loss)])  # a full key of the index: one row
    return float(row["mean"]), float(row["ci95"]), int(row["n_seeds"])


def base_utility(accuracy: pd.DataFrame) -> tuple[float, float]:
    u = cast("pd.Series[float]", utility(accuracy).loc[("base", "none")])  # one row, as in lookup
    return float(u["mean"]), float(u["ci95"])


def fmt(mean: float, ci: float, n: int) -> str:
    """'12.3 ± 1.4' when there are several seeds, '12.3' otherwise."""
    if math.isnan(mean):  # pd.isna narrows a float to Never in pandas-stubs
        return "n/a"
    return f"{mean:.2f} ± {ci:.2f}" if n > 1 else f"{mean:.2f}"


# --- intervals over problems (and seeds) for the figures -----------------------------------------
# A Student-t interval over seeds gives a one-seed run no error bar at all, and with three noisy
# seeds it can reach below 0 %. A percentile bootstrap over the evaluation problems does neither:
# every replicate is itself an accuracy, so the interval stays inside [0, 100].

BOOTSTRAP_SAMPLES = 2000  # replicates: the 2.5/97.5 percentiles move by ~0.1 point between seeds


def problem_accuracy(accuracy: pd.DataFrame, graded_dir: Path, purpose: str = "main") -> pd.DataFrame:
    """Per-problem accuracy of every model of `purpose` (and the base SLM) from the graded rows
    `graded_dir/<model>/<split>.jsonl` that notebook 05 writes: columns stream, loss, seed, split,
    id, correct (% of the problem's k samples graded correct). Each (model, split) must reproduce
    its Avg@k in `accuracy` (eval/accuracy.csv): a stale or foreign graded file is an error."""
    from paradox.io import read_jsonl

    acc = accuracy[accuracy["purpose"].isin([purpose, "base"])]
    frames = []
    for r in acc.to_dict("records"):
        model, split = str(r["model"]), str(r["split"])
        path = graded_dir / model / f"{split}.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{path}: graded samples of {model} on {split} (written by notebook 05)")
        rows = pd.DataFrame(read_jsonl(path), columns=["id", "correct"])
        per = (100.0 * rows.groupby("id")["correct"].mean()).rename("correct").reset_index()
        got = float(per["correct"].mean()) if len(per) else float("nan")
        want = float(r["avg_at_k"])
        if not math.isclose(got, want, abs_tol=1e-6):
            raise ValueError(
                f"{path}: Avg@k {got:.4f} from the graded rows, but eval/accuracy.csv says {want:.4f} "
                f"for {model} on {split}: the graded rows are not the ones 05 scored (rerun 05)"
            )
        frames.append(
            per.assign(stream=str(r["stream"]), loss=str(r["loss"]), seed=int(r["seed"]), split=split)
        )
    cols = ["stream", "loss", "seed", "split", "id", "correct"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def bootstrap_utility(
    per_problem: pd.DataFrame, seed: int, n_boot: int = BOOTSTRAP_SAMPLES, level: float = 0.95
) -> pd.DataFrame:
    """Utility (Avg@k averaged over splits, then over seeds; as `utility`) of every (stream, loss)
    in `problem_accuracy(...)`, with a percentile bootstrap interval: rows (stream, loss), columns
    mean, lo, hi, n_seeds, n_problems.

    Each of `n_boot` replicates resamples, with replacement, the problems of every split (one draw
    per split, shared by all models: comparisons between streams are paired) and, with several
    seeds, the seeds; its utility is the mean over the drawn seeds of the mean over splits of the
    mean over the drawn problems. The interval is the central `level` of the replicates (clipped
    to contain the observed mean), so it lies within [0, 100] and a one-seed run has one too.
    Deterministic for a given `seed` (`params.seed`)."""
    if per_problem.empty:
        return pd.DataFrame(columns=["mean", "lo", "hi", "n_seeds", "n_problems"])
    rng = np.random.default_rng(seed)
    splits = sorted(per_problem["split"].unique())
    ids = {sp: np.sort(per_problem.loc[per_problem["split"] == sp, "id"].unique()) for sp in splits}
    # problem weights per replicate: multinomial counts over the split's problems, divided by n
    weights = {
        sp: rng.multinomial(len(ids[sp]), np.full(len(ids[sp]), 1 / len(ids[sp])), n_boot) / len(ids[sp])
        for sp in splits
    }
    seed_weights: dict[int, np.ndarray] = {}
    rows = []
    for (stream, loss), g in per_problem.groupby(["stream", "loss"], sort=True):
        seeds = sorted(g["seed"].unique())
        per_split = []  # [n_seeds, n_boot] per split, and the observed [n_seeds] means
        observed = []
        for sp in splits:
            wide = g[g["split"] == sp].pivot_table(index="seed", columns="id", values="correct")
            if wide.shape[0] != len(seeds) or list(wide.columns) != list(ids[sp]) or wide.isna().any().any():
                raise ValueError(
                    f"{stream}/{loss} on split {sp}: graded problems differ from the other models' "
                    f"({wide.shape[1]} of {len(ids[sp])} problems, {wide.shape[0]} of {len(seeds)} seeds)"
                )
            a = wide.loc[seeds].to_numpy()  # [n_seeds, n_problems]
            per_split.append(a @ weights[sp].T)
            observed.append(a.mean(axis=1))
        per_seed = np.mean(per_split, axis=0)  # [n_seeds, n_boot]: mean over splits
        m = len(seeds)
        if m not in seed_weights:
            seed_weights[m] = (
                np.ones((n_boot, 1)) if m == 1 else rng.multinomial(m, np.full(m, 1 / m), n_boot) / m
            )
        # a weighted mean of values in [0, 100]; the clip only removes float rounding (100.00000000000001)
        reps = np.clip(np.einsum("bs,sb->b", seed_weights[m], per_seed), 0.0, 100.0)
        mean = float(np.mean(observed))
        lo, hi = np.percentile(reps, [50 * (1 - level), 50 * (1 + level)])
        rows.append(
            {
                "stream": stream,
                "loss": loss,
                "mean": mean,
                "lo": min(float(lo), mean),
                "hi": max(float(hi), mean),
                "n_seeds": m,
                "n_problems": sum(len(ids[sp]) for sp in splits),
            }
        )
    return pd.DataFrame(rows).set_index(["stream", "loss"])


def interval(boot: pd.DataFrame, stream: str, loss: str) -> tuple[float, float, float]:
    """(mean, lo, hi) of one (stream, loss) in `bootstrap_utility(...)`; nans if it was not run."""
    if (stream, loss) not in boot.index:
        return float("nan"), float("nan"), float("nan")
    row = cast("pd.Series[float]", boot.loc[(stream, loss)])
    return float(row["mean"]), float(row["lo"]), float(row["hi"])
