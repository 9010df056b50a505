"""Failure is never a verdict (issue 9) and tasks that are not this object's are never touched (issue 10):
the reconciler's decisions for errors, waits, adoption and observation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rds_export_operator.api import status as st
from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.tenancy import Tenancy
from rds_export_operator.exports.reconcile import Reconciler, RetryPolicy
from unit.exports.test_reconcile import (
    OBSERVE,
    OWNED,
    SOURCE,
    SPEC,
    FakeRds,
    conditions,
    make_spec,
    put,
    reasons,
    status_of,
)
from unit.fakes import Clock

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(poll_interval=30, base_delay=4, max_delay=120, source_wait=3600, iam_wait=600, warn_after=300)


@pytest.fixture
def clock() -> Clock[datetime]:
    return Clock(T0)


@pytest.fixture
def reconciler(rds: FakeRds, clock: Clock) -> Reconciler:
    return Reconciler(rds, POLICY, random.Random(1), clock=clock)


@pytest.fixture
def rds() -> FakeRds:
    return FakeRds()


@pytest.mark.parametrize(
    ("kind", "code"),
    [(ErrorKind.UNAUTHORIZED, "AccessDenied"), (ErrorKind.RETRYABLE, "Throttling"), (ErrorKind.RETRYABLE, "Weird")],
)
@pytest.mark.parametrize("status", [{**OWNED, "status": "IN_PROGRESS"}, {"status": "QUEUED"}, {}])
def test_a_describe_error_is_never_a_verdict(
    reconciler: Reconciler, rds: FakeRds, kind: ErrorKind, code: str, status: dict[str, Any]
) -> None:
    # Bug (issue 9): one AccessDenied on the shared describe made running, queued and new objects Failed.
    rds.fail("DescribeExportTasks", kind, code)
    if not status:
        put(rds, Status="IN_PROGRESS")
        rds.fail("StartExportTask", ErrorKind.ALREADY_EXISTS, "ExportTaskAlreadyExists")
    result = reconciler.sync(SPEC, status, uid="u")
    c = conditions(result)
    assert "Failed" not in c and (c["Synced"].status, c["Synced"].reason) == ("False", code)
    assert result.retry_after is not None
    assert not st.is_finished({**status, **status_of(result)})


def test_a_long_outage_is_said_once(reconciler: Reconciler, rds: FakeRds, clock: Clock) -> None:
    status: dict[str, Any] = {**OWNED, "status": "IN_PROGRESS"}
    seen: list[str] = []
    for minute in range(12):
        rds.fail("DescribeExportTasks", ErrorKind.UNAUTHORIZED, "AccessDenied", "denied")
        result = reconciler.sync(SPEC, status, uid="u", attempt=minute)
        seen += reasons(result)
        synced = conditions(result)["Synced"]
        since = status.get("_since", st.rfc3339(clock.now))
        status = {**status, "_since": since}
        status["conditions"] = [
            {"type": "Synced", "status": "False", "reason": synced.reason, "lastTransitionTime": since}
        ]
        clock.now += timedelta(minutes=1)
    assert seen.count("AccessDenied") == 1
    assert seen.count("AwsUnavailable") == 1  # after warn_after (5 min), once per outage
    put(rds, Status="IN_PROGRESS")
    assert conditions(reconciler.sync(SPEC, status, uid="u"))["Synced"].status == "True"


@pytest.mark.parametrize(
    ("code", "deadline"),
    [("InvalidExportSourceState", 3600), ("IamRoleNotFound", 600), ("IamRoleMissingPermissions", 600)],
)
def test_not_yet_waits_until_its_deadline(
    reconciler: Reconciler, rds: FakeRds, clock: Clock, code: str, deadline: int
) -> None:
    # Bug (issue 9): a second export of a cluster while one ran, a snapshot being created, IAM propagating:
    # all were terminal at once.
    rds.fail("StartExportTask", ErrorKind.NOT_YET, code, "not now")
    first = reconciler.sync(SPEC, {}, uid="u")
    c = conditions(first)
    assert "Failed" not in c and c["Synced"].reason == code
    assert first.status["waitingSince"] == st.rfc3339(T0)
    assert st.rfc3339(T0 + timedelta(seconds=deadline)) in c["Synced"].message
    assert rds.slots.state("u") is None  # out of the queue until it tries again
    clock.now = T0 + timedelta(seconds=deadline - 1)
    rds.fail("StartExportTask", ErrorKind.NOT_YET, code, "not now")
    assert "Failed" not in conditions(reconciler.sync(SPEC, status_of(first), uid="u"))
    clock.now = T0 + timedelta(seconds=deadline)
    rds.fail("StartExportTask", ErrorKind.NOT_YET, code, "not now")
    last = reconciler.sync(SPEC, status_of(first), uid="u")
    failed = conditions(last)["Failed"]
    assert (failed.status, failed.reason) == ("True", code)
    assert "after waiting" in failed.message and st.rfc3339(T0) in failed.message
    assert last.status["status"] == st.REFUSED


def test_a_wait_that_ends_well_clears_waiting_since(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("StartExportTask", ErrorKind.NOT_YET, "InvalidExportSourceState")
    first = reconciler.sync(SPEC, {}, uid="u")
    second = reconciler.sync(SPEC, status_of(first), uid="u")
    assert reasons(second) == ["Started"]
    assert second.status["waitingSince"] is None


def test_a_verdict_never_leaves_queued_or_running_in_status(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("StartExportTask", ErrorKind.TERMINAL, "InvalidS3BucketFault", "no bucket")
    result = reconciler.sync(SPEC, {"status": "QUEUED", "queuedSince": "x"}, uid="u")
    assert result.status["status"] == st.REFUSED and result.status["queuedSince"] is None
    assert conditions(result)["Failed"].status == "True"


TASK = {
    "ExportTaskIdentifier": SPEC.identifier,
    "SourceArn": SOURCE,
    "S3Bucket": "bucket",
    "IamRoleArn": "arn:aws:iam::123456789012:role/export",
    "KmsKeyId": "key",
    "Status": "IN_PROGRESS",
}


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"S3Bucket": "other"}, ["s3BucketName"]),
        ({"S3Prefix": "elsewhere"}, ["s3Prefix"]),
        ({"IamRoleArn": "arn:aws:iam::123456789012:role/other"}, ["iamRoleArn"]),
        ({"KmsKeyId": "other-key"}, ["kmsKeyId"]),
        ({"ExportOnly": ["db.t"]}, ["exportOnly"]),
        ({"S3Bucket": "other", "SourceArn": SOURCE + "x"}, ["sourceArn", "s3BucketName"]),
    ],
)
def test_adoption_compares_every_reported_field(
    reconciler: Reconciler, rds: FakeRds, changes: dict[str, Any], fields: list[str]
) -> None:
    # Bug (issue 10): only the source was compared; another bucket/prefix/role/key/exportOnly was adopted.
    rds.tasks[SPEC.identifier] = {**TASK, **changes}
    result = reconciler.sync(SPEC, {}, uid="u")
    failed = conditions(result)["Failed"]
    assert (failed.status, failed.reason) == ("True", "IdentifierInUse")
    assert f"different {', '.join(fields)};" in failed.message
    assert result.status["s3Bucket"] is None and result.status["status"] == st.REFUSED


@pytest.mark.parametrize(
    "changes",
    [{}, {"S3Prefix": ""}, {"KmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/key"}, {"ExportOnly": []}],
)
def test_adoption_of_a_matching_task(reconciler: Reconciler, rds: FakeRds, changes: dict[str, Any]) -> None:
    rds.tasks[SPEC.identifier] = {**TASK, **changes}
    result = reconciler.sync(SPEC, {}, uid="u")
    assert reasons(result)[0] == "Adopted" and result.status["ownership"] == "Adopted"


def test_observe_then_create_adopts_only_a_matching_task(reconciler: Reconciler, rds: FakeRds) -> None:
    # Bug (issue 10): after a switch from Observe to Create the status showed a task, so adoption was skipped,
    # and a delete then canceled another namespace's export.
    rds.tasks[SPEC.identifier] = {**TASK, "S3Bucket": "team-a-bucket"}
    observed = {"status": "IN_PROGRESS", "ownership": "Observed"}
    result = reconciler.sync(SPEC, observed, uid="u")
    assert conditions(result)["Failed"].reason == "IdentifierInUse"
    assert result.status.get("ownership") is None
    cancel = reconciler.cancel(SPEC, {**observed, **status_of(result)})
    assert cancel.done and ("CancelExportTask", SPEC.identifier) not in rds.calls
    rds.tasks[SPEC.identifier] = dict(TASK)
    matching = reconciler.sync(SPEC, observed, uid="u2")
    assert matching.status["ownership"] == "Adopted"


def test_observe_outside_the_grant_says_nothing_about_the_task(rds: FakeRds) -> None:
    # Bug (issue 10): namespace B could observe A's export and read its source, bucket, prefix and cause.
    tenancy = Tenancy.parse('{"team": {"s3Buckets": ["team-*"]}}')
    reconciler = Reconciler(rds, POLICY, tenancy=tenancy)
    put(rds, "theirs", Status="FAILED", S3Bucket="secret-bucket", FailureCause="secret cause", S3Prefix="secret/")
    result = reconciler.sync(OBSERVE, {}, uid="u")
    failed = conditions(result)["Failed"]
    assert (failed.status, failed.reason) == ("True", "NotPermitted")
    text = repr(result.status) + repr(result.events)
    for secret in ("secret", SOURCE):
        assert secret not in text
    assert result.status["status"] == st.REFUSED


def test_observe_within_the_grant(rds: FakeRds) -> None:
    reconciler = Reconciler(rds, POLICY, tenancy=Tenancy.parse('{"team": {"s3Buckets": ["bucket"]}}'))
    put(rds, "theirs", Status="IN_PROGRESS", S3Bucket="bucket")
    result = reconciler.sync(OBSERVE, {}, uid="u")
    assert result.status["status"] == "IN_PROGRESS" and result.status["ownership"] == "Observed"


def test_a_create_spec_outside_the_grant_makes_no_call(rds: FakeRds) -> None:
    reconciler = Reconciler(rds, POLICY, tenancy=Tenancy.parse('{"team": {"sourceArns": ["*:snapshot:team-*"]}}'))
    result = reconciler.sync(make_spec(), {}, uid="u")
    assert conditions(result)["Failed"].reason == "NotPermitted" and rds.calls == []


def test_the_describe_error_of_an_adoption_is_retryable(reconciler: Reconciler, rds: FakeRds) -> None:
    rds.fail("StartExportTask", ErrorKind.ALREADY_EXISTS, "ExportTaskAlreadyExists")
    rds.errors.setdefault("DescribeExportTasks", []).append(
        AwsError(ErrorKind.UNAUTHORIZED, "AccessDenied", "no", "DescribeExportTasks")
    )
    result = reconciler.sync(SPEC, {}, uid="u")
    assert "Failed" not in conditions(result) and result.retry_after is not None
