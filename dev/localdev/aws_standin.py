"""The AWS stand-in: moto in server mode, plus real RDS export-task behaviour where moto lacks it.

boto3 reaches it over HTTP (``AWS_ENDPOINT_URL``). Every request goes to moto, except the three export-task
actions, which this module answers itself, following ``shared/rds-export-api.md``:

- lifecycle STARTING -> IN_PROGRESS -> COMPLETE | FAILED, cancel via CANCELING -> CANCELED, upper-case statuses,
  PercentProgress, TotalExtractedDataInGB, times, FailureCause, WarningMessage;
- identifier validation, ExportTaskAlreadyExists, the 5-task limit per account (ExportTaskLimitReachedFault),
  InvalidExportTaskStateFault for a cancel of a finished task;
- sources looked up in moto's RDS backend: DB snapshots (also automated ``rds:`` ones), cluster snapshots and
  live clusters, with the right NotFound and InvalidExportSourceState errors;
- DescribeExportTasks with ExportTaskIdentifier, SourceArn, SourceType, Filters (lower-case status values),
  MaxRecords (20..100) and Marker pagination.

Controls for tests, demo and benchmarks (Python methods, the stand-in runs in-process): ``auto`` mode moves tasks
along a timed script; ``set_task`` drives one task by hand; ``inject`` makes the next N calls of an action fail
(throttling, 5xx); ``calls`` records every export-task call.
"""

from __future__ import annotations

import base64
import io
import itertools
import re
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from localdev.controlplane import free_port

NS = "http://rds.amazonaws.com/doc/2014-10-31/"
ACTIONS = ("StartExportTask", "DescribeExportTasks", "CancelExportTask")
ACTIVE = ("STARTING", "IN_PROGRESS", "CANCELING")
TERMINAL = ("COMPLETE", "FAILED", "CANCELED")
ACCOUNT = "123456789012"
_IDENTIFIER = re.compile(r"^[A-Za-z](-?[A-Za-z0-9])*$")
_SOURCE = re.compile(
    r"^arn:aws[a-z-]*:rds:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<type>snapshot|cluster-snapshot|cluster):(?P<id>.+)$"
)
_REGION_IN_AUTH = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/rds/")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class Script:
    """How long each phase takes in ``auto`` mode (seconds)."""

    starting: float = 3.0
    running: float = 20.0
    canceling: float = 2.0
    size_gb: int = 12


@dataclass
class Task:
    identifier: str
    source_arn: str
    source_type: str
    s3_bucket: str
    iam_role_arn: str
    kms_key_id: str
    s3_prefix: str | None
    export_only: list[str]
    account: str
    region: str
    created: datetime
    snapshot_time: datetime
    status: str = "STARTING"
    percent: int = 0
    gb: int = 0
    failure_cause: str | None = None
    warning: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    auto: bool = True
    phase_since: datetime = field(default_factory=lambda: datetime.now(UTC))

    def wire(self) -> dict[str, Any]:
        return {
            "ExportTaskIdentifier": self.identifier,
            "SourceArn": self.source_arn,
            "ExportOnly": self.export_only,
            "SnapshotTime": self.snapshot_time,
            "TaskStartTime": self.start_time,
            "TaskEndTime": self.end_time,
            "S3Bucket": self.s3_bucket,
            "S3Prefix": self.s3_prefix,
            "IamRoleArn": self.iam_role_arn,
            "KmsKeyId": self.kms_key_id,
            "Status": self.status,
            "PercentProgress": self.percent,
            "TotalExtractedDataInGB": self.gb,
            "FailureCause": self.failure_cause,
            "WarningMessage": self.warning,
            "SourceType": self.source_type,
        }


@dataclass
class Fault:
    code: str = "Throttling"
    status: int = 400
    message: str = "Rate exceeded"
    delay: float = 0.0  # answer (normally) this late: a timeout for a client that waits less
    malformed: bool = False  # answer 200 with a body that is not XML


