"""The coalesced poller and the export queue, against an in-memory RDS that counts calls."""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from rds_export_operator.api.spec import parse_spec
from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.exports.polling import ACTIVE_FILTER, Poller, phase
from rds_export_operator.exports.reconcile import Reconciler
from unit.fakes import Clock

REGION = "us-east-1"


class FakeRds:
    def __init__(self, *, ignore_filters: bool = False) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.ignore_filters = ignore_filters  # as moto's server and LocalStack: every task, whatever the filter

    def describe_by_status(self, region: str, statuses: list[str], page_size: int = 100, identity: Any = None) -> Any:
        self.calls.append(("page", tuple(statuses)))
        return [dict(t) for t in self.tasks.values() if self.ignore_filters or t["Status"].lower() in statuses]

    def describe_many(self, region: str, identifiers: list[str], identity: Any = None) -> list[dict[str, Any]]:
        self.calls.append(("many", tuple(identifiers)))
        return [dict(self.tasks[i]) for i in identifiers if i in self.tasks]

    def filters_honoured(self, region: str) -> bool:
        return not self.ignore_filters

    def describe(self, region: str, identifier: str, identity: Any = None) -> dict[str, Any] | None:
        self.calls.append(("describe", identifier))
        task = self.tasks.get(identifier)
        return dict(task) if task else None

    def start(self, spec: Any) -> dict[str, Any]:
        self.calls.append(("start", spec.identifier))
        self.tasks[spec.identifier] = {"ExportTaskIdentifier": spec.identifier, "Status": "STARTING"}
        return dict(self.tasks[spec.identifier])

    def cancel(self, region: str, identifier: str, identity: Any = None) -> dict[str, Any]:
        self.calls.append(("cancel", identifier))
        self.tasks[identifier]["Status"] = "CANCELING"
        return dict(self.tasks[identifier])


@pytest.fixture
def rds() -> FakeRds:
    return FakeRds()


@pytest.fixture
def clock() -> Clock[float]:
    return Clock(1000.0)


@pytest.fixture
def poller(rds: FakeRds, clock: Clock) -> Poller:
    return Poller(rds, interval=30, max_concurrent=5, clock=clock, rng=random.Random(1))  # type: ignore[arg-type]


def task(rds: FakeRds, ident: str, status: str) -> None:
    rds.tasks[ident] = {"ExportTaskIdentifier": ident, "Status": status}


def spec(ident: str) -> Any:
    return parse_spec(
        {
            "sourceArn": f"arn:aws:rds:{REGION}:123456789012:snapshot:s",
            "s3BucketName": "b",
            "iamRoleArn": "arn:aws:iam::123456789012:role/r",
            "kmsKeyId": "k",
            "exportTaskIdentifier": ident,
        },
        namespace="n",
        name=ident,
        uid=ident,
        default_region="",
    )


def test_one_page_per_interval_serves_every_active_object(poller: Poller, rds: FakeRds, clock: Clock) -> None:
    for i in range(50):
        task(rds, f"t{i}", "IN_PROGRESS")
    for _ in range(3):
        for i in range(50):
            assert poller.describe(REGION, f"t{i}")["Status"] == "IN_PROGRESS"  # type: ignore[index]
    assert rds.calls == [("page", tuple(ACTIVE_FILTER))]
    clock.now += 30
    poller.describe(REGION, "t0")
    assert [c for c in rds.calls if c[0] == "page"] == [("page", tuple(ACTIVE_FILTER))] * 2


def test_tasks_that_left_the_active_set_are_fetched_in_one_batch(poller: Poller, rds: FakeRds, clock: Clock) -> None:
    for i in range(150):
        task(rds, f"t{i}", "IN_PROGRESS")
    for i in range(150):
        poller.describe(REGION, f"t{i}")
    for i in range(0, 150, 2):
        rds.tasks[f"t{i}"]["Status"] = "COMPLETE"  # half of them finish within the interval
    clock.now += 30
    for i in range(150):
        expected = "COMPLETE" if i % 2 == 0 else "IN_PROGRESS"
        assert poller.describe(REGION, f"t{i}")["Status"] == expected  # type: ignore[index]
    # One page of the active tasks, and the 75 that left it in one batch (the Rds gateway splits per 100).
    assert [c[0] for c in rds.calls] == ["page", "page", "many"]
    assert len(rds.calls[-1][1]) == 75
    for _ in range(2):  # nobody asks about them any more (their objects finished): after one more page, not fetched
        clock.now += 30
        poller.page(REGION)
    assert rds.calls[-1][0] == "page"


def test_a_fresh_start_and_an_unknown_task_cost_no_call_until_the_next_refresh(
    poller: Poller, rds: FakeRds, clock: Clock
) -> None:
    poller.page(REGION)
    poller.start(spec("new"))
    assert poller.describe(REGION, "new")["Status"] == "STARTING"  # type: ignore[index]
    assert poller.describe(REGION, "ghost") is None
    assert poller.describe(REGION, "ghost") is None
    assert rds.calls == [("page", tuple(ACTIVE_FILTER)), ("start", "new"), ("describe", "ghost")]
    clock.now += 30
    assert poller.describe(REGION, "new")["Status"] == "STARTING"  # type: ignore[index]  # now in the page
    assert poller.describe(REGION, "ghost") is None  # asked again in the batch, still unknown: no extra call
    assert ("describe", "new") not in rds.calls
    assert rds.calls[-1] == ("many", ("ghost",))


def test_peek_never_calls_beyond_the_page(poller: Poller, rds: FakeRds) -> None:
    task(rds, "done", "COMPLETE")
    task(rds, "run", "STARTING")
    assert poller.peek(REGION, "done") is None
    assert poller.peek(REGION, "run") is not None
    assert [c[0] for c in rds.calls] == ["page"]


CREATED = {"c": "2026-01-03T00:00:00Z", "a": "2026-01-01T00:00:00Z", "b": "2026-01-02T00:00:00Z"}


