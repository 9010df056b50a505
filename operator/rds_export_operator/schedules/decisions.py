"""Decisions for one RdsExportSchedule (pure): when it is due, which snapshot to export, which children to create,
replace and prune, and what its status says. The model is Kubernetes' CronJob controller.

Exactly once per snapshot, across crashes: a child's name and export identifier are derived from the schedule's
UID and the snapshot, so creating it again is a no-op; the snapshots already handled are those of the children
that exist plus everything up to ``status.lastHandledSnapshotTime`` (the watermark), and a finished child is only
pruned once the watermark that covers it has been written (it is read from the status this decision starts from).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from rds_export_operator.api import status as st
from rds_export_operator.api.names import GROUP, KIND, VERSION
from rds_export_operator.api.spec import MAX_IDENTIFIER_LENGTH
from rds_export_operator.schedules import cron

SCHEDULE_KIND = "RdsExportSchedule"
LABEL_SCHEDULE = f"{GROUP}/schedule"  # the schedule's name (when it fits a label value)
LABEL_SCHEDULE_UID = f"{GROUP}/schedule-uid"  # children are listed by this one
ANNOTATION_SNAPSHOT = f"{GROUP}/snapshot"
ANNOTATION_SNAPSHOT_TIME = f"{GROUP}/snapshot-time"
ANNOTATION_SCHEDULED_TIME = f"{GROUP}/scheduled-time"
NEW_SNAPSHOT = "NewSnapshot"
READY = "Ready"
SNAPSHOT_TYPES = ("automated", "manual", "awsbackup", "any")
TEMPLATE_FIELDS = ("s3BucketName", "iamRoleArn", "kmsKeyId", "s3Prefix", "exportOnly", "deletionPolicy")
TEMPLATE_EXTRA = ("ttlSecondsAfterFinished", "catalog")
REQUIRED_TEMPLATE_FIELDS = ("s3BucketName", "iamRoleArn", "kmsKeyId")
PLACEHOLDERS = (
    "scheduleName",
    "namespace",
    "sourceIdentifier",
    "snapshotIdentifier",
    "snapshotDate",
    "snapshotYear",
    "snapshotMonth",
    "snapshotDay",
    "snapshotTime",
)
_PLACEHOLDER = re.compile(r"\{([A-Za-z]+)\}")
_EARLIEST = datetime.min.replace(tzinfo=UTC)


class ScheduleError(ValueError):
    """The schedule cannot be acted on until its spec changes; ``reason`` is the condition's and Event's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Concurrency(StrEnum):
    FORBID = "Forbid"
    ALLOW = "Allow"
    REPLACE = "Replace"


class Phase(StrEnum):
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class ScheduleSpec:
    source_kind: str  # "instance", "cluster" (its snapshots) or "live" (the cluster itself, at each due time)
    source_id: str
    region: str
    snapshot_type: str
    cron: cron.Cron | None  # None: trigger NewSnapshot
    concurrency: Concurrency
    suspend: bool
    starting_deadline: timedelta | None
    keep_succeeded: int
    keep_failed: int
    template: Mapping[str, Any]


@dataclass(frozen=True)
class Snapshot:
    identifier: str
    arn: str
    created: datetime
    status: str  # as AWS reports it: "available" when it can be exported


@dataclass(frozen=True)
class Child:
    name: str
    uid: str
    snapshot: str  # the identifier of the snapshot it exports ("" if not ours to know)
    snapshot_time: datetime | None
    phase: Phase
    finished: datetime | None
    deleting: bool = False


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str
    child: str = ""  # the child this Event announces, if any: not told again if it existed already


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)  # whole RdsExportTask objects
    delete: list[str] = field(default_factory=list)  # running children to delete (Replace)
    prune: list[str] = field(default_factory=list)  # finished children beyond the history limits
    status: dict[str, Any] = field(default_factory=dict)
    ready: tuple[str, str, str] = ("True", "Scheduled", "")  # condition status, reason, message
    events: list[Event] = field(default_factory=list)


