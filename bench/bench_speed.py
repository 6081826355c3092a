"""Toy evaluation generation and toy fine-tuning: achieved tokens/s against the FLOP-bound tokens/s
of this machine, measured in the same run.

Usage (after `make paper`, which builds the toy SLM and its streams):
  .venv/bin/python bench/bench_speed.py [--profile toy] [--repeats 3]
  VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python bench/bench_speed.py --backend vllm --skip training

Generation: the pipeline's own generator (`backends.generator`, purpose "eval") on the profile's
eval settings (k samples per problem, eval.max_new_tokens, eval.batch_size) over the test split;
`--backend vllm` swaps in vLLM's offline engine (`eval.backend: vllm`; in `.venv-vllm` on a CPU,
the `vllm-cpu` build) on the same model, prompts and settings.
Training: `sft_train` on the SLM-RFT stream with the profile's train settings and DFT loss, one
run as 04 makes it. Tokens are the real ones (generated tokens; prompt + completion tokens per
example seen), never padding. The machine's FLOP rate is a large fp32 matmul timed in this
process (`flops.matmul_flops`); a model's FLOPs per token are counted by `flops`. The ratio
achieved / bound is what to compare between machines and commits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from flops import forward_flops_per_token, matmul_flops, report  # noqa: E402

from paradox import backends  # noqa: E402
from paradox.generation import SamplingSettings  # noqa: E402
from paradox.io import read_jsonl  # noqa: E402
from paradox.models import load_model  # noqa: E402
from paradox.params import load_params  # noqa: E402
from paradox.paths import RunPaths  # noqa: E402
from paradox.tokenization import SequenceEncoder  # noqa: E402
from paradox.training.trainer import TrainSettings, sft_train, steps_for  # noqa: E402


def bench_generation(params, paths: RunPaths, slm: str, machine: float, repeats: int) -> str:
    e = params.eval
    problems = backends.problem_source(params, paths).load("test")
    gen = backends.generator(params, slm, e.batch_size, paths, purpose="eval")
    tok = gen.tok  # type: ignore[attr-defined]
    prompts = [backends.format_prompt(params, p.question, tok) for p in problems]
    s = SamplingSettings(e.k, e.temperature, e.top_p, e.max_new_tokens, params.seed)
    gen.generate(prompts[:4], SamplingSettings(e.k, e.temperature, e.top_p, 8, 0))  # warm-up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = [gen.generate(prompts[i : i + e.batch_size], s) for i in range(0, len(prompts), e.batch_size)]
        seconds = time.perf_counter() - t0
        texts = [c.text for batch in outs for cs in batch for c in cs]
        new = [len(x) for x in tok(texts, add_special_tokens=False)["input_ids"]]
        runs.append((seconds, sum(new), statistics.mean(new)))
    seconds = statistics.median(r[0] for r in runs)
    tokens, mean_new = runs[0][1], runs[0][2]
    prompt_len = statistics.mean(len(SequenceEncoder(tok).prompt(p)) for p in prompts)
    model = getattr(gen, "model", None) or load_model(slm)[0]  # (vLLM's engine holds no HF model)
    per_token = forward_flops_per_token(model, prompt_len + mean_new / 2)
    name = f"generation ({params.eval_backend}, {len(prompts)}x{e.k})"
    return report(name, tokens, seconds, per_token, machine)


def bench_training(params, paths: RunPaths, slm: str, machine: float) -> str:
    rows = read_jsonl(paths.streams / "slm_rft.jsonl")
    model, tok = load_model(slm)
    t = params.train
    s = TrainSettings(
        loss_type="dft",
        learning_rate=t.learning_rate,
        batch_size=t.batch_size,
        grad_accum=1,
        max_steps=steps_for(len(rows), t.batch_size, t.epochs),
        max_length=t.max_length,
        seed=params.seed,
        logging_steps=t.logging_steps,
    )
    enc = SequenceEncoder(tok)
    lengths = [sum(len(x) for x in (enc.prompt(r["prompt"]), enc.completion(r["completion"]))) for r in rows]
    seen = s.max_steps * s.batch_size / len(rows)  # passes over the rows
    tokens = round(sum(lengths) * seen)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sft_train(model, tok, rows, Path(tmp) / "run", s)
        wall = time.perf_counter() - t0
        info = json.loads((Path(tmp) / "run" / "train_info.json").read_text())
    per_token = 3 * forward_flops_per_token(model, statistics.mean(lengths) / 2)
    return "\n".join(
        [
            report(
                f"training, trainer.train ({s.max_steps} steps)", tokens, info["seconds"], per_token, machine
            ),
            report("training, whole run (setup, save)", tokens, wall, per_token, machine),
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="toy")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", choices=["generation", "training"], action="append", default=[])
    ap.add_argument("--backend", choices=["hf", "vllm"], help="eval backend (default: the profile's)")
    a = ap.parse_args()
    params = load_params(a.profile)
    if a.backend:
        params = params.model_copy(update={"eval": params.eval.model_copy(update={"backend": a.backend})})
    paths = RunPaths(a.profile, Path(a.runs_dir))
    slm = backends.slm_path(params, paths)
    machine = matmul_flops()
    print(
        f"profile {a.profile}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"machine: fp32 1024^3 matmul {machine / 1e9:.0f} GFLOP/s (median of 20)"
    )
    if "generation" not in a.skip:
        print(bench_generation(params, paths, slm, machine, a.repeats))
    if "training" not in a.skip:
        print(bench_training(params, paths, slm, machine))


if __name__ == "__main__":
    main()