def test_queue_starts_oldest_first_within_free_slots(poller: Poller, rds: FakeRds, clock: Clock) -> None:
    for i in range(5):
        task(rds, f"busy{i}", "IN_PROGRESS")  # every slot taken
    for uid in ("c", "b", "a"):
        assert not poller.may_start(REGION, uid, CREATED[uid])
    assert poller.queue_length() == 3
    rds.tasks["busy0"]["Status"] = rds.tasks["busy1"]["Status"] = "COMPLETE"
    clock.now += 30  # the next page: 2 slots free
    assert not poller.may_start(REGION, "c", CREATED["c"])  # c asks first, but a and b are older
    assert poller.may_start(REGION, "a", CREATED["a"])
    poller.start(spec("a"))
    poller.mark_started(REGION, "a", "a")
    poller.release("a")  # status shows a's task: its uid goes, its slot stays counted until a page shows it
    assert not poller.may_start(REGION, "c", CREATED["c"])  # b is still ahead for the last slot
    assert poller.may_start(REGION, "b", CREATED["b"])
    poller.start(spec("b"))
    poller.mark_started(REGION, "b", "b")
    assert not poller.may_start(REGION, "c", CREATED["c"])  # full: 3 running + 2 just started
    assert poller.queue_length() == 1
    clock.now += 30  # the page now shows a and b themselves: still full
    assert not poller.may_start(REGION, "c", CREATED["c"])


def test_filters_ignored_by_the_endpoint_do_not_fill_the_queue(clock: Clock) -> None:
    # Bug (issue 9): an endpoint that ignores the status filter returned finished tasks, which were counted
    # as running exports: with 5 finished tasks nothing ever started again.
    rds = FakeRds(ignore_filters=True)
    for i in range(7):
        task(rds, f"done{i}", "COMPLETE")
    task(rds, "odd", "in_progress")  # lower case, as moto reports it: active all the same
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock)  # type: ignore[arg-type]
    assert poller.page(REGION).running == 1
    for uid in ("a", "b", "c", "d"):
        assert poller.may_start(REGION, uid, CREATED.get(uid, "2026-01-04T00:00:00Z"))
    assert not poller.may_start(REGION, "e", "2026-01-05T00:00:00Z")
    assert poller.describe(REGION, "done3")["Status"] == "COMPLETE"  # type: ignore[index]  # from the page
    assert [c[0] for c in rds.calls] == ["page"]


def test_a_refusal_from_aws_closes_the_queue_until_the_next_page(poller: Poller, rds: FakeRds, clock: Clock) -> None:
    assert poller.may_start(REGION, "x", CREATED["a"])
    poller.limit_reached("x")  # exports started by someone else took the slots
    assert not poller.may_start(REGION, "x", CREATED["a"])
    assert poller.queue_length() == 1
    clock.now += 30
    assert poller.may_start(REGION, "x", CREATED["a"])


def test_cancel_answer_is_used_until_the_next_page(poller: Poller, rds: FakeRds) -> None:
    poller.page(REGION)
    task(rds, "c", "IN_PROGRESS")
    poller.cancel(REGION, "c")
    assert poller.describe(REGION, "c")["Status"] == "CANCELING"  # type: ignore[index]
    assert ("describe", "c") not in rds.calls


def failing_pages(rds: FakeRds, code: str = "Throttling") -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        rds.calls.append(("page", "failed"))
        raise AwsError.of("DescribeExportTasks", code, "Rate exceeded")

    rds.describe_by_status = failing  # type: ignore[method-assign]


def test_a_failed_page_is_shared_instead_of_retried_by_every_object(poller: Poller, rds: FakeRds, clock: Clock) -> None:
    failing_pages(rds)
    for _ in range(20):
        with pytest.raises(AwsError):
            poller.describe(REGION, "x")
    assert rds.calls == [("page", "failed")]
    clock.now += 5
    with pytest.raises(AwsError):
        poller.describe(REGION, "x")
    assert len(rds.calls) == 1  # still backing off


@pytest.mark.parametrize("code", ["Throttling", "InternalFailure", "AccessDenied"])
def test_failing_aws_is_called_no_more_often_than_healthy_aws(rds: FakeRds, clock: Clock, code: str) -> None:
    # Bug (issue 9): after a failed page every object's next tick retried after 5 s: under throttling the shared
    # describe ran about 6x as often as when healthy. Now: backoff from the interval up, per scope.
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock, rng=random.Random(7))  # type: ignore[arg-type]
    failing_pages(rds, code)
    for _ in range(600):  # 10 minutes, 100 objects ticking every second
        for _obj in range(100):
            try:
                poller.describe(REGION, "x")
            except AwsError as error:
                assert error.kind in (ErrorKind.RETRYABLE, ErrorKind.UNAUTHORIZED)
        clock.now += 1
    healthy = 600 / 30
    assert len(rds.calls) <= healthy
    assert len(rds.calls) >= 4  # it does keep trying


def test_a_hanging_region_neither_blocks_nor_starves_another(rds: FakeRds) -> None:
    # Bug (issue 9): the region lock was held across the AWS call, and forget() took every region's lock.
    release = threading.Event()
    entered = threading.Event()
    slow_region = "ap-south-1"
    fast = rds.describe_by_status

    def hanging(region: str, statuses: list[str], page_size: int = 100, identity: Any = None) -> Any:
        if region == slow_region:
            entered.set()
            release.wait(10)
        return fast(region, statuses, page_size)

    rds.describe_by_status = hanging  # type: ignore[method-assign]
    task(rds, "t", "IN_PROGRESS")
    poller = Poller(rds, interval=30, max_concurrent=5, wait_for_page=0.2, threads_per_scope=2)  # type: ignore[arg-type]
    threads = [threading.Thread(target=lambda: _swallow(lambda: poller.page(slow_region))) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert entered.wait(5)
    began = time.monotonic()
    assert poller.describe(REGION, "t") is not None  # another region answers at once
    poller.release("anyone")
    assert poller.may_start(REGION, "u", CREATED["a"])
    assert time.monotonic() - began < 1.0
    with pytest.raises(AwsError) as info:  # the slow region's threads are all busy: no third one is taken
        poller.page(slow_region)
    assert info.value.code in ("RegionBusy", "RefreshPending")
    release.set()
    for thread in threads:
        thread.join(5)
    assert poller.page(slow_region).tasks


def _swallow(fn: Any) -> None:
    with contextlib.suppress(AwsError):
        fn()


def test_waiters_share_one_page_call(rds: FakeRds) -> None:
    gate = threading.Event()
    fast = rds.describe_by_status

    def slow(region: str, statuses: list[str], page_size: int = 100, identity: Any = None) -> Any:
        gate.wait(5)
        return fast(region, statuses, page_size)

    rds.describe_by_status = slow  # type: ignore[method-assign]
    poller = Poller(rds, interval=30, max_concurrent=5, threads_per_scope=8)  # type: ignore[arg-type]
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(poller.page(REGION).running)) for _ in range(6)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == [0] * 6
    assert len(rds.calls) == 1


