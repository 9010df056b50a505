"""handlers.Handlers.sync, one object's daemon step on kopf's loop: when it looks at its task, and when it sleeps on."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits.aioenums import AsyncFlagWaiter, FlagSetter

from rds_export_operator.aws.rds import Rds
from rds_export_operator.exports import handlers as handlers_module
from rds_export_operator.exports.handlers import Handlers, _Looks
from rds_export_operator.exports.reconcile import Result
from rds_export_operator.runtime import settings
from rds_export_operator.runtime.metrics import Metrics

FINISHED = {"status": "COMPLETE", "conditions": [{"type": "Complete", "status": "True"}]}


def step(handlers: Handlers, body: kopf.Body, *, wake: bool) -> bool:
    """One call of the daemon, its last write (FINISHED) not in ``body`` yet: did it look?"""
    looked: list[str] = []

    def look(snapshot: kopf.Body, patch: kopf.Patch, attempt: int) -> Result:
        looked.append(snapshot.metadata.uid or "")
        return Result()

    handlers._look = look  # type: ignore[method-assign]

    async def run() -> None:
        handlers.wakeups.bind(asyncio.get_running_loop())
        if wake:
            handlers.wakeups.wake(["u1"])
            await asyncio.sleep(0)  # the wake is delivered through the loop, as from the poller's thread
        stopped: AsyncFlagWaiter[Any] = AsyncFlagWaiter(FlagSetter())  # as kopf gives async daemons
        with pytest.raises(kopf.TemporaryError):
            await handlers.sync(body=body, patch=kopf.Patch(), uid="u1", stopped=stopped)

    asyncio.run(run())
    return bool(looked)


def test_a_daemon_whose_finishing_write_kopf_has_not_shown_yet_does_not_look_again() -> None:
    """Adopting 5,000 objects at once, kopf's queue of watch events fell more than the safety net's sleep (10
    intervals) behind: every daemon woke before kopf stopped it, looked at the body from before its own finishing
    write and looked its task up again (4,185 of 5,000 identifiers twice). A wake-up from the poller still looks,
    and so does the safety net once kopf stays behind for ten of them (a write that never shows)."""
    handlers = Handlers(settings.parse([], environ={}), Rds(), Metrics())
    handlers.own_write_wait = 0.0  # kopf is behind: the write will not show
    body = kopf.Body({"metadata": {"uid": "u1", "name": "n", "namespace": "ns"}, "spec": {}, "status": {}})
    handlers._looks["u1"] = _Looks(sleep=0.01, written=dict(FINISHED))
    assert not step(handlers, body, wake=False)  # the safety net's wake-up: kopf will stop this daemon
    assert step(handlers, body, wake=True)  # the poller's: news about the task

    handlers._looks["u1"] = _Looks(sleep=0.01, written=dict(FINISHED))
    assert [step(handlers, body, wake=False) for _ in range(11)] == [False] * 10 + [True]

    handlers._looks["u1"] = _Looks(sleep=0.01, written={"status": "IN_PROGRESS"})
    assert step(handlers, body, wake=False)  # an unfinished object's safety net looks, as ever


def test_a_stopped_daemon_or_a_deletion_gives_up_the_place_in_the_export_queue() -> None:
    """Issue 23, attack 3: kopf stops the daemon when deletion begins, and a finalizer of someone else's can keep the
    DELETED event from coming for ever: the queue must not wait for it."""
    handlers = Handlers(settings.parse([], environ={}), Rds(), Metrics())
    slots, scope = handlers.gateway.slots, ("", "us-east-1")
    for uid in ("u1", "u2"):
        assert not slots.want(scope, uid, "2026-12-04T10:00:00Z", 5, "ns")

    async def run() -> None:
        handlers.wakeups.bind(asyncio.get_running_loop())
        setter: FlagSetter[Any] = FlagSetter()
        setter.set()  # kopf stops the daemon
        body = kopf.Body({"metadata": {"uid": "u1", "name": "n", "namespace": "ns"}, "spec": {}, "status": {}})
        await handlers.sync(body=body, patch=kopf.Patch(), uid="u1", stopped=AsyncFlagWaiter(setter))
        meta = {"uid": "u2", "name": "m", "namespace": "ns", "deletionTimestamp": "2026-12-04T10:01:00Z"}
        status = {"status": "QUEUED"}
        deleting = kopf.Body({"metadata": meta, "spec": {}, "status": status})
        await handlers.track(
            event={"type": "MODIFIED", "object": dict(deleting)},
            uid="u2",
            status=deleting.status,
            spec=deleting.spec,
            meta=deleting.metadata,
            body=deleting,
            patch=kopf.Patch(),
        )

    asyncio.run(run())
    assert slots.state("u1") is None and slots.state("u2") is None and slots.waiting() == 0


def test_a_first_looks_table_report_waits_at_most_its_budget_on_threads_of_its_own() -> None:
    """Review: S3 reads for first looks ran on the loop's default threads (6 on 2 cores), which every daemon's look
    uses too, and for as long as S3 took; the look's write waited on them (an edit meanwhile refused it)."""
    handlers = Handlers(settings.parse([], environ={}), Rds(), Metrics())
    release = threading.Event()
    body = kopf.Body({"metadata": {"uid": "u1", "name": "n", "namespace": "ns"}, "spec": {}, "status": {}})

    def report(body: kopf.Body, look: Any) -> Any:
        if look.get("slow"):
            release.wait(10)
        return {"tablesSummary": "1/1"}, [], lambda: None

    handlers.report_with = report
    budget, handlers_module.FIRST_REPORT_BUDGET = handlers_module.FIRST_REPORT_BUDGET, 0.2
    threads = handlers_module.FIRST_REPORT_THREADS

    async def run() -> None:
        quick = await asyncio.gather(*(handlers._report_with(body, {}) for _ in range(3 * threads)))
        assert all(answer is not None for answer in quick)  # more than the threads: they wait their turn
        began = time.monotonic()
        slow = await asyncio.gather(*(handlers._report_with(body, {"slow": True}) for _ in range(threads + 2)))
        assert slow == [None] * (threads + 2)  # too slow, or no thread in time: the timer reads them
        assert time.monotonic() - began < 2.0
        began = time.monotonic()
        await asyncio.to_thread(lambda: None)  # a daemon's look is not held up meanwhile
        assert time.monotonic() - began < 0.5
        release.set()
        slots = handlers._report_slots
        assert slots is not None
        deadline = time.monotonic() + 5
        while slots._value < threads:  # every overrun read gives its thread back when it ends
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    try:
        asyncio.run(run())
    finally:
        handlers_module.FIRST_REPORT_BUDGET = budget
        release.set()
        handlers._report_threads.shutdown(wait=True)
