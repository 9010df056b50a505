"""Decisions for one RdsExportSchedule (pure): when it is due, which snapshot to export, which children to create,
replace and prune, and what its status says. The model is Kubernetes' CronJob controller.

Exactly once per snapshot, across crashes: a child's name and export identifier are derived from the schedule's
UID and the snapshot (identifier and creation time), so creating it again is a no-op; the snapshots already
handled are those of the children that exist (by identifier and creation time: an identifier can be re-used)
plus everything up to the watermark, the pair (``status.lastHandledSnapshotTime``, ``lastHandledSnapshot``), so
that two snapshots of the same time are both exported; a finished child is only pruned once the watermark that
covers it has been written (it is read from the status this decision starts from). A snapshot listed without a
creation time (RDS: while it is being taken) never moves the watermark. Identifiers compare case-insensitively,
as RDS compares them.
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
# On the schedule: export this snapshot now (kubectl annotate), as ``kubectl create job --from=cronjob/...`` runs a
# CronJob's Job now; cleared when done or refused.
ANNOTATION_EXPORT_SNAPSHOT = f"{GROUP}/export-snapshot"
NEW_SNAPSHOT = "NewSnapshot"
TABLES_COMPLETE = "TablesComplete"  # the child's table report condition (tables/)
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
# A watermark written as a time alone (before the identifier was written, or trigger mode's start) covers every
# snapshot of that time: this identifier sorts after any other.
_ALL = "\U0010ffff"
# Statuses in which a snapshot may still become available: never passed over (trigger mode holds back behind it).
IN_PROGRESS = ("creating", "pending", "backing-up", "copying")
_KEEP_SKIPPED = 20  # identifiers remembered as already reported skipped (status.skippedSnapshots)
Mark = tuple[datetime, str]  # a watermark: (creation time, lower-case identifier)


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
    created: datetime | None  # None: listed without SnapshotCreateTime (RDS: while it is being taken or copied)
    status: str  # as AWS reports it: "available" when it can be exported

    @property
    def key(self) -> str:
        return self.identifier.lower()  # RDS identifiers are case-insensitive (stored in lower case)

    @property
    def mark(self) -> Mark:
        assert self.created is not None
        return (self.created, self.key)


@dataclass(frozen=True)
class Child:
    name: str
    uid: str
    snapshot: str  # the identifier of the snapshot it exports ("" if not ours to know)
    snapshot_time: datetime | None
    phase: Phase
    finished: datetime | None
    deleting: bool = False
    scheduled: datetime | None = None  # cron mode: the due time it was created for
    started: datetime | None = None  # when the object was created (exportTemplate.activeDeadlineSeconds)


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
    clear_request: bool = False  # remove the export-snapshot annotation: the request was carried out or refused


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
    if snapshot_type == "awsbackup" and cluster:  # DescribeDBClusterSnapshots has no such type
        raise ScheduleError("InvalidSpec", "snapshotType awsbackup is not supported for DB cluster snapshots")
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


def child_name(schedule_name: str, schedule_uid: str, snapshot: Snapshot, scheduled: datetime | None = None) -> str:
    """The child's object name and export task identifier: readable, valid for both, and a function of the
    schedule's UID and the snapshot (trigger mode) or the due time (cron mode: as CronJob names a Job, so that a
    due time exports at most one snapshot) alone, so that a restart derives the same name (creating it is a no-op)."""
    created, key = snapshot.mark
    # The creation time is in the hash: an identifier deleted and re-created is another snapshot, another child.
    what = f"{key}/{_precise(created)}" if scheduled is None else f"due/{_precise(scheduled)}"
    digest = hashlib.sha256(f"{schedule_uid}/{what}".encode()).hexdigest()[:8]
    stamp = (created if scheduled is None else scheduled).astimezone(UTC).strftime("%Y%m%d%H%M")
    readable = re.sub(r"[^a-z0-9]+", "-", schedule_name.lower()).strip("-")
    if not readable[:1].isalpha():
        readable = f"x{readable}"
    readable = readable[: MAX_IDENTIFIER_LENGTH - len(stamp) - len(digest) - 2].rstrip("-")
    return f"{readable}-{stamp}-{digest}"


def render_prefix(template: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def placeholder_values(schedule_name: str, namespace: str, spec: ScheduleSpec, snapshot: Snapshot) -> dict[str, str]:
    created = snapshot.mark[0].astimezone(UTC)
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
    child = child_name(name, uid, snapshot, scheduled)
    body: dict[str, Any] = {k: spec.template[k] for k in (*TEMPLATE_FIELDS, *TEMPLATE_EXTRA) if k in spec.template}
    if body.get("s3Prefix"):
        body["s3Prefix"] = render_prefix(body["s3Prefix"], placeholder_values(name, namespace, spec, snapshot))
    body.update(sourceArn=snapshot.arn, exportTaskIdentifier=child, managementPolicy="Create")
    labels = {LABEL_SCHEDULE_UID: uid}
    if len(name) <= 63:
        labels[LABEL_SCHEDULE] = name
    annotations = {ANNOTATION_SNAPSHOT: snapshot.identifier, ANNOTATION_SNAPSHOT_TIME: _precise(snapshot.mark[0])}
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
    conditions = status.get("conditions") or []
    for cond in conditions:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            phase = Phase.SUCCEEDED if cond["type"] == "Complete" else Phase.FAILED
            finished = st.parse_time(status.get("taskEndTime")) or st.parse_time(cond.get("lastTransitionTime"))
    # Complete with tables that failed is no success (as a Job with a failed pod); Unknown (report not read) is.
    if phase is Phase.SUCCEEDED and any(
        c.get("type") == TABLES_COMPLETE and c.get("status") == "False" for c in conditions
    ):
        phase = Phase.FAILED
    return Child(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        snapshot=str(annotations.get(ANNOTATION_SNAPSHOT, "")),
        snapshot_time=st.parse_time(annotations.get(ANNOTATION_SNAPSHOT_TIME)),
        phase=phase,
        finished=finished,
        deleting=bool(meta.get("deletionTimestamp")),
        scheduled=st.parse_time(annotations.get(ANNOTATION_SCHEDULED_TIME)),
        started=st.parse_time(meta.get("creationTimestamp")),
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
    source_missing: bool = False,
    requested: str | None = None,
) -> Plan:
    """One decision. ``snapshots`` is None when they were not listed (not due, or the listing failed:
    ``snapshots_error`` says why, ``source_missing`` whether RDS said the source does not exist; a failed listing
    is never a verdict, the next poll tries again)."""
    result = Plan()
    persisted = _persisted(status)
    handled = {(c.snapshot.lower(), c.snapshot_time) for c in children if c.snapshot and c.snapshot_time}
    watermark = max([m for m in [persisted, *(_child_mark(c) for c in children)] if m is not None], default=None)
    if spec.cron is None and watermark is None:
        # Trigger mode exports the snapshots taken after the schedule was created. creationTimestamp has whole
        # seconds: a snapshot within that second may be older than the schedule, so it does not count as new.
        watermark = (created.replace(microsecond=0) + timedelta(seconds=1) - timedelta(microseconds=1), _ALL)
    active = [c for c in children if c.phase is Phase.ACTIVE and not c.deleting]
    if (limit := spec.template.get("activeDeadlineSeconds")) is not None:
        # As a Job's activeDeadlineSeconds: an export running longer is deleted (its deletionPolicy cancels it)
        # and Forbid moves on.
        overdue = [c for c in active if c.started is not None and now - c.started > timedelta(seconds=int(limit))]
        result.delete = [c.name for c in overdue]
        result.events += [
            Event("Warning", "DeadlineExceeded", f"deleting {c.name}: running longer than {limit}s") for c in overdue
        ]
        active = [c for c in active if c not in overdue]
    when = due(spec, status, created, now)
    upcoming = next_due(spec, now)
    reported = list(status.get("skippedSnapshots") or [])

    if spec.suspend:
        result.ready = ("True", "Suspended", "suspend is true: no new exports")
    elif spec.cron is not None and upcoming is None:
        message = f"the schedule is never due: no time within {cron.MAX_YEARS} years matches it (as CronJob finds)"
        result.ready = ("False", "InvalidSchedule", message)
    elif when is not None and snapshots is None:
        reason = "SourceNotFound" if source_missing else "SnapshotsUnavailable"
        result.ready = ("False", reason, snapshots_error or "snapshots not listed")
    elif when is not None and snapshots is not None:
        pick = _candidates(spec, snapshots, handled, watermark, now, when.scheduled, _first_seen(status))
        steps = pick.steps
        if when.scheduled is not None and any(c.scheduled == when.scheduled for c in children):
            steps = []  # this due time has its child already (a lagging status): it exports nothing more
        for snapshot in pick.timeless:
            if snapshot.key not in reported:
                reported = [*reported, snapshot.key][-_KEEP_SKIPPED:]
                message = f"snapshot {snapshot.identifier} ({snapshot.status}) has no creation time: not exported"
                result.events.append(Event("Warning", "SnapshotSkipped", message))
        if spec.cron is None:
            result.status["firstSeenAvailable"] = pick.seen or None  # kept only with a starting deadline
        wanted = [snapshot for snapshot, export in steps if export]
        if wanted and active and spec.concurrency is Concurrency.FORBID:
            # Nothing moves: the due time stays pending (lastScheduleTime unchanged), as CronJob does.
            result.ready = ("True", "WaitingForActiveExport", "concurrencyPolicy Forbid: an export is still running")
            if status.get("heldSnapshot") != wanted[0].key:
                message = f"snapshot {wanted[0].identifier} waits for {', '.join(c.name for c in active)} (Forbid)"
                result.events.append(Event("Normal", "ForbidHolding", message))
            result.status["heldSnapshot"] = wanted[0].key
            steps = []
        elif when.scheduled is not None and when.missed > 0:
            result.events.append(
                Event("Warning", "MissedSchedule", f"missed {when.missed} start times; running the most recent one")
            )
        if wanted and active and spec.concurrency is Concurrency.REPLACE:
            result.delete += [c.name for c in active]
            result.events += [Event("Normal", "Replacing", f"deleting running export {c.name}") for c in active]
            active = []
        steps = _limit(spec, steps)
        chosen = [snapshot for snapshot, export in steps if export]
        for snapshot, export in steps:
            if not export:
                message = f"snapshot {snapshot.identifier} passed over: {_why_not(spec, snapshot, pick.late)}"
                result.events.append(Event("Warning", "SnapshotSkipped", message))
        for snapshot in chosen:
            obj = child_object(spec, snapshot, name=name, namespace=namespace, uid=uid, scheduled=when.scheduled)
            result.create.append(obj)
            child = obj["metadata"]["name"]
            active.append(Child(child, "", snapshot.identifier, snapshot.created, Phase.ACTIVE, None))
            message = f"created {child} to export {snapshot.identifier}"
            result.events.append(Event("Normal", "ExportCreated", message, child))
        if steps:
            newest = max(s.mark for s, _ in steps)
            watermark = newest if watermark is None or newest > watermark else watermark
        if chosen:
            result.status["lastExportedSnapshot"] = chosen[-1].identifier
        if when.scheduled is not None and result.ready[1] != "WaitingForActiveExport":
            result.status["lastScheduleTime"] = st.rfc3339(when.scheduled)
            if not chosen and not any(c.scheduled == when.scheduled for c in children):
                result.events.append(
                    Event("Normal", "NoNewSnapshot", "due, but no available snapshot newer than the last exported one")
                )
        elif when.scheduled is None and chosen:
            result.status["lastScheduleTime"] = st.rfc3339(now)
    if requested and snapshots is not None:  # suspended too, as kubectl create job --from=cronjob/... works then
        active = _export_now(result, spec, requested, snapshots, children, active, name, namespace, uid)
    if result.ready[1] != "WaitingForActiveExport" and status.get("heldSnapshot"):
        result.status["heldSnapshot"] = None

    if watermark is not None:
        result.status["lastHandledSnapshotTime"] = _precise(watermark[0])
        result.status["lastHandledSnapshot"] = watermark[1] if watermark[1] != _ALL else None
    if reported:
        result.status["skippedSnapshots"] = reported
    result.prune = _prune(spec, children, persisted)
    if result.prune:
        message = f"deleted finished exports beyond the history limits: {', '.join(result.prune)}"
        result.events.append(Event("Normal", "ExportsPruned", message))
    succeeded = [c.finished for c in children if c.phase is Phase.SUCCEEDED and c.finished]
    last_success = max([t for t in [st.parse_time(status.get("lastSuccessfulTime")), *succeeded] if t], default=None)
    if last_success is not None:
        result.status["lastSuccessfulTime"] = st.rfc3339(last_success)
    uids = {c.name: c.uid for c in children}
    result.status["active"] = [
        _ref(namespace, c.name, uids.get(c.name) or c.uid) for c in sorted(active, key=lambda c: c.name)
    ]
    result.status["nextScheduleTime"] = st.rfc3339(upcoming) if upcoming is not None else None
    return result


def _export_now(
    result: Plan,
    spec: ScheduleSpec,
    requested: str,
    snapshots: Sequence[Snapshot],
    children: Sequence[Child],
    active: list[Child],
    name: str,
    namespace: str,
    uid: str,
) -> list[Child]:
    """The export-snapshot annotation: that snapshot's child now, under concurrencyPolicy, whatever the watermark
    (a failed child deleted first is exported again). The newest snapshot of that identifier; the active list
    after it."""
    matches = sorted(
        (s for s in snapshots if s.key == requested.lower() and s.created is not None), key=lambda s: s.mark
    )
    snapshot = matches[-1] if matches else None
    if snapshot is None or snapshot.status not in ("available", *IN_PROGRESS):
        why = "not found for this source" if snapshot is None else f"its status is {snapshot.status}"
        result.events.append(Event("Warning", "ExportNowRefused", f"cannot export snapshot {requested}: {why}"))
        result.clear_request = True
        return active
    existing = [c.name for c in children if (c.snapshot.lower(), c.snapshot_time) == (snapshot.key, snapshot.created)]
    existing += [  # or the due time's own export, decided just now
        o["metadata"]["name"]
        for o in result.create
        if o["metadata"]["annotations"][ANNOTATION_SNAPSHOT_TIME] == _precise(snapshot.mark[0])
        and o["metadata"]["annotations"][ANNOTATION_SNAPSHOT].lower() == snapshot.key
    ]
    if existing:
        message = f"snapshot {snapshot.identifier} has its export already: {existing[0]} (delete it to re-run)"
        result.events.append(Event("Normal", "ExportNowDone", message))
        result.clear_request = True
        return active
    others = [c for c in active if c.name not in result.delete]
    if snapshot.status != "available" or (others and spec.concurrency is Concurrency.FORBID):
        return active  # not yet: asked again at the next poll
    if others and spec.concurrency is Concurrency.REPLACE:
        result.delete += [c.name for c in others]
        active = [c for c in active if c not in others]
    obj = child_object(spec, snapshot, name=name, namespace=namespace, uid=uid, scheduled=None)
    result.create.append(obj)
    child = obj["metadata"]["name"]
    result.events.append(
        Event("Normal", "ExportCreated", f"created {child} to export {snapshot.identifier} (asked)", child)
    )
    result.clear_request = True
    return [*active, Child(child, "", snapshot.identifier, snapshot.created, Phase.ACTIVE, None)]


def _persisted(status: Mapping[str, Any]) -> Mark | None:
    """The written watermark; written by a time alone, it covers every snapshot of that time."""
    time = st.parse_time(status.get("lastHandledSnapshotTime"))
    if time is None:
        return None
    return (time, str(status.get("lastHandledSnapshot") or _ALL).lower())


def _child_mark(child: Child) -> Mark | None:
    return None if child.snapshot_time is None else (child.snapshot_time, child.snapshot.lower() or _ALL)


def _first_seen(status: Mapping[str, Any]) -> dict[str, str]:
    seen = status.get("firstSeenAvailable")
    return {str(k): str(v) for k, v in seen.items()} if isinstance(seen, Mapping) else {}


def _seen_key(snapshot: Snapshot) -> str:
    return f"{snapshot.key}@{_precise(snapshot.mark[0])}"


def _why_not(spec: ScheduleSpec, snapshot: Snapshot, late: set[str]) -> str:
    if snapshot.status != "available":
        return f"its status is {snapshot.status}"
    if _seen_key(snapshot) in late:
        return f"not started within startingDeadlineSeconds ({spec.starting_deadline}) of being seen available"
    return "a newer snapshot replaces it (concurrencyPolicy Replace)"


@dataclass
class _Pick:
    steps: list[tuple[Snapshot, bool]]  # oldest first, each with whether to export it (False: passed over)
    timeless: list[Snapshot]  # listed without a creation time, never to be exported as they are: to report
    seen: dict[str, str]  # trigger mode: when each new available snapshot was first seen (starting deadline)
    late: set[str] = field(default_factory=set)  # those seen longer ago than the starting deadline


def _candidates(
    spec: ScheduleSpec,
    snapshots: Sequence[Snapshot],
    handled: set[tuple[str, datetime]],
    watermark: Mark | None,
    now: datetime,
    scheduled: datetime | None,
    seen: Mapping[str, str],
) -> _Pick:
    """The snapshots past the watermark that can be handled now, oldest first, each with whether to export it
    (False: it will never be exported, e.g. a failed snapshot; the watermark may move past it)."""
    if spec.source_kind == "live":
        snapshots = [live_point(c, scheduled) for c in snapshots[:1]] if scheduled is not None else []
    timeless = [s for s in snapshots if s.created is None]
    fresh = sorted(
        (
            s
            for s in snapshots
            if s.created is not None and (s.key, s.created) not in handled and (watermark is None or s.mark > watermark)
        ),
        key=lambda s: s.mark,
    )
    pick = _Pick([], [s for s in timeless if s.status not in IN_PROGRESS], {})
    if spec.cron is not None:
        available = [s for s in fresh if s.status == "available"]
        pick.steps = [(available[-1], True)] if available else []  # the newest one; older ones are not due
        return pick
    first_seen = {_seen_key(s): seen.get(_seen_key(s), st.rfc3339(now)) for s in fresh if s.status == "available"}
    if spec.starting_deadline is not None:
        pick.seen = first_seen
    if any(s.status in IN_PROGRESS for s in timeless):
        return pick  # being taken: its time (when it started) may be older than any fresh one, which wait for it
    for snapshot in fresh:
        if snapshot.status in IN_PROGRESS:
            break  # never move past a snapshot that may still become available: oldest first is the promise
        since = st.parse_time(first_seen.get(_seen_key(snapshot))) or now
        too_old = spec.starting_deadline is not None and since < now - spec.starting_deadline
        if too_old:
            pick.late.add(_seen_key(snapshot))
        pick.steps.append((snapshot, snapshot.status == "available" and not too_old))
    return pick


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


def _prune(spec: ScheduleSpec, children: Sequence[Child], persisted: Mark | None) -> list[str]:
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
            mark = _child_mark(child)
            covered = mark is None or (persisted is not None and mark <= persisted)
            if covered:
                pruned.append(child.name)
    return pruned