class RdsExportStandIn:
    """WSGI middleware: the three export-task actions handled here, everything else passed to moto."""

    def __init__(self, moto_app: WsgiApp, *, auto: bool = True, script: Script | None = None, limit: int = 5):
        self.moto_app = moto_app
        self.auto = auto
        self.script = script or Script()
        self.limit = limit
        self.tasks: dict[str, Task] = {}  # by identifier; one account in this stand-in
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.faults: dict[str, deque[Fault]] = {}
        self.hooks: dict[str, Callable[[dict[str, str]], None]] = {}
        self.lock = threading.RLock()
        self._seq = itertools.count()
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    # -- controls --------------------------------------------------------------------------------------------

    def inject(self, action: str, *, times: int = 1, **fault: Any) -> None:
        """Make the next ``times`` calls of ``action`` fail: an error (code, status, message), a late answer
        (delay) or a malformed one. See :class:`Fault`."""
        with self.lock:
            self.faults.setdefault(action, deque()).extend(Fault(**fault) for _ in range(times))

    def after(self, action: str, hook: Callable[[dict[str, str]], None] | None) -> None:
        """Call ``hook(params)`` after ``action`` succeeded, before the answer is sent (crash-point tests)."""
        with self.lock:
            if hook is None:
                self.hooks.pop(action, None)
            else:
                self.hooks[action] = hook

    def set_task(self, identifier: str, **changes: Any) -> None:
        """Drive a task by hand (status, percent, gb, failure_cause, warning); it leaves ``auto`` mode."""
        with self.lock:
            task = self.tasks[identifier]
            now = self.now()
            status = changes.get("status")
            if status == "IN_PROGRESS" and task.start_time is None:
                task.start_time = now
            if status in TERMINAL:
                task.end_time = now
                task.start_time = task.start_time or now
                if status == "COMPLETE":
                    changes.setdefault("percent", 100)
            for key, value in changes.items():
                if not hasattr(task, key):
                    raise AttributeError(key)
                setattr(task, key, value)
            task.auto = False

    def call_count(self, action: str, identifier: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for a, p in self.calls
                if a == action and (identifier is None or p.get("ExportTaskIdentifier") == identifier)
            )

    def calls_by_action(self) -> Counter[str]:
        with self.lock:
            return Counter(a for a, _ in self.calls)

    # -- WSGI ------------------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            params = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
            if params.get("Action") in ACTIONS and params.get("Version") == "2014-10-31":
                match = _REGION_IN_AUTH.search(environ.get("HTTP_AUTHORIZATION", ""))
                region = match.group("region") if match else "us-east-1"
                status, xml = self._handle(params["Action"], params, region)
                start_response(
                    f"{status} {'OK' if status == 200 else 'Error'}",
                    [("Content-Type", "text/xml"), ("Content-Length", str(len(xml)))],
                )
                return [xml]
        return self.moto_app(environ, start_response)

    def _handle(self, action: str, params: dict[str, str], region: str) -> tuple[int, bytes]:
        request_id = str(uuid.uuid4())
        with self.lock:
            self.calls.append((action, params))
            queue = self.faults.get(action)
            fault = queue.popleft() if queue else None
        if fault and fault.delay:
            threading.Event().wait(fault.delay)
        if fault and fault.malformed:
            return 200, b"<html>502 Bad Gateway</html><<"
        try:
            if fault and not fault.delay:
                raise ApiError(fault.code, fault.message, fault.status)
            handler = {
                "StartExportTask": self._start,
                "DescribeExportTasks": self._describe,
                "CancelExportTask": self._cancel,
            }[action]
            with self.lock:
                self._advance_all()
                result = handler(params, region)
        except ApiError as error:
            kind = "Receiver" if error.status >= 500 else "Sender"
            xml = (
                f'<ErrorResponse xmlns="{NS}"><Error><Type>{kind}</Type><Code>{escape(error.code)}</Code>'
                f"<Message>{escape(error.message)}</Message></Error><RequestId>{request_id}</RequestId>"
                "</ErrorResponse>"
            )
            return error.status, xml.encode()
        hook = self.hooks.get(action)
        if hook:
            hook(params)
        xml = (
            f'<{action}Response xmlns="{NS}"><{action}Result>{result}</{action}Result>'
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
        )
        return 200, xml.encode()

    # -- the three actions -----------------------------------------------------------------------------------

    def _start(self, p: dict[str, str], region: str) -> str:
        identifier = p.get("ExportTaskIdentifier", "")
        for name in ("ExportTaskIdentifier", "SourceArn", "S3BucketName", "IamRoleArn", "KmsKeyId"):
            if not p.get(name):
                raise ApiError("MissingParameter", f"The request must contain the parameter {name}")
        if len(identifier) > 60 or not _IDENTIFIER.match(identifier):
            raise ApiError(
                "InvalidParameterValue",
                f"The parameter ExportTaskIdentifier is not a valid identifier: "
                f"{identifier}. Identifiers must begin with a letter; must contain only ASCII letters, "
                "digits, and hyphens; and must not end with a hyphen or contain two consecutive hyphens.",
            )
        if identifier in self.tasks:
            raise ApiError(
                "ExportTaskAlreadyExists",
                f"Cannot start export task because a task with the identifier {identifier} already exists.",
            )
        if ":" in p.get("S3Prefix", ""):
            raise ApiError("InvalidParameterValue", "The S3 prefix can't contain a colon (:).")
        source = _SOURCE.match(p["SourceArn"])
        if not source:
            raise ApiError("InvalidParameterValue", f"Invalid source ARN: {p['SourceArn']}")
        if source.group("region") != region:
            raise ApiError("InvalidParameterValue", "The source ARN must be in the region of the request.")
        snapshot_time = self._source_time(source.group("type"), source.group("id"), region)
        busy = [t for t in self.tasks.values() if t.source_arn == p["SourceArn"] and t.status in ACTIVE]
        if busy and source.group("type") != "snapshot":
            raise ApiError("InvalidExportSourceState", "An export task is already running for this source.")
        if sum(t.status in ACTIVE for t in self.tasks.values()) >= self.limit:
            raise ApiError("ExportTaskLimitReachedFault", "You have reached the limit of 5 concurrent export tasks.")
        export_only = [
            v for k, v in sorted(p.items(), key=lambda kv: _member_index(kv[0])) if k.startswith("ExportOnly.member.")
        ]
        now = self.now()
        task = Task(
            identifier=identifier,
            source_arn=p["SourceArn"],
            source_type="SNAPSHOT" if source.group("type") == "snapshot" else "CLUSTER",
            s3_bucket=p["S3BucketName"],
            iam_role_arn=p["IamRoleArn"],
            kms_key_id=p["KmsKeyId"],
            s3_prefix=_s3_prefix(p.get("S3Prefix")),
            export_only=export_only,
            account=ACCOUNT,
            region=region,
            created=now,
            snapshot_time=snapshot_time,
            auto=self.auto,
            phase_since=now,
        )
        self.tasks[identifier] = task
        return _task_xml(task.wire())

    def _describe(self, p: dict[str, str], region: str) -> str:
        max_records = int(p.get("MaxRecords") or 100)
        if not 20 <= max_records <= 100:
            raise ApiError("InvalidParameterValue", "MaxRecords must be between 20 and 100.")
        filters = _filters(p)
        tasks = [t for t in self.tasks.values() if t.region == region]
        if p.get("ExportTaskIdentifier"):
            tasks = [t for t in tasks if t.identifier == p["ExportTaskIdentifier"]]
            if not tasks:
                raise ApiError(
                    "ExportTaskNotFound",
                    f"Cannot find export task with the identifier {p['ExportTaskIdentifier']}.",
                    404,
                )
        if p.get("SourceArn"):
            tasks = [t for t in tasks if t.source_arn == p["SourceArn"]]
        if p.get("SourceType"):
            tasks = [t for t in tasks if t.source_type == p["SourceType"]]
        for name, values in filters.items():
            key: Callable[[Task], str] = {
                "export-task-identifier": lambda t: t.identifier,
                "s3-bucket": lambda t: t.s3_bucket,
                "source-arn": lambda t: t.source_arn,
                "status": lambda t: t.status.lower(),
            }[name]
            tasks = [t for t in tasks if key(t) in values]
        offset = int(base64.b64decode(p["Marker"]).decode()) if p.get("Marker") else 0
        page = tasks[offset : offset + max_records]
        more = offset + max_records < len(tasks)
        marker = f"<Marker>{base64.b64encode(str(offset + max_records).encode()).decode()}</Marker>" if more else ""
        items = "".join(f"<ExportTask>{_task_xml(t.wire())}</ExportTask>" for t in page)
        return f"{marker}<ExportTasks>{items}</ExportTasks>"

    def _cancel(self, p: dict[str, str], region: str) -> str:
        task = self.tasks.get(p.get("ExportTaskIdentifier", ""))
        if task is None or task.region != region:
            raise ApiError(
                "ExportTaskNotFound",
                f"Cannot cancel export task because a task with the identifier "
                f"{p.get('ExportTaskIdentifier')} is not exist.",
                404,
            )
        if task.status not in ("STARTING", "IN_PROGRESS"):
            raise ApiError(
                "InvalidExportTaskStateFault", f"Cannot cancel export task because the task is in {task.status} status."
            )
        task.status, task.phase_since = "CANCELING", self.now()
        return _task_xml(task.wire())

    # -- sources and lifecycle -------------------------------------------------------------------------------

    def _source_time(self, kind: str, ident: str, region: str) -> datetime:
        from moto.rds.models import rds_backends

        backend = rds_backends[ACCOUNT][region]
        snap: Any
        if kind == "snapshot":
            snap = backend.database_snapshots.get(ident) or backend.database_snapshots.get(ident.split(":", 1)[-1])
            if snap is None:
                raise ApiError("DBSnapshotNotFound", f"DBSnapshot {ident} not found.", 404)
        elif kind == "cluster-snapshot":
            snap = backend.cluster_snapshots.get(ident)
            if snap is None:
                raise ApiError("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {ident} not found.", 404)
        else:
            cluster = backend.clusters.get(ident)
            if cluster is None:
                raise ApiError("DBClusterNotFoundFault", f"DBCluster {ident} not found.", 404)
            if cluster.status != "available":
                raise ApiError("InvalidExportSourceState", f"DBCluster {ident} is in {cluster.status} state.")
            return self.now()
        if snap.status != "available":
            raise ApiError("InvalidExportSourceState", f"Snapshot {ident} is in {snap.status} state.")
        created = getattr(snap, "created", None)
        return created if isinstance(created, datetime) else self.now()

    def _advance_all(self) -> None:
        now = self.now()
        for task in self.tasks.values():
            if task.auto:
                _advance(task, self.script, now)


