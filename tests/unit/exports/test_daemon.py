"""handlers.Handlers.sync, one object's daemon step on kopf's loop: when it looks at its task, and when it sleeps on."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits.aioenums import AsyncFlagWaiter, FlagSetter

from rds_export_operator.aws.rds import Rds
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
    import threading
    import time

    from rds_export_operator.exports import handlers as module

    handlers = Handlers(settings.parse([], environ={}), Rds(), Metrics())
    release = threading.Event()
    body = kopf.Body({"metadata": {"uid": "u1", "name": "n", "namespace": "ns"}, "spec": {}, "status": {}})

    def slow_report(body: kopf.Body, look: Any) -> Any:
        release.wait(10)
        return {"tablesSummary": "1/1"}, [], lambda: None

    handlers.report_with = slow_report
    module.FIRST_REPORT_BUDGET, budget = 0.2, module.FIRST_REPORT_BUDGET

    async def run() -> tuple[list[Any], float, float]:
        began = time.monotonic()
        answers = await asyncio.gather(
            *(handlers._report_with(body, {}) for _ in range(module.FIRST_REPORT_THREADS + 2))
        )
        waited = time.monotonic() - began
        began = time.monotonic()
        await asyncio.to_thread(lambda: None)  # a daemon's look is not held up
        return list(answers), waited, time.monotonic() - began

    try:
        answers, waited, other = asyncio.run(run())
    finally:
        module.FIRST_REPORT_BUDGET = budget
        release.set()
    assert answers == [None] * (module.FIRST_REPORT_THREADS + 2)  # too slow, or no thread free: the timer reads it
    assert waited < 2.0 and other < 0.5
    handlers._report_threads.shutdown(wait=True)
    assert handlers._reporting.acquire(blocking=False)  # every thread's place was given back
