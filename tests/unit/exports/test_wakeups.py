"""wakeups.py: a wake from a thread reaches a waiting coroutine; none is lost when it comes first."""

from __future__ import annotations

import asyncio
import threading

from rds_export_operator.exports.wakeups import Wakeups


def test_a_wake_from_a_thread_ends_the_wait() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        wakeups = Wakeups()
        wakeups.bind(asyncio.get_running_loop())
        threading.Timer(0.05, wakeups.wake, args=(["u1"],)).start()
        woken = await wakeups.wait("u1", 5)
        wakeups.wake(["u2"])  # before anyone waits: kept
        await asyncio.sleep(0)  # let the loop run the thread-safe callback
        early = await wakeups.wait("u2", 5)
        idle = await wakeups.wait("u3", 0.05)  # nobody wakes it: the wait times out
        return woken, early, idle

    assert asyncio.run(scenario()) == (True, True, False)


def test_forgotten_objects_hold_nothing() -> None:
    async def scenario() -> int:
        wakeups = Wakeups()
        wakeups.bind(asyncio.get_running_loop())
        wakeups.wake(["a", "b"])
        await asyncio.sleep(0)
        wakeups.forget("a")
        wakeups.forget("b")
        await asyncio.sleep(0)
        return len(wakeups)

    assert asyncio.run(scenario()) == 0


def test_a_stopped_daemon_stops_waiting_at_once() -> None:
    async def scenario() -> tuple[bool, float]:
        wakeups = Wakeups()
        wakeups.bind(asyncio.get_running_loop())
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[bool] = loop.create_future()
        loop.call_later(0.05, stopped.set_result, True)  # kopf stops the daemon: its object finished
        began = loop.time()
        woken = await wakeups.wait("u1", 30, stopped)
        return woken, loop.time() - began

    woken, waited = asyncio.run(scenario())
    assert not woken and waited < 5  # not the 30 s sleep
