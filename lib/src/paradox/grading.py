"""One grader for every stage: math-verify's `verify(parse(gold), parse(pred))`, gold first.

Empty, truncated or unparseable output is graded wrong; nothing the model writes can raise.
"""

from __future__ import annotations

import logging

from math_verify import parse, verify

log = logging.getLogger(__name__)


def grade(completion: str | None, gold: str, *, truncated: bool = False, timeout_s: float = 5.0) -> bool:
    """True iff the completion's final answer equals `gold` (math-verify's notion of equality).

    `timeout_s` bounds parsing and verification each (math-verify's own time limits).
    """
    if truncated or not completion or not completion.strip():
        return False
    seconds = max(1, round(timeout_s))
    try:
        pred = parse(completion, parsing_timeout=seconds)
        if not pred:
            return False
        return bool(verify(parse(gold, parsing_timeout=seconds), pred, timeout_seconds=seconds))
    except Exception as err:  # math-verify can raise on pathological input: that is a wrong answer
        log.debug("grading failed (%s); graded wrong", err)
        return False
