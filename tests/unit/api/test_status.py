"""status.py: ExportTask -> status fields, conditions, merging and the minimal status patch."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as hs

from rds_export_operator.api import status as st
from rds_export_operator.api.status import (
    AWS_FIELDS,
    Condition,
    is_finished,
    merge_conditions,
    normalize_status,
    outcome_conditions,
    rfc3339,
    status_patch,
    task_fields,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


# -- normalize_status / rfc3339 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("COMPLETE", "COMPLETE"),
        ("complete", "COMPLETE"),
        ("In_Progress", "IN_PROGRESS"),
        ("in-progress", "IN_PROGRESS"),
        ("  starting\n", "STARTING"),
        (None, "UNKNOWN"),
        ("", "UNKNOWN"),
        ("   ", "UNKNOWN"),
        (0, "UNKNOWN"),
        (7, "7"),
    ],
)
def test_normalize_status(value: object, expected: str) -> None:
    assert normalize_status(value) == expected


def test_rfc3339() -> None:
    assert rfc3339(T0) == "2026-01-02T03:04:05Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 999999)) == "2026-01-02T03:04:05Z"  # naive is UTC
    assert rfc3339(datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-02T03:04:05Z"


def test_rfc3339_naive_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert rfc3339(datetime(2026, 7, 1, 12, 0, 0)) == "2026-07-01T12:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


# -- task_fields ----------------------------------------------------------------------------------------------------


def test_task_fields_full_task() -> None:
    task = {
        "ExportTaskIdentifier": "team-orders-abc",
        "SourceArn": "arn:aws:rds:eu-west-1:1:snapshot:s",
        "SourceType": "SNAPSHOT",
        "S3Bucket": "bucket",
        "S3Prefix": "p/",
        "Status": "IN_PROGRESS",
        "PercentProgress": 42,
        "TotalExtractedDataInGB": 7,
        "SnapshotTime": T0,
        "TaskStartTime": datetime(2026, 1, 2, 4, 0, 0, tzinfo=timezone(timedelta(hours=-1))),
        "TaskEndTime": datetime(2026, 1, 2, 6, 0, 0),
        "FailureCause": "nope",
        "WarningMessage": "careful",
        "ExportOnly": ["db"],
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }
    assert task_fields(task) == {
        "status": "IN_PROGRESS",
        "sourceArn": "arn:aws:rds:eu-west-1:1:snapshot:s",
        "sourceType": "SNAPSHOT",
        "s3Bucket": "bucket",
        "s3Prefix": "p/",
        "failureCause": "nope",
        "warningMessage": "careful",
        "snapshotTime": "2026-01-02T03:04:05Z",
        "taskStartTime": "2026-01-02T05:00:00Z",
        "taskEndTime": "2026-01-02T06:00:00Z",
        "percentProgress": 42,
        "totalExtractedDataInGB": 7,
    }


def test_task_fields_omits_what_aws_omits() -> None:
    assert task_fields({}) == {"status": "UNKNOWN"}
    assert task_fields({"Status": "starting", "S3Prefix": "", "FailureCause": None}) == {"status": "STARTING"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(50, 50), (12.9, 12), (-3, 0), (-0.5, 0), (True, None), (False, None), ("50", None), (None, None), ([1], None)],
)
def test_task_fields_integers(value: object, expected: int | None) -> None:
    fields = task_fields({"PercentProgress": value, "TotalExtractedDataInGB": value})
    assert fields.get("percentProgress") == expected
    assert fields.get("totalExtractedDataInGB") == expected


@pytest.mark.parametrize("value", ["2026-01-02T03:04:05Z", 1767323045, None, T0.date()])
def test_task_fields_drops_non_datetime_times(value: object) -> None:
    assert "snapshotTime" not in task_fields({"SnapshotTime": value})


def test_task_fields_stringifies_copied_fields() -> None:
    assert task_fields({"S3Bucket": 123, "WarningMessage": 0})["s3Bucket"] == "123"
    assert task_fields({"WarningMessage": 0})["warningMessage"] == "0"  # 0 is a value, not a missing one


_ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11)), timezone(timedelta(hours=14))]
_odd = hs.recursive(
    hs.none()
    | hs.booleans()
    | hs.integers()
    | hs.floats(allow_nan=False, allow_infinity=False)
    | hs.text()
    | hs.binary()
    | hs.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9998, 1, 1))
    | hs.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9998, 1, 1), timezones=hs.sampled_from(_ZONES))
    | hs.dates()
    | hs.decimals(allow_nan=False),
    lambda children: hs.lists(children, max_size=3) | hs.dictionaries(hs.text(max_size=5), children, max_size=3),
    max_leaves=5,
)
_aws_keys = hs.sampled_from(
    [
        "Status",
        "ExportTaskIdentifier",
        "SourceArn",
        "SourceType",
        "S3Bucket",
        "S3Prefix",
        "FailureCause",
        "WarningMessage",
        "SnapshotTime",
        "TaskStartTime",
        "TaskEndTime",
        "PercentProgress",
        "TotalExtractedDataInGB",
    ]
)


@hsettings(deadline=None)
@given(hs.dictionaries(_aws_keys | hs.text(max_size=10), _odd, max_size=14))
def test_task_fields_never_raises(task: dict[str, Any]) -> None:
    fields = task_fields(task)
    assert set(fields) <= AWS_FIELDS
    assert fields["status"] == fields["status"].upper()
    assert "-" not in fields["status"]
    assert fields["status"]
    for key in ("percentProgress", "totalExtractedDataInGB"):
        if key in fields:
            assert type(fields[key]) is int and fields[key] >= 0
    for key in ("snapshotTime", "taskStartTime", "taskEndTime"):
        if key in fields:
            assert datetime.strptime(fields[key], "%Y-%m-%dT%H:%M:%SZ")


@given(hs.text())
def test_task_fields_upper_cases_status_text(value: str) -> None:
    expected = value.strip().upper().replace("-", "_") or "UNKNOWN"
    assert task_fields({"Status": value})["status"] == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_task_fields_drops_non_finite_numbers(value: float) -> None:
    assert "percentProgress" not in task_fields({"PercentProgress": value})


# -- outcome_conditions ---------------------------------------------------------------------------------------------


def _by_type(conditions: list[Condition]) -> dict[str, Condition]:
    assert [c.type for c in conditions] == [st.COMPLETE, st.FAILED]
    return {c.type: c for c in conditions}


def test_outcome_complete() -> None:
    c = _by_type(outcome_conditions("COMPLETE"))
    assert (c["Complete"].status, c["Failed"].status) == ("True", "False")
    assert c["Complete"].reason == c["Failed"].reason == "ExportComplete"


def test_outcome_failed_carries_the_cause() -> None:
    c = _by_type(outcome_conditions("FAILED", "S3 access denied"))
    assert (c["Complete"].status, c["Failed"].status) == ("False", "True")
    assert c["Failed"].reason == "ExportFailed"
    assert c["Failed"].message == "S3 access denied"
    assert _by_type(outcome_conditions("FAILED"))["Failed"].message == "AWS reported the export as FAILED"


def test_outcome_canceled_is_a_failure() -> None:
    c = _by_type(outcome_conditions("CANCELED"))
    assert (c["Complete"].status, c["Failed"].status) == ("False", "True")
    assert c["Failed"].reason == "ExportCanceled"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("STARTING", "ExportStarting"),
        ("IN_PROGRESS", "ExportInProgress"),
        ("CANCELING", "ExportCanceling"),
        (st.QUEUED, "ExportQueued"),
        ("UNKNOWN", "ExportStatusUnknown"),
        ("complete", "ExportStatusUnknown"),  # callers normalize first
    ],
)
def test_outcome_unfinished(status: str, reason: str) -> None:
    c = _by_type(outcome_conditions(status))
    assert c["Complete"] == Condition("Complete", "False", reason)
    assert c["Failed"] == Condition("Failed", "False", reason)


# -- merge_conditions -----------------------------------------------------------------------------------------------


def test_merge_into_nothing() -> None:
    merged = merge_conditions(None, [Condition("Synced", "True", "Synced")], now=T0, generation=3)
    assert merged == [
        {
            "type": "Synced",
            "status": "True",
            "reason": "Synced",
            "message": "",
            "lastTransitionTime": "2026-01-02T03:04:05Z",
            "observedGeneration": 3,
        }
    ]


def test_merge_keeps_transition_time_while_status_holds() -> None:
    first = merge_conditions([], [Condition("Synced", "False", "Throttling", "slow down")], now=T0, generation=1)
    second = merge_conditions(first, [Condition("Synced", "False", "ServiceUnavailable", "5xx")], now=T1, generation=1)
    assert second[0]["lastTransitionTime"] == rfc3339(T0)
    assert (second[0]["reason"], second[0]["message"]) == ("ServiceUnavailable", "5xx")


def test_merge_moves_transition_time_when_status_changes() -> None:
    first = merge_conditions([], [Condition("Synced", "False", "Throttling")], now=T0, generation=1)
    second = merge_conditions(first, [Condition("Synced", "True", "Synced")], now=T1, generation=2)
    assert second[0]["lastTransitionTime"] == rfc3339(T1)
    assert second[0]["observedGeneration"] == 2


def test_merge_sets_time_when_old_condition_had_none() -> None:
    merged = merge_conditions(
        [{"type": "Synced", "status": "True"}], [Condition("Synced", "True", "S")], now=T1, generation=None
    )
    assert merged[0]["lastTransitionTime"] == rfc3339(T1)
    assert "observedGeneration" not in merged[0]


def test_merge_keeps_other_conditions_and_order() -> None:
    current = [
        {"type": "Ready", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "t"},
        {"type": "Synced", "status": "True", "reason": "Synced", "message": "", "lastTransitionTime": "t"},
    ]
    merged = merge_conditions(current, outcome_conditions("STARTING"), now=T0, generation=None)
    assert [c["type"] for c in merged] == ["Ready", "Synced", "Complete", "Failed"]
    assert merged[0] == current[0] and merged[1] == current[1]
    assert merged[0] is not current[0]  # copies, the input is not mutated


def test_merge_is_a_no_op_when_nothing_changed() -> None:
    desired = [*outcome_conditions("IN_PROGRESS"), Condition("Synced", "True", "Synced")]
    first = merge_conditions(None, desired, now=T0, generation=4)
    assert merge_conditions(first, desired, now=T1, generation=4) == first


_conditions = hs.lists(
    hs.builds(
        Condition,
        type=hs.sampled_from(["Complete", "Failed", "Synced"]),
        status=hs.sampled_from(["True", "False", "Unknown"]),
        reason=hs.sampled_from(["A", "B"]),
        message=hs.text(max_size=5),
    ),
    max_size=3,
    unique_by=lambda c: c.type,  # desired conditions name each type once
)


@given(_conditions, _conditions, hs.none() | hs.integers(0, 5))
def test_merge_properties(before: list[Condition], after: list[Condition], generation: int | None) -> None:
    first = merge_conditions(None, before, now=T0, generation=generation)
    second = merge_conditions(first, after, now=T1, generation=generation)
    types = [c["type"] for c in second]
    assert len(types) == len(set(types))
    final = {c.type: c for c in after}
    previous = {c["type"]: c for c in first}
    for cond in second:
        if cond["type"] in final:
            want = final[cond["type"]]
            assert (cond["status"], cond["reason"], cond["message"]) == (want.status, want.reason, want.message)
            old = previous.get(cond["type"])
            kept = old is not None and old["status"] == want.status
            assert cond["lastTransitionTime"] == (rfc3339(T0) if kept else rfc3339(T1))
        else:
            assert cond == previous[cond["type"]]
    # Applying the same desired conditions again changes nothing.
    assert merge_conditions(second, after, now=T1 + timedelta(hours=1), generation=generation) == second


# -- is_finished ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "finished"),
    [
        (None, False),
        ([], False),
        ([{"type": "Complete", "status": "True"}], True),
        ([{"type": "Failed", "status": "True"}], True),
        ([{"type": "Complete", "status": "False"}, {"type": "Failed", "status": "False"}], False),
        ([{"type": "Synced", "status": "True"}], False),
        ([{"type": "Complete", "status": "Unknown"}], False),
        ([{"type": "Synced", "status": "False"}, {"type": "Failed", "status": "True"}], True),
    ],
)
def test_is_finished(conditions: list[dict[str, str]] | None, finished: bool) -> None:
    assert is_finished({"conditions": conditions}) is finished


def test_is_finished_without_conditions_key() -> None:
    assert is_finished({"status": "COMPLETE"}) is False  # only conditions decide


# -- status_patch ---------------------------------------------------------------------------------------------------


def test_status_patch_empty_when_unchanged() -> None:
    current = {"status": "IN_PROGRESS", "percentProgress": 10, "lastUpdateTime": "t0"}
    assert status_patch(current, {"status": "IN_PROGRESS", "percentProgress": 10, "lastUpdateTime": "t1"}) == {}


def test_status_patch_only_changed_keys_plus_sync_time() -> None:
    current = {"status": "IN_PROGRESS", "percentProgress": 10, "s3Bucket": "b"}
    patch = status_patch(current, {"status": "IN_PROGRESS", "percentProgress": 20, "lastUpdateTime": "t1"})
    assert patch == {"percentProgress": 20, "lastUpdateTime": "t1"}


def test_status_patch_without_sync_time() -> None:
    assert status_patch({}, {"status": "STARTING"}) == {"status": "STARTING"}


def test_status_patch_none_deletes_only_what_exists() -> None:
    assert status_patch({"queuedSince": "t"}, {"queuedSince": None}) == {"queuedSince": None}
    assert status_patch({}, {"queuedSince": None}) == {}


@given(
    hs.dictionaries(hs.sampled_from("abcde"), hs.integers(0, 2) | hs.none()),
    hs.dictionaries(hs.sampled_from("abcde"), hs.integers(0, 2) | hs.none()),
)
def test_status_patch_applied_gives_desired(current: dict[str, Any], desired: dict[str, Any]) -> None:
    patch = status_patch(current, desired)
    merged = {**current, **patch}
    merged = {k: v for k, v in merged.items() if v is not None}
    for key, value in desired.items():
        assert merged.get(key) == value
    assert set(patch) <= set(desired)
