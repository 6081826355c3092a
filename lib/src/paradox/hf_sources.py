"""Problem sources backed by Hugging Face `datasets`: NuminaMath-CoT for training, the paper's
benchmarks for evaluation. Every dataset maps to the one `Problem` record through a spec
(hub id, config, split, revision, field names) that lives in params.

The gold answer becomes one string, `paradox.answers.canonical_gold`: a field's value as
published (MATH-500's bare LaTeX, AMC23's float `27.0` -> "27", OlympiadBench's list
`["$69$", "$84$"]` -> "69, 84", a set of answers), the last `\\boxed{}` of a solution
(NuminaMath-CoT), or the number of GSM8K's last `#### N` line, thousands separators dropped.

Offline, the same loader reads a local copy (`local_path`: a JSON/JSONL/Parquet file or a
directory saved with `save_to_disk`), which is also how the tests exercise it.
"""

from __future__ import annotations

import numbers
import re
from typing import TYPE_CHECKING, Any

from paradox.answers import canonical_gold
from paradox.paths import resolve
from paradox.problems import Problem

if TYPE_CHECKING:
    from paradox.params import DatasetSpec

BOXED = re.compile(r"\\boxed\s*\{")
GSM8K_ANSWER = re.compile(r"^[ \t]*####\s*(.+?)\s*$", re.MULTILINE)
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} in `text`, braces balanced; None if there is none."""
    starts = [m.end() for m in BOXED.finditer(text or "")]
    if not starts:
        return None
    i, depth = starts[-1], 1
    out: list[str] = []
    while i < len(text):
        c = text[i]
        depth += (c == "{") - (c == "}")
        if depth == 0:
            return "".join(out).strip()
        out.append(c)
        i += 1
    return None  # unbalanced: no answer rather than half of one


def gold_answer(
    row: dict[str, Any], answer_field: str | None, answer_from: str, solution_field: str | None, where: str
) -> str | None:
    """The gold final answer of a row as one string, by the spec's rule; None if it has none."""
    if answer_from == "field":
        value = row[answer_field]  # type: ignore[index]  # the schema requires the field
        _check_type(value, f"{where} field '{answer_field}'", list_ok=True)
        return canonical_gold(value)
    if answer_from == "boxed_in_solution":
        value = row[solution_field]  # type: ignore[index]  # the schema requires the field
        _check_type(value, f"{where} field '{solution_field}'")
        return canonical_gold(last_boxed(value)) if value else None
    if answer_from == "gsm8k_hash":
        value = row[answer_field]  # type: ignore[index]  # the schema requires the field
        _check_type(value, f"{where} field '{answer_field}'")
        found = GSM8K_ANSWER.findall(value or "")
        return canonical_gold(THOUSANDS.sub("", found[-1])) if found else None
    raise ValueError(f"{where}: unknown answer_from {answer_from!r}")


def _check_type(value: Any, where: str, list_ok: bool = False) -> None:
    """A field holding something no gold can be read from is a wrong spec, not a missing answer."""
    ok = value is None or isinstance(value, str | numbers.Real) and not isinstance(value, bool)
    if list_ok and isinstance(value, list | tuple):
        ok = all(isinstance(v, str | numbers.Real) and not isinstance(v, bool) for v in value)
    if not ok:
        raise TypeError(f"{where}: cannot read a gold answer from {type(value).__name__} {str(value)[:80]!r}")


def load_rows(spec: DatasetSpec, name: str) -> list[dict[str, Any]]:
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


def to_problems(rows: list[dict[str, Any]], spec: DatasetSpec, name: str) -> list[Problem]:
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
        out.append(
            Problem(
                id=str(pid),
                question=str(row[spec.question_field]).strip(),
                answer=answer,
                reference_solution=_text(row[spec.solution_field]) if spec.solution_field else "",
                source=name,
            )
        )
    if skipped:
        print(f"dataset '{name}': skipped {skipped} of {len(rows)} rows without a gold answer")
    return out


def _text(value: Any) -> str:
    """A solution field as text (OlympiadBench publishes its solutions as a list)."""
    if isinstance(value, list | tuple):
        return "\n\n".join(str(v).strip() for v in value if v is not None)
    return "" if value is None else str(value).strip()


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
