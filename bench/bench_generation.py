"""Generation speed of the HF backend: static vs growing (dynamic) KV cache, as a ratio in one run.

Usage: .venv/bin/python bench/bench_generation.py [--model runs/toy/world/slm.json] [--repeats 3]
Uses the toy SLM that `make paper` built (or any local checkpoint), toy test prompts, k=4,
temperature 1.0. Prints tokens/s per variant and the speed ratio against the dynamic cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from paradox.io import read_jsonl
from paradox.models import load_model


def run(model, tok, prompts: list[str], cache: str | None, k: int, max_new: int) -> tuple[float, int]:
    torch.manual_seed(0)
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    t0 = time.perf_counter()
    out = model.generate(
        **enc,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new,
        num_return_sequences=k,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        cache_implementation=cache,
    )
    seconds = time.perf_counter() - t0
    new = out[:, enc["input_ids"].shape[1] :]
    return seconds, int((new != tok.pad_token_id).sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="runs/toy/world/slm.json")
    ap.add_argument("--problems", default="runs/toy/world/test.jsonl")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    path = json.loads(Path(a.model).read_text())["path"] if a.model.endswith(".json") else a.model
    model, tok = load_model(path)
    prompts = [f"Question: {p['question']}\nAnswer:\n" for p in read_jsonl(a.problems)[: a.batch]]
    results = {}
    for name, cache in (("dynamic", None), ("static", "static")):
        run(model, tok, prompts[:4], cache, a.k, 8)  # warm-up
        times, toks = zip(
            *(run(model, tok, prompts, cache, a.k, a.max_new_tokens) for _ in range(a.repeats)), strict=True
        )
        results[name] = (statistics.median(times), toks[0])
    base = results["dynamic"][1] / results["dynamic"][0]
    print(
        f"{len(prompts)} prompts x k={a.k}, max_new_tokens={a.max_new_tokens}, {torch.get_num_threads()} threads"
    )
    for name, (sec, n) in results.items():
        print(
            f"{name:8s} {sec:6.2f} s  {n / sec:8.0f} generated tokens/s  ratio vs dynamic {n / sec / base:.2f}x"
        )


if __name__ == "__main__":
    main()
