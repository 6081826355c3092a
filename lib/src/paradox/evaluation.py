"""Sampling, grading and scoring a model: the shared step of notebooks 00 (the toy SLM's greedy
check), 01 (the SLM's samples for rejection sampling) and 05 (utility of every model).

Utility is Avg@k (`metrics.avg_at_k`): k samples per problem at the evaluation temperature,
graded by the one grader (`grading.grade_many`), the mean over samples and then over problems.
Samples are stored by the weights' fingerprint, so two runs with identical weights share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from paradox import backends
from paradox.generation import Completion, SamplingSettings, sample_sharded
from paradox.grading import grade, grade_many
from paradox.io import read_csv, read_jsonl, write_jsonl
from paradox.metrics import avg_at_k, perplexity, response_nll
from paradox.models import check_local_model, model_fingerprint
from paradox.params import Params
from paradox.paths import RunPaths, display
from paradox.problems import Problem
from paradox.protocols import Generator
from paradox.training.runs import RunSpec, keeps_checkpoints

LC_COLUMNS = ["stream", "loss", "seed", "step", "split", "avg_at_k"]


def truncated_share(rows: Sequence[Mapping[str, Any]]) -> float:
    """% of samples that ran into the token limit without stopping (graded wrong); nan for none."""
    return 100 * sum(r["truncated"] for r in rows) / len(rows) if rows else float("nan")


def grade_rows(
    rows: list[dict[str, Any]],
    problems: Sequence[Problem],
    *,
    grade_workers: int | None,
    grade_timeout_s: float,
    desc: str,
) -> list[dict[str, Any]]:
    """Grade sampled rows {id, text, truncated, ...} against their problems' gold answers, in
    place (`correct`); a truncated sample is wrong. Returns the rows."""
    gold = {p.id: p.answer for p in problems}
    verdicts = grade_many(
        [(r["text"], gold[r["id"]], r["truncated"]) for r in rows],
        workers=grade_workers,
        timeout_s=grade_timeout_s,
        desc=desc,
    )
    for r, ok in zip(rows, verdicts, strict=True):
        r["correct"] = ok
    return rows


def sample_and_grade(
    gen: Generator,
    model_key: str,
    problems: Sequence[Problem],
    prompts: Sequence[str],
    settings: SamplingSettings,
    out_dir: Path,
    batch_size: int,
    *,
    grade_workers: int | None,
    grade_timeout_s: float,
    desc: str,
    grade_desc: str,
) -> list[dict[str, Any]]:
    """`settings.n` samples per problem through `sample_sharded` (shards under `out_dir`, resumable),
    each graded against its problem's gold answer: rows {id, sample, text, truncated, correct}."""
    rows = sample_sharded(
        gen, model_key, [p.id for p in problems], prompts, settings, out_dir, batch_size, desc=desc
    )
    return grade_rows(
        rows, problems, grade_workers=grade_workers, grade_timeout_s=grade_timeout_s, desc=grade_desc
    )


@dataclass(frozen=True)
class SplitScore:
    avg_at_k: float  # %
    truncated_share: float  # % of samples cut by eval.max_new_tokens


def evaluate(
    params: Params,
    paths: RunPaths,
    model_path: str,
    tag: str,
    seed: int,
    splits: Mapping[str, Sequence[Problem]],
) -> dict[str, SplitScore]:
    """Avg@k of one model on each split, sampling with `seed` (eval settings); the graded rows
    land in eval/graded/<tag>/<split>.jsonl. One model in memory at a time: the generator is
    closed before returning (a vLLM engine claims most of the GPU)."""
    e = params.eval
    check_local_model(model_path, params.slm.gguf_file)  # a missing run: name it, not a hub-id error
    fingerprint = model_fingerprint(model_path)
    gen = backends.generator(params, model_path, e.batch_size, paths, purpose="eval")
    scores: dict[str, SplitScore] = {}
    for split, probs in splits.items():
        prompts = [backends.format_prompt(params, p.question, gen.tok) for p in probs]  # type: ignore[attr-defined]
        settings = SamplingSettings(e.k, e.temperature, e.top_p, e.max_new_tokens, seed)
        rows = sample_and_grade(
            gen,
            fingerprint,
            probs,
            prompts,
            settings,
            paths.eval / "samples" / f"{fingerprint}-s{seed}" / split,
            e.batch_size,
            grade_workers=e.grade_workers,
            grade_timeout_s=e.grade_timeout_s,
            desc=f"{tag}/{split}",
            grade_desc=f"grading {tag}/{split}",
        )
        write_jsonl(paths.eval / "graded" / tag / f"{split}.jsonl", rows)
        where = f"{tag}/{split} (samples under {display(paths.eval / 'samples' / f'{fingerprint}-s{seed}' / split)})"
        scores[split] = SplitScore(avg_at_k(rows, [p.id for p in probs], e.k, where), truncated_share(rows))
    gen.close()
    return scores