# -- push, not tick ---------------------------------------------------------------------------------------------------


def test_a_page_wakes_exactly_the_objects_whose_task_changed(rds: FakeRds, clock: Clock) -> None:
    woken: list[str] = []
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock, wake=woken.extend)  # type: ignore[arg-type]
    for i in range(4):
        task(rds, f"t{i}", "IN_PROGRESS")
        poller.watch(f"uid{i}", REGION, f"t{i}")
    poller.page(REGION)
    woken.clear()
    clock.now += 30
    poller.page(REGION)
    assert woken == []  # nothing changed: nobody wakes
    rds.tasks["t1"]["PercentProgress"] = 40
    rds.tasks["t2"]["Status"] = "COMPLETE"  # leaves the active page: fetched by identifier, still a change
    clock.now += 30
    poller.page(REGION)
    assert sorted(woken) == ["uid1", "uid2"]
    poller.unwatch("uid1")
    rds.tasks["t1"]["PercentProgress"] = 50
    woken.clear()
    clock.now += 30
    poller.refresh()  # the pump's refresh: a page for every scope someone watches
    assert woken == []


def test_freed_slots_wake_the_oldest_waiting_objects(rds: FakeRds, clock: Clock) -> None:
    woken: list[str] = []
    poller = Poller(rds, interval=30, max_concurrent=2, clock=clock, wake=woken.extend)  # type: ignore[arg-type]
    task(rds, "busy0", "IN_PROGRESS")
    task(rds, "busy1", "IN_PROGRESS")
    for uid in ("c", "a", "b"):
        assert not poller.may_start(REGION, uid, CREATED[uid])
    rds.tasks["busy0"]["Status"] = "COMPLETE"
    woken.clear()
    clock.now += 30
    poller.refresh()  # waiting objects are reason enough to refresh
    assert woken == ["a"]  # one slot: the oldest


# -- lookups: objects with no status matched to existing tasks by identifier, in batches (issue 13 item 4) ----------


def pending(poller: Poller, identifier: str, uid: str) -> bool:
    """``find`` answered "the lookup will tell" (True), or with an answer (False)."""
    try:
        poller.find(REGION, identifier, uid=uid)
    except AwsError as error:
        assert error.code == "LookupPending", error
        return True
    return False


def test_a_burst_of_new_objects_is_looked_up_in_batches_of_100(rds: FakeRds, clock: Clock) -> None:
    woken: list[str] = []
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock, wake=woken.extend)  # type: ignore[arg-type]
    for i in range(0, 250, 2):
        task(rds, f"t{i}", "COMPLETE")  # half exist (finished: not in the active page), half are new
    assert all(pending(poller, f"t{i}", f"u{i}") for i in range(250))
    assert [c[0] for c in rds.calls] == ["page"] and woken == []  # nobody answered one by one
    poller.refresh()
    batches = [c[1] for c in rds.calls if c[0] == "many"]
    assert [len(b) for b in batches] == [250]  # one describe_many: the client splits it into calls of 100
    assert sorted(woken) == sorted(f"u{i}" for i in range(250))
    calls = len(rds.calls)
    for i in range(250):
        found = poller.find(REGION, f"t{i}", uid=f"u{i}")
        assert (found or {}).get("Status") == ("COMPLETE" if i % 2 == 0 else None)
    assert len(rds.calls) == calls  # the answers are kept for the objects that come back for them
    poller.refresh()
    assert len(rds.calls) == calls  # nothing more to look up, nobody watched: no call


def test_a_lookup_is_not_trusted_after_a_start_whose_answer_was_lost(rds: FakeRds, clock: Clock) -> None:
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock)  # type: ignore[arg-type]
    assert pending(poller, "t1", "u1")
    poller.refresh()
    assert poller.find(REGION, "t1", uid="u1") is None  # AWS does not know it: the object may start it
    real_start = rds.start

    def start_then_time_out(spec: Any) -> dict[str, Any]:
        real_start(spec)
        raise AwsError(ErrorKind.RETRYABLE, "ReadTimeoutError", "no answer", "StartExportTask")

    rds.start = start_then_time_out  # type: ignore[method-assign]
    clock.now += 1
    with pytest.raises(AwsError):
        poller.start(spec("t1"))
    assert pending(poller, "t1", "u1")  # not "unknown" any more: AWS may have started it
    assert poller.describe(REGION, "t1")["Status"] == "STARTING"  # type: ignore[index]  # a real call


