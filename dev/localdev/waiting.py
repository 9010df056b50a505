"""Waiting on a condition with a deadline: the only way tests, demo and bench synchronise (never bare sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(AssertionError):
    pass


def wait_until(
    check: Callable[[], T | bool | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    max_interval: float = 1.0,
) -> T:
    """Call ``check`` until it returns something truthy and return that; fail after ``timeout`` seconds.

    The pause between checks grows from ``interval`` to ``max_interval``; it paces the polling, the deadline
    is what bounds it. Exceptions raised by ``check`` propagate (a dead process should fail fast).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = check()
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)
