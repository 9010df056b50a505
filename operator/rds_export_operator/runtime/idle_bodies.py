"""Finished objects cost almost nothing: drop kopf's copy of the body of every object no daemon or timer runs for.

kopf keeps the last body of every object of a resource that has daemons or timers (``live_fresh_body``, for its
daemons to read), whether or not one runs for the object, and frees it only when a daemon exits for good. Ours
stop by their filters (the object finished, its table report is final), so kopf would keep about 20 KiB per
finished object for as long as the object exists: most of the operator's memory at 1,000s of objects.

With no daemon running, nobody reads that body: kopf sets a fresh one before it spawns the next daemon, in the
same synchronous step (``processing.process_spawning_cause``), so clearing it between events is safe. This leans
on kopf internals, as ``spawning`` does (kopf pinned at 1.45.2; tests/unit/test_idle_bodies.py runs it against
kopf's own memory classes).
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kopf._core.reactor.inventory import ResourceMemories

EVERY = 10.0  # seconds; a sweep over 10,000 objects takes a few milliseconds


def release(memories: ResourceMemories) -> int:
    """Drop the kept body of every object without a running daemon or timer; how many were dropped."""
    released = 0
    for memory in memories.iter_all_daemon_memories():
        if memory.live_fresh_body is not None and not memory.running_daemons:
            memory.live_fresh_body = None
            released += 1
    return released


async def keep_releasing(memories: ResourceMemories, every: float = EVERY) -> None:
    """``release`` every ``every`` seconds, on kopf's loop (between events), until cancelled."""
    while True:
        await asyncio.sleep(every)
        release(memories)


def register(registry: kopf.OperatorRegistry, memories: ResourceMemories) -> None:
    """Sweep ``memories`` (the ones given to ``kopf.run``) while the operator runs."""
    tasks: list[asyncio.Task[None]] = []

    async def start(**_: Any) -> None:
        tasks.append(asyncio.get_running_loop().create_task(keep_releasing(memories)))

    async def stop(**_: Any) -> None:
        for task in tasks:
            task.cancel()

    kopf.on.startup(registry=registry, id="release-idle-bodies")(start)
    kopf.on.cleanup(registry=registry, id="release-idle-bodies")(stop)