def test_a_failed_lookup_backs_off_like_a_failed_page(rds: FakeRds, clock: Clock) -> None:
    woken: list[str] = []
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock, wake=woken.extend)  # type: ignore[arg-type]
    poller.watch("w1", REGION, "t9")  # an unfinished object: told of the failure, and of the recovery
    assert pending(poller, "t1", "u1")
    real = rds.describe_many

    def throttled(*args: Any, **kwargs: Any) -> Any:
        rds.calls.append(("many", "throttled"))
        raise AwsError(ErrorKind.RETRYABLE, "Throttling", "slow down", "DescribeExportTasks")

    rds.describe_many = throttled  # type: ignore[method-assign]
    woken.clear()
    poller.refresh()
    assert woken == ["w1", "u1"]  # told, so they show the error (Synced=False), not wait for the safety net
    with pytest.raises(AwsError, match="slow down"):
        poller.find(REGION, "t1", uid="u1")
    calls = len(rds.calls)
    for _ in range(10):  # the pump runs every quarter interval: no call before the backoff ends
        clock.now += 2
        poller.refresh()
    assert len(rds.calls) == calls
    rds.describe_many = real  # type: ignore[method-assign]
    clock.now += 60
    woken.clear()
    assert pending(poller, "t1", "u1")
    poller.refresh()
    assert poller.find(REGION, "t1", uid="u1") is None
    assert "w1" in woken  # the page after the failure streak: the watcher shows Synced=True again


def test_objects_recreated_for_existing_exports_are_adopted_without_a_start(rds: FakeRds, clock: Clock) -> None:
    """Issue 13 item 4 with the real reconciler: 300 objects with no status, their tasks finished long ago."""
    woken: list[str] = []
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock, wake=woken.extend)  # type: ignore[arg-type]
    reconciler = Reconciler(poller)
    for i in range(300):
        task(rds, f"t{i}", "COMPLETE")
    first = [reconciler.sync(spec(f"t{i}"), {}, uid=f"t{i}", created="c") for i in range(300)]
    assert all(not r.status and r.retry_after is None for r in first)  # asleep until the lookup wakes them
    poller.refresh()
    assert sorted(woken) == sorted(f"t{i}" for i in range(300))
    second = [reconciler.sync(spec(f"t{i}"), {}, uid=f"t{i}", created="c") for i in range(300)]
    assert {(r.status["status"], r.status["ownership"]) for r in second} == {("COMPLETE", "Adopted")}
    assert [c[0] for c in rds.calls] == ["page", "many"]  # 300 identifiers: 3 calls of 100 in the real client
    assert poller.slots.used(("", REGION)) == 0  # finished tasks take no export slot


def test_new_objects_do_not_wait_for_a_page_in_flight(rds: FakeRds) -> None:
    """At start-up every object arrives while the first page is fetched: they join a lookup instead of holding
    the region's call slots (which would answer the rest "RegionBusy")."""
    fetching, release = threading.Event(), threading.Event()
    fast = rds.describe_by_status

    def slow(region: str, statuses: list[str], page_size: int = 100, identity: Any = None) -> Any:
        fetching.set()
        release.wait(5)
        return fast(region, statuses, page_size)

    rds.describe_by_status = slow  # type: ignore[method-assign]
    task(rds, "t1", "IN_PROGRESS")
    poller = Poller(rds, interval=30, max_concurrent=5, threads_per_scope=2)  # type: ignore[arg-type]
    first = threading.Thread(target=poller.page, args=(REGION,))
    first.start()
    assert fetching.wait(5)
    began = time.monotonic()
    assert poller.peek(REGION, "t1") is None  # the page is not there yet: nothing known, no wait
    assert all(pending(poller, f"t{i}", f"u{i}") for i in range(50))  # one slot in use, no RegionBusy
    assert time.monotonic() - began < 1.0
    release.set()
    first.join(5)
    poller.refresh()
    assert poller.find(REGION, "t1", uid="u1")["Status"] == "IN_PROGRESS"  # type: ignore[index]


def listings(rds: FakeRds, clock: Clock) -> list[tuple[float, str]]:
    """(when, region) of each listing from now on."""
    seen: list[tuple[float, str]] = []
    real = rds.describe_by_status

    def describe_by_status(region: str, statuses: list[str], page_size: int = 100, identity: Any = None) -> Any:
        seen.append((clock.now, region))
        return real(region, statuses, page_size, identity)

    rds.describe_by_status = describe_by_status  # type: ignore[method-assign]
    return seen


def test_the_pump_sleeps_until_the_next_page_is_due(rds: FakeRds, clock: Clock) -> None:
    """Pages exactly one interval apart: a page a quarter interval late adds that to every status's latency."""
    poller = Poller(rds, interval=10, max_concurrent=5, clock=clock)  # type: ignore[arg-type]
    assert poller.refresh() == 2.5  # nobody watches: look again in a quarter interval for new watchers
    poller.watch("u1", REGION, "t1")
    pages = listings(rds, clock)
    for _ in range(40):
        clock.now += poller.refresh()  # the pump sleeps as long as the refresh says
    times = [at for at, _ in pages]
    assert times[0] == 1000.0 and 0 < times[1] - times[0] <= 10  # at once, then at the scope's phase
    assert [b - a for a, b in itertools.pairwise(times[1:])] == pytest.approx([10.0] * (len(times) - 2))
    assert len(times) >= 5

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise AwsError(ErrorKind.RETRYABLE, "Throttling", "slow down", "DescribeExportTasks")

    rds.describe_by_status = failing  # type: ignore[method-assign]
    clock.now += 10.0
    assert poller.refresh() == 2.5  # backing off (10 s or more): no hot loop on the overdue page