def parse_spec(spec: Mapping[str, Any], *, default_region: str) -> ScheduleSpec:
    """Validate what admission cannot (the time zone, the cron ranges) and resolve defaults."""
    source = spec.get("source") or {}
    instance, cluster = source.get("dbInstanceIdentifier"), source.get("dbClusterIdentifier")
    if bool(instance) == bool(cluster):
        raise ScheduleError("InvalidSpec", "source needs exactly one of dbInstanceIdentifier and dbClusterIdentifier")
    live = bool(source.get("exportLiveCluster"))
    if live and not (cluster and spec.get("schedule")):
        raise ScheduleError("InvalidSpec", "exportLiveCluster needs dbClusterIdentifier and schedule")
    region = source.get("region") or default_region
    if not region:
        raise ScheduleError("InvalidSpec", "no region: set source.region, or give the operator a default region")
    expression, trigger = spec.get("schedule"), spec.get("trigger")
    if bool(expression) == bool(trigger):
        raise ScheduleError("InvalidSpec", "set exactly one of schedule and trigger")
    if trigger and trigger != NEW_SNAPSHOT:
        raise ScheduleError("InvalidSpec", f"trigger must be {NEW_SNAPSHOT}, not {trigger!r}")
    parsed: cron.Cron | None = None
    if expression:
        try:
            parsed = cron.parse(str(expression), spec.get("timeZone"))
        except cron.CronError as exc:
            reason = "UnknownTimeZone" if "time zone" in str(exc) and "unknown" in str(exc) else "InvalidSchedule"
            raise ScheduleError(reason, str(exc)) from None
    elif spec.get("timeZone"):
        cron.zone(spec["timeZone"])  # a typo is worth reporting even where it does not matter
    template = dict(spec.get("exportTemplate") or {})
    if missing := [f for f in REQUIRED_TEMPLATE_FIELDS if not template.get(f)]:
        raise ScheduleError("InvalidSpec", f"exportTemplate requires {', '.join(missing)}")
    if unknown := sorted(set(_PLACEHOLDER.findall(str(template.get("s3Prefix") or ""))) - set(PLACEHOLDERS)):
        raise ScheduleError("InvalidSpec", f"unknown s3Prefix placeholders: {', '.join(unknown)}")
    snapshot_type = spec.get("snapshotType", "automated")
    if snapshot_type not in SNAPSHOT_TYPES:
        raise ScheduleError("InvalidSpec", f"snapshotType must be one of {', '.join(SNAPSHOT_TYPES)}")
    try:
        concurrency = Concurrency(spec.get("concurrencyPolicy", "Forbid"))
    except ValueError:
        raise ScheduleError("InvalidSpec", "concurrencyPolicy must be Forbid, Allow or Replace") from None
    deadline = spec.get("startingDeadlineSeconds")
    return ScheduleSpec(
        source_kind="instance" if instance else "live" if live else "cluster",
        source_id=str(instance or cluster),
        region=region,
        snapshot_type=snapshot_type,
        cron=parsed,
        concurrency=concurrency,
        suspend=bool(spec.get("suspend", False)),
        starting_deadline=timedelta(seconds=int(deadline)) if deadline is not None else None,
        keep_succeeded=int(spec.get("successfulExportsHistoryLimit", 3)),
        keep_failed=int(spec.get("failedExportsHistoryLimit", 1)),
        template=template,
    )


# -- children --------------------------------------------------------------------------------------------------


def child_name(schedule_name: str, schedule_uid: str, snapshot: Snapshot) -> str:
    """The child's object name and export task identifier: readable, valid for both, and a function of the
    schedule's UID and the snapshot alone, so that a restart derives the same name (creating it is a no-op)."""
    digest = hashlib.sha256(f"{schedule_uid}/{snapshot.identifier}".encode()).hexdigest()[:8]
    stamp = snapshot.created.astimezone(UTC).strftime("%Y%m%d%H%M")
    readable = re.sub(r"[^a-z0-9]+", "-", schedule_name.lower()).strip("-")
    if not readable[:1].isalpha():
        readable = f"x{readable}"
    readable = readable[: MAX_IDENTIFIER_LENGTH - len(stamp) - len(digest) - 2].rstrip("-")
    return f"{readable}-{stamp}-{digest}"


