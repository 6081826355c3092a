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

import torch
from scipy import stats
from tqdm.auto import tqdm


def avg_at_k(rows: Sequence[dict]) -> float:
    """Rows {id, correct}; several per id. Mean over ids of the per-id mean, in percent."""
    per: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        per[r["id"]].append(bool(r["correct"]))
    if not per:
        return float("nan")
    return 100.0 * sum(sum(v) / len(v) for v in per.values()) / len(per)


@dataclass(frozen=True)
class TraceNLL:
    nll: float  # summed over response tokens
    n_tokens: int
    token_nll: list[float]  # per response token, in order
    token_ids: list[int] = field(default_factory=list)  # the response tokens themselves


@torch.inference_mode()
def response_nll(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32,
                 desc: str = "scoring") -> list[TraceNLL]:
    """NLL of each response given its prompt. Prompt and response are tokenized separately and
    concatenated (as SFTTrainer does for prompt/completion data), so the response's tokens are
    exactly those the model is trained on."""
    device = model.device
    out: list[TraceNLL] = []
    pad = tokenizer.pad_token_id
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        ps, rs = prompts[start:start + batch_size], responses[start:start + batch_size]
        p_ids = tokenizer(list(ps), add_special_tokens=False)["input_ids"]
        r_ids = tokenizer(list(rs), add_special_tokens=False)["input_ids"]
        seqs = [a + b for a, b in zip(p_ids, r_ids, strict=True)]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: positions stay 0..n-1 for every row
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        tok_nll = -logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1).cpu()
        for i, (a, b) in enumerate(zip(p_ids, r_ids, strict=True)):
            # token t is predicted at position t-1; response tokens sit at len(a) .. len(a)+len(b)-1
            vals = tok_nll[i, len(a) - 1:len(a) + len(b) - 1].tolist() if b else []
            out.append(TraceNLL(float(sum(vals)), len(vals), vals, list(b)))
    return out


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