def test_scopes_paged_together_at_the_start_go_on_at_phases_of_their_own(rds: FakeRds, clock: Clock) -> None:
    """Many accounts' scopes first paged at the operator's start would stay aligned, and all their changes of an
    interval be written in one burst; each goes to a phase of its own, then keeps the interval exactly."""
    poller = Poller(rds, interval=10, max_concurrent=5, clock=clock)  # type: ignore[arg-type]
    regions = ["us-east-1", "eu-west-1", "ap-south-1", "sa-east-1"]
    for region in regions:
        poller.watch(f"u-{region}", region, f"t-{region}")
    pages = listings(rds, clock)
    for _ in range(60):
        clock.now += poller.refresh()
    firsts = {region: at for at, region in reversed(pages)}
    assert set(firsts.values()) == {1000.0}  # together at the start
    later = {region: sorted(at for at, r in pages if r == region)[1:] for region in regions}
    phases = {round(times[0] % 10, 6) for times in later.values()}
    assert len(phases) == len(regions)  # then apart
    for times in later.values():
        assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([10.0] * (len(times) - 1))
    calls = len(pages)
    assert calls <= len(regions) * (1 + (clock.now - 1000) // 10 + 1)  # at most one early page per scope


@contextlib.contextmanager
def pumping(rds: FakeRds, *, interval: float, delay: float) -> Iterator[tuple[Poller, list[str]]]:
    """A poller with its pump running (the woken uids in the list); stopped at the end, promptly."""
    woken: list[str] = []
    poller = Poller(rds, interval=interval, max_concurrent=5, lookup_delay=delay, wake=woken.extend)  # type: ignore[arg-type]
    pump = threading.Thread(target=poller.pump, daemon=True)
    pump.start()
    try:
        yield poller, woken
    finally:
        stopped = time.monotonic()
        poller.stop()
        pump.join(5)
    assert not pump.is_alive() and time.monotonic() - stopped < 0.5


def test_a_burst_with_pauses_is_looked_up_in_full_calls_and_a_lone_object_soon(rds: FakeRds) -> None:
    """Under load, new objects reach the lookup in spurts (kopf's loop is busy between them, writing the answers
    of the last ones). A pause a little longer than ``lookup_delay`` must not send a part-filled call each time;
    yet a lone new object, once the burst is long over, waits about ``lookup_delay``, not the burst's wait."""
    delay = 0.1
    with pumping(rds, interval=1.0, delay=delay) as (poller, woken):
        for spurt in range(10):  # 300 objects, 30 at a time, paused 1.6 lookup delays apart
            for i in range(30):
                assert pending(poller, f"t{spurt}-{i}", f"u{spurt}-{i}")
            time.sleep(1.6 * delay)  # the arrival pattern under test, not a wait for the pump
        deadline = time.monotonic() + 10
        while len(woken) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(woken) == 300
        calls = sum(-(-len(c[1]) // 100) for c in rds.calls if c[0] == "many")  # calls of 100 in the real client
        assert calls <= 6, [len(c[1]) for c in rds.calls if c[0] == "many"]  # one per spurt: 10

        time.sleep(1.5)  # more than an interval without a lookup: the burst is over
        asked = time.monotonic()
        assert pending(poller, "lone", "lone")
        while "lone" not in woken and time.monotonic() < asked + 10:
            time.sleep(0.01)
        assert time.monotonic() - asked < 3.5 * delay  # about one lookup delay (the burst's quiet time: 5)


def test_a_full_call_goes_when_its_last_identifier_arrives(rds: FakeRds) -> None:
    """A gathering waits for a quiet time (up to 5 s in a burst) before a part-filled call; a call that fills
    meanwhile goes at once, not at the end of that wait (each whole batch of a burst was up to 5 s late)."""
    delay = 0.5
    with pumping(rds, interval=10.0, delay=delay) as (poller, woken):
        for i in range(50):
            assert pending(poller, f"t{i}", f"u{i}")
        time.sleep(0.1)  # the arrival pattern under test: the gathering is waiting
        for i in range(50, 100):
            assert pending(poller, f"t{i}", f"u{i}")
        full = time.monotonic()
        while len(woken) < 100 and time.monotonic() < full + 10:
            time.sleep(0.005)
        assert len(woken) == 100
        assert time.monotonic() - full < 0.2 * delay, time.monotonic() - full  # was about 0.8 delay
        for i in range(100, 110):  # a part-filled call: the gathering waits out its quiet time, stop ends it
            assert pending(poller, f"t{i}", f"u{i}")


def test_a_lookup_answer_waits_for_the_objects_it_woke(rds: FakeRds, clock: Clock) -> None:
    """Adopting 5,000 objects at once, the woken ones queue for kopf's loop and the worker threads for minutes: an
    answer dropped before they come back cost each a second lookup (measured: 7,700 identifiers looked up for
    5,000 objects). Once read, it is kept no longer than other news."""
    woken: list[str] = []
    poller = Poller(rds, interval=10, max_concurrent=5, clock=clock, wake=woken.extend)  # type: ignore[arg-type]
    for i in range(200):
        task(rds, f"t{i}", "COMPLETE")
        assert pending(poller, f"t{i}", f"u{i}")
    poller.refresh()
    assert len(woken) == 200
    calls = len(rds.calls)
    for _ in range(6):  # three minutes of pages and pump rounds before the objects come back
        clock.now += 30
        poller.refresh()
        poller.page(REGION)
    assert [c[0] for c in rds.calls[calls:]] == ["page"] * 6  # pages only: nobody watches, nothing looked up again
    for i in range(200):
        assert poller.find(REGION, f"t{i}", uid=f"u{i}")["Status"] == "COMPLETE"  # type: ignore[index]
    assert [c[0] for c in rds.calls[calls:]] == ["page"] * 6
    clock.now += 61  # read: kept as long as any news (60 s or two intervals), then dropped
    poller.refresh()
    scope = poller._scopes[(None, REGION)]
    assert not scope.recent and not scope.readers


def test_while_a_queue_waits_on_full_slots_pages_come_faster(rds: FakeRds, clock: Clock) -> None:
    """Issue 27: a slot that frees is seen within a third of an interval, so the next export starts sooner."""
    woken: list[str] = []
    poller = Poller(rds, interval=30, max_concurrent=2, clock=clock, wake=woken.extend)  # type: ignore[arg-type]
    task(rds, "busy0", "IN_PROGRESS")
    task(rds, "busy1", "IN_PROGRESS")
    assert not poller.may_start(REGION, "a", CREATED["a"])
    assert poller.refresh() <= 10  # the next page is due within a third of the interval
    rds.tasks["busy0"]["Status"] = "COMPLETE"
    pages = sum(1 for call in rds.calls if call[0] == "page")
    clock.now += 10
    poller.refresh()
    assert sum(1 for call in rds.calls if call[0] == "page") == pages + 1
    assert woken[-1:] == ["a"]  # the page that shows the freed slot wakes the next in line


def test_without_a_queue_pages_come_once_per_interval(rds: FakeRds, clock: Clock) -> None:
    poller = Poller(rds, interval=30, max_concurrent=2, clock=clock)  # type: ignore[arg-type]
    task(rds, "busy0", "IN_PROGRESS")
    poller.watch("u0", REGION, "busy0")
    poller.refresh()
    pages = sum(1 for call in rds.calls if call[0] == "page")
    clock.now += 10
    poller.refresh()
    assert sum(1 for call in rds.calls if call[0] == "page") == pages


def test_a_queue_with_free_slots_does_not_poll_faster(rds: FakeRds, clock: Clock) -> None:
    """Objects over a namespace cap wait although slots are free: faster pages would not start them sooner."""
    poller = Poller(rds, interval=30, max_concurrent=2, clock=clock, per_namespace=1)  # type: ignore[arg-type]
    assert poller.may_start(REGION, "a", CREATED["a"], namespace="n")
    assert not poller.may_start(REGION, "b", CREATED["b"], namespace="n")
    poller.refresh()
    pages = sum(1 for call in rds.calls if call[0] == "page")
    clock.now += 10
    poller.refresh()
    assert sum(1 for call in rds.calls if call[0] == "page") == pages


# -- the sweep: more than a page of watched tasks, described by identifier at fixed phases (issue 27 item 2) --------


def sweeping(rds: FakeRds, clock: Clock, count: int, woken: list[str]) -> Poller:
    """A poller watching ``count`` running tasks, whose page was fetched one interval ago."""
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock, wake=woken.extend)  # type: ignore[arg-type]
    for i in range(count):
        task(rds, f"t{i}", "IN_PROGRESS")
        poller.watch(f"u{i}", REGION, f"t{i}")
    poller.page(REGION)
    rds.calls.clear()
    woken.clear()
    return poller


def pump_for(poller: Poller, clock: Clock, seconds: float, step: float = 0.25, lag: float = 0.0) -> None:
    """The pump thread for ``seconds``, on the fake clock: a refresh whenever the one before says it is due (and
    ``lag`` later: a thread wakes late)."""
    end = clock.now + seconds
    while True:
        due = poller.refresh()
        if clock.now >= end:
            return
        clock.now = min(end, clock.now + min(step, due) + lag)


def described(rds: FakeRds, clock: Clock) -> list[tuple[float, tuple[str, ...]]]:
    """Each describe by identifier from now on: (when, identifiers)."""
    calls: list[tuple[float, tuple[str, ...]]] = []
    real = rds.describe_many

    def describe_many(region: str, identifiers: list[str], identity: Any = None) -> list[dict[str, Any]]:
        calls.append((clock.now, tuple(identifiers)))
        return real(region, identifiers, identity)

    rds.describe_many = describe_many  # type: ignore[method-assign]
    return calls


def test_a_sweep_describes_each_watched_task_once_per_interval_in_groups_under_a_page(
    rds: FakeRds, clock: Clock
) -> None:
    woken: list[str] = []
    poller = sweeping(rds, clock, 250, woken)
    calls, began = described(rds, clock), clock.now
    pump_for(poller, clock, 120, lag=0.1)  # the pump thread wakes a little after each step is due
    assert {c[0] for c in rds.calls} == {"many"}  # no listing
    assert len([at for at, _ in calls if at > began + 30]) == 3 * 4  # ceil(250/100) + 1 calls per interval
    assert max(len(ids) for _, ids in calls) <= 100  # each step is one call
    times: dict[str, list[float]] = {}
    for at, ids in calls:
        for identifier in ids:
            times.setdefault(identifier, []).append(at)
    assert times.keys() == {f"t{i}" for i in range(250)}
    gaps = {b - a for seen in times.values() for a, b in itertools.pairwise(seen)}
    assert max(abs(gap - 30) for gap in gaps) < 0.5  # once per interval, at the same step each time
    assert woken == []  # nothing changed: nobody was woken


def test_more_phases_than_a_call_holds_wait_for_the_next_step_rather_than_make_a_second_call(
    rds: FakeRds, clock: Clock
) -> None:
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock)  # type: ignore[arg-type]
    names = [n for n in (f"x{i}" for i in range(2000)) if phase(n, 30) < 5][:150]  # all in the first sixth
    assert len(names) == 150
    for i, name in enumerate(names):
        task(rds, name, "IN_PROGRESS")
        poller.watch(f"u{i}", REGION, name)
    poller.page(REGION)
    calls, began = described(rds, clock), clock.now
    pump_for(poller, clock, 120)
    assert max(len(ids) for _, ids in calls) == 100
    assert len([at for at, _ in calls if at > began + 30]) == 3 * 2  # two calls per interval: 100, then 50
    seen = Counter(i for at, ids in calls if at > began + 30 for i in ids)
    assert seen == Counter({name: 3 for name in names})  # and each task once per interval


def test_a_sweep_wakes_an_object_within_an_interval_of_its_change_and_nobody_else(rds: FakeRds, clock: Clock) -> None:
    woken: list[str] = []
    poller = sweeping(rds, clock, 150, woken)
    pump_for(poller, clock, 30)
    rds.tasks["t7"]["PercentProgress"] = 40
    rds.tasks["t8"]["Status"] = "COMPLETE"
    changed_at = clock.now
    while not {"u7", "u8"} <= set(woken):
        assert clock.now - changed_at <= 30  # within one interval
        pump_for(poller, clock, 0.25)
    assert sorted(woken) == ["u7", "u8"]
    assert poller.find(REGION, "t7", uid="u7")["PercentProgress"] == 40  # type: ignore[index]
    assert poller.find(REGION, "t8", uid="u8")["Status"] == "COMPLETE"  # type: ignore[index]
    assert [c[0] for c in rds.calls] == ["many"] * len(rds.calls)  # the old page is no reason for a listing


def test_a_scope_lists_again_when_objects_wait_for_its_slots_or_few_tasks_are_watched(
    rds: FakeRds, clock: Clock
) -> None:
    woken: list[str] = []
    poller = sweeping(rds, clock, 150, woken)
    pump_for(poller, clock, 30)
    assert {c[0] for c in rds.calls} == {"many"}
    assert not poller.may_start(REGION, "new", "2026-01-01T00:00:00Z")  # 150 running: it queues
    rds.calls.clear()
    pump_for(poller, clock, 30)
    assert "page" in {c[0] for c in rds.calls}  # the page counts the running exports: a freed slot is seen
    poller.slots.withdraw("new")
    for i in range(60):
        poller.unwatch(f"u{i}")  # 90 left: one page lists them all
    rds.calls.clear()
    pump_for(poller, clock, 60)
    assert set(rds.calls) == {("page", tuple(ACTIVE_FILTER))} and len(rds.calls) in (2, 3)  # one may go early,
    # to the scope's phase


def test_an_endpoint_that_ignores_filters_is_listed_rather_than_swept(clock: Clock) -> None:
    rds = FakeRds(ignore_filters=True)
    poller = sweeping(rds, clock, 150, [])
    pump_for(poller, clock, 60)
    assert {c[0] for c in rds.calls} == {"page"} and len(rds.calls) in (2, 3)  # no describe by identifier: it
    # would list every task (one page may go early, to the scope's phase)


def test_a_failed_sweep_backs_off_then_describes_and_wakes_every_watcher(rds: FakeRds, clock: Clock) -> None:
    woken: list[str] = []
    poller = sweeping(rds, clock, 150, woken)
    real = rds.describe_many

    def throttled(region: str, identifiers: list[str], identity: Any = None) -> list[dict[str, Any]]:
        rds.calls.append(("throttled", tuple(identifiers)))
        raise AwsError(ErrorKind.RETRYABLE, "Throttling", "slow down", "DescribeExportTasks")

    rds.describe_many = throttled  # type: ignore[method-assign]
    pump_for(poller, clock, 29)
    assert [c[0] for c in rds.calls] == ["throttled"]  # no second call within the backoff (at least an interval)
    assert len(woken) == 150  # each object is woken to show the failure
    with pytest.raises(AwsError, match="Throttling"):
        poller.find(REGION, "t0", uid="u0")  # and its look shows it (Synced=False), not the last answer
    rds.describe_many = real  # type: ignore[method-assign]
    woken.clear()
    pump_for(poller, clock, 60)
    assert poller.find(REGION, "t0", uid="u0")["Status"] == "IN_PROGRESS"  # type: ignore[index]
    first = next(c for c in rds.calls if c[0] == "many")
    assert len(first[1]) == 150  # the first step after the backoff: every task (more than an interval passed)
    assert sorted(woken) == sorted(f"u{i}" for i in range(150))  # the recovery is news for each


def test_a_cancel_answered_while_a_sweep_asked_is_not_overwritten_by_it(rds: FakeRds, clock: Clock) -> None:
    poller = sweeping(rds, clock, 150, [])
    real = rds.describe_many

    def cancel_meanwhile(region: str, identifiers: list[str], identity: Any = None) -> list[dict[str, Any]]:
        answer = real(region, identifiers, identity)  # the old state of every task
        if "t3" in identifiers:
            clock.now += 0.1
            poller.cancel(REGION, "t3")  # answered after the sweep's call was asked
        return answer

    rds.describe_many = cancel_meanwhile  # type: ignore[method-assign]
    pump_for(poller, clock, 30)
    assert ("cancel", "t3") in rds.calls
    assert poller.find(REGION, "t3", uid="u3")["Status"] == "CANCELING"  # type: ignore[index]


# Found by review (each failed before its fix):


def throttle(rds: FakeRds) -> None:
    def throttled(region: str, identifiers: list[str], identity: Any = None) -> list[dict[str, Any]]:
        rds.calls.append(("throttled", tuple(identifiers)))
        raise AwsError(ErrorKind.RETRYABLE, "Throttling", "slow down", "DescribeExportTasks")

    rds.describe_many = throttled  # type: ignore[method-assign]


def test_a_long_outage_of_a_sweep_never_answers_from_the_listing_before_the_sweep(rds: FakeRds, clock: Clock) -> None:
    poller = sweeping(rds, clock, 150, [])  # its listing: no progress
    for i in range(150):
        rds.tasks[f"t{i}"]["PercentProgress"] = 50
    pump_for(poller, clock, 60)  # the sweep read 50 % of each
    real = rds.describe_many
    throttle(rds)
    pump_for(poller, clock, 300)  # backoffs longer than the time news is kept
    with pytest.raises(AwsError, match="Throttling"):
        poller.find(REGION, "t7", uid="u7")
    rds.describe_many = real  # type: ignore[method-assign]
    scope = next(iter(poller._scopes.values()))
    clock.now = scope.retry_at + 0.1  # the backoff is over, the pump has not run yet
    assert poller.find(REGION, "t7", uid="u7")["PercentProgress"] == 50  # type: ignore[index]


def test_new_objects_first_looks_make_no_listing_nor_wake_anyone_while_a_scope_sweeps(
    rds: FakeRds, clock: Clock
) -> None:
    woken: list[str] = []
    poller = sweeping(rds, clock, 250, woken)
    for i in range(250):
        rds.tasks[f"t{i}"]["PercentProgress"] = 50
    pump_for(poller, clock, 60)
    rds.calls.clear()
    for k in range(4):  # a new object per interval: its first look peeks, then finds (reconcile._start_or_adopt)
        woken.clear()
        assert poller.peek(REGION, f"new{k}") is None
        assert woken == []  # a listing compared with the page before the sweep woke every watcher at once
        assert pending(poller, f"new{k}", f"n{k}")  # looked up by identifier
        pump_for(poller, clock, 30)
    assert "page" not in {c[0] for c in rds.calls}  # the listing the sweep replaces, once per interval
    assert poller.describe(REGION, "t3")["PercentProgress"] == 50  # type: ignore[index]  # the sweep's answer
    assert "page" not in {c[0] for c in rds.calls} and ("describe", "t3") not in rds.calls


def test_two_tasks_of_one_phase_at_a_full_step_are_both_described(rds: FakeRds, clock: Clock) -> None:
    a, b = "exp-29685295", "exp-32060020"  # the same CRC-32
    assert phase(a, 30) == phase(b, 30)
    at = phase(a, 30)
    early = [n for n in (f"f{i}" for i in range(20000)) if 0 < phase(n, 30) < at][:99]
    late = [n for n in (f"g{i}" for i in range(20000)) if at < phase(n, 30) < 5][:51]
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock)  # type: ignore[arg-type]
    for name in [*early, a, b, *late]:
        task(rds, name, "IN_PROGRESS")
        poller.watch(f"u-{name}", REGION, name)
    poller.page(REGION)
    rds.calls.clear()
    pump_for(poller, clock, 120)
    seen = Counter(i for c in rds.calls if c[0] == "many" for i in c[1])
    assert seen[a] >= 3 and seen[b] >= 3  # the cut of a full step falls before both, not between them
    assert max(len(c[1]) for c in rds.calls) <= 100


