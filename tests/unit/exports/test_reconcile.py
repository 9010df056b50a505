"""reconcile.py: the start/adopt/queue/poll/cancel decisions, against an in-memory RdsApi."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from rds_export_operator.api import status as st
from rds_export_operator.api.spec import ExportSpec, parse_spec
from rds_export_operator.aws.errors import AwsError, ErrorKind, ExportTask
from rds_export_operator.exports.handlers import needs_finalizer
from rds_export_operator.exports.reconcile import Event, Gateway, Reconciler, Result, RetryPolicy, backoff, has_task
from rds_export_operator.exports.slots import ExportSlots, State

SOURCE = "arn:aws:rds:eu-west-1:123456789012:snapshot:nightly"
OTHER_SOURCE = "arn:aws:rds:eu-west-1:123456789012:snapshot:other"


SETTINGS = RetryPolicy(poll_interval=30.0, base_delay=4.0, max_delay=120.0)
OWNED = {"ownership": "Started"}


@dataclass
class FakeRds:
    """The gateway in memory: tasks by identifier, errors to raise from the next calls, a call log, and the
    export slots (``free`` False: every slot taken; ``known``: tasks the shared page shows)."""

    tasks: dict[str, ExportTask] = field(default_factory=dict)
    errors: dict[str, list[AwsError]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    known: dict[str, ExportTask] = field(default_factory=dict)
    free: bool = True
    slots: ExportSlots = field(default_factory=lambda: ExportSlots(limit=5))
    slot_calls: list[tuple[str, ...]] = field(default_factory=list)
    watched: dict[str, str] = field(default_factory=dict)  # uid -> identifier: woken when that task changes

    def peek(self, region: str, identifier: str, identity: Any = None) -> ExportTask | None:
        self._maybe_raise("DescribeExportTasks")  # the shared page is a describe too
        return self.known.get(identifier)

    def may_start(self, region: str, uid: str, created: str, identity: Any = None, namespace: str = "") -> bool:
        self.slot_calls.append(("may_start", uid))
        return self.slots.want(region, uid, created, running=0 if self.free else 5)

    def started(self, uid: str) -> bool:
        return self.slots.state(uid) is State.STARTED

    def mark_started(
        self, region: str, uid: str, identifier: str, *, visible: bool = False, identity: Any = None
    ) -> None:
        self.slot_calls.append(("started", uid))
        self.slots.started(region, uid, identifier, None)

    def limit_reached(self, uid: str) -> None:
        self.slot_calls.append(("limit_reached", uid))
        self.slots.limit_reached(uid)

    def release(self, uid: str) -> None:
        self.slot_calls.append(("release", uid))
        self.slots.release(uid)

    def watch(self, uid: str, region: str, identifier: str, identity: Any = None) -> None:
        self.watched[uid] = identifier

    def unwatch(self, uid: str) -> None:
        self.watched.pop(uid, None)

    def fail(self, operation: str, kind: ErrorKind, code: str, message: str = "boom") -> None:
        self.errors.setdefault(operation, []).append(AwsError(kind, code, message, operation))

    def _maybe_raise(self, operation: str) -> None:
        if self.errors.get(operation):
            raise self.errors[operation].pop(0)

    def start(self, spec: ExportSpec) -> ExportTask:
        self.calls.append(("StartExportTask", spec.identifier))
        self._maybe_raise("StartExportTask")
        if spec.identifier in self.tasks:
            raise AwsError(ErrorKind.ALREADY_EXISTS, "ExportTaskAlreadyExists", "exists", "StartExportTask")
        task = {
            "ExportTaskIdentifier": spec.identifier,
            "SourceArn": spec.source_arn,
            "S3Bucket": spec.s3_bucket_name,
            "Status": "STARTING",
            "PercentProgress": 0,
        }
        self.tasks[spec.identifier] = task
        return dict(task)

    def describe(self, region: str, identifier: str, identity: Any = None) -> ExportTask | None:
        self.calls.append(("DescribeExportTasks", identifier))
        self._maybe_raise("DescribeExportTasks")
        task = self.tasks.get(identifier)
        return dict(task) if task else None

    def find(self, region: str, identifier: str, identity: Any = None, uid: str = "") -> ExportTask | None:
        """The batched lookup (Poller.find), answered at once."""
        self.calls.append(("Lookup", identifier))
        self._maybe_raise("DescribeExportTasks")
        task = self.tasks.get(identifier)
        return dict(task) if task else None

    def cancel(self, region: str, identifier: str, identity: Any = None) -> ExportTask:
        self.calls.append(("CancelExportTask", identifier))
        self._maybe_raise("CancelExportTask")
        task = self.tasks.get(identifier)
        if task is None:
            raise AwsError(ErrorKind.NOT_FOUND, "ExportTaskNotFound", "no such task", "CancelExportTask")
        if task["Status"] in st.TERMINAL_STATUSES:
            raise AwsError(ErrorKind.INVALID_STATE, "InvalidExportTaskStateFault", "finished", "CancelExportTask")
        task["Status"] = "CANCELING"
        return dict(task)


def _check_protocol(fake: FakeRds) -> Gateway:
    return fake  # mypy: FakeRds implements Gateway


def make_spec(**overrides: Any) -> ExportSpec:
    raw = {
        "sourceArn": SOURCE,
        "s3BucketName": "bucket",
        "iamRoleArn": "arn:aws:iam::123456789012:role/export",
        "kmsKeyId": "key",
        **overrides,
    }
    return parse_spec(raw, namespace="team", name="orders", uid="uid-1", default_region="")


SPEC = make_spec()
OBSERVE = make_spec(managementPolicy="Observe", exportTaskIdentifier="theirs")


@pytest.fixture
def rds() -> FakeRds:
    return FakeRds()


@pytest.fixture
def reconciler(rds: FakeRds) -> Reconciler:
    return Reconciler(_check_protocol(rds), SETTINGS, random.Random(1))


def conditions(result: Result) -> dict[str, st.Condition]:
    conds = result.status["conditions"]
    assert len({c.type for c in conds}) == len(conds)
    return {c.type: c for c in conds}


def reasons(result: Result) -> list[str]:
    return [e.reason for e in result.events]


def put(rds: FakeRds, identifier: str = SPEC.identifier, **task: Any) -> None:
    rds.tasks[identifier] = {"ExportTaskIdentifier": identifier, "SourceArn": SOURCE, **task}


def status_of(result: Result) -> dict[str, Any]:
    """The stored status a later sync sees, as the handler would have written it."""
    out = dict(result.status)
    out["conditions"] = [
        {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
        for c in result.status.get("conditions", [])
    ]
    return out


# -- helpers --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [({}, False), ({"status": None}, False), ({"status": ""}, False), ({"status": "QUEUED"}, False)]
    + [({"status": s}, True) for s in ("STARTING", "IN_PROGRESS", "CANCELING", "COMPLETE", "FAILED", "UNKNOWN")],
)
def test_has_task(status: dict[str, Any], expected: bool) -> None:
    assert has_task(status) is expected


def test_backoff_first_attempt_is_within_base() -> None:
    rng = random.Random(0)
    delays = [backoff(SETTINGS, 0, rng) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # jittered, not constant


def test_backoff_grows_and_caps() -> None:
    rng = random.Random(0)
    assert 8.0 <= backoff(SETTINGS, 2, rng) <= 16.0
    assert 60.0 <= backoff(SETTINGS, 5, rng) <= 120.0  # 4*32=128 capped at 120
    assert 60.0 <= backoff(SETTINGS, 10_000, rng) <= 120.0  # no overflow for huge attempt counts


def test_backoff_without_rng_uses_module_random() -> None:
    assert 2.0 <= backoff(SETTINGS, 0) <= 4.0


@given(
    hs.floats(0.01, 100),
    hs.floats(1, 10),
    hs.integers(0, 10_000),
    hs.randoms(use_true_random=False),
)
def test_backoff_is_bounded(base: float, factor: float, attempt: int, rng: random.Random) -> None:
    policy = RetryPolicy(base_delay=base, max_delay=base * factor)
    delay = backoff(policy, attempt, rng)
    ceiling = min(policy.max_delay, base * 2.0 ** min(attempt, 64))  # factor <= 10: capped by attempt 4
    assert ceiling / 2 <= delay <= ceiling
    assert base / 2 <= delay <= policy.max_delay


# -- sync: create path ------------------------------------------------------------------------------------------------


def test_sync_starts_a_new_export(reconciler: Reconciler, rds: FakeRds) -> None:
    result = reconciler.sync(SPEC, {})
    assert rds.calls == [("Lookup", SPEC.identifier), ("StartExportTask", SPEC.identifier)]
    assert result.status["status"] == "STARTING"
    assert result.status["ownership"] == "Started"
    assert result.status["sourceArn"] == SOURCE
    assert result.events == [Event("Normal", "Started", f"started export task {SPEC.identifier}")]
    c = conditions(result)
    assert c["Synced"].status == "True"
    assert c["Complete"].status == c["Failed"].status == "False"
    assert c["Complete"].reason == "ExportStarting"
    assert result.retry_after is None and not result.done


def test_sync_starts_a_queued_export_when_a_slot_frees(reconciler: Reconciler, rds: FakeRds) -> None:
    result = reconciler.sync(SPEC, {"status": "QUEUED"})
    assert rds.calls == [("StartExportTask", SPEC.identifier)]
    assert result.status["status"] == "STARTING"
    assert reasons(result) == ["Started"]  # no separate "Starting" transition event


def test_sync_polls_instead_of_starting_when_a_task_is_known(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="IN_PROGRESS", PercentProgress=10)
    result = reconciler.sync(SPEC, {**OWNED, "status": "STARTING"})
    assert rds.calls == [("Lookup", SPEC.identifier)]
    assert result.status["status"] == "IN_PROGRESS"
    assert result.status["percentProgress"] == 10
    assert reasons(result) == ["InProgress"]


def test_sync_adopts_an_existing_task_for_the_same_source(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="STARTING")
    result = reconciler.sync(SPEC, {})
    assert rds.calls == [("Lookup", SPEC.identifier)]  # matched by identifier before anything starts
    assert reasons(result) == ["Adopted"]
    assert result.status["status"] == "STARTING"
    assert conditions(result)["Synced"].status == "True"


def test_sync_adopting_a_running_task_reports_its_state(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="IN_PROGRESS", PercentProgress=60)
    result = reconciler.sync(SPEC, {})
    assert reasons(result) == ["Adopted", "InProgress", "Progress", "Progress"]
    assert [e.message for e in result.events[2:]] == ["export is 25% done", "export is 50% done"]


def test_sync_refuses_a_task_of_another_source(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="IN_PROGRESS", SourceArn=OTHER_SOURCE)
    result = reconciler.sync(SPEC, {})
    c = conditions(result)
    assert c["Failed"].status == "True"
    assert c["Failed"].reason == "IdentifierInUse"
    assert "different sourceArn" in c["Failed"].message
    assert c["Synced"] == st.Condition("Synced", "False", "IdentifierInUse", c["Failed"].message)
    assert c["Complete"].status == "False"
    assert result.status["status"] == st.REFUSED  # the other task's fields are not reported as ours
    assert result.status["sourceArn"] is None
    assert result.events[0].type == "Warning" and reasons(result) == ["IdentifierInUse"]
    assert result.retry_after is None
    assert st.is_finished(status_of(result))


def test_sync_already_exists_but_gone_retries(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("StartExportTask", ErrorKind.ALREADY_EXISTS, "ExportTaskAlreadyExists", "exists")
    result = reconciler.sync(SPEC, {}, attempt=1)
    c = conditions(result)
    assert c["Synced"].status == "False"
    assert c["Synced"].reason == "ExportTaskAlreadyExists"
    assert set(c) == {"Synced"}
    assert result.retry_after is not None and 4.0 <= result.retry_after <= 8.0


def test_sync_queues_at_the_export_limit(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("StartExportTask", ErrorKind.LIMIT_REACHED, "ExportTaskLimitReachedFault", "limit of 5")
    result = reconciler.sync(SPEC, {})
    assert result.status["status"] == st.QUEUED
    c = conditions(result)
    assert c["Synced"].status == "True"
    assert c["Synced"].reason == "ExportLimitReached"
    assert "limit of 5" in c["Synced"].message
    assert c["Complete"].reason == c["Failed"].reason == "ExportQueued"
    assert c["Failed"].status == "False"
    assert reasons(result) == ["Queued"]
    assert result.retry_after is None  # waits for the normal poll
    assert not st.is_finished(status_of(result))


def test_sync_queued_again_posts_no_second_event(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("StartExportTask", ErrorKind.LIMIT_REACHED, "ExportTaskLimitReachedFault")
    rds.fail("StartExportTask", ErrorKind.LIMIT_REACHED, "ExportTaskLimitReachedFault")
    first = reconciler.sync(SPEC, {})
    second = reconciler.sync(SPEC, status_of(first))
    assert reasons(first) == ["Queued"]
    assert second.events == []
    assert second.status["status"] == st.QUEUED
    assert [c for c, _ in rds.calls] == ["Lookup", "StartExportTask"]  # closed until the next page; no 2nd lookup


@pytest.mark.parametrize("code", ["Throttling", "ServiceUnavailable", "RequestTimeout", "EndpointConnectionError"])
def test_sync_retryable_start_error(reconciler: Reconciler, rds: FakeRds, code: str) -> None:
    rds.fail("StartExportTask", ErrorKind.RETRYABLE, code, "try later")
    result = reconciler.sync(SPEC, {})
    c = conditions(result)
    assert set(c) == {"Synced"}
    assert c["Synced"] == st.Condition("Synced", "False", code, "StartExportTask: try later")
    assert result.events == [Event("Warning", code, "StartExportTask: try later; retrying with backoff")]
    assert result.retry_after is not None
    assert SETTINGS.base_delay / 2 <= result.retry_after <= SETTINGS.max_delay
    assert "status" not in result.status


def test_sync_retryable_error_without_message(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("StartExportTask", ErrorKind.RETRYABLE, "ReadTimeoutError", "")
    result = reconciler.sync(SPEC, {})
    assert conditions(result)["Synced"].message == "StartExportTask"


@given(hs.integers(0, 200), hs.integers(0, 2**32))
def test_sync_retry_after_is_bounded(attempt: int, seed: int) -> None:
    rds = FakeRds()
    rds.fail("DescribeExportTasks", ErrorKind.RETRYABLE, "Throttling")
    result = Reconciler(rds, SETTINGS, random.Random(seed)).sync(
        SPEC, {**OWNED, "status": "IN_PROGRESS"}, attempt=attempt
    )
    assert result.retry_after is not None
    assert SETTINGS.base_delay / 2 <= result.retry_after <= SETTINGS.max_delay
    assert conditions(result)["Synced"].status == "False"


def test_sync_same_retryable_error_posts_one_event(reconciler: Reconciler, rds: FakeRds) -> None:
    for code in ("Throttling", "Throttling", "ServiceUnavailable"):
        rds.fail("DescribeExportTasks", ErrorKind.RETRYABLE, code)
    first = reconciler.sync(SPEC, {**OWNED, "status": "IN_PROGRESS"})
    second = reconciler.sync(SPEC, {**status_of(first), "status": "IN_PROGRESS"}, attempt=1)
    assert reasons(first) == ["Throttling"]
    assert second.events == [] and second.retry_after is not None
    third = reconciler.sync(SPEC, {**status_of(second), "status": "IN_PROGRESS"}, attempt=2)
    assert reasons(third) == ["ServiceUnavailable"]  # a different error is news


def test_sync_terminal_start_error_fails(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("StartExportTask", ErrorKind.TERMINAL, "IamRoleNotFound", "role missing")
    result = reconciler.sync(SPEC, {})
    c = conditions(result)
    assert c["Failed"] == st.Condition("Failed", "True", "IamRoleNotFound", "StartExportTask: role missing")
    assert c["Complete"] == st.Condition("Complete", "False", "IamRoleNotFound")
    assert c["Synced"].status == "False"
    assert result.events == [Event("Warning", "IamRoleNotFound", "StartExportTask: role missing")]
    assert result.retry_after is None
    assert st.is_finished(status_of(result))


# -- sync: polling --------------------------------------------------------------------------------------------------


def test_sync_poll_without_news_posts_nothing(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="IN_PROGRESS", PercentProgress=30)
    result = reconciler.sync(SPEC, {**OWNED, "status": "IN_PROGRESS", "percentProgress": 30})
    assert result.events == []
    assert result.status["percentProgress"] == 30


@pytest.mark.parametrize(
    ("old", "new", "milestones"),
    [
        (0, 24, []),
        (0, 25, [25]),
        (24, 25, [25]),
        (25, 49, []),
        (10, 80, [25, 50, 75]),
        (50, 75, [75]),
        (75, 99, []),
        (80, 20, []),  # going backwards never repeats milestones
    ],
)
def test_sync_progress_milestones(
    reconciler: Reconciler, rds: FakeRds, old: int, new: int, milestones: list[int]
) -> None:
    put(rds, Status="IN_PROGRESS", PercentProgress=new)
    result = reconciler.sync(SPEC, {**OWNED, "status": "IN_PROGRESS", "percentProgress": old})
    assert [e.message for e in result.events if e.reason == "Progress"] == [f"export is {m}% done" for m in milestones]
    assert all(e.reason == "Progress" for e in result.events)


def test_sync_no_progress_events_once_complete(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="COMPLETE", PercentProgress=100, TotalExtractedDataInGB=12)
    result = reconciler.sync(SPEC, {**OWNED, "status": "IN_PROGRESS", "percentProgress": 10})
    assert result.events == [Event("Normal", "Complete", "export complete: 12 GB extracted")]
    c = conditions(result)
    assert c["Complete"].status == "True" and c["Failed"].status == "False"
    assert st.is_finished(status_of(result))


def test_sync_reports_failure_cause(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="FAILED", FailureCause="S3 bucket is gone")
    result = reconciler.sync(SPEC, {**OWNED, "status": "IN_PROGRESS"})
    assert result.events == [Event("Warning", "Failed", "export failed: S3 bucket is gone")]
    assert conditions(result)["Failed"].message == "S3 bucket is gone"
    assert result.status["failureCause"] == "S3 bucket is gone"


def test_sync_reports_failure_without_cause(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="FAILED")
    result = reconciler.sync(SPEC, {**OWNED, "status": "IN_PROGRESS"})
    assert result.events == [Event("Warning", "Failed", "export failed: no cause given")]


def test_sync_reports_canceled(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="canceled")
    result = reconciler.sync(SPEC, {**OWNED, "status": "CANCELING"})
    assert result.status["status"] == "CANCELED"
    assert result.events == [Event("Normal", "Canceled", "export canceled")]
    assert conditions(result)["Failed"].reason == "ExportCanceled"


def test_sync_observe_never_starts(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, "theirs", Status="IN_PROGRESS", PercentProgress=5)
    result = reconciler.sync(OBSERVE, {})
    assert rds.calls == [("Lookup", "theirs")]
    assert result.status["status"] == "IN_PROGRESS"
    assert reasons(result) == ["InProgress"]


def test_sync_observe_first_sight_of_starting_task_posts_no_event(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, "theirs", Status="STARTING")
    result = reconciler.sync(OBSERVE, {})
    assert result.events == []
    assert result.status["status"] == "STARTING"


def test_sync_reports_starting_after_another_known_status(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="STARTING")
    result = reconciler.sync(SPEC, {**OWNED, "status": "UNKNOWN"})
    assert result.events == [Event("Normal", "Starting", "export is STARTING")]


def test_sync_missing_task_once(reconciler: Reconciler, rds: FakeRds) -> None:
    first = reconciler.sync(SPEC, {**OWNED, "status": "IN_PROGRESS"})
    c = conditions(first)
    assert set(c) == {"Synced"}
    assert (c["Synced"].status, c["Synced"].reason) == ("False", "ExportTaskNotFound")
    assert "does not start it again" in c["Synced"].message
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "ExportTaskNotFound")]
    assert [name for name, _ in rds.calls] == ["Lookup"]  # never restarted
    second = reconciler.sync(SPEC, {**status_of(first), "status": "IN_PROGRESS"})
    assert second.events == []
    assert conditions(second)["Synced"].reason == "ExportTaskNotFound"
    assert [name for name, _ in rds.calls] == ["Lookup", "Lookup"]


def test_sync_missing_observed_task(reconciler: Reconciler) -> None:
    result = reconciler.sync(OBSERVE, {})
    message = conditions(result)["Synced"].message
    assert message.startswith("no export task theirs in eu-west-1 to observe; watched until ")
    assert result.events == [Event("Warning", "ExportTaskNotFound", message)]


def test_an_observe_of_a_task_aws_never_knew_fails_after_the_deadline(rds: FakeRds) -> None:
    """Attack 4: thousands of cheap Observe objects of made-up identifiers must not be watched for ever."""
    now = [datetime(2026, 12, 4, 12, 0, tzinfo=UTC)]
    policy = RetryPolicy(poll_interval=30.0, observe_wait=600.0)
    reconciler = Reconciler(_check_protocol(rds), policy, random.Random(1), clock=lambda: now[0])
    first = reconciler.sync(OBSERVE, {})
    assert first.status["notFoundSince"] == "2026-12-04T12:00:00Z" and not st.is_finished(status_of(first))
    now[0] += timedelta(seconds=599)
    assert not st.is_finished(status_of(reconciler.sync(OBSERVE, status_of(first))))
    now[0] += timedelta(seconds=1)
    last = reconciler.sync(OBSERVE, status_of(first))
    failed = conditions(last)["Failed"]
    assert (failed.status, failed.reason) == ("True", "ExportTaskNotFound")
    assert "has not known it since 2026-12-04T12:00:00Z" in failed.message
    assert {name for name, _ in rds.calls} == {"Lookup"}  # only ever looked


def test_a_region_aws_does_not_have_is_refused_before_any_call(rds: FakeRds) -> None:
    """Attack 4: made-up regions would each get a client, a poller scope and a slot scope."""
    reconciler = Reconciler(
        _check_protocol(rds), SETTINGS, random.Random(1), region_refusal=lambda r: f"{r} is made up"
    )
    for spec in (SPEC, OBSERVE):
        result = reconciler.sync(spec, {}, uid="u1")
        assert (conditions(result)["Failed"].status, conditions(result)["Failed"].reason) == ("True", "UnknownRegion")
    assert rds.calls == []


def test_sync_recovers_after_missing(reconciler: Reconciler, rds: FakeRds) -> None:
    missing = reconciler.sync(OBSERVE, {})
    put(rds, "theirs", Status="IN_PROGRESS")
    found = reconciler.sync(OBSERVE, status_of(missing))
    assert conditions(found)["Synced"] == st.Condition("Synced", "True", "Synced", "")


# -- cancel ---------------------------------------------------------------------------------------------------------


def test_cancel_running_task_waits_for_aws(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="IN_PROGRESS", PercentProgress=40)
    result = reconciler.cancel(SPEC, {**OWNED, "status": "IN_PROGRESS", "percentProgress": 40})
    assert rds.calls == [("CancelExportTask", SPEC.identifier)]
    assert not result.done
    assert result.retry_after == SETTINGS.poll_interval
    assert result.status["status"] == "CANCELING"
    assert reasons(result)[0] == "Canceling"
    assert result.events[0].message == f"canceling export task {SPEC.identifier}"


def test_cancel_while_canceling_only_describes(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="CANCELING")
    result = reconciler.cancel(SPEC, {**OWNED, "status": "CANCELING"})
    assert rds.calls == [("DescribeExportTasks", SPEC.identifier)]
    assert not result.done
    assert result.retry_after == SETTINGS.poll_interval
    assert result.events == []


def test_cancel_done_when_canceled(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="CANCELED")
    result = reconciler.cancel(SPEC, {**OWNED, "status": "CANCELING"})
    assert result.done
    assert result.retry_after is None
    assert reasons(result) == ["Canceled"]
    assert result.status["status"] == "CANCELED"


def test_cancel_done_when_task_vanished_while_canceling(reconciler: Reconciler) -> None:
    result = reconciler.cancel(SPEC, {**OWNED, "status": "CANCELING"})
    assert result.done and result.events == [] and result.status == {}


def test_cancel_not_found_is_done(reconciler: Reconciler, rds: FakeRds) -> None:
    result = reconciler.cancel(SPEC, {**OWNED, "status": "IN_PROGRESS"})
    assert rds.calls == [("CancelExportTask", SPEC.identifier)]
    assert result.done
    assert result.events == [] and result.retry_after is None


@pytest.mark.parametrize(
    "status",
    [
        {"status": "QUEUED"},
        {"status": "REFUSED"},
        {"status": "IN_PROGRESS"},  # no ownership: never started nor adopted by this object
        {"status": "IN_PROGRESS", "ownership": "Observed"},
    ],
)
def test_cancel_of_what_is_not_ours_makes_no_call(reconciler: Reconciler, rds: FakeRds, status: dict[str, Any]) -> None:
    """(An object whose status shows no task yet is covered by test_cancel_finds_a_start_the_status_never_showed.)"""
    # Bug (issue 10): deleting a QUEUED object with an explicit identifier canceled whatever task held it.
    put(rds, Status="IN_PROGRESS")
    result = reconciler.cancel(SPEC, status)
    assert rds.calls == []
    assert result.done


def test_cancel_finished_task_is_done(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="COMPLETE", PercentProgress=100, TotalExtractedDataInGB=3)
    result = reconciler.cancel(SPEC, {**OWNED, "status": "IN_PROGRESS", "percentProgress": 90})
    assert result.done
    assert result.retry_after is None
    assert rds.calls == [("CancelExportTask", SPEC.identifier), ("DescribeExportTasks", SPEC.identifier)]
    assert reasons(result) == ["AlreadyFinished", "Complete"]
    assert result.status["status"] == "COMPLETE"


def test_cancel_invalid_state_with_a_failing_describe_retries(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("CancelExportTask", ErrorKind.INVALID_STATE, "InvalidExportTaskStateFault")
    rds.fail("DescribeExportTasks", ErrorKind.RETRYABLE, "Throttling")
    result = reconciler.cancel(SPEC, {**OWNED, "status": "IN_PROGRESS"})
    assert not result.done
    assert result.retry_after is not None and result.retry_after > 0
    assert reasons(result) == []
    assert result.status == {}


def test_cancel_already_under_way_waits_for_canceled(reconciler: Reconciler, rds: FakeRds) -> None:
    # The operator asked, crashed before writing CANCELING, and asks again: AWS refuses, the task is CANCELING.
    put(rds, Status="CANCELING")
    rds.fail("CancelExportTask", ErrorKind.INVALID_STATE, "InvalidExportTaskStateFault")
    result = reconciler.cancel(SPEC, {**OWNED, "status": "IN_PROGRESS"})
    assert not result.done
    assert result.status["status"] == "CANCELING"
    assert "AlreadyFinished" not in reasons(result)
    assert result.retry_after is not None


def test_cancel_access_denied_keeps_the_export_tracked(reconciler: Reconciler, rds: FakeRds) -> None:
    # Bug (issue 9): an AccessDenied on cancel let the object go while its export kept running.
    rds.fail("CancelExportTask", ErrorKind.UNAUTHORIZED, "AccessDenied", "not allowed")
    result = reconciler.cancel(SPEC, {**OWNED, "status": "IN_PROGRESS"})
    assert not result.done and result.retry_after is not None
    assert result.events == [Event("Warning", "AccessDenied", "cancel failed, retrying: not allowed")]


@pytest.mark.parametrize("attempt", [0, 3, 50])
def test_cancel_retryable_error_backs_off(reconciler: Reconciler, rds: FakeRds, attempt: int) -> None:
    rds.fail("CancelExportTask", ErrorKind.RETRYABLE, "Throttling", "slow down")
    result = reconciler.cancel(SPEC, {**OWNED, "status": "IN_PROGRESS"}, attempt=attempt)
    assert not result.done
    assert result.retry_after is not None
    ceiling = min(SETTINGS.max_delay, SETTINGS.base_delay * 2**attempt)
    assert ceiling / 2 <= result.retry_after <= ceiling
    assert result.events == [Event("Warning", "Throttling", "cancel failed, retrying: slow down")]


def test_cancel_retryable_describe_error_while_canceling(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("DescribeExportTasks", ErrorKind.RETRYABLE, "ServiceUnavailable")
    result = reconciler.cancel(SPEC, {**OWNED, "status": "CANCELING"})
    assert not result.done and result.retry_after is not None
    assert reasons(result) == ["ServiceUnavailable"]


def test_cancel_then_poll_until_canceled(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="IN_PROGRESS")
    first = reconciler.cancel(SPEC, {**OWNED, "status": "IN_PROGRESS"})
    assert not first.done
    rds.tasks[SPEC.identifier]["Status"] = "CANCELED"
    second = reconciler.cancel(SPEC, {**OWNED, **status_of(first)})
    assert second.done
    assert [name for name, _ in rds.calls] == ["CancelExportTask", "DescribeExportTasks"]


def test_full_lifecycle(reconciler: Reconciler, rds: FakeRds) -> None:
    status: dict[str, Any] = {}
    seen: list[str] = []
    for percent, aws_status in [(None, None), (30, "IN_PROGRESS"), (80, "IN_PROGRESS"), (100, "COMPLETE")]:
        if aws_status:
            rds.tasks[SPEC.identifier].update(Status=aws_status, PercentProgress=percent)
        result = reconciler.sync(SPEC, status)
        seen += reasons(result)
        status = {**status, **status_of(result)}
    assert seen == ["Started", "InProgress", "Progress", "Progress", "Progress", "Complete"]
    assert st.is_finished(status)
    assert [name for name, _ in rds.calls].count("StartExportTask") == 1


# -- the export queue (slots) --------------------------------------------------------------------------------------


def test_queue_start_when_a_slot_is_free(reconciler: Reconciler, rds: FakeRds) -> None:
    result = reconciler.sync(SPEC, {}, uid="u1", created="t1")
    assert reasons(result) == ["Started"]
    assert rds.slot_calls == [("may_start", "u1"), ("started", "u1")]
    assert rds.calls == [("Lookup", SPEC.identifier), ("StartExportTask", SPEC.identifier)]
    # A tick on a body older than our own status write describes instead of starting again.
    again = reconciler.sync(SPEC, {}, uid="u1", created="t1")
    assert rds.calls == [("Lookup", SPEC.identifier), ("StartExportTask", SPEC.identifier), ("Lookup", SPEC.identifier)]
    assert "Started" not in reasons(again)


def test_queue_waits_without_calling_aws(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.free = False
    first = reconciler.sync(SPEC, {}, uid="u1", created="t1")
    assert rds.calls == [("Lookup", SPEC.identifier)]  # no task of that identifier: it waits for a slot
    assert first.status["status"] == st.QUEUED
    assert first.status["queuedSince"]
    synced = conditions(first)["Synced"]
    assert (synced.status, synced.reason) == ("True", "ExportLimitReached")
    assert "namespaces take turns, oldest first" in synced.message
    assert reasons(first) == ["Queued"]
    assert rds.slots.waiting() == 1
    second = reconciler.sync(SPEC, status_of(first), uid="u1", created="t1")
    assert second.events == [] and second.status["status"] == st.QUEUED
    assert "queuedSince" not in second.status  # kept as it was
    assert rds.calls == [("Lookup", SPEC.identifier)]


def written(before: dict[str, Any], result: Result) -> dict[str, Any]:
    """The status after ``result``'s merge patch (None deletes)."""
    after = {**before, **status_of(result)}
    return {key: value for key, value in after.items() if value is not None}


