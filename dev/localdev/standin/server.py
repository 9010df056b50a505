"""The AWS stand-in: moto in server mode, plus real RDS export-task behaviour where moto lacks it.

boto3 reaches it over HTTP (``AWS_ENDPOINT_URL``). Every request goes to moto, except the three export-task
actions, which this module answers itself, following ``shared/rds-export-api.md``:

- lifecycle STARTING -> IN_PROGRESS -> COMPLETE | FAILED, cancel via CANCELING -> CANCELED, upper-case statuses,
  PercentProgress, TotalExtractedDataInGB, times, FailureCause, WarningMessage;
- identifier validation, ExportTaskAlreadyExists, the 5-task limit (ExportTaskLimitReachedFault),
  InvalidExportTaskStateFault for a cancel of a finished task;
- sources looked up in moto's RDS backend of the caller's account: DB snapshots (also automated ``rds:`` ones),
  cluster snapshots and live clusters, with the right NotFound and InvalidExportSourceState errors;
- DescribeExportTasks with ExportTaskIdentifier, SourceArn, SourceType, Filters (lower-case status values),
  MaxRecords (20..100) and Marker pagination.

Accounts: a caller with credentials from moto's STS ``AssumeRole`` acts in the assumed role's account (as moto
decides it); other credentials act in 123456789012. Export tasks belong to an account and a region: identifiers,
the 5-task limit, Describe and Cancel are all per account and region.

Controls for tests, demo and benchmarks are the public methods of :class:`RdsExportStandIn` (the stand-in runs
in-process): ``seed``, ``set_task``, ``task``, ``tasks``, ``reset``, ``mode``, ``inject`` (see
:mod:`localdev.standin.faults`), ``deny_role``, ``set_snapshot_status``, ``after``, ``calls``, ``call_count``;
snapshots over time (for schedules): ``create_db_snapshot``, ``snapshot_every``, ``stop_snapshots``.

S3 is moto's, with the export's info files (:mod:`localdev.standin.s3`): a task that becomes COMPLETE (by its
script, ``set_task`` or ``seed``) gets ``export_info_<id>.json`` and ``export_tables_info_<id>_from_1_to_N.json``
under ``<prefix>/<id>/`` in its bucket (created when missing). Controls: ``table_outcomes`` (which tables FAILED or
were SKIPPED), ``write_parquet`` (real Parquet data for the complete tables, :mod:`localdev.standin.parquet`),
``hold_table_files`` (files appear only when ``write_table_files`` is called: late, or for a FAILED task, or raw
bytes such as malformed JSON), ``deny_bucket`` (S3 answers 403 AccessDenied for the bucket); ``s3_calls`` lists
the S3 requests with the role each ran as. Glue (the catalog) is moto's, unchanged.
"""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import boto3
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from localdev.controlplane import free_port
from localdev.standin.faults import ConnectionAbort, FaultBook, abort_connection, make_fault
from localdev.standin.rds_exports import (
    ACCOUNT,
    ACTIVE,
    SOURCE,
    TERMINAL,
    ExportService,
    Modes,
    RoleDenial,
    Script,
    Task,
)
from localdev.standin.s3 import S3Call, TableFiles, put_files, s3_request, validate_outcomes
from localdev.standin.sts import Identity, IdentityBook, signature
from localdev.standin.wire import ApiError, error_xml, result_xml

__all__ = [
    "ACCOUNT",
    "ACTIVE",
    "TERMINAL",
    "Call",
    "Modes",
    "RdsExportStandIn",
    "S3Call",
    "Script",
    "StandInServer",
    "Task",
]

ACTIONS = ("StartExportTask", "DescribeExportTasks", "CancelExportTask")
_TASK_FIELDS = frozenset(f.name for f in fields(Task))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MALFORMED = b"<html>502 Bad Gateway</html><<"
logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Call:
    """One export-task call as the stand-in received it."""

    action: str
    params: dict[str, str]
    region: str
    caller: str  # assumed role ARN, or "default"
    account: str
    session_name: str | None
    fault: str | None  # the name of the fault injected into this call, if any
    at: datetime