def _advance(task: Task, script: Script, now: datetime) -> None:
    """Move an ``auto`` task along its timed script; called under the lock before every answer."""
    elapsed = (now - task.phase_since).total_seconds()
    if task.status == "STARTING" and elapsed >= script.starting:
        task.status, task.start_time = "IN_PROGRESS", task.phase_since + timedelta(seconds=script.starting)
        task.phase_since, elapsed = task.start_time, elapsed - script.starting
    if task.status == "IN_PROGRESS":
        fraction = min(1.0, elapsed / script.running) if script.running else 1.0
        task.percent = int(fraction * 100)
        task.gb = int(fraction * script.size_gb)
        if fraction >= 1.0:
            task.status, task.end_time = "COMPLETE", task.phase_since + timedelta(seconds=script.running)
    if task.status == "CANCELING" and elapsed >= script.canceling:
        task.status, task.end_time, task.percent = "CANCELED", now, 0


def _member_index(key: str) -> int:
    tail = key.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _s3_prefix(prefix: str | None) -> str | None:
    if prefix is None:
        return None
    return re.sub(r'[\\`" ]', "_", prefix)


def _filters(p: dict[str, str]) -> dict[str, set[str]]:
    filters: dict[str, set[str]] = {}
    for key, name in p.items():
        m = re.fullmatch(r"Filters\.(?:Filter|member)\.(\d+)\.Name", key)
        if not m:
            continue
        prefix = key[: -len("Name")]
        values = {v for k, v in p.items() if k.startswith(f"{prefix}Values.")}
        if name not in ("export-task-identifier", "s3-bucket", "source-arn", "status"):
            raise ApiError("InvalidParameterValue", f"Unrecognized filter name: {name}")
        filters[name] = values
    return filters


