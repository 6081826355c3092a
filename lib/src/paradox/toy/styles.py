"""The toy world's three notations for the same arithmetic chain.

- native: the SLM's own wording, loose plain-language scaffolding, one step per line, with
  natural variation (several phrasings per step, drawn at random);
- oracle: the Oracle's dense symbolic notation (LaTeX inline math, named quantities n_i,
  boxed answer), the "syntactic compaction" the paper observed;
- dataset: the reference solutions' own style (GSM8K-like calculator annotations, `#### n`).

`chain` below is the toy `Problem.meta` dict (start, ops, values, name, pron, item).
"""

from __future__ import annotations

import random
from typing import Any

Chain = dict[str, Any]

NATIVE_INTRO = ["{Name} has {a} {item}.", "{Name} starts with {a} {item}.", "At first {name} has {a} {item}."]
NATIVE_STEP = {
    "+": [
        "Then {pron} gets {b} more, so {pron} has {x} + {b} = {y} {item}.",
        "After getting {b} more, {name} has {x} + {b} = {y} {item}.",
        "{Pron} gets {b} more. Now {pron} has {x} + {b} = {y} {item}.",
    ],
    "-": [
        "Then {pron} loses {b}, so {pron} has {x} - {b} = {y} {item}.",
        "After losing {b}, {name} has {x} - {b} = {y} {item}.",
        "{Pron} loses {b}. Now {pron} has {x} - {b} = {y} {item}.",
    ],
    "*": [
        "Then it is {b} times as many, so {pron} has {x} * {b} = {y} {item}.",
        "After that {name} has {x} * {b} = {y} {item}.",
        "It is {b} times as many. Now {pron} has {x} * {b} = {y} {item}.",
    ],
}
NATIVE_FINAL = ["The answer is {y}.", "So the answer is {y}."]

ORACLE_OP = {"+": "+", "-": "-", "*": "\\times"}
DATASET_STEP = {
    "+": "After getting {b} more, {name} has {x}+{b}=<<{x}+{b}={y}>>{y} {item}.",
    "-": "After losing {b}, {name} has {x}-{b}=<<{x}-{b}={y}>>{y} {item}.",
    "*": "With {b} times as many, {name} has {x}*{b}=<<{x}*{b}={y}>>{y} {item}.",
}


def _fill(chain: Chain) -> dict[str, str]:
    return {
        "name": chain["name"],
        "Name": chain["name"],
        "pron": chain["pron"],
        "Pron": chain["pron"].capitalize(),
        "item": chain["item"],
    }


def steps_of(chain: Chain) -> list[tuple[int, str, int, int]]:
    """The chain as (x, op, b, y) equations, in order."""
    vals = chain["values"]
    return [(vals[i], op, b, vals[i + 1]) for i, (op, b) in enumerate(chain["ops"])]


# --- native (the SLM's wording) -------------------------------------------------------------


def native_intro(chain: Chain, variant: int = 0) -> str:
    return NATIVE_INTRO[variant].format(a=chain["start"], **_fill(chain))


def native_step(chain: Chain, step: tuple[int, str, int, int], variant: int = 0) -> str:
    x, op, b, y = step
    return NATIVE_STEP[op][variant].format(x=x, b=b, y=y, **_fill(chain))


def native_final(y: int | str, variant: int = 0) -> str:
    return NATIVE_FINAL[variant].format(y=y)


def render_native(chain: Chain, rng: random.Random) -> str:
    lines = [native_intro(chain, rng.randrange(len(NATIVE_INTRO)))]
    lines += [native_step(chain, s, rng.randrange(3)) for s in steps_of(chain)]
    lines.append(native_final(chain["values"][-1], rng.randrange(len(NATIVE_FINAL))))
    return "\n".join(lines)


# --- oracle (dense symbolic notation) -------------------------------------------------------


def oracle_intro(chain: Chain) -> str:
    return f"Let \\( n_0 = {chain['start']} \\)."


def oracle_step(index: int, step: tuple[int, str, int, int]) -> str:
    x, op, b, y = step
    o = ORACLE_OP[op]
    return f"\\( n_{index + 1} = n_{index} {o} {b} = {x} {o} {b} = {y} \\)"


def oracle_final(y: int | str) -> str:
    return f"Therefore, the answer is \\( \\boxed{{{y}}} \\)."


def render_oracle(chain: Chain) -> str:
    lines = [oracle_intro(chain)] + [oracle_step(i, s) for i, s in enumerate(steps_of(chain))]
    return "\n".join([*lines, oracle_final(chain["values"][-1])])


def render_synthesized(chain: Chain) -> str:
    """The Oracle solving from scratch, in its own order: givens, one expression, evaluation."""
    steps = steps_of(chain)
    changes = ", ".join(f"{ORACLE_OP[op]} {b}" for op, b in chain["ops"])
    expr = str(chain["start"])
    for op, b in chain["ops"]:
        expr = f"({expr} {ORACLE_OP[op]} {b})"
    lines = [
        f"Let \\( N \\) be the number of {chain['item']}.",
        f"Given \\( N_0 = {chain['start']} \\) and the changes \\( {changes} \\) in order,",
        f"\\( N = {expr[1:-1]} \\).",
        *[f"\\( {x} {ORACLE_OP[op]} {b} = {y} \\)" for x, op, b, y in steps],
        f"\\( \\boxed{{{chain['values'][-1]}}} \\)",
    ]
    return "\n".join(lines)


# --- dataset (reference solutions) ----------------------------------------------------------


def render_dataset(chain: Chain) -> str:
    lines = [DATASET_STEP[op].format(x=x, b=b, y=y, **_fill(chain)) for x, op, b, y in steps_of(chain)]
    return "\n".join([*lines, f"#### {chain['values'][-1]}"])
