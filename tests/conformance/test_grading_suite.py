"""The grading conformance suite (grading_cases.yaml): the grader against the expected verdicts,
and against the independent reference grader (the field's normalise-then-math_equal practice).

Golds go through the paper profile's dataset specs exactly as a real run reads them
(paradox.hf_sources.gold_answer), so the suite covers the loader and the grader together.
`pytest -s` prints the agreement per benchmark group."""

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from paradox import reference_grader
from paradox.grading import grade_many
from paradox.hf_sources import gold_answer
from paradox.params import load_params
from paradox.reference_grader import reference_grade

HERE = Path(__file__).parent
DOCS = HERE.parents[1] / "docs" / "grader.md"
GROUPS = ("math500", "minerva", "aime24", "amc23", "olympiadbench", "gsm8k", "numina")
DATASET_OF = {"numina": "train"}
# Cases where the grader's verdict differs from the right one, and why (docs/grader.md, "Limits").
KNOWN_GRADER_ERRORS = {
    "olympiadbench-049": "\\pm inside tuples, (0, \\pm 2), is not expanded into two pairs",
}


@pytest.fixture(scope="module")
def suite():
    cases = yaml.safe_load((HERE / "grading_cases.yaml").read_text())
    params = load_params("paper-qwen2.5-math-1.5b")
    for c in cases:
        spec = params.datasets[DATASET_OF.get(c["group"], c["group"])]
        field = spec.solution_field if spec.answer_from == "boxed_in_solution" else spec.answer_field
        c["answer"] = gold_answer(
            {field: c["gold"]}, spec.answer_field, spec.answer_from, spec.solution_field, c["id"]
        )
    verdicts = grade_many([(c["output"], c["answer"], c.get("truncated", False)) for c in cases], workers=1)
    for c, v in zip(cases, verdicts, strict=True):
        c["grader"] = v
        c["reference"] = reference_grade(
            c["output"], c["answer"], benchmark=c["group"], truncated=c.get("truncated", False)
        )
    return cases


def test_suite_shape(suite):
    assert len(suite) >= 300
    ids = [c["id"] for c in suite]
    assert len(set(ids)) == len(ids)
    per_group = defaultdict(int)
    for c in suite:
        assert c["group"] in GROUPS and isinstance(c["expected"], bool) and c["note"], c["id"]
        assert c["answer"], f"{c['id']}: the loader found no gold in {c['gold']!r}"
        per_group[c["group"]] += 1
    assert all(per_group[g] >= 25 for g in GROUPS), dict(per_group)
    negatives = sum(not c["expected"] for c in suite)
    assert negatives >= 100  # hard negatives: look-alike answers that differ


def test_grader_matches_every_expected_verdict(suite):
    rows = []
    for g in GROUPS:
        cs = [c for c in suite if c["group"] == g]
        rows.append(
            (
                g,
                len(cs),
                sum(c["grader"] == c["expected"] for c in cs),
                sum(c["reference"] == c["expected"] for c in cs),
                sum(c["grader"] == c["reference"] for c in cs),
            )
        )
    print(f"\n{'group':14s} {'cases':>5s} {'grader':>8s} {'reference':>9s} {'grader=ref':>10s}")
    for g, n, a, r, gr in rows:
        print(f"{g:14s} {n:5d} {100 * a / n:7.1f}% {100 * r / n:8.1f}% {100 * gr / n:9.1f}%")
    wrong = {c["id"]: (c["expected"], c["note"]) for c in suite if c["grader"] != c["expected"]}
    assert set(wrong) == set(KNOWN_GRADER_ERRORS), {
        k: v for k, v in wrong.items() if k not in KNOWN_GRADER_ERRORS
    }


def test_every_disagreement_with_the_reference_is_explained_in_the_docs(suite):
    """docs/grader.md has a table row (case id first) for each case where the two graders differ."""
    documented = set(re.findall(r"^\|\s*`?([a-z0-9]+-\d{3})`?\s*\|", DOCS.read_text(), re.MULTILINE))
    differ = {c["id"] for c in suite if c["grader"] != c["reference"]}
    assert differ, "the reference grader is expected to differ somewhere (e.g. answer order)"
    assert not differ - documented, f"disagreements missing from {DOCS.name}: {sorted(differ - documented)}"
    assert not documented - differ, (
        f"rows in {DOCS.name} that no longer disagree: {sorted(documented - differ)}"
    )


def test_reference_grader_cli(tmp_path, capsys):
    problems = tmp_path / "problems.jsonl"
    problems.write_text(
        json.dumps({"id": "p1", "answer": "[1,3]"})
        + "\n"
        + json.dumps({"id": "p2", "answer": "6 - 5i"})
        + "\n"
    )
    samples = tmp_path / "graded.jsonl"
    rows = [
        {"id": "p1", "text": "so \\boxed{[1, 3]}", "correct": True},
        {"id": "p1", "text": "so \\boxed{(1, 3)}", "correct": False},  # the practice ignores brackets
        {"id": "p2", "text": "so \\boxed{6-5i}", "correct": True},
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "differ.jsonl"
    assert (
        reference_grader.main([str(samples), "--gold-from", str(problems), "--disagreements", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "3 samples, 3 correct by the reference" in printed and "agreement with 'correct': 2/3" in printed
    [d] = [json.loads(line) for line in out.read_text().splitlines()]
    assert d["text"] == "so \\boxed{(1, 3)}" and d["reference_verdict"] is True and d["gold"] == "[1,3]"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"output": "x"}) + "\n")
    with pytest.raises(SystemExit, match=r"bad.jsonl row 1: no field 'text'"):
        reference_grader.main([str(bad)])
