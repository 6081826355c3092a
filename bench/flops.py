"""The FLOP limit of a machine and of a model, so that a measured tokens/s becomes a ratio.

`matmul_flops` measures what this machine's torch does on a large square matmul (the best case
for its BLAS: the ceiling no model step can beat). `forward_flops_per_token` counts a decoder's
matmul work per token the usual way (Kaplan et al. 2020): 2 x the weights of every linear layer
(the LM head included) plus 2 x layers x context x width for attention scores and their weighted
sum. Training costs 3x forward (forward + the two matmuls of backward). Dividing gives the
FLOP-bound tokens/s; a bench reports achieved / bound.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch


def matmul_flops(
    n: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> float:
    """FLOP/s of an n x n x n matmul on `device` (median of `repeats` timed calls after a warm-up)."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def linear_weights(model: Any) -> int:
    """Weights that a token multiplies: every nn.Linear, and the LM head once even when it is tied
    to the input embedding (a lookup, not a matmul)."""
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings()
    if head is not None and not isinstance(head, torch.nn.Linear):
        n += head.weight.numel()
    return n


def forward_flops_per_token(model: Any, context: float) -> float:
    """Forward FLOPs for one token attending to `context` positions."""
    c = model.config
    return 2 * linear_weights(model) + 2 * c.num_hidden_layers * context * c.hidden_size


def report(name: str, tokens: int, seconds: float, flops_per_token: float, machine: float) -> str:
    achieved = tokens / seconds
    bound = machine / flops_per_token
    return (
        f"{name:34s} {achieved:10.0f} tok/s   FLOP-bound {bound:10.0f} tok/s   "
        f"achieved/bound {achieved / bound:6.1%}   ({tokens} tokens in {seconds:.1f} s)"
    )
