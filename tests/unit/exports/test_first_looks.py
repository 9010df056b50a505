"""first_looks.FirstLooks: new objects' first looks by a bounded pool, parked (not holding a worker) while an answer
comes with a wake-up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rds_export_operator.exports.first_looks import FirstLooks


class Script:
    """A look that records what it saw and answers from a list per uid (None: done; a number: look again)."""

    def __init__(self, answers: dict[str, list[float | None]]) -> None:
        self.answers, self.seen = answers, []  # type: ignore[var-annotated]
        self.running = 0
        self.most = 0
        self.gate: asyncio.Event | None = None
        self.changed = asyncio.Event()  # set at each look's start and end

    async def look(self, item: dict[str, Any]) -> float | None:
        self.running += 1
        self.most = max(self.most, self.running)
        self.changed.set()
        try:
            self.seen.append((item["uid"], item.get("v", 0)))
            if self.gate is not None:
                await self.gate.wait()
            return self.answers[item["uid"]].pop(0)
        finally:
            self.running -= 1
            self.changed.set()


async def until(script: Script, done: Callable[[], bool]) -> None:
    """Wait for ``done`` with a deadline, woken by each look's start and end (no sleeps)."""
    async with asyncio.timeout(5):
        while not done():
            script.changed.clear()
            await script.changed.wait()


async def settled(pool: FirstLooks, script: Script, looks: int) -> None:
    """Until ``looks`` looks were made and none is running (a deadline, not a sleep: the loop's own steps)."""
    await until(script, lambda: len(script.seen) >= looks and not script.running)


def test_a_burst_is_looked_at_by_at_most_the_workers_and_each_object_once() -> None:
    script = Script({f"u{i}": [None] for i in range(50)})

    async def run() -> None:
        pool = FirstLooks(script.look, workers=4)
        for i in range(50):
            pool.offer(f"u{i}", {"uid": f"u{i}"})
            pool.offer(f"u{i}", {"uid": f"u{i}", "v": 1})  # a newer body before its look: one look, of it
        await settled(pool, script, 50)
        assert len(pool) == 0
        pool.stop()

    asyncio.run(run())
    assert sorted(script.seen) == sorted((f"u{i}", 1) for i in range(50))
    assert script.most <= 4


def test_a_parked_object_holds_no_worker_and_is_looked_at_again_when_woken() -> None:
    script = Script({"u1": [60.0, None], "u2": [None]})

    async def run() -> None:
        pool = FirstLooks(script.look, workers=1)
        pool.offer("u1", {"uid": "u1"})
        await settled(pool, script, 1)
        pool.offer("u2", {"uid": "u2"})  # the only worker is free: u1 waits parked, not in it
        await settled(pool, script, 2)
        pool.offer("u1", {"uid": "u1", "v": 2})  # a newer body while parked: kept for the next look, no look now
        await asyncio.sleep(0)
        assert len(script.seen) == 2
        pool.wake(["u1", "unknown"])
        await settled(pool, script, 3)
        assert len(pool) == 0
        pool.stop()

    asyncio.run(run())
    assert script.seen == [("u1", 0), ("u2", 0), ("u1", 2)]


def test_a_wake_during_the_look_is_not_lost() -> None:
    """The answer may come before the look has parked the object: it looks again at once, not after its delay."""
    script = Script({"u1": [60.0, None]})

    async def run() -> None:
        pool = FirstLooks(script.look, workers=1)
        script.gate = asyncio.Event()
        pool.offer("u1", {"uid": "u1"})
        await until(script, lambda: script.running > 0)
        pool.wake(["u1"])
        script.gate.set()
        await settled(pool, script, 2)
        pool.stop()

    asyncio.run(run())
    assert script.seen == [("u1", 0), ("u1", 0)]


def test_a_dropped_object_is_not_looked_at_and_a_newer_body_during_a_look_is() -> None:
    script = Script({"u1": [None, None], "u2": [60.0]})

    async def run() -> None:
        pool = FirstLooks(script.look, workers=1)
        script.gate = asyncio.Event()
        pool.offer("u1", {"uid": "u1"})
        await until(script, lambda: script.running > 0)
        pool.offer("u1", {"uid": "u1", "v": 1})  # our write was refused: a newer body came
        script.gate.set()
        await settled(pool, script, 2)
        assert script.seen[-1] == ("u1", 1)
        pool.offer("u2", {"uid": "u2"})
        await settled(pool, script, 3)
        pool.drop("u2")  # it has a status now (or is gone): its parked wait ends
        pool.wake(["u2"])
        await asyncio.sleep(0)
        assert len(pool) == 0
        pool.stop()

    asyncio.run(run())
    assert script.seen == [("u1", 0), ("u1", 1), ("u2", 0)]
