"""The export tasks as AWS holds them: the model behind the stand-in's StartExportTask, DescribeExportTasks and
CancelExportTask (``shared/rds-export-api.md``). Not thread-safe: :class:`localdev.standin.server.RdsExportStandIn`
calls it under its lock.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from localdev.standin.sts import DEFAULT_ACCOUNT
from localdev.standin.wire import ApiError, filters, members, s3_prefix, task_xml

# Upper-case statuses and CANCELING (moto: lower-case, no CANCELING): API reference, ExportTask.Status
ACTIVE = ("STARTING", "IN_PROGRESS", "CANCELING")
TERMINAL = ("COMPLETE", "FAILED", "CANCELED")
ACCOUNT = DEFAULT_ACCOUNT
_IDENTIFIER = re.compile(r"^[A-Za-z](-?[A-Za-z0-9])*$")
SOURCE = re.compile(
    r"^arn:aws[a-z-]*:rds:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<type>snapshot|cluster-snapshot|cluster):(?P<id>.+)$"
)


@dataclass
class Script:
    """How long each phase takes in ``auto`` mode (seconds)."""

    starting: float = 3.0
    running: float = 20.0
    canceling: float = 2.0
    size_gb: int = 12
    durations: dict[str, float] = field(default_factory=dict)  # identifier -> its own ``running`` (a spread)


@dataclass(frozen=True)
class Task:
    """One export task as AWS holds it. Immutable: :meth:`RdsExportStandIn.task` hands out the stored value."""

    identifier: str
    source_arn: str
    source_type: str
    s3_bucket: str
    iam_role_arn: str
    kms_key_id: str
    s3_prefix: str | None
    export_only: tuple[str, ...]
    account: str
    region: str
    created: datetime
    snapshot_time: datetime
    status: str = "STARTING"
    percent: int | None = 0
    gb: int | None = 0
    failure_cause: str | None = None
    warning: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    auto: bool = True
    phase_since: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def wire(self, *, lowercase_status: bool = False) -> dict[str, Any]:
        return {
            "ExportTaskIdentifier": self.identifier,
            "SourceArn": self.source_arn,
            "ExportOnly": list(self.export_only),
            "SnapshotTime": self.snapshot_time,
            "TaskStartTime": self.start_time,
            "TaskEndTime": self.end_time,
            "S3Bucket": self.s3_bucket,
            "S3Prefix": self.s3_prefix,
            "IamRoleArn": self.iam_role_arn,
            "KmsKeyId": self.kms_key_id,
            "Status": self.status.lower() if lowercase_status else self.status,
            "PercentProgress": self.percent,
            "TotalExtractedDataInGB": self.gb,
            "FailureCause": self.failure_cause,
            "WarningMessage": self.warning,
            "SourceType": self.source_type,
        }


_TASK_FIELDS = frozenset(f.name for f in fields(Task))


@dataclass(frozen=True)
class Modes:
    """Endpoint personalities.

    ``ignore_filters``: DescribeExportTasks as moto 5.2.5's server answers it (LocalStack is built on moto):
    ``ExportTaskIdentifier`` is honoured (the one task, or ``ExportTaskNotFound`` 404), while ``Filters``,
    ``SourceArn``, ``SourceType``, ``MaxRecords`` (not even range-checked) and ``Marker`` are ignored: every task
    of the caller's account and region in one page, without a Marker.
    ``lowercase_status``: ``Status`` in lower case (``complete``), as moto reports it.
    """

    ignore_filters: bool = False
    lowercase_status: bool = False


@dataclass
class RoleDenial:
    code: str
    until: datetime | None
    calls: int | None


class ExportService:
    """Tasks by (account, region, identifier); the 5-task limit, identifiers, Describe and Cancel per account and
    region, as the caller's account sees them."""

    def __init__(self, *, auto: bool, script: Script, limit: int) -> None:
        self.auto = auto  # new tasks follow ``script`` by themselves
        self.script = script
        self.limit = limit
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.tasks: dict[tuple[str, str, str], Task] = {}  # (account, region, identifier); never deleted
        self._keys: dict[str, list[tuple[str, str, str]]] = {}  # identifier -> keys, for ``find``
        self.modes = Modes()
        self.denials: dict[str, RoleDenial] = {}
        self.on_start: Callable[[Task], None] = lambda task: None  # a task just left STARTING
        self.on_finish: Callable[[Task], None] = lambda task: None  # a task just became COMPLETE or FAILED

    def start(self, p: dict[str, str], region: str, account: str) -> str:
        identifier = p.get("ExportTaskIdentifier", "")
        for name in ("ExportTaskIdentifier", "SourceArn", "S3BucketName", "IamRoleArn", "KmsKeyId"):
            if not p.get(name):
                raise ApiError("MissingParameter", f"The request must contain the parameter {name}")
        # moto validates no identifier: API reference StartExportTask (60 characters: the Terraform provider's check)
        if len(identifier) > 60 or not _IDENTIFIER.match(identifier):
            raise ApiError(
                "InvalidParameterValue",
                f"The parameter ExportTaskIdentifier is not a valid identifier: "
                f"{identifier}. Identifiers must begin with a letter; must contain only ASCII letters, "
                "digits, and hyphens; and must not end with a hyphen or contain two consecutive hyphens.",
            )
        if (account, region, identifier) in self.tasks:
            raise ApiError(
                "ExportTaskAlreadyExists",
                f"Cannot start export task because a task with the identifier {identifier} already exists.",
            )
        if ":" in p.get("S3Prefix", ""):  # RDS User Guide, "Exporting DB snapshot data to Amazon S3": no colon
            raise ApiError("InvalidParameterValue", "The S3 prefix can't contain a colon (:).")
        source = SOURCE.match(p["SourceArn"])
        if not source:
            raise ApiError("InvalidParameterValue", f"Invalid source ARN: {p['SourceArn']}")
        if source.group("region") != region:  # RDS User Guide: an export runs in the source's Region
            raise ApiError("InvalidParameterValue", "The source ARN must be in the region of the request.")
        snapshot_time = self._source_time(source, account)
        self._check_role(p["IamRoleArn"])
        mine = [t for t in self.tasks.values() if t.account == account and t.region == region]
        busy = [t for t in mine if t.source_arn == p["SourceArn"] and t.status in ACTIVE]
        # One export at a time per cluster or cluster snapshot (Aurora User Guide, exporting cluster data to S3)
        if busy and source.group("type") != "snapshot":
            raise ApiError("InvalidExportSourceState", "An export task is already running for this source.")
        # moto has no limit: RDS User Guide ("up to five concurrent export tasks"), ExportTaskLimitReachedFault
        if sum(t.status in ACTIVE for t in mine) >= self.limit:
            raise ApiError("ExportTaskLimitReachedFault", "You have reached the limit of 5 concurrent export tasks.")
        now = self.now()
        task = Task(
            identifier=identifier,
            source_arn=p["SourceArn"],
            source_type="SNAPSHOT" if source.group("type") == "snapshot" else "CLUSTER",
            s3_bucket=p["S3BucketName"],
            iam_role_arn=p["IamRoleArn"],
            kms_key_id=p["KmsKeyId"],
            s3_prefix=s3_prefix(p.get("S3Prefix")),
            export_only=tuple(members(p, "ExportOnly")),
            account=account,
            region=region,
            created=now,
            snapshot_time=snapshot_time,
            auto=self.auto,
            phase_since=now,
        )
        self.add(task)
        return task_xml(task.wire(lowercase_status=self.modes.lowercase_status))

    def describe(self, p: dict[str, str], region: str, account: str) -> str:
        tasks = [t for t in self.tasks.values() if t.account == account and t.region == region]
        if p.get("ExportTaskIdentifier"):
            tasks = [t for t in tasks if t.identifier == p["ExportTaskIdentifier"]]
            if not tasks:
                raise ApiError(
                    "ExportTaskNotFound",
                    f"Cannot find export task with the identifier {p['ExportTaskIdentifier']}.",
                    404,
                )
        lower = self.modes.lowercase_status
        if self.modes.ignore_filters:  # moto's server: the one page of everything, no validation
            items = "".join(f"<ExportTask>{task_xml(t.wire(lowercase_status=lower))}</ExportTask>" for t in tasks)
            return f"<ExportTasks>{items}</ExportTasks>"
        # moto ignores these, one page: botocore's RDS model (service-2.json), DescribeExportTasks, its paginator
        max_records = int(p.get("MaxRecords") or 100)
        if not 20 <= max_records <= 100:
            raise ApiError("InvalidParameterValue", "MaxRecords must be between 20 and 100.")
        wanted = filters(p)
        if p.get("SourceArn"):
            tasks = [t for t in tasks if t.source_arn == p["SourceArn"]]
        if p.get("SourceType"):
            tasks = [t for t in tasks if t.source_type == p["SourceType"]]
        for name, values in wanted.items():
            key: Callable[[Task], str] = {
                "export-task-identifier": lambda t: t.identifier,
                "s3-bucket": lambda t: t.s3_bucket,
                "source-arn": lambda t: t.source_arn,
                "status": lambda t: t.status.lower(),  # lower-case values: API reference, DescribeExportTasks Filters
            }[name]
            tasks = [t for t in tasks if key(t) in values]
        offset = int(base64.b64decode(p["Marker"]).decode()) if p.get("Marker") else 0
        page = tasks[offset : offset + max_records]
        more = offset + max_records < len(tasks)
        marker = f"<Marker>{base64.b64encode(str(offset + max_records).encode()).decode()}</Marker>" if more else ""
        items = "".join(f"<ExportTask>{task_xml(t.wire(lowercase_status=lower))}</ExportTask>" for t in page)
        return f"{marker}<ExportTasks>{items}</ExportTasks>"

    def cancel(self, p: dict[str, str], region: str, account: str) -> str:
        task_key = (account, region, p.get("ExportTaskIdentifier", ""))
        task = self.tasks.get(task_key)
        if task is None:
            raise ApiError(
                "ExportTaskNotFound",
                f"Cannot cancel export task because a task with the identifier "
                f"{p.get('ExportTaskIdentifier')} is not exist.",
                404,
            )
        # moto cancels anything, at once: API reference CancelExportTask (InvalidExportTaskStateFault, CANCELING)
        if task.status not in ("STARTING", "IN_PROGRESS"):
            raise ApiError(
                "InvalidExportTaskStateFault", f"Cannot cancel export task because the task is in {task.status} status."
            )
        self.tasks[task_key] = task = replace(task, status="CANCELING", phase_since=self.now())
        return task_xml(task.wire(lowercase_status=self.modes.lowercase_status))

    # -- sources, roles and lifecycle ------------------------------------------------------------------------

    def _source_time(self, source: re.Match[str], account: str) -> datetime:
        """The source's snapshot time, looked up in moto's backend of the caller's account: a source of another
        account is not found (exports of shared snapshots are not possible)."""
        from moto.rds.models import rds_backends

        kind, ident = source.group("type"), source.group("id")
        backend = rds_backends[account][source.group("region")]
        foreign = source.group("account") != account  # no export of a snapshot shared from another account
        snap: Any
        if kind == "snapshot":  # automated `snapshot:rds:<id>` ARNs too (moto answers 500): API reference SourceArn
            snap = backend.database_snapshots.get(ident) or backend.database_snapshots.get(ident.split(":", 1)[-1])
            if snap is None or foreign:
                raise ApiError("DBSnapshotNotFound", f"DBSnapshot {ident} not found.", 404)
        elif kind == "cluster-snapshot":
            snap = backend.cluster_snapshots.get(ident)
            if snap is None or foreign:
                raise ApiError("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {ident} not found.", 404)
        else:  # a live Aurora cluster (moto answers 500): API reference StartExportTask SourceArn
            cluster = backend.clusters.get(ident)
            if cluster is None or foreign:
                raise ApiError("DBClusterNotFoundFault", f"DBCluster {ident} not found.", 404)
            if cluster.status != "available":
                raise ApiError("InvalidExportSourceState", f"DBCluster {ident} is in {cluster.status} state.")
            return self.now()
        if snap.status != "available":
            raise ApiError("InvalidExportSourceState", f"Snapshot {ident} is in {snap.status} state.")
        created = getattr(snap, "created", None)
        return created if isinstance(created, datetime) else self.now()

    def _check_role(self, role_arn: str) -> None:
        # IAM propagates for seconds to minutes after a role is made (IAM User Guide, "eventual consistency")
        denial = self.denials.get(role_arn)
        if denial is None:
            return
        if (denial.until is not None and self.now() >= denial.until) or denial.calls == 0:
            del self.denials[role_arn]
            return
        if denial.calls is not None:
            denial.calls -= 1
        if denial.code == "IamRoleNotFound":
            raise ApiError("IamRoleNotFound", f"The IAM role {role_arn} can't be found.", 404)
        raise ApiError(
            "IamRoleMissingPermissions", f"The IAM role {role_arn} doesn't have the permissions the export needs."
        )

    def add(self, task: Task) -> None:
        key = (task.account, task.region, task.identifier)
        if key in self.tasks:
            raise ValueError(f"task {task.identifier} already exists in {task.account}/{task.region}")
        self.tasks[key] = task
        self._keys.setdefault(task.identifier, []).append(key)

    def find(self, identifier: str, account: str | None, region: str | None) -> tuple[str, str, str]:
        found = [
            k
            for k in self._keys.get(identifier, [])
            if (account is None or k[0] == account) and (region is None or k[1] == region)
        ]
        if not found:
            raise KeyError(identifier)
        if len(found) > 1:
            raise LookupError(f"task {identifier} exists in several accounts or regions: {found}; pass account/region")
        return found[0]

    def advance_all(self) -> None:
        now = self.now()
        for task_key, task in self.tasks.items():
            if task.auto and task.status in ACTIVE:
                self.tasks[task_key] = new = _advance(task, self.script, now)
                if task.status == "STARTING" and new.status != "STARTING":
                    self.on_start(new)
                if new.status in ("COMPLETE", "FAILED"):
                    self.on_finish(new)


