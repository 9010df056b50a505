"""Fakes the unit tests share: a clock the test moves by hand."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Clock(Generic[T]):
    """Call it for the time; assign (or add to) ``now`` to move it. ``T``: float seconds or a datetime."""

    def __init__(self, now: T) -> None:
        self.now = now

    def __call__(self) -> T:
        return self.now
