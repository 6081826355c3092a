"""Problem sources backed by Hugging Face `datasets`: NuminaMath-CoT for training, the paper's
benchmarks for evaluation. Every dataset maps to the one `Problem` record through a spec
(hub id, config, split, revision, field names) that lives in params.

Offline, the same loader reads a local copy (`local_path`: a JSON/JSONL/Parquet file or a
directory saved with `save_to_disk`), which is also how the tests exercise it.
"""

from __future__ import annotations

import re
from typing import Any

from paradox.paths import resolve
from paradox.problems import Problem

BOXED = re.compile(r"\\boxed\s*\{")
GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} in `text`, braces balanced; None if there is none."""
    starts = [m.end() for m in BOXED.finditer(text or "")]
    if not starts:
        return None
    i, depth, out = starts[-1], 1, []
    while i < len(text):
        c = text[i]
        depth += (c == "{") - (c == "}")
        if depth == 0:
            return "".join(out).strip()
        out.append(c)
        i += 1
    return None  # unbalanced: no answer rather than half of one


def gold_answer(row: dict[str, Any], answer_field: str | None, answer_from: str, solution_field: str | None,
                where: str) -> str | None:
    """The gold final answer of a row, by the spec's rule."""
    if answer_from == "field":
        value = row[answer_field]  # type: ignore[index]
        if isinstance(value, list):  # OlympiadBench stores a list of final answers
            value = value[0] if value else None
        return None if value is None else str(value).strip()
    if answer_from == "boxed_in_solution":
        return last_boxed(row[solution_field])  # type: ignore[index]
    if answer_from == "gsm8k_hash":
        m = GSM8K_ANSWER.search(row[answer_field])  # type: ignore[index]
        return m.group(1).replace(",", "") if m else None
    raise ValueError(f"{where}: unknown answer_from {answer_from!r}")


def load_rows(spec, name: str) -> list[dict[str, Any]]:
    """The dataset's rows, from a local copy when `spec.local_path` is set, else from the hub."""
    import datasets

    if spec.local_path:
        path = resolve(spec.local_path)  # relative to the project root, wherever the kernel runs
        if not path.exists():
            raise FileNotFoundError(f"dataset '{name}': local_path {path} does not exist")
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
            ds = ds[spec.split] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            fmt = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}[path.suffix]
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train")
    else:
        ds = datasets.load_dataset(spec.hub_id, spec.config, split=spec.split, revision=spec.revision)
    return list(ds)


def to_problems(rows: list[dict[str, Any]], spec, name: str) -> list[Problem]:
    """Map rows to Problems; a row without a usable answer is skipped and counted, never guessed."""
    needed = [f for f in (spec.question_field, spec.answer_field, spec.solution_field, spec.id_field) if f]
    if rows:
        missing = [f for f in needed if f not in rows[0]]
        if missing:
            raise KeyError(f"dataset '{name}': no field(s) {missing}; fields are {sorted(rows[0])}")
    out: list[Problem] = []
    skipped = 0
    for i, row in enumerate(rows):
        where = f"dataset '{name}' row {i}"
        answer = gold_answer(row, spec.answer_field, spec.answer_from, spec.solution_field, where)
        if not answer:
            skipped += 1
            continue
        pid = f"{name}-{row[spec.id_field] if spec.id_field else i}"
        out.append(Problem(id=str(pid), question=str(row[spec.question_field]).strip(), answer=answer,
                           reference_solution=str(row[spec.solution_field]).strip() if spec.solution_field else "",
                           source=name))
    if skipped:
        print(f"dataset '{name}': skipped {skipped} of {len(rows)} rows without a gold answer")
    return out


class HFProblemSource:
    """Problem source over named dataset specs (params `datasets`): `load(name)`."""

    def __init__(self, specs: dict[str, Any], seed: int) -> None:
        self.specs, self.seed = specs, seed

    def load(self, split: str) -> list[Problem]:
        if split not in self.specs:
            raise KeyError(f"no dataset named '{split}' in params (datasets: {sorted(self.specs)})")
        spec = self.specs[split]
        problems = to_problems(load_rows(spec, split), spec, split)
        if spec.limit is not None and spec.limit < len(problems):
            import random

            problems = random.Random(self.seed).sample(problems, spec.limit)
        return problems