def accuracy_table(
    params: Params, paths: RunPaths, splits: Mapping[str, Sequence[Problem]], runs: Sequence[RunSpec]
) -> pd.DataFrame:
    """eval/accuracy.csv: one row per (model, split), the base SLM once per seed (purpose "base",
    loss "none") and then every fine-tuned run, with Avg@k, the truncated share and k. A model
    samples with its run's seed, so models at one seed see the same random numbers."""
    rows: list[dict[str, Any]] = []
    common = {"k": params.eval.k}
    base = backends.slm_path(params, paths)
    for seed in params.train.seeds:
        tag = f"base-s{seed}"
        for split, sc in evaluate(params, paths, base, tag, seed, splits).items():
            rows.append(
                {
                    "model": tag,
                    "stream": "base",
                    "loss": "none",
                    "seed": seed,
                    "learning_rate": 0.0,
                    "batch_size": 0,
                    "purpose": "base",
                    "split": split,
                    "avg_at_k": sc.avg_at_k,
                    "truncated_share": sc.truncated_share,
                    "n_problems": len(splits[split]),
                    **common,
                }
            )
    for r in tqdm(runs, desc="models"):
        for split, sc in evaluate(params, paths, str(paths.models / r.name), r.name, r.seed, splits).items():
            rows.append(
                {
                    "model": r.name,
                    **{k: v for k, v in r.to_dict().items() if k != "name"},
                    "split": split,
                    "avg_at_k": sc.avg_at_k,
                    "truncated_share": sc.truncated_share,
                    "n_problems": len(splits[split]),
                    **common,
                }
            )
    return pd.DataFrame(rows)


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])  # checkpoint-<step>


def learning_curve_table(
    params: Params,
    paths: RunPaths,
    accuracy: pd.DataFrame,
    runs: Sequence[RunSpec],
    splits: Mapping[str, Sequence[Problem]],
) -> pd.DataFrame:
    """eval/learning_curves.csv: Avg@k per (run, step, split) on `learning_curve.splits` for the
    runs that keep checkpoints. Step 0 is the base SLM at the first seed and the last step the
    final model (both read from `accuracy`); the checkpoints between are evaluated here."""
    kept = [r for r in runs if keeps_checkpoints(params, r)]
    if not kept:  # learning curves off: `learning_curve.splits` need not be evaluation splits
        return pd.DataFrame([], columns=LC_COLUMNS)
    missing = [s for s in params.learning_curve.splits if s not in splits]
    if missing:
        raise ValueError(
            f"learning_curve.splits {missing} are not among the evaluation splits {sorted(splits)} "
            "(eval.splits); the learning curves are evaluated on those"
        )
    lc_splits = {s: splits[s] for s in params.learning_curve.splits}
    max_steps_of = read_csv(paths.models / "runs.csv").set_index("name")["max_steps"]
    seed0 = params.train.seeds[0]
    base_scores = accuracy[(accuracy["model"] == f"base-s{seed0}")].set_index("split")["avg_at_k"]
    rows: list[dict[str, Any]] = []
    for r in kept:
        final = accuracy[accuracy["model"] == r.name].set_index("split")["avg_at_k"]
        points = {0: {s: base_scores[s] for s in lc_splits}}
        for ckpt in sorted((paths.models / r.name / "checkpoints").iterdir(), key=_step):
            scores = evaluate(params, paths, str(ckpt), f"{r.name}/{ckpt.name}", r.seed, lc_splits)
            points[_step(ckpt)] = {s: sc.avg_at_k for s, sc in scores.items()}
        points[int(max_steps_of[r.name])] = {s: final[s] for s in lc_splits}
        for step, scores_ in sorted(points.items()):
            for split, v in scores_.items():
                rows.append(
                    {
                        "stream": r.stream,
                        "loss": r.loss,
                        "seed": r.seed,
                        "step": step,
                        "split": split,
                        "avg_at_k": v,
                    }
                )
    return pd.DataFrame(rows, columns=LC_COLUMNS)


def perplexity_table(
    model: Any, tokenizer: Any, streams: Sequence[str], paths: RunPaths, token_budget: int
) -> pd.DataFrame:
    """eval/perplexity.csv: each stream's training traces scored under `model` (the base SLM),
    token-weighted over response tokens: columns stream, ppl, n_tokens, n_traces."""
    rows: list[dict[str, Any]] = []
    for stream in tqdm(streams, desc="streams"):
        traces = read_jsonl(paths.stream(stream))
        scored = response_nll(
            model,
            tokenizer,
            [r["prompt"] for r in traces],
            [r["completion"] for r in traces],
            token_budget=token_budget,
            desc=stream,
        )
        rows.append(
            {
                "stream": stream,
                "ppl": perplexity(scored),
                "n_tokens": sum(s.n_tokens for s in scored),
                "n_traces": len(traces),
            }
        )
    return pd.DataFrame(rows)


def greedy_accuracy(
    gen: Generator,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    seed: int,
) -> tuple[float, list[Completion]]:
    """(% correct, completions) of one greedy completion per prompt, in batches of `batch_size`,
    nothing stored: the quick check of a model (notebook 00)."""
    outs: list[list[Completion]] = []
    for start in range(0, len(prompts), batch_size):
        outs += gen.generate(
            prompts[start : start + batch_size], SamplingSettings(1, 0.0, 1.0, max_new_tokens, seed)
        )
    correct = [grade(o[0].text, a, truncated=o[0].truncated) for o, a in zip(outs, answers, strict=True)]
    return 100 * sum(correct) / len(correct), [o[0] for o in outs]