def test_the_listing_after_a_sweep_wakes_only_what_changed_since_the_sweep_read_it(rds: FakeRds, clock: Clock) -> None:
    woken: list[str] = []
    poller = sweeping(rds, clock, 150, woken)
    for i in range(150):
        rds.tasks[f"t{i}"]["PercentProgress"] = 50  # news against the listing before the sweep, read by it
    pump_for(poller, clock, 60)
    for i in range(60):
        poller.unwatch(f"u{i}")  # 90 left: the scope lists again
    rds.tasks["t100"]["PercentProgress"] = 60
    woken.clear()
    rds.calls.clear()
    pump_for(poller, clock, 30)
    assert "page" in {c[0] for c in rds.calls}
    assert woken == ["u100"]


def test_a_deletions_describe_of_an_unwatched_task_is_a_call_while_the_scope_sweeps(rds: FakeRds, clock: Clock) -> None:
    poller = sweeping(rds, clock, 150, [])
    task(rds, "x", "IN_PROGRESS")
    assert pending(poller, "x", "ux")  # looked up, then deleted before it came back for the answer
    pump_for(poller, clock, 2)
    assert poller.cancel(REGION, "x")["Status"] == "CANCELING"
    rds.tasks["x"]["Status"] = "CANCELED"
    pump_for(poller, clock, 30)
    assert poller.describe(REGION, "x")["Status"] == "CANCELED"  # type: ignore[index]  # not the Cancel's answer


