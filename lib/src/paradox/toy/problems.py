"""Templated multi-step arithmetic word problems: the toy world's dataset.

A problem is a chain: a starting quantity, then a few operations (+, -, x) applied in order.
The chain lives in `Problem.meta`, so the Oracle, the validator and the reward rubric can
check any trace against it; the question text is what the SLM sees.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from paradox.problems import Problem
from paradox.toy import styles

NAMES = [
    ("Tom", "he"),
    ("Ana", "she"),
    ("Ravi", "he"),
    ("Mia", "she"),
    ("Leo", "he"),
    ("Zoe", "she"),
    ("Omar", "he"),
    ("Lena", "she"),
    ("Sam", "he"),
    ("Iris", "she"),
]


@dataclass(frozen=True)
class Story:
    item: str
    intro: str  # {name} {a} {item}
    add: str  # {pron} {b} {item}
    sub: str
    mul: str
    ask: str


STORIES = [
    Story(
        "apples",
        "{name} has {a} {item}.",
        "Then {pron} buys {b} more {item}.",
        "Then {pron} gives {b} {item} to a friend.",
        "Then {pron} ends up with {b} times as many {item}.",
        "How many {item} does {name} have now?",
    ),
    Story(
        "stickers",
        "{name} collects {a} {item}.",
        "Next {pron} wins {b} more {item}.",
        "Next {pron} loses {b} {item}.",
        "Next {pron} trades them for {b} times as many {item}.",
        "How many {item} does {name} have at the end?",
    ),
    Story(
        "coins",
        "{name} keeps {a} {item} in a jar.",
        "Later {pron} adds {b} {item} to the jar.",
        "Later {pron} takes {b} {item} out of the jar.",
        "Later the number of {item} becomes {b} times as large.",
        "How many {item} are in the jar now?",
    ),
    Story(
        "books",
        "{name} owns {a} {item}.",
        "After that {pron} receives {b} new {item}.",
        "After that {pron} donates {b} {item}.",
        "After that {pron} has {b} times as many {item}.",
        "How many {item} does {name} own now?",
    ),
    Story(
        "marbles",
        "{name} starts the day with {a} {item}.",
        "At noon {pron} finds {b} {item}.",
        "At noon {pron} drops {b} {item}.",
        "At noon {pron} gets {b} times as many {item}.",
        "How many {item} does {name} have in the evening?",
    ),
]


def apply(op: str, x: int, b: int) -> int:
    return {"+": x + b, "-": x - b, "*": x * b}[op]


def make_chain(
    rng: random.Random, n_ops: int, max_operand: int, max_value: int
) -> tuple[int, list[tuple[str, int]], list[int]]:
    """Start in [2, max_operand]; +/- operands in [1, max_operand]; x by 2 or 3; every value in
    [1, max_value], so the numbers stay short."""
    start = rng.randint(2, max_operand)
    ops: list[tuple[str, int]] = []
    values = [start]
    for _ in range(n_ops):
        x = values[-1]
        choices = (
            (["+"] if x < max_value else [])
            + (["-"] if x > 1 else [])
            + (["*"] if 2 * x <= max_value else [])
        )
        op = rng.choice(choices)
        if op == "*":
            b = rng.randint(2, min(3, max_value // x))
        elif op == "-":
            b = rng.randint(1, min(max_operand, x - 1))
        else:
            b = rng.randint(1, min(max_operand, max_value - x))
        ops.append((op, b))
        values.append(apply(op, x, b))
    return start, ops, values


def make_problem(
    rng: random.Random, pid: str, source: str, n_ops: int, max_operand: int, max_value: int
) -> Problem:
    story = rng.randrange(len(STORIES))
    name, pron = rng.choice(NAMES)
    start, ops, values = make_chain(rng, n_ops, max_operand, max_value)
    meta = {
        "story": story,
        "name": name,
        "pron": pron,
        "item": STORIES[story].item,
        "start": start,
        "ops": [list(o) for o in ops],
        "values": values,
    }
    s = STORIES[story]
    fill = {"name": name, "pron": pron, "item": s.item}
    sentences = [s.intro.format(a=start, **fill)]
    for op, b in ops:
        template = {"+": s.add, "-": s.sub, "*": s.mul}[op]
        sentences.append(template.format(b=b, **fill))
    sentences.append(s.ask.format(**fill))
    question = " ".join(sentences)
    return Problem(
        id=pid,
        question=question,
        answer=str(values[-1]),
        reference_solution=styles.render_dataset(meta),
        source=source,
        meta=meta,
    )


def build_splits(
    seed: int,
    sizes: dict[str, int],
    ops: tuple[int, int],
    max_operand: int,
    max_value: int,
    hard_ops: tuple[int, int],
    hard_max_operand: int,
    hard_max_value: int,
) -> dict[str, list[Problem]]:
    """Disjoint splits (no question text appears twice across them), fully determined by `seed`.

    `sizes` maps split name to count; the split named 'hard' uses the harder settings.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[Problem]] = {}
    for split, n in sizes.items():
        lo, hi, mx, cap = (
            (*hard_ops, hard_max_operand, hard_max_value)
            if split == "hard"
            else (*ops, max_operand, max_value)
        )
        rows: list[Problem] = []
        attempts = 0
        while len(rows) < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise RuntimeError(f"could not draw {n} distinct '{split}' problems; widen the ranges")
            p = make_problem(rng, f"{split}-{len(rows):05d}", split, rng.randint(lo, hi), mx, cap)
            if p.question in seen:
                continue
            seen.add(p.question)
            rows.append(p)
        out[split] = rows
    return out
