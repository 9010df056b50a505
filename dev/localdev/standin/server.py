"""The AWS stand-in: moto in server mode, plus real RDS export-task behaviour where moto lacks it.

boto3 reaches it over HTTP (``AWS_ENDPOINT_URL``). This module is the proxy and the dispatch: every request goes
to moto, except the three export-task actions (answered by :mod:`localdev.standin.rds_exports`), STS AssumeRole
(watched by :mod:`localdev.standin.sts`) and S3 requests for a denied bucket (:mod:`localdev.standin.s3`). One
module per service the stand-in plays, each with its controls as a part of :class:`RdsExportStandIn`:
``rds_exports`` (export tasks), ``rds_snapshots`` (DB snapshots over time), ``s3`` (the export's info files),
``sts`` (who called); ``faults`` and ``wire`` serve them all. The export tasks follow ``shared/rds-export-api.md``:

- lifecycle STARTING -> IN_PROGRESS -> COMPLETE | FAILED, cancel via CANCELING -> CANCELED, upper-case statuses,
  PercentProgress, TotalExtractedDataInGB, times, FailureCause, WarningMessage;
- identifier validation, ExportTaskAlreadyExists, the 5-task limit (ExportTaskLimitReachedFault),
  InvalidExportTaskStateFault for a cancel of a finished task;
- sources looked up in moto's RDS backend of the caller's account: DB snapshots (also automated ``rds:`` ones),
  cluster snapshots and live clusters, with the right NotFound and InvalidExportSourceState errors;
- DescribeDBSnapshots / DescribeDBClusterSnapshots as RDS answers them (:mod:`localdev.standin.snapshots`): no
  SnapshotCreateTime while a snapshot is being taken or copied, DBInstanceNotFound / DBClusterNotFoundFault for
  a missing source;
- DescribeExportTasks with ExportTaskIdentifier, SourceArn, SourceType, Filters (lower-case status values),
  MaxRecords (20..100) and Marker pagination.

Accounts: a caller with credentials from moto's STS ``AssumeRole`` acts in the assumed role's account (as moto
decides it); other credentials act in 123456789012. Export tasks belong to an account and a region: identifiers,
the 5-task limit, Describe and Cancel are all per account and region.

Controls for tests, demo and benchmarks are the public methods of :class:`RdsExportStandIn` (the stand-in runs
in-process): ``seed``, ``set_task``, ``task``, ``tasks``, ``reset``, ``mode``, ``inject`` (see
:mod:`localdev.standin.faults`), ``deny_role``, ``after``, ``calls``, ``call_count``; snapshots (for schedules):
``create_db_snapshot``, ``set_snapshot_status``, ``set_snapshot_time``, ``delete_snapshot``, ``snapshot_every``,
``stop_snapshots``.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import boto3
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from localdev.controlplane import free_port
from localdev.standin import snapshots
from localdev.standin.faults import ConnectionAbort, FaultBook, abort_connection, make_fault
from localdev.standin.rds_exports import ACCOUNT, ACTIVE, TERMINAL, ExportControls, ExportService, Modes, Script, Task
from localdev.standin.rds_snapshots import SnapshotControls, create_db_instance, create_snapshot
from localdev.standin.s3 import S3Call, S3Controls, TableFiles, s3_request
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
    "create_db_instance",
    "create_snapshot",
]

ACTIONS = ("StartExportTask", "DescribeExportTasks", "CancelExportTask")
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


class RdsExportStandIn(ExportControls, SnapshotControls, S3Controls):
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
        self._exports.on_start = self._started
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

    # -- controls (each service's own: ExportControls, SnapshotControls, S3Controls) -------------------------

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
        if params.get("Action") in snapshots.ACTIONS and params.get("Version") == "2014-10-31":
            return self._describe_snapshots(environ, start_response, params)
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

    def _describe_snapshots(
        self, environ: dict[str, Any], start_response: StartResponse, params: dict[str, str]
    ) -> list[bytes]:
        """moto's snapshot listing, answered as RDS answers it (:mod:`localdev.standin.snapshots`)."""
        from moto.rds.models import rds_backends

        access_key, region = signature(environ.get("HTTP_AUTHORIZATION", ""))
        backend = rds_backends[self._identities.identify(access_key).account][region or "us-east-1"]
        with self._lock:
            error = snapshots.missing_source(params["Action"], params, backend)
        if error is not None:
            xml = error_xml(error, str(uuid.uuid4()))
            start_response(f"{error.status} Error", [("Content-Type", "text/xml"), ("Content-Length", str(len(xml)))])
            return [xml]
        seen: list[tuple[str, list[tuple[str, str]]]] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append((status, headers))
            return lambda data: None

        answer = self.moto_app(environ, capture)
        try:
            body = snapshots.without_times_in_progress(b"".join(answer))
        finally:
            close = getattr(answer, "close", None)
            if close:
                close()
        status, headers = seen[0]
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(body)))]
        start_response(status, headers)
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