def test_leaving_a_failed_sweep_never_answers_from_the_listing_before_it(rds: FakeRds, clock: Clock) -> None:
    poller = sweeping(rds, clock, 150, [])  # its listing: no progress
    for i in range(150):
        rds.tasks[f"t{i}"]["PercentProgress"] = 50
    pump_for(poller, clock, 60)  # the sweep read 50 %
    real_many, real_list = rds.describe_many, rds.describe_by_status

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise AwsError(ErrorKind.RETRYABLE, "Throttling", "slow down", "DescribeExportTasks")

    rds.describe_many = rds.describe_by_status = throttled  # type: ignore[method-assign]
    pump_for(poller, clock, 40)
    for i in range(100, 150):
        poller.unwatch(f"u{i}")  # 100 left: the scope lists again, and that fails too
    pump_for(poller, clock, 200)
    rds.describe_many = real_many  # type: ignore[method-assign]
    clock.now = next(iter(poller._scopes.values())).retry_at + 0.1
    seen: list[Any] = []

    def listing(*args: Any, **kwargs: Any) -> Any:  # another worker's look while the pump's listing is in flight
        try:
            seen.append(poller.find(REGION, "t7", uid="u7"))
        except AwsError as error:
            seen.append(error.code)
        return real_list(*args, **kwargs)

    rds.describe_by_status = listing  # type: ignore[method-assign]
    poller.refresh()
    assert seen and seen[0] in ("LookupPending", {**rds.tasks["t7"]}), seen  # never 0 % again