def render_prefix(template: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def placeholder_values(schedule_name: str, namespace: str, spec: ScheduleSpec, snapshot: Snapshot) -> dict[str, str]:
    created = snapshot.created.astimezone(UTC)
    return {
        "scheduleName": schedule_name,
        "namespace": namespace,
        "sourceIdentifier": spec.source_id,
        # S3 prefixes cannot hold colons: "rds:db-2026-01-01-03-00" becomes "db-2026-01-01-03-00".
        "snapshotIdentifier": snapshot.identifier.split(":")[-1],
        "snapshotDate": created.strftime("%Y-%m-%d"),
        "snapshotYear": created.strftime("%Y"),
        "snapshotMonth": created.strftime("%m"),
        "snapshotDay": created.strftime("%d"),
        "snapshotTime": created.strftime("%H%M%S"),
    }


def child_object(
    spec: ScheduleSpec,
    snapshot: Snapshot,
    *,
    name: str,
    namespace: str,
    uid: str,
    scheduled: datetime | None,
) -> dict[str, Any]:
    """The RdsExportTask that exports ``snapshot`` for this schedule, owned by it (garbage-collected with it)."""
    child = child_name(name, uid, snapshot)
    body: dict[str, Any] = {k: spec.template[k] for k in (*TEMPLATE_FIELDS, *TEMPLATE_EXTRA) if k in spec.template}
    if body.get("s3Prefix"):
        body["s3Prefix"] = render_prefix(body["s3Prefix"], placeholder_values(name, namespace, spec, snapshot))
    body.update(sourceArn=snapshot.arn, exportTaskIdentifier=child, managementPolicy="Create")
    labels = {LABEL_SCHEDULE_UID: uid}
    if len(name) <= 63:
        labels[LABEL_SCHEDULE] = name
    annotations = {ANNOTATION_SNAPSHOT: snapshot.identifier, ANNOTATION_SNAPSHOT_TIME: _precise(snapshot.created)}
    if scheduled is not None:
        annotations[ANNOTATION_SCHEDULED_TIME] = st.rfc3339(scheduled)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": child,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": SCHEDULE_KIND,
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": body,
    }


def child_from_object(obj: Mapping[str, Any]) -> Child:
    """What a decision needs from a child RdsExportTask as the API returns it."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = obj.get("status") or {}
    phase, finished = Phase.ACTIVE, None
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            phase = Phase.SUCCEEDED if cond["type"] == "Complete" else Phase.FAILED
            finished = st.parse_time(status.get("taskEndTime")) or st.parse_time(cond.get("lastTransitionTime"))
    return Child(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        snapshot=str(annotations.get(ANNOTATION_SNAPSHOT, "")),
        snapshot_time=st.parse_time(annotations.get(ANNOTATION_SNAPSHOT_TIME)),
        phase=phase,
        finished=finished,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def _precise(value: datetime) -> str:
    """With microseconds: a watermark rounded to the second would let a snapshot of that second count as new."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ref(namespace: str, name: str, uid: str) -> dict[str, str]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "namespace": namespace, "name": name, "uid": uid}


# -- when ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    scheduled: datetime | None  # the due time acted on (None: trigger mode, every poll)
    missed: int  # due times that passed unexecuted before it


def due(spec: ScheduleSpec, status: Mapping[str, Any], created: datetime, now: datetime) -> Due | None:
    """Whether the schedule has something to do now, as CronJob decides it: the most recent due time since the
    last one acted on (or since creation), and only within startingDeadlineSeconds. None: not due (or
    suspended). Trigger mode is due at every poll."""
    if spec.suspend:
        return None
    if spec.cron is None:
        return Due(None, 0)
    earliest = st.parse_time(status.get("lastScheduleTime")) or created
    if spec.starting_deadline is not None:
        earliest = max(earliest, now - spec.starting_deadline)
    scheduled, count = spec.cron.most_recent(earliest, now)
    return None if scheduled is None else Due(scheduled, count - 1)


