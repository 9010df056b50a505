"""AWS ExportTask -> the object's status fields and conditions, and the minimal patch between two statuses (pure)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ACTIVE_STATUSES = frozenset({"STARTING", "IN_PROGRESS", "CANCELING"})
TERMINAL_STATUSES = frozenset({"COMPLETE", "FAILED", "CANCELED"})
QUEUED = "QUEUED"  # operator-owned: no AWS task yet, waiting for one of the 5 export slots
REFUSED = "REFUSED"  # operator-owned: Failed=True before any task was this object's (the spec must change)

COMPLETE, FAILED, SYNCED = "Complete", "Failed", "Synced"

# ExportTask field -> status field, for the fields copied as they are.
_COPIED = {
    "SourceArn": "sourceArn",
    "SourceType": "sourceType",
    "S3Bucket": "s3Bucket",
    "S3Prefix": "s3Prefix",
    "FailureCause": "failureCause",
    "WarningMessage": "warningMessage",
}
_TIMES = {"SnapshotTime": "snapshotTime", "TaskStartTime": "taskStartTime", "TaskEndTime": "taskEndTime"}
_INTEGERS = {"PercentProgress": "percentProgress", "TotalExtractedDataInGB": "totalExtractedDataInGB"}
AWS_FIELDS = frozenset([*_COPIED.values(), *_TIMES.values(), *_INTEGERS.values(), "status"])


def cleared_task_fields() -> dict[str, None]:
    """A status patch that removes everything AWS told about a task (a refused object shows none of it)."""
    return dict.fromkeys(AWS_FIELDS)


def s3_prefix_as_stored(prefix: str | None) -> str | None:
    """The prefix as AWS stores and reports it: backslash, backtick, double quote and space become ``_``."""
    return None if prefix is None else re.sub(r'[\\`" ]', "_", prefix)


def same_kms_key(ours: str, theirs: str) -> bool:
    """Whether two KMS key references name the same key. A key id matches the ARN that ends with it. An alias
    cannot be resolved without a KMS call, so an alias against anything but the same alias is a difference: else
    any alias would pass for any key, and adoption would take a task on a guess."""
    if ours == theirs:
        return True
    if "alias/" in ours or "alias/" in theirs:
        both = "alias/" in ours and "alias/" in theirs
        return both and ours.rsplit("alias/", 1)[-1] == theirs.rsplit("alias/", 1)[-1]
    both_arns = ours.startswith("arn:") and theirs.startswith("arn:")
    return not both_arns and ours.rsplit("/", 1)[-1] == theirs.rsplit("/", 1)[-1]


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time from a status field, or None if absent or malformed (naive times are UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalize_status(value: object) -> str:
    """AWS statuses are upper case; tolerate other cases (moto, filters) and missing values."""
    return str(value or "UNKNOWN").strip().upper().replace("-", "_") or "UNKNOWN"


def task_fields(task: Mapping[str, Any]) -> dict[str, Any]:
    """The status fields an ExportTask determines. Fields AWS omits are omitted; malformed ones are dropped."""
    fields: dict[str, Any] = {"status": normalize_status(task.get("Status"))}
    for aws, ours in _COPIED.items():
        if task.get(aws) not in (None, ""):
            fields[ours] = str(task[aws])
    for aws, ours in _TIMES.items():
        value = task.get(aws)
        if isinstance(value, datetime):
            fields[ours] = rfc3339(value)
    for aws, ours in _INTEGERS.items():
        value = task.get(aws)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            fields[ours] = max(0, int(value))
    return fields


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def outcome_conditions(status: str, failure_cause: str = "") -> list[Condition]:
    """Complete and Failed as a Job has them, for an AWS task status."""
    if status == "COMPLETE":
        return [
            Condition(COMPLETE, "True", "ExportComplete", "the export finished"),
            Condition(FAILED, "False", "ExportComplete"),
        ]
    if status == "FAILED":
        return [
            Condition(COMPLETE, "False", "ExportFailed"),
            Condition(FAILED, "True", "ExportFailed", failure_cause or "AWS reported the export as FAILED"),
        ]
    if status == "CANCELED":
        return [
            Condition(COMPLETE, "False", "ExportCanceled"),
            Condition(FAILED, "True", "ExportCanceled", "the export was canceled"),
        ]
    reason = {
        "STARTING": "ExportStarting",
        "IN_PROGRESS": "ExportInProgress",
        "CANCELING": "ExportCanceling",
        QUEUED: "ExportQueued",
    }.get(status, "ExportStatusUnknown")
    return [Condition(COMPLETE, "False", reason), Condition(FAILED, "False", reason)]


def merge_conditions(
    current: list[Mapping[str, Any]] | None, desired: list[Condition], *, now: datetime, generation: int | None
) -> list[dict[str, Any]]:
    """Replace conditions by type, keeping lastTransitionTime where the status did not change.

    The result equals ``current`` (same order, same values) when nothing meaningful changed, so that callers
    can skip the write.
    """
    by_type = {c.get("type"): dict(c) for c in current or []}
    for cond in desired:
        old = by_type.get(cond.type, {})
        new: dict[str, Any] = {"type": cond.type, "status": cond.status, "reason": cond.reason, "message": cond.message}
        new["lastTransitionTime"] = (
            old["lastTransitionTime"]
            if old.get("status") == cond.status and "lastTransitionTime" in old
            else rfc3339(now)
        )
        if generation is not None:
            new["observedGeneration"] = generation
        by_type[cond.type] = new
    return list(by_type.values())


def is_finished(status: Mapping[str, Any]) -> bool:
    """Complete or Failed is True: nothing left to poll (terminal AWS status, or a terminal error)."""
    return any(
        c.get("type") in (COMPLETE, FAILED) and c.get("status") == "True" for c in status.get("conditions") or []
    )


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``current`` into ``desired`` for the keys ``desired`` names (None deletes).

    Empty when nothing changed: a poll that learns nothing new writes nothing. Timestamps that only record
    the write itself (lastUpdateTime) do not count as a change on their own.
    """
    changed = {k: v for k, v in desired.items() if k != "lastUpdateTime" and current.get(k) != v}
    if not changed:
        return {}
    if "lastUpdateTime" in desired:
        changed["lastUpdateTime"] = desired["lastUpdateTime"]
    return changed
