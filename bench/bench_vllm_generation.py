"""Generation speed: VLLMGenerator against HFGenerator on the same model, as a ratio in one run.

Usage (the vLLM environment has both backends):
  VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python bench/bench_vllm_generation.py \
      --model runs/toy/world/slm.json --problems runs/toy/world/test.jsonl [--repeats 3] [--eager]
Both backends go through the `Generator` interface the pipeline uses, with the same prompts and
SamplingSettings (k samples at temperature 1.0). Generated tokens are counted by encoding the
completions again with the model's tokenizer (EOS not counted), the same count for both.
Prints seconds and tokens/s per backend and the ratio vLLM / HF. Engine start-up is reported
apart and not in the ratio. On vLLM's CPU build the engine needs VLLM_CPU_KVCACHE_SPACE (GiB).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from paradox.generation import HFGenerator, SamplingSettings
from paradox.io import read_jsonl
from paradox.params import VLLMEngine
from paradox.protocols import Generator


def timed(gen: Generator, tok, prompts: list[str], s: SamplingSettings) -> tuple[float, int]:
    t0 = time.perf_counter()
    outs = gen.generate(prompts, s)
    seconds = time.perf_counter() - t0
    texts = [c.text for cs in outs for c in cs]
    return seconds, sum(len(x) for x in tok(texts, add_special_tokens=False)["input_ids"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--model", default="runs/toy/world/slm.json", help="checkpoint dir, or the toy world's slm.json"
    )
    ap.add_argument("--problems", default="runs/toy/world/test.jsonl")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eager", action="store_true", help="vLLM without torch.compile (faster start-up)")
    a = ap.parse_args()
    path = a.model
    if path.endswith(".json"):  # the toy world's pointer; its path is relative to the repository root
        path = json.loads(Path(path).read_text())["path"]
    prompts = [f"Question: {p['question']}\nAnswer:\n" for p in read_jsonl(a.problems)[: a.batch]]
    s = SamplingSettings(n=a.k, temperature=1.0, top_p=1.0, max_new_tokens=a.max_new_tokens, seed=0)

    from paradox.vllm_backend import VLLMGenerator  # after argparse: --help works without vLLM

    t0 = time.perf_counter()
    vllm_gen = VLLMGenerator.from_pretrained(path, VLLMEngine(enforce_eager=a.eager), dtype="float32")
    startup = time.perf_counter() - t0
    hf_gen = HFGenerator.from_pretrained(path, batch_size=len(prompts))
    tok = hf_gen.tok
    results = {}
    for name, gen in (("hf", hf_gen), ("vllm", vllm_gen)):
        gen.generate(prompts[:4], SamplingSettings(a.k, 1.0, 1.0, 8, 0))  # warm-up
        runs = [timed(gen, tok, prompts, s) for _ in range(a.repeats)]
        sec = statistics.median(t for t, _ in runs)
        results[name] = (sec, statistics.median(n for _, n in runs))
    vllm_gen.close()
    print(
        f"{len(prompts)} prompts x k={a.k}, max_new_tokens={a.max_new_tokens}, median of {a.repeats}; "
        f"vLLM engine start-up {startup:.1f} s (eager={a.eager}, not in the ratio)"
    )
    rate = {name: n / sec for name, (sec, n) in results.items()}
    for name, (sec, n) in results.items():
        print(f"{name:5s} {sec:7.2f} s  {n:7.0f} tokens  {rate[name]:8.0f} generated tokens/s")
    print(f"ratio vllm / hf: {rate['vllm'] / rate['hf']:.2f}x")


if __name__ == "__main__":  # vLLM spawns processes that re-import this file
    main()