def next_due(spec: ScheduleSpec, now: datetime) -> datetime | None:
    return None if spec.cron is None or spec.suspend else spec.cron.next_after(now)


# -- what ------------------------------------------------------------------------------------------------------


def plan(
    spec: ScheduleSpec,
    *,
    name: str,
    namespace: str,
    uid: str,
    created: datetime,
    status: Mapping[str, Any],
    children: Sequence[Child],
    snapshots: Sequence[Snapshot] | None,
    now: datetime,
    snapshots_error: str | None = None,
) -> Plan:
    """One decision. ``snapshots`` is None when they were not listed (not due, or the listing failed:
    ``snapshots_error`` says why; a failed listing is never a verdict, the next poll tries again)."""
    result = Plan()
    persisted = st.parse_time(status.get("lastHandledSnapshotTime"))
    handled_names = {c.snapshot for c in children if c.snapshot}
    watermark = max([t for t in [persisted, *(c.snapshot_time for c in children)] if t is not None], default=None)
    if spec.cron is None and watermark is None:
        # Trigger mode exports the snapshots taken after the schedule was created. creationTimestamp has whole
        # seconds: a snapshot within that second may be older than the schedule, so it does not count as new.
        watermark = created.replace(microsecond=0) + timedelta(seconds=1) - timedelta(microseconds=1)
    active = [c for c in children if c.phase is Phase.ACTIVE and not c.deleting]
    when = due(spec, status, created, now)

    if spec.suspend:
        result.ready = ("True", "Suspended", "suspend is true: no new exports")
    elif when is not None and snapshots is None:
        result.ready = ("False", "SnapshotsUnavailable", snapshots_error or "snapshots not listed")
    elif when is not None and snapshots is not None:
        steps = _candidates(spec, snapshots, handled_names, watermark, now, when.scheduled)
        wanted = any(export for _, export in steps)
        if wanted and active and spec.concurrency is Concurrency.FORBID:
            # Nothing moves: the due time stays pending (lastScheduleTime unchanged), as CronJob does.
            result.ready = ("True", "WaitingForActiveExport", "concurrencyPolicy Forbid: an export is still running")
            steps = []
        elif when.scheduled is not None and when.missed > 0:
            result.events.append(
                Event("Warning", "MissedSchedule", f"missed {when.missed} start times; running the most recent one")
            )
        if wanted and active and spec.concurrency is Concurrency.REPLACE:
            result.delete = [c.name for c in active]
            result.events += [Event("Normal", "Replacing", f"deleting running export {c.name}") for c in active]
            active = []
        steps = _limit(spec, steps)
        chosen = [snapshot for snapshot, export in steps if export]
        for snapshot in chosen:
            obj = child_object(spec, snapshot, name=name, namespace=namespace, uid=uid, scheduled=when.scheduled)
            result.create.append(obj)
            child = obj["metadata"]["name"]
            active.append(Child(child, "", snapshot.identifier, snapshot.created, Phase.ACTIVE, None))
            message = f"created {child} to export {snapshot.identifier}"
            result.events.append(Event("Normal", "ExportCreated", message, child))
        if steps:
            newest = max(s.created for s, _ in steps)
            watermark = newest if watermark is None or newest > watermark else watermark
        if chosen:
            result.status["lastExportedSnapshot"] = chosen[-1].identifier
        if when.scheduled is not None and result.ready[1] != "WaitingForActiveExport":
            result.status["lastScheduleTime"] = st.rfc3339(when.scheduled)
            if not chosen:
                result.events.append(
                    Event("Normal", "NoNewSnapshot", "due, but no available snapshot newer than the last exported one")
                )
        elif when.scheduled is None and chosen:
            result.status["lastScheduleTime"] = st.rfc3339(now)

    if watermark is not None:
        result.status["lastHandledSnapshotTime"] = _precise(watermark)
    result.prune = _prune(spec, children, persisted)
    succeeded = [c.finished for c in children if c.phase is Phase.SUCCEEDED and c.finished]
    last_success = max([t for t in [st.parse_time(status.get("lastSuccessfulTime")), *succeeded] if t], default=None)
    if last_success is not None:
        result.status["lastSuccessfulTime"] = st.rfc3339(last_success)
    uids = {c.name: c.uid for c in children}
    result.status["active"] = [
        _ref(namespace, c.name, uids.get(c.name) or c.uid) for c in sorted(active, key=lambda c: c.name)
    ]
    upcoming = next_due(spec, now)
    result.status["nextScheduleTime"] = st.rfc3339(upcoming) if upcoming is not None else None
    return result