def test_a_queued_object_gets_its_finalizer_before_it_starts(reconciler: Reconciler, rds: FakeRds) -> None:
    queued = {"status": "QUEUED", "queuedSince": "2026-01-01T00:00:00Z"}
    assert not needs_finalizer({}, queued)
    result = reconciler.sync(SPEC, queued, uid="u1", created="t1", has_finalizer=False)
    assert rds.calls == []
    assert result.status["status"] is None and result.status["queuedSince"] is None
    assert conditions(result)["Synced"].reason == "AwaitingFinalizer"
    assert needs_finalizer({}, written(queued, result))  # no longer queued: the finalizer filter matches
    assert result.retry_after is None  # no retry loop: the watch event showing the finalizer wakes the object
    started = reconciler.sync(SPEC, {}, uid="u1", created="t1", has_finalizer=True)
    assert reasons(started) == ["Started"]
    retained = make_spec(deletionPolicy="Retain", exportTaskIdentifier="kept")
    assert reasons(reconciler.sync(retained, {}, uid="u2", created="t2", has_finalizer=False)) == ["Started"]


def test_a_new_object_holds_no_finalizer_until_it_is_about_to_start(reconciler: Reconciler, rds: FakeRds) -> None:
    # Bug (issue 13): kopf added the finalizer to every new object before its first look, and removed it again
    # when the object adopted a finished task: two writes and two watch events for each of 1,000s adopted at once.
    assert not needs_finalizer({}, {})
    adopted = {"ExportTaskIdentifier": SPEC.identifier, "SourceArn": SOURCE, "Status": "COMPLETE"}
    rds.tasks[SPEC.identifier] = adopted
    finished = reconciler.sync(SPEC, {}, uid="u0", created="t0", has_finalizer=False)
    assert not needs_finalizer({}, written({}, finished))
    fresh = make_spec(exportTaskIdentifier="fresh")
    first = reconciler.sync(fresh, {}, uid="u1", created="t1", has_finalizer=False)
    assert ("StartExportTask", "fresh") not in rds.calls
    assert first.status and needs_finalizer({}, written({}, first))  # a status that asks for the finalizer
    started = reconciler.sync(fresh, written({}, first), uid="u1", created="t1", has_finalizer=True)
    assert reasons(started) == ["Started"]