def _advance(task: Task, script: Script, now: datetime) -> Task:
    """Move an ``auto`` task along its timed script; called under the lock before every answer."""
    # moto has no lifecycle (complete at once): RDS User Guide, "Monitoring snapshot exports" (statuses, progress)
    elapsed = (now - task.phase_since).total_seconds()
    if task.status == "STARTING" and elapsed >= script.starting:
        started = task.phase_since + timedelta(seconds=script.starting)
        task = replace(task, status="IN_PROGRESS", start_time=started, phase_since=started)
        elapsed -= script.starting
    if task.status == "IN_PROGRESS":
        running = script.durations.get(task.identifier, script.running)
        fraction = min(1.0, elapsed / running) if running else 1.0
        task = replace(task, percent=int(fraction * 100), gb=int(fraction * script.size_gb))
        if fraction >= 1.0:
            task = replace(task, status="COMPLETE", end_time=task.phase_since + timedelta(seconds=running))
    if task.status == "CANCELING" and elapsed >= script.canceling:
        task = replace(task, status="CANCELED", end_time=now, percent=0)
    return task


class ExportControls:
    """The stand-in's controls over export tasks (a part of :class:`localdev.standin.server.RdsExportStandIn`)."""

    _lock: threading.RLock
    _exports: ExportService

    @property
    def now(self) -> Callable[[], datetime]:  # the stand-in's clock
        raise NotImplementedError

    _started: Callable[[Task], None]
    _finished: Callable[[Task], None]

    def seed(
        self,
        identifier: str,
        *,
        source: str | None = None,
        bucket: str = "exports-bucket",
        prefix: str | None = None,
        role: str | None = None,
        key: str | None = None,
        export_only: Sequence[str] = (),
        status: str = "STARTING",
        percent: int | None = None,
        gb: int | None = 0,
        failure_cause: str | None = None,
        warning: str | None = None,
        account: str = ACCOUNT,
        region: str = "us-east-1",
        auto: bool = False,
    ) -> Task:
        """Create a task directly in ``status`` (no call, no checks but uniqueness); manual unless ``auto``.

        Defaults: source ``arn:aws:rds:<region>:<account>:snapshot:seeded``, role ``...:role/rds-s3-export``,
        key ``alias/seeded``; percent 100 when COMPLETE, else 0; start time set unless STARTING, end time when
        finished."""
        source = source or f"arn:aws:rds:{region}:{account}:snapshot:seeded"
        now = self.now()
        parsed = SOURCE.match(source)
        task = Task(
            identifier=identifier,
            source_arn=source,
            source_type="CLUSTER" if parsed and parsed.group("type") != "snapshot" else "SNAPSHOT",
            s3_bucket=bucket,
            iam_role_arn=role or f"arn:aws:iam::{account}:role/rds-s3-export",
            kms_key_id=key or "alias/seeded",
            s3_prefix=prefix,
            export_only=tuple(export_only),
            account=account,
            region=region,
            created=now,
            snapshot_time=now,
            status=status,
            percent=(100 if status == "COMPLETE" else 0) if percent is None else percent,
            gb=gb,
            failure_cause=failure_cause,
            warning=warning,
            start_time=None if status == "STARTING" else now,
            end_time=now if status in TERMINAL else None,
            auto=auto,
            phase_since=now,
        )
        with self._lock:
            self._exports.add(task)
            if status in TERMINAL:
                self._finished(task)
        return task

    def set_task(
        self, identifier: str, *, account: str | None = None, region: str | None = None, **changes: Any
    ) -> Task:
        """Drive a task by hand (status, percent, gb, failure_cause, warning, ...); it leaves ``auto`` mode.

        ``account``/``region`` pick the task when its identifier exists in more than one."""
        unknown = set(changes) - _TASK_FIELDS
        if unknown:
            raise AttributeError(", ".join(sorted(unknown)))
        with self._lock:
            task_key = self._exports.find(identifier, account, region)
            task = self._exports.tasks[task_key]
            now = self.now()
            status = changes.get("status")
            if status == "IN_PROGRESS" and task.start_time is None:
                changes.setdefault("start_time", now)
            if status in TERMINAL:
                changes.setdefault("end_time", now)
                changes.setdefault("start_time", task.start_time or now)
                if status == "COMPLETE":
                    changes.setdefault("percent", 100)
            if "export_only" in changes:
                changes["export_only"] = tuple(changes["export_only"])
            finishing = status in TERMINAL and task.status != status
            starting = task.status == "STARTING" and status not in (None, "STARTING")
            self._exports.tasks[task_key] = task = replace(task, **{**changes, "auto": False})
            if starting:
                self._started(task)
            if finishing:
                self._finished(task)
            return task

    def task(self, identifier: str, *, account: str | None = None, region: str | None = None) -> Task:
        """The task (an immutable snapshot); ``KeyError`` if there is none, ``LookupError`` if ambiguous."""
        with self._lock:
            return self._exports.tasks[self._exports.find(identifier, account, region)]

    def tasks(self, *, account: str | None = None, region: str | None = None) -> list[Task]:
        """Every task (immutable snapshots) in creation order, optionally of one account and/or region."""
        with self._lock:
            return [
                t
                for t in self._exports.tasks.values()
                if (account is None or t.account == account) and (region is None or t.region == region)
            ]

    def mode(self, *, ignore_filters: bool | None = None, lowercase_status: bool | None = None) -> Modes:
        """Switch endpoint personalities (see :class:`Modes`); ``None`` keeps a setting. Returns the modes."""
        with self._lock:
            changes = {
                k: v
                for k, v in (("ignore_filters", ignore_filters), ("lowercase_status", lowercase_status))
                if v is not None
            }
            self._exports.modes = replace(self._exports.modes, **changes)
            return self._exports.modes

    def deny_role(
        self,
        role_arn: str,
        code: str = "IamRoleMissingPermissions",
        *,
        seconds: float | None = None,
        calls: int | None = None,
    ) -> None:
        """StartExportTask with this role answers ``code`` (``IamRoleMissingPermissions`` 400 or ``IamRoleNotFound``
        404), as right after the role was made, for ``seconds`` or ``calls`` calls (neither: until reset)."""
        if code not in ("IamRoleMissingPermissions", "IamRoleNotFound"):
            raise ValueError(code)
        until = self.now() + timedelta(seconds=seconds) if seconds is not None else None
        with self._lock:
            self._exports.denials[role_arn] = RoleDenial(code, until, calls)