class RdsExportStandIn:
    """WSGI middleware: the three export-task actions handled here, STS AssumeRole watched, the rest to moto."""

    def __init__(self, moto_app: WsgiApp, *, auto: bool = True, script: Script | None = None, limit: int = 5):
        self.moto_app = moto_app
        self.closing = threading.Event()  # set on shutdown: delayed answers stop waiting
        self._exports = ExportService(auto=auto, script=script or Script(), limit=limit)
        self._calls: list[Call] = []
        self._faults = FaultBook()
        self._identities = IdentityBook()
        self._hooks: dict[str, Callable[[dict[str, str]], None]] = {}
        self._lock = threading.RLock()
        self._snapshot_serial = 0
        self._automated_stamp: dict[str, datetime] = {}  # db -> the next free minute for an automated snapshot
        self._snapshotters: list[threading.Event] = []
        self._tables = TableFiles()
        self._s3_calls: list[S3Call] = []
        self._exports.on_finish = self._finished

    @property
    def limit(self) -> int:
        """Concurrent export tasks per account and region (AWS: 5)."""
        return self._exports.limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._exports.limit = value

    @property
    def auto(self) -> bool:
        """Whether new tasks follow the timed script by themselves (else tests drive them with ``set_task``)."""
        return self._exports.auto

    @auto.setter
    def auto(self, value: bool) -> None:
        self._exports.auto = value

    @property
    def now(self) -> Callable[[], datetime]:
        return self._exports.now

    # -- controls: tasks -------------------------------------------------------------------------------------

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
            self._exports.tasks[task_key] = task = replace(task, **{**changes, "auto": False})
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

    def reset(self) -> None:
        """Between tests: finish every active task as CANCELED, clear faults, hooks, modes and role denials.

        Table outcomes, held table files and denied buckets are cleared too; files already written stay.
        The call log stays (count differences, or filter ``calls()`` by identifier)."""
        now = self.now()
        self._faults.clear()
        self.stop_snapshots()
        with self._lock:
            for task_key, task in self._exports.tasks.items():
                if task.status not in TERMINAL:
                    self._exports.tasks[task_key] = replace(
                        task, status="CANCELED", auto=False, end_time=now, phase_since=now
                    )
            self._hooks.clear()
            self._exports.denials.clear()
            self._exports.modes = Modes()
            self._tables.clear()

    # -- controls: behaviour ---------------------------------------------------------------------------------

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

    def inject(
        self,
        action: str | Iterable[str],
        kind: str | None = None,
        *,
        times: int | None = 1,
        rate: float = 1.0,
        seed: int = 0,
        **fault: Any,
    ) -> None:
        """Make calls of ``action`` (one of ACTIONS, several, or ``"*"``) suffer a fault.

        ``kind`` is a preset of :data:`localdev.standin.faults.PRESETS` (``access_denied``, ``throttling``,
        ``internal_failure``, ``service_unavailable``, ``timeout``, ``reset``, ``malformed``, ``lost_answer``);
        ``fault`` sets or overrides :class:`~localdev.standin.faults.Fault` fields (code, status, message, delay,
        malformed, reset, applied). Without ``kind`` the default is Throttling; a ``delay`` alone answers
        correctly, late. ``times``: the next N calls (``None``: every call until :meth:`clear_faults` or
        :meth:`reset`); ``rate``: each call is hit with this probability, drawn from ``random.Random(seed)``.
        Injections queue per action and apply in order."""
        names = ACTIONS if action == "*" else (action,) if isinstance(action, str) else tuple(action)
        for name in names:
            if name not in ACTIONS:
                raise ValueError(f"unknown action {name!r}")
            self._faults.add(name, make_fault(name, kind, dict(fault)), times=times, rate=rate, seed=seed)

    def clear_faults(self, action: str | None = None) -> None:
        self._faults.clear(action)

    def faults_pending(self, action: str) -> float:
        """Injected faults of ``action`` not yet delivered (``inf`` while an every-call rule is active)."""
        return self._faults.pending(action)

    def clear_hooks(self) -> None:
        with self._lock:
            self._hooks.clear()

    def after(self, action: str, hook: Callable[[dict[str, str]], None] | None) -> None:
        """Call ``hook(params)`` after ``action`` succeeded, before the answer is sent (crash-point tests);
        ``None`` removes it."""
        with self._lock:
            if hook is None:
                self._hooks.pop(action, None)
            else:
                self._hooks[action] = hook

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

    def set_snapshot_status(self, source_arn: str, status: str) -> None:
        """Set the status of a snapshot, cluster snapshot or cluster in moto (e.g. ``creating``: Start then answers
        InvalidExportSourceState until it is ``available`` again)."""
        from moto.rds.models import rds_backends

        parsed = SOURCE.match(source_arn)
        if not parsed:
            raise ValueError(source_arn)
        backend = rds_backends[parsed.group("account")][parsed.group("region")]
        kind = parsed.group("type")
        store: MutableMapping[str, Any] = (
            backend.database_snapshots
            if kind == "snapshot"
            else backend.cluster_snapshots
            if kind == "cluster-snapshot"
            else backend.clusters
        )
        store[parsed.group("id")].status = status

    # -- controls: snapshots over time ------------------------------------------------------------------------

    def create_db_snapshot(
        self,
        db_identifier: str,
        snapshot_type: str = "automated",
        *,
        status: str = "available",
        account: str = ACCOUNT,
        region: str = "us-east-1",
    ) -> str:
        """Take one snapshot of DB instance ``db_identifier`` (which must exist in moto) and return its ARN.

        automated: ``rds:<db>-YYYY-MM-DD-HH-MM`` as RDS names them (a later minute if that name is taken, so that
        several per minute are possible); manual: ``<db>-manual-N``; awsbackup: ``awsbackup:job-<db>-N``.
        ``status`` other than available (e.g. creating) can be changed later with ``set_snapshot_status``."""
        from moto.rds.models import rds_backends

        backend = rds_backends[account][region]
        with self._lock:
            self._snapshot_serial += 1
            serial = self._snapshot_serial
            if snapshot_type == "automated":
                stamp = max(
                    self.now().replace(second=0, microsecond=0), self._automated_stamp.get(db_identifier, EPOCH)
                )
                while f"rds:{db_identifier}-{stamp:%Y-%m-%d-%H-%M}".lower() in backend.database_snapshots:
                    stamp += timedelta(minutes=1)
                self._automated_stamp[db_identifier] = stamp + timedelta(minutes=1)
                snapshot = backend.create_auto_snapshot(db_identifier, f"rds:{db_identifier}-{stamp:%Y-%m-%d-%H-%M}")
            elif snapshot_type in ("manual", "awsbackup"):
                name = (
                    f"{db_identifier}-manual-{serial}"
                    if snapshot_type == "manual"
                    else f"awsbackup:job-{db_identifier}-{serial}"
                )
                snapshot = backend.create_db_snapshot(db_identifier, name, snapshot_type=snapshot_type)
            else:
                raise ValueError(f"unknown snapshot type {snapshot_type!r}")
            snapshot.status = status
            return str(snapshot.arn)

    def snapshot_every(
        self, db_identifier: str, seconds: float, *, count: int | None = None, **kwargs: Any
    ) -> threading.Event:
        """Take a snapshot of ``db_identifier`` every ``seconds`` (the first after ``seconds``), ``count`` times or
        until the returned event is set (or ``reset``). ``kwargs`` go to :meth:`create_db_snapshot`."""
        stop = threading.Event()

        def run() -> None:
            taken = 0
            while (count is None or taken < count) and not stop.wait(seconds) and not self.closing.is_set():
                self.create_db_snapshot(db_identifier, **kwargs)
                taken += 1

        with self._lock:
            self._snapshotters.append(stop)
        threading.Thread(target=run, name=f"snapshots-{db_identifier}", daemon=True).start()
        return stop

    def stop_snapshots(self) -> None:
        with self._lock:
            for stop in self._snapshotters:
                stop.set()
            self._snapshotters.clear()

    # -- controls: the export's info files in S3 -------------------------------------------------------------

    def table_outcomes(self, pattern: str, outcomes: Mapping[str, str]) -> None:
        """Tasks whose identifier matches ``pattern`` (``fnmatch``) report these tables with these outcomes
        (COMPLETE, FAILED, SKIPPED), on top of the default tables (or the exportOnly tables) that are COMPLETE;
        e.g. ``table_outcomes("*", {"postgres.public.orders": "FAILED"})``. Later calls win."""
        checked = validate_outcomes(outcomes)
        with self._lock:
            self._tables.outcomes.append((pattern, checked))

    def hold_table_files(self, pattern: str) -> None:
        """Tasks whose identifier matches ``pattern`` complete without info files: they appear only when
        :meth:`write_table_files` is called (late files; a FAILED task writes none by default)."""
        with self._lock:
            self._tables.held.append(pattern)

    def write_table_files(
        self,
        identifier: str,
        files: Mapping[str, bytes] | None = None,
        *,
        account: str | None = None,
        region: str | None = None,
    ) -> list[str]:
        """Write the task's info files now (``files``: names relative to the export folder -> raw content,
        instead of the generated ones); return the S3 keys written."""
        with self._lock:
            task = self._exports.tasks[self._exports.find(identifier, account, region)]
            return put_files(task, self._tables.files_of(task) if files is None else files)

    def table_files(
        self, identifier: str, *, account: str | None = None, region: str | None = None
    ) -> dict[str, bytes]:
        """The info files the stand-in writes for this task (name relative to the export folder -> content)."""
        with self._lock:
            return self._tables.files_of(self._exports.tasks[self._exports.find(identifier, account, region)])

    def write_parquet(self, pattern: str) -> None:
        """Tasks whose identifier matches ``pattern`` also write real Parquet data for their COMPLETE tables
        (:mod:`localdev.standin.parquet`) when they complete. Off by default: benchmarks export thousands."""
        with self._lock:
            self._tables.data.append(pattern)

    def deny_bucket(self, bucket: str) -> None:
        """Every S3 request for ``bucket`` answers 403 AccessDenied (as without s3:ListBucket / s3:GetObject)."""
        with self._lock:
            self._tables.denied.add(bucket)

    def s3_calls(self, bucket: str | None = None) -> list[S3Call]:
        """S3 requests (method, bucket, key, caller: the assumed role ARN or "default"), optionally of one bucket."""
        with self._lock:
            return [c for c in self._s3_calls if bucket is None or c.bucket == bucket]

    def _finished(self, task: Task) -> None:
        """A task became COMPLETE or FAILED (called under the lock): RDS writes the info files of a complete one."""
        if task.status != "COMPLETE" or self._tables.is_held(task):
            return
        try:
            put_files(task, {**self._tables.data_of(task), **self._tables.files_of(task)})
        except Exception:  # a test's odd bucket must not turn DescribeExportTasks into a 500
            logger.exception("stand-in: could not write the info files of %s", task.identifier)

    # -- observation -----------------------------------------------------------------------------------------

    def calls(self, action: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if action is None or c.action == action]

    def call_count(self, action: str, identifier: str | None = None, caller: str | None = None) -> int:
        """Calls of ``action`` (faulted ones too), optionally for one identifier and/or one caller (role ARN or
        "default")."""
        with self._lock:
            return sum(
                1
                for c in self._calls
                if c.action == action
                and (identifier is None or c.params.get("ExportTaskIdentifier") == identifier)
                and (caller is None or c.caller == caller)
            )

    def calls_by_action(self) -> Counter[str]:
        with self._lock:
            return Counter(c.action for c in self._calls)

    # -- WSGI ------------------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        s3 = s3_request(environ)
        if s3 is not None:
            caller = self._identities.identify(signature(environ.get("HTTP_AUTHORIZATION", ""))[0]).caller
            with self._lock:
                self._s3_calls.append(S3Call(str(environ.get("REQUEST_METHOD", "")), s3[0], s3[1], caller))
                denied = self._tables.deny(s3[0])
            if denied is not None:
                start_response(
                    "403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(denied)))]
                )
                return [denied]
        if environ.get("REQUEST_METHOD") != "POST":
            return self.moto_app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if params.get("Action") == "AssumeRole" and params.get("Version") == "2011-06-15":
            return self._assume_role(environ, start_response, params)
        if params.get("Action") not in ACTIONS or params.get("Version") != "2014-10-31":
            return self.moto_app(environ, start_response)
        access_key, region = signature(environ.get("HTTP_AUTHORIZATION", ""))
        answer = self._handle(params["Action"], params, region or "us-east-1", self._identities.identify(access_key))
        if answer is None:
            raise ConnectionAbort("stand-in fault: connection reset")  # _QuietHandler turns this into a TCP RST
        status, xml = answer
        start_response(
            f"{status} {'OK' if status == 200 else 'Error'}",
            [("Content-Type", "text/xml"), ("Content-Length", str(len(xml)))],
        )
        return [xml]

    def _assume_role(
        self, environ: dict[str, Any], start_response: StartResponse, params: dict[str, str]
    ) -> list[bytes]:
        """Pass AssumeRole to moto and remember which role and session the returned access key stands for."""
        seen: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append(status)
            return start_response(status, headers, exc_info)

        answer = self.moto_app(environ, capture)
        try:
            body = b"".join(answer)
        finally:
            close = getattr(answer, "close", None)
            if close:
                close()
        if seen and seen[0].startswith("200"):
            self._identities.record_assume_role(params, body)
        return [body]

    def _handle(self, action: str, params: dict[str, str], region: str, who: Identity) -> tuple[int, bytes] | None:
        """The HTTP answer (status, body) of one export-task call, or None to reset the connection."""
        fault = self._faults.take(action)
        with self._lock:
            self._calls.append(
                Call(
                    action,
                    params,
                    region,
                    who.caller,
                    who.account,
                    who.session_name,
                    fault.name if fault else None,
                    self.now(),
                )
            )
        if fault and fault.delay:
            self.closing.wait(fault.delay)
        answer = self._answer(action, params, region, who) if fault is None or fault.carries_out else None
        if fault is None or not (fault.answers_error or fault.reset or fault.malformed):
            assert answer is not None
            return answer
        if fault.reset:
            return None
        if fault.malformed:
            return 200, _MALFORMED
        assert fault.code is not None
        return fault.status, error_xml(ApiError(fault.code, fault.message, fault.status), str(uuid.uuid4()))

    def _answer(self, action: str, params: dict[str, str], region: str, who: Identity) -> tuple[int, bytes]:
        request_id = str(uuid.uuid4())
        handler = {
            "StartExportTask": self._exports.start,
            "DescribeExportTasks": self._exports.describe,
            "CancelExportTask": self._exports.cancel,
        }
        try:
            with self._lock:
                self._exports.advance_all()
                result = handler[action](params, region, who.account)
                hook = self._hooks.get(action)
        except ApiError as error:
            return error.status, error_xml(error, request_id)
        if hook:
            hook(params)
        return 200, result_xml(action, result, request_id)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def connection_dropped(self, error: BaseException, environ: dict[str, Any] | None = None) -> None:
        if isinstance(error, ConnectionAbort):  # a reset fault: RST now, read no further request
            self.close_connection = True
            abort_connection(self.connection, self.rfile)