def test_a_listing_for_the_slots_while_sweeping_wakes_nobody_the_sweep_tells_them(rds: FakeRds, clock: Clock) -> None:
    woken: list[str] = []
    poller = sweeping(rds, clock, 150, woken)
    pump_for(poller, clock, 60)
    for i in range(150):
        rds.tasks[f"t{i}"]["PercentProgress"] = 70
    woken.clear()
    poller.may_start(REGION, "n", "2026-01-01T00:00:00Z")  # a new object may start: the count of running exports
    assert "page" in {c[0] for c in rds.calls} and woken == []  # not 150 at once
    pump_for(poller, clock, 30)
    assert sorted(woken) == sorted(f"u{i}" for i in range(150))  # each at its phase


def test_an_early_listing_to_the_scopes_phase_that_fails_is_shown(rds: FakeRds, clock: Clock) -> None:
    """The listing that moves a scope to its phase comes less than an interval after the last: when it failed, the
    objects it woke were answered from the page it failed to renew (no Synced=False; found by the e2e fault test)."""
    woken: list[str] = []
    poller = Poller(rds, interval=30, max_concurrent=5, clock=clock, wake=woken.extend)  # type: ignore[arg-type]
    task(rds, "t1", "IN_PROGRESS")
    poller.watch("u1", REGION, "t1")
    clock.now += poller.refresh()  # the first listing, at once

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise AwsError(ErrorKind.RETRYABLE, "InternalFailure", "5xx", "DescribeExportTasks")

    rds.describe_by_status = failing  # type: ignore[method-assign]
    woken.clear()
    while not woken:
        due = poller.refresh()
        if not woken:
            clock.now += due
    assert clock.now - 1000 < 30  # it was the early listing, to the scope's phase
    with pytest.raises(AwsError, match="InternalFailure"):
        poller.find(REGION, "t1", uid="u1")
