"""One wall-clock limit around a block of code, for graders whose libraries can hang.

math-verify and sympy can spend unbounded time on a pathological answer. math-verify's own
limits are per step (one for parsing, one per comparison), so one grading call could take a
multiple of the limit; this module puts a single limit around the whole call instead.

It uses SIGALRM (`setitimer`), so it works only in the main thread of a process (where the
notebooks and the workers of `concurrent.futures.ProcessPoolExecutor` run). Elsewhere the block
runs without a limit and `time_limit` yields False, so the caller can say so.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

# After the first alarm the timer keeps firing at this interval until the block is left, so an
# over-broad `except` deep inside a library cannot swallow the limit for good.
REPEAT_S = 0.05

# What signal.signal returns and accepts (typeshed spells it as a private alias).
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class TimeLimitExceeded(BaseException):
    """The block ran past its limit. A BaseException: library code that catches `Exception`
    (math-verify does, around every step) must not swallow it."""


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[bool]:
    """Raise TimeLimitExceeded in the block once `seconds` of wall time have passed.

    Yields True when the limit is armed, False when it cannot be (not the main thread). Any
    timer and SIGALRM handler set before are restored afterwards.
    """
    if not in_main_thread() or not seconds or seconds <= 0:
        yield False
        return
    state = {"armed": True}

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        if state["armed"]:
            raise TimeLimitExceeded(f"time limit of {seconds:g} s exceeded")

    started = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT_S)
    try:
        yield True
    finally:
        while True:  # an alarm landing here, before SIGALRM is blocked, just means "try again"
            try:
                _disarm(state, old_handler, old_delay, old_interval, time.monotonic() - started)
                break
            except TimeLimitExceeded:
                continue


def _disarm(
    state: dict[str, bool], old_handler: _Handler, old_delay: float, old_interval: float, elapsed: float
) -> None:
    """Stop the timer and restore the previous handler and timer.

    SIGALRM is blocked first and a pending alarm consumed, so none can reach the restored
    handler (the default action of SIGALRM would end the process).
    """
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        state["armed"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        if signal.SIGALRM in signal.sigpending():
            signal.sigwait({signal.SIGALRM})
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # someone else's timer was running: give it back, less the time we took
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - elapsed, 1e-3), old_interval)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
