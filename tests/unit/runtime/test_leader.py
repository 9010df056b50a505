"""Leader election as client-go does it, against an in-memory Lease API (optimistic concurrency) and a fake clock."""

from __future__ import annotations

import asyncio
import copy
import http.client
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kopf
import pytest

from rds_export_operator.runtime.health import Probes
from rds_export_operator.runtime.kubeapi import Conflict, KubeApi
from rds_export_operator.runtime.leader import LeaderElector, leadership
from rds_export_operator.runtime.settings import Settings


class FakeLeaseApi:
    """One Lease with a resourceVersion: a replace with a stale version is a 409, as the API server answers."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.errors: list[BaseException] = []  # raised by the next calls, one each
        self.writes = 0
        self.timeouts: list[float] = []  # of each get
        self.before_get: Callable[[], None] = lambda: None

    def _fail(self) -> None:
        if self.errors:
            raise self.errors.pop(0)

    def _store(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.writes += 1
        self.lease = {"metadata": {"name": "lease", "resourceVersion": str(self.version)}, "spec": dict(spec)}
        return copy.deepcopy(self.lease)

    def get(self, timeout: float) -> dict[str, Any] | None:
        self.timeouts.append(timeout)
        self.before_get()
        self._fail()
        return copy.deepcopy(self.lease)

    def create(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._fail()
        if self.lease is not None:
            raise Conflict("already exists")
        return self._store(spec)

    def replace(self, lease: dict[str, Any], spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._fail()
        assert self.lease is not None
        if lease["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")
        return self._store(spec)

    def held_by(self, holder: str, renewed: datetime, duration: int = 15) -> None:
        """Another replica writes the Lease (its own clock gives ``renewed``)."""
        stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": stamp, "renewTime": stamp}
        self._store(spec)

    @property
    def holder(self) -> str | None:
        return (self.lease or {}).get("spec", {}).get("holderIdentity")

    @property
    def spec(self) -> dict[str, Any]:
        assert self.lease is not None
        return dict(self.lease["spec"])


class FakeClock:
    """Monotonic seconds; waiting moves time on. ``at`` runs actions (another replica's writes) at given times."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.actions: list[tuple[float, Callable[[], None]]] = []
        self.stop_at = float("inf")

    def __call__(self) -> float:
        return self.now

    def wait(self, event: threading.Event, seconds: float) -> bool:
        target = self.now + seconds
        for when, action in sorted(self.actions, key=lambda a: a[0]):
            if self.now < when <= target:
                self.now = when
                action()
        self.now = target
        if self.now >= self.stop_at:
            event.set()
        return event.is_set()


@pytest.fixture
def api() -> FakeLeaseApi:
    return FakeLeaseApi()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def elector(api: FakeLeaseApi, clock: FakeClock, identity: str = "me") -> LeaderElector:
    return LeaderElector(
        api, identity, lease_duration=15, renew_deadline=10, retry_period=2, clock=clock, wait=clock.wait
    )


def renew(le: LeaderElector, clock: FakeClock, until: float) -> list[float]:
    """Run the renewal loop until the fake clock reaches ``until`` (a clean stop); the times ``on_lost`` ran."""
    lost: list[float] = []
    clock.stop_at = until
    le.keep_renewing(lambda: lost.append(clock.now), threading.Event())
    return lost


LONG_AGO = datetime.now(UTC) - timedelta(hours=1)

RENEW_ERRORS = [
    http.client.IncompleteRead(b"{", 10),
    json.JSONDecodeError("Expecting value", "", 0),
    ValueError("Invalid isoformat string: 'yesterday'"),
    KeyError("spec"),
    TypeError("'NoneType' object is not subscriptable"),
    http.client.RemoteDisconnected("Remote end closed connection without response"),
    TimeoutError("timed out"),
    ConnectionResetError(104, "Connection reset by peer"),
    Conflict("the object has been modified"),
    RuntimeError("anything else"),
]
error_ids = [type(e).__name__ for e in RENEW_ERRORS]


@pytest.mark.parametrize("error", RENEW_ERRORS, ids=error_ids)
def test_any_exception_in_an_attempt_is_a_failed_attempt(error: BaseException) -> None:
    api = FakeLeaseApi()
    le = LeaderElector(api, "me")
    assert le.try_acquire_or_renew()
    api.errors = [error]
    assert le.try_acquire_or_renew() is False
    assert le.try_acquire_or_renew() is True  # and the next attempt renews again
    assert api.holder == "me"


def test_a_garbage_renew_time_of_another_holder_is_no_crash_and_no_takeover() -> None:
    api = FakeLeaseApi()
    api.held_by("other", LONG_AGO)
    assert api.lease is not None
    api.lease["spec"]["renewTime"] = "yesterday"
    le = LeaderElector(api, "me")
    assert le.try_acquire_or_renew() is False
    assert api.holder == "other"


def test_a_holder_whose_clock_lags_is_not_taken_over_while_it_keeps_renewing(
    api: FakeLeaseApi, clock: FakeClock
) -> None:
    # The holder's clock is an hour behind ours: its renewTime looks ancient, yet it renews every 2 s.
    le = elector(api, clock)
    for second in range(0, 60, 2):
        api.held_by("other", LONG_AGO + timedelta(seconds=second))
        assert le.try_acquire_or_renew() is False
        clock.now += 2
    assert api.holder == "other"


def test_acquire_when_absent(api: FakeLeaseApi, clock: FakeClock) -> None:
    assert elector(api, clock).acquire(threading.Event())
    assert api.spec["holderIdentity"] == "me"
    assert api.spec["leaseDurationSeconds"] == 15
    assert api.spec["leaseTransitions"] == 0
    assert api.spec["acquireTime"] == api.spec["renewTime"]


def test_acquire_after_the_record_stopped_changing_for_a_lease_duration(api: FakeLeaseApi, clock: FakeClock) -> None:
    # The holder's clock runs an hour ahead: by its renewTime the lease looks valid for ever. It stops renewing.
    api.held_by("other", datetime.now(UTC) + timedelta(hours=1))
    le = elector(api, clock)
    started = clock.now
    assert le.acquire(threading.Event())
    assert clock.now - started == pytest.approx(16)  # first seen at 0, still held at 14, expired at 16 (>= 15)
    assert api.spec["holderIdentity"] == "me"
    assert api.spec["leaseTransitions"] == 1


def test_expiry_counts_from_when_this_replica_saw_the_last_change(api: FakeLeaseApi, clock: FakeClock) -> None:
    api.held_by("other", LONG_AGO)
    le = elector(api, clock)
    assert not le.try_acquire_or_renew()  # first seen now: valid for 15 s from here, whatever its renewTime
    clock.now += 10
    api.held_by("other", LONG_AGO)  # one more renewal: the clock starts again
    assert not le.try_acquire_or_renew()
    clock.now += 14.9
    assert not le.try_acquire_or_renew()
    clock.now += 0.1
    assert le.try_acquire_or_renew()


def test_the_holders_lease_duration_counts(api: FakeLeaseApi, clock: FakeClock) -> None:
    api.held_by("other", LONG_AGO, duration=60)
    le = elector(api, clock)
    assert not le.try_acquire_or_renew()
    clock.now += 59
    assert not le.try_acquire_or_renew()
    clock.now += 1
    assert le.try_acquire_or_renew()


def test_renew_keeps_acquire_time_and_transitions(api: FakeLeaseApi, clock: FakeClock) -> None:
    api.held_by("other", LONG_AGO)
    le = elector(api, clock)
    assert not le.try_acquire_or_renew()
    clock.now += 15
    assert le.try_acquire_or_renew()
    first = api.spec
    le.wall = lambda: datetime.now(UTC) + timedelta(seconds=5)
    assert le.try_acquire_or_renew()
    assert api.spec["acquireTime"] == first["acquireTime"]
    assert api.spec["leaseTransitions"] == first["leaseTransitions"] == 1
    assert api.spec["renewTime"] > first["renewTime"]


def test_renewing_every_retry_period_keeps_the_lease(api: FakeLeaseApi, clock: FakeClock) -> None:
    le = elector(api, clock)
    assert le.acquire(threading.Event())
    writes = api.writes
    assert renew(le, clock, until=clock.now + 60) == []
    assert api.writes - writes == 29  # one renewal per 2 s: at +2, +4 ... +58
    assert api.holder == "me"


def test_lose_after_the_renew_deadline_calls_on_lost_once(api: FakeLeaseApi, clock: FakeClock) -> None:
    le = elector(api, clock)
    assert le.acquire(threading.Event())
    start = clock.now
    api.errors = [ConnectionRefusedError(111, "Connection refused")] * 1000
    lost = renew(le, clock, until=start + 60)
    assert lost == [start + 10]


@pytest.mark.parametrize("error", RENEW_ERRORS, ids=error_ids)
def test_each_exception_in_renew_counts_as_a_failed_renew(
    api: FakeLeaseApi, clock: FakeClock, error: BaseException
) -> None:
    le = elector(api, clock)
    assert le.acquire(threading.Event())
    start = clock.now
    api.errors = [error] * 3  # three failed renewals (6 s), then it works again: within the deadline
    assert renew(le, clock, until=start + 30) == []
    assert api.holder == "me"
    assert le.renewed_at == start + 28  # the last renewal before the stop
    api.errors = [error] * 1000  # failing for good: lost at the deadline, the renewal thread did not just die
    assert renew(le, clock, until=clock.now + 60) == [start + 28 + 10]


def test_an_error_outside_an_attempt_still_ends_in_on_lost(api: FakeLeaseApi, clock: FakeClock) -> None:
    le = elector(api, clock)
    assert le.acquire(threading.Event())

    def broken_wait(event: threading.Event, seconds: float) -> bool:
        raise RuntimeError("bug")

    le.wait = broken_wait
    lost: list[bool] = []
    le.keep_renewing(lambda: lost.append(True), threading.Event())
    assert lost == [True]


def test_seeing_another_holder_loses_at_once(api: FakeLeaseApi, clock: FakeClock) -> None:
    le = elector(api, clock)
    assert le.acquire(threading.Event())
    start = clock.now
    clock.actions = [(start + 5, lambda: api.held_by("thief", LONG_AGO))]
    assert renew(le, clock, until=start + 60) == [start + 6]


def test_each_attempt_is_bounded_by_the_time_left_before_the_deadline(api: FakeLeaseApi, clock: FakeClock) -> None:
    le = elector(api, clock)
    assert le.acquire(threading.Event())
    start = clock.now
    api.timeouts.clear()

    def hang() -> None:  # each GET takes 3 s and then fails
        clock.now += 3
        raise TimeoutError("timed out")

    api.before_get = hang
    lost = renew(le, clock, until=start + 60)
    # Attempts at +2 (timeout 5, the request timeout), +7 (3 s left), +10 deadline: lost, not after a long wait.
    assert api.timeouts == [5, pytest.approx(3)]
    assert lost == [pytest.approx(start + 10)]


def test_release_gives_the_lease_up_and_a_standby_takes_it_at_once(api: FakeLeaseApi, clock: FakeClock) -> None:
    leader, standby = elector(api, clock, "me"), elector(api, clock, "standby")
    assert leader.acquire(threading.Event())
    assert not standby.try_acquire_or_renew()
    assert leader.release()
    assert api.spec["holderIdentity"] == ""
    assert api.spec["leaseDurationSeconds"] == 1
    assert standby.try_acquire_or_renew()  # no waiting for an expiry
    assert api.spec["holderIdentity"] == "standby"
    assert api.spec["leaseTransitions"] == 1


def test_release_leaves_a_lease_held_by_another_alone(api: FakeLeaseApi, clock: FakeClock) -> None:
    le = elector(api, clock)
    assert le.acquire(threading.Event())
    api.held_by("other", LONG_AGO)
    writes = api.writes
    assert le.release()
    assert api.writes == writes
    assert api.holder == "other"


def test_release_failure_is_reported_not_raised(api: FakeLeaseApi, clock: FakeClock) -> None:
    le = elector(api, clock)
    assert le.acquire(threading.Event())
    api.errors = [http.client.IncompleteRead(b"")]
    assert le.release() is False


def test_conflict_then_retry(api: FakeLeaseApi, clock: FakeClock) -> None:
    # Two standbys see the lease expire; both try to take it with the same resourceVersion: one gets the 409.
    api.held_by("old", LONG_AGO)
    a, b = elector(api, clock, "a"), elector(api, clock, "b")
    assert not a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    clock.now += 15
    stale = api.get(timeout=1)
    assert a.try_acquire_or_renew()
    assert stale is not None
    with pytest.raises(Conflict):
        api.replace(stale, {"holderIdentity": "b"}, timeout=1)
    assert not b.try_acquire_or_renew()  # b reads a's fresh record: valid for 15 s from now
    assert api.holder == "a"
    api.errors = [Conflict("the object has been modified")]
    assert not a.try_acquire_or_renew()  # a 409 on a renewal is a failed attempt...
    assert a.try_acquire_or_renew()  # ... and the next one succeeds
    assert api.holder == "a"


def test_a_waiting_standby_stops_when_asked(api: FakeLeaseApi, clock: FakeClock) -> None:
    api.held_by("other", LONG_AGO)
    clock.actions = [(clock.now + t, lambda: api.held_by("other", LONG_AGO)) for t in range(1, 30)]
    clock.stop_at = clock.now + 20
    assert elector(api, clock).acquire(threading.Event()) is False
    assert api.holder == "other"


def test_the_service_account_token_is_read_on_every_request(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    api = KubeApi(kopf.ConnectionInfo(server="https://example.invalid", token="first"), token_file=token)
    assert api.headers()["Authorization"] == "Bearer first"
    token.write_text("rotated\n")
    assert api.headers()["Authorization"] == "Bearer rotated"


def test_without_leader_election_leadership_changes_nothing() -> None:
    probes, loop = Probes(period=5), asyncio.new_event_loop()
    try:
        with leadership(Settings(), loop, probes) as lead:
            assert (lead.leading, lead.stop_flag) == (True, None)
            assert probes.role == "single"
        assert lead.exit_code == 0
    finally:
        loop.close()