def _candidates(
    spec: ScheduleSpec,
    snapshots: Sequence[Snapshot],
    handled: set[str],
    watermark: datetime | None,
    now: datetime,
    scheduled: datetime | None = None,
) -> list[tuple[Snapshot, bool]]:
    """The snapshots past the watermark that can be handled now, oldest first, each with whether to export it
    (False: it will never be exported, e.g. a failed snapshot; the watermark may move past it)."""
    if spec.source_kind == "live":
        snapshots = [live_point(c, scheduled) for c in snapshots[:1]] if scheduled is not None else []
    fresh = sorted(
        (s for s in snapshots if s.identifier not in handled and (watermark is None or s.created > watermark)),
        key=lambda s: (s.created, s.identifier),
    )
    if spec.cron is not None:
        available = [s for s in fresh if s.status == "available"]
        return [(available[-1], True)] if available else []  # the newest one; older ones are not due
    steps: list[tuple[Snapshot, bool]] = []
    for snapshot in fresh:
        if snapshot.status in ("creating", "pending", "backing-up", "copying"):
            break  # never move past a snapshot that may still become available: oldest first is the promise
        too_old = spec.starting_deadline is not None and snapshot.created < now - spec.starting_deadline
        steps.append((snapshot, snapshot.status == "available" and not too_old))
    return steps


def live_point(cluster: Snapshot, scheduled: datetime) -> Snapshot:
    """A live cluster's export at one due time, as if it were a snapshot taken then: named after the cluster and
    the due time, so that each due time exports once. The cluster's state is the child's to wait out
    (InvalidExportSourceState while it exports already)."""
    stamp = scheduled.astimezone(UTC).strftime("%Y-%m-%d-%H-%M")
    return Snapshot(f"{cluster.identifier}-{stamp}", cluster.arn, scheduled, "available")


def _limit(spec: ScheduleSpec, steps: list[tuple[Snapshot, bool]]) -> list[tuple[Snapshot, bool]]:
    """Trigger mode: Forbid exports one snapshot per child (the oldest; later ones wait), Replace only the
    newest (older ones are passed over), Allow all of them."""
    exports = [i for i, (_, export) in enumerate(steps) if export]
    if not exports or spec.cron is not None or spec.concurrency is Concurrency.ALLOW:
        return steps
    if spec.concurrency is Concurrency.FORBID:
        return steps[: exports[0] + 1]
    last = exports[-1]
    return [(s, i == last) for i, (s, _) in enumerate(steps)]


def _prune(spec: ScheduleSpec, children: Sequence[Child], persisted: datetime | None) -> list[str]:
    """Finished children beyond the history limits, oldest first; a child is only pruned once the written
    watermark covers its snapshot (else a crash after the delete could export that snapshot again)."""
    pruned: list[str] = []
    for phase, keep in ((Phase.SUCCEEDED, spec.keep_succeeded), (Phase.FAILED, spec.keep_failed)):
        finished = sorted(
            (c for c in children if c.phase is phase and not c.deleting),
            # Newest first by finish time (whole seconds: ties are common), then by the snapshot's time.
            key=lambda c: (c.finished or _EARLIEST, c.snapshot_time or _EARLIEST, c.name),
            reverse=True,
        )
        for child in finished[max(0, keep) :]:
            covered = child.snapshot_time is None or (persisted is not None and child.snapshot_time <= persisted)
            if covered:
                pruned.append(child.name)
    return pruned