def test_queue_adopts_a_known_running_task_without_calls(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.known[SPEC.identifier] = {"ExportTaskIdentifier": SPEC.identifier, "SourceArn": SOURCE, "Status": "STARTING"}
    result = reconciler.sync(SPEC, {}, uid="u1", created="t1")
    assert rds.calls == []
    assert reasons(result) == ["Adopted"]
    assert result.status["status"] == "STARTING"
    assert result.status["ownership"] == "Adopted"
    assert not any(c[0] == "may_start" for c in rds.slot_calls)


def test_queue_known_task_of_another_source(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.known[SPEC.identifier] = {"ExportTaskIdentifier": SPEC.identifier, "SourceArn": OTHER_SOURCE}
    result = reconciler.sync(SPEC, {}, uid="u1", created="t1")
    assert rds.calls == []
    failed = conditions(result)["Failed"]
    assert (failed.status, failed.reason) == ("True", "IdentifierInUse")
    assert ("release", "u1") in rds.slot_calls


def test_queue_limit_reached_keeps_the_place_in_line(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("StartExportTask", ErrorKind.LIMIT_REACHED, "ExportTaskLimitReachedFault", "limit")
    result = reconciler.sync(SPEC, {}, uid="u1", created="t1")
    assert result.status["status"] == st.QUEUED
    assert ("limit_reached", "u1") in rds.slot_calls
    assert rds.slots.waiting() == 1


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (ErrorKind.TERMINAL, "InvalidS3BucketFault"),
        (ErrorKind.NOT_YET, "InvalidExportSourceState"),
        (ErrorKind.RETRYABLE, "Throttling"),
        (ErrorKind.UNAUTHORIZED, "AccessDenied"),
    ],
)
def test_every_start_error_leaves_the_line(reconciler: Reconciler, rds: FakeRds, kind: ErrorKind, code: str) -> None:
    # Bug (issue 9): an object that failed while queued kept its place for ever; newer ones waited behind a ghost.
    rds.fail("StartExportTask", kind, code, "no")
    reconciler.sync(SPEC, {}, uid="u1", created="t1")
    assert rds.slots.state("u1") is None and rds.slots.waiting() == 0


def test_queue_is_not_consulted_for_known_tasks(reconciler: Reconciler, rds: FakeRds) -> None:
    put(rds, Status="IN_PROGRESS")
    reconciler.sync(SPEC, {**OWNED, "status": "STARTING"}, uid="u1", created="t1")
    put(rds, "theirs", Status="IN_PROGRESS")
    reconciler.sync(OBSERVE, {}, uid="u2", created="t2")
    assert rds.slot_calls == []


def test_cancel_finds_a_start_the_status_never_showed(reconciler: Reconciler, rds: FakeRds) -> None:
    # Found by the model-based test: a crash (or a lost answer) right after StartExportTask left the status empty,
    # and a deletion then let the export run. The derived identifier can only be this object's: cancel it.
    put(rds, Status="STARTING")
    result = reconciler.cancel(SPEC, {}, uid="u1")
    assert ("CancelExportTask", SPEC.identifier) in rds.calls
    assert not result.done and result.status["status"] == "CANCELING"


def test_cancel_of_an_explicit_identifier_needs_proof_of_ownership(reconciler: Reconciler, rds: FakeRds) -> None:
    explicit = make_spec(exportTaskIdentifier="chosen")
    put(rds, "chosen", Status="STARTING")
    assert reconciler.cancel(explicit, {}, uid="u1").done  # someone else's, for all we know
    assert ("CancelExportTask", "chosen") not in rds.calls
    rds.tasks.clear()
    reconciler.sync(explicit, {}, uid="u1")  # we start it in this process: it is ours
    result = reconciler.cancel(explicit, {}, uid="u1")
    assert ("CancelExportTask", "chosen") in rds.calls and not result.done


def test_cancel_of_an_unseen_start_that_never_happened_is_done(reconciler: Reconciler, rds: FakeRds) -> None:
    assert reconciler.cancel(SPEC, {}, uid="u1").done
    assert rds.calls == [("DescribeExportTasks", SPEC.identifier)]


def test_congestion_of_our_own_threads_writes_nothing_and_looks_again_soon(
    reconciler: Reconciler, rds: FakeRds
) -> None:
    # Found by the benchmark: at an adoption burst, RegionBusy went through the exponential backoff (minutes).
    rds.fail("DescribeExportTasks", ErrorKind.RETRYABLE, "RegionBusy", "every call slot is busy")
    result = reconciler.sync(SPEC, {**OWNED, "status": "IN_PROGRESS"}, attempt=12)
    assert result.status == {} and result.events == []
    assert result.retry_after is not None and result.retry_after <= 2


def test_an_earlier_not_yet_wait_does_not_shorten_an_observes_deadline(rds: FakeRds) -> None:
    # Bug (review of the merge): the Observe deadline read waitingSince, which a Create's "not yet" wait (busy
    # source) had set long before: switched to Observe, the object failed ExportTaskNotFound at once.
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    policy = RetryPolicy(poll_interval=30.0, observe_wait=600.0)
    reconciler = Reconciler(_check_protocol(rds), policy, random.Random(1), clock=lambda: now)
    earlier = st.rfc3339(now - timedelta(hours=2))
    result = reconciler.sync(OBSERVE, {"waitingSince": earlier})
    assert not st.is_finished(status_of(result))
    assert result.status["notFoundSince"] == st.rfc3339(now)