def _task_xml(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list):
            if value:
                parts.append(f"<{key}>{''.join(f'<member>{escape(v)}</member>' for v in value)}</{key}>")
            continue
        if isinstance(value, datetime):
            value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parts.append(f"<{key}>{escape(str(value))}</{key}>")
    return "".join(parts)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class StandInServer:
    """The stand-in served on a free loopback port in a background thread."""

    def __init__(self, *, auto: bool = True, script: Script | None = None, port: int | None = None) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.standin = RdsExportStandIn(DomainDispatcherApplication(create_backend_app), auto=auto, script=script)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", self.port, self.standin, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-standin", daemon=True)

    def __enter__(self) -> StandInServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def env(self) -> dict[str, str]:
        """Environment for a boto3 process (the operator) that should use this stand-in."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }


def create_snapshot(rds: Any, name: str) -> str:
    """Create a DB instance and a manual snapshot of it in the stand-in's moto; return the snapshot ARN."""
    rds.create_db_instance(
        DBInstanceIdentifier=f"{name}-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="password123",
        AllocatedStorage=20,
    )
    snap = rds.create_db_snapshot(DBSnapshotIdentifier=name, DBInstanceIdentifier=f"{name}-db")
    return str(snap["DBSnapshot"]["DBSnapshotArn"])