class StandInServer:
    """The stand-in served on a free loopback port in a background thread."""

    def __init__(
        self, *, auto: bool = True, script: Script | None = None, port: int | None = None, limit: int = 5
    ) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.standin = RdsExportStandIn(
            DomainDispatcherApplication(create_backend_app), auto=auto, script=script, limit=limit
        )
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
        self.standin.closing.set()
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

    def session(
        self, role_arn: str | None = None, *, session_name: str = "standin", external_id: str | None = None
    ) -> boto3.Session:
        """A boto3 session with the default credentials, or (``role_arn``) with credentials from this stand-in's
        STS ``AssumeRole``, so that calls are recorded under that role and act in its account."""
        base = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        if role_arn is None:
            return base
        extra = {"ExternalId": external_id} if external_id else {}
        creds = base.client("sts", endpoint_url=self.url).assume_role(
            RoleArn=role_arn, RoleSessionName=session_name, **extra
        )["Credentials"]
        return boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name="us-east-1",
        )


def create_db_instance(rds: Any, identifier: str) -> None:
    """Create a DB instance in the stand-in's moto (moto takes a first automated snapshot of it at once)."""
    rds.create_db_instance(
        DBInstanceIdentifier=identifier,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="password123",
        AllocatedStorage=20,
    )


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
