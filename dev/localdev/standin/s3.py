"""The export's own info files in the stand-in's S3 (moto), the task's WarningMessage, and S3 access denied per bucket.

When a task leaves STARTING the stand-in writes ``export_info_<id>.json`` (its status then IN_PROGRESS), and when
it completes what RDS writes next to the data, to the best public evidence (``shared/rds-export-api.md``, "The
export's own info files"): ``export_tables_info_<id>_from_<n>_to_<m>.json`` (100 entries per file by default),
then ``export_info_<id>.json`` again, last (a reader that sees it final has every table file), under
``<prefix>/<id>/`` in moto's S3 of the task's account (the bucket is created when missing). Each table entry has
``tableStatistics.partitioningInfo``, ``schemaMetadata.originalTypeMappings`` (realistic Postgres columns),
``status``, ``sizeGB`` and ``target``; the list also holds a database-level entry. Skipped tables are not in the
files but in the task's ``WarningMessage`` JSON.

Which tables and with which outcome is set per identifier pattern (``table_outcomes``), how many and how wide
(``table_shape``: tens of thousands, generated one file at a time); files can be held back (they then appear late,
when a test writes them) or replaced by raw bytes (malformed, huge, a missing middle file).
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from localdev.standin import parquet
from localdev.standin.rds_exports import TERMINAL, ExportService, Task

DEFAULT_TABLES = ("postgres.public.customers", "postgres.public.orders", "postgres.public.order_items")
TABLES_PER_FILE = 100  # ranges as in real exports read by public code (shared/rds-export-api.md, info files)
OUTCOMES = ("COMPLETE", "FAILED", "SKIPPED")
# The reasons seen in WarningMessage (shared/rds-export-api.md); "SKIPPED:<REASON>" picks one.
SKIP_REASON = "PERMISSIONS_DO_NOT_EXIST"
# Per-table FAILED is not evidenced (shared/rds-export-api.md); the stand-in writes it for tests of the parser.
_FAILED_REASON = "Table export failed: an internal error occurred while extracting the table"
# A database-level entry: {"target": <database>, "warningMessage": ...}; its text is not public (invented here).
_DATABASE_WARNING = "The database has no tables that can be exported"
# Realistic Postgres columns and the Parquet types RDS exports them as (shared/rds-export-api.md: bigint -> int64,
# integer/smallint -> int32, numeric/date/timestamp/uuid/json(b) -> string). (name, type, exported, char, num, time)
_COLUMNS = (
    ("id", "bigint", "int64", 0, 64, 0),
    ("customer_id", "integer", "int32", 0, 32, 0),
    ("name", "character varying", "binary (UTF8)", 255, 0, 0),
    ("created_at", "timestamp without time zone", "binary (UTF8)", 0, 0, 6),
    ("amount", "numeric", "binary (UTF8)", 0, 12, 0),
    ("active", "boolean", "boolean", 0, 0, 0),
    ("payload", "jsonb", "binary (UTF8)", 0, 0, 0),
    ("external_ref", "uuid", "binary (UTF8)", 0, 0, 0),
    ("quantity", "smallint", "int32", 0, 16, 0),
    ("born_on", "date", "binary (UTF8)", 0, 0, 0),
    ("ratio", "double precision", "double", 0, 53, 0),
    ("notes", "text", "binary (UTF8)", 0, 0, 0),
)
logger = logging.getLogger(__name__)
_SERVICE = re.compile(r"Credential=[^/]+/\d{8}/[a-z0-9-]+/(?P<service>[a-z0-9-]+)/")


def folder(task: Task) -> str:
    return f"{task.s3_prefix.rstrip('/')}/{task.identifier}/" if task.s3_prefix else f"{task.identifier}/"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class Shape:
    """How an export looks: ``count`` generated tables (``postgres.public.t00000``...) instead of the defaults,
    ``columns`` per table, ``per_file`` entries per table file, ``databases`` with a database-level entry,
    ``general`` reasons for WarningMessage."""

    count: int | None = None
    columns: int = 8
    per_file: int = TABLES_PER_FILE
    databases: tuple[str, ...] = ("postgres",)
    general: tuple[str, ...] = ()


@dataclass
class TableFiles:
    """Per identifier pattern (``fnmatch``): table outcomes, shapes and held-back files; buckets that deny S3."""

    outcomes: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    shapes: list[tuple[str, Shape]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    denied: set[str] = field(default_factory=set)
    data: list[str] = field(default_factory=list)  # identifier patterns whose COMPLETE tables get Parquet data

    def clear(self) -> None:
        self.outcomes.clear()
        self.shapes.clear()
        self.held.clear()
        self.denied.clear()
        self.data.clear()

    def data_of(self, task: Task) -> dict[str, bytes]:
        """The Parquet files of the task's COMPLETE tables (``parquet.py``), if its identifier asks for data."""
        if not any(fnmatch.fnmatchcase(task.identifier, p) for p in self.data):
            return {}
        files: dict[str, bytes] = {}
        for target, status in self.tables_of(task):
            if status == "COMPLETE":
                files.update(parquet.data_files(target))
        return files

    def shape_of(self, task: Task) -> Shape:
        return next((s for p, s in reversed(self.shapes) if fnmatch.fnmatchcase(task.identifier, p)), Shape())

    def overrides_of(self, task: Task) -> dict[str, str]:
        found: dict[str, str] = {}
        for pattern, overrides in self.outcomes:
            if fnmatch.fnmatchcase(task.identifier, pattern):
                found.update(overrides)
        return found

    def tables_of(self, task: Task) -> Iterator[tuple[str, str]]:
        """(target, outcome): the default tables (the exportOnly tables, or ``count`` generated ones) with the
        matching overrides applied; generated lazily."""
        shape, overrides = self.shape_of(task), self.overrides_of(task)
        listed: Iterable[str] = [t for t in task.export_only if t.count(".") == 2] or list(DEFAULT_TABLES)
        if shape.count is not None:
            listed = (f"postgres.public.t{i:05}" for i in range(shape.count))
        for target in listed:
            yield target, overrides.pop(target, "COMPLETE")
        yield from overrides.items()

    def is_held(self, task: Task) -> bool:
        return any(fnmatch.fnmatchcase(task.identifier, p) for p in self.held)

    def warning_of(self, task: Task) -> str | None:
        """The task's WarningMessage: skipped tables (an element's shape is not public: target and reason here)."""
        skipped = [
            {"target": t, "reason": o.partition(":")[2] or SKIP_REASON}
            for t, o in self.overrides_of(task).items()
            if o.startswith("SKIPPED")
        ]
        general = [{"reason": r} for r in self.shape_of(task).general]
        if not skipped and not general:
            return None
        return json.dumps({"skippedTables": skipped, "skippedObjectives": [], "general": general})

    def files_of(self, task: Task) -> Iterator[tuple[str, bytes]]:
        """(file name relative to the export folder, content), as RDS would write them for this task, one file at
        a time: the table files in order, export_info last."""
        shape = self.shape_of(task)
        database_entries = ({"target": d, "warningMessage": _DATABASE_WARNING} for d in shape.databases)
        table_entries = (_entry(t, o, i, shape.columns) for i, (t, o) in enumerate(self.tables_of(task)))
        chunk: list[dict[str, Any]] = []
        first, size = 1, 0.0
        for entry in itertools.chain(database_entries, (e for e in table_entries if e is not None)):
            chunk.append(entry)
            size += entry.get("sizeGB", 0.0)
            if len(chunk) == shape.per_file:
                yield _tables_file(task, first, chunk)
                first, chunk = first + len(chunk), []
        if chunk:
            yield _tables_file(task, first, chunk)
        yield self.export_info_file(task, size)

    def export_info_file(self, task: Task, size_gb: float = 0.0) -> tuple[str, bytes]:
        """export_info's keys (shared/rds-export-api.md); totalExportedDataInGB is a float there (here: the tables'
        sizeGB summed)."""
        info = {
            "exportTaskIdentifier": task.identifier,
            "sourceArn": task.source_arn,
            "exportOnly": list(task.export_only),
            "snapshotTime": _time(task.snapshot_time),
            "taskStartTime": _time(task.start_time),
            "taskEndTime": _time(task.end_time),
            "s3Bucket": task.s3_bucket,
            "s3Prefix": task.s3_prefix or "",
            "exportedFilesPath": folder(task).rstrip("/"),
            "iamRoleArn": task.iam_role_arn,
            "kmsKeyId": task.kms_key_id,
            "status": task.status,
            "percentProgress": task.percent,
            "totalExportedDataInGB": round(size_gb, 6),
        }
        return f"export_info_{task.identifier}.json", json.dumps(info).encode()

    def deny(self, bucket: str) -> bytes | None:
        """The S3 AccessDenied answer for a request to a denied bucket, or None to let it through."""
        # moto has no bucket policies: S3 API reference, "Error responses" (AccessDenied, 403)
        if bucket in self.denied:
            return (
                '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                f"<Message>Access Denied</Message><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
            ).encode()
        return None


def _tables_file(task: Task, first: int, chunk: list[dict[str, Any]]) -> tuple[str, bytes]:
    name = f"export_tables_info_{task.identifier}_from_{first}_to_{first + len(chunk) - 1}.json"
    return name, json.dumps({"perTableStatus": chunk}).encode()


@dataclass(frozen=True)
class S3Call:
    """One S3 request as the stand-in received it (path-style or virtual-hosted)."""

    method: str
    bucket: str
    key: str
    caller: str  # assumed role ARN, or "default"


def s3_request(environ: Mapping[str, Any]) -> tuple[str, str] | None:
    """(bucket, key) of a SigV4-signed S3 request, or None for any other request."""
    match = _SERVICE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if not match or match.group("service") != "s3":
        return None
    host = str(environ.get("HTTP_HOST", "")).split(":")[0]
    path = str(environ.get("PATH_INFO", "")).lstrip("/")
    if host.count(".") >= 2 and not host.replace(".", "").isdigit() and not host.startswith("s3."):
        return host.split(".", 1)[0], path  # virtual-hosted: bucket.s3.region.amazonaws.com/key
    bucket, _, key = path.partition("/")
    return bucket, key


def _entry(target: str, outcome: str, index: int, columns: int) -> dict[str, Any] | None:
    """One table entry (shared/rds-export-api.md); None for a skipped table (it is in WarningMessage only)."""
    if outcome.startswith("SKIPPED"):
        return None
    entry: dict[str, Any] = {
        "tableStatistics": {
            "partitioningInfo": {"numberOfPartitions": 1, "numberOfCompletedPartitions": int(outcome == "COMPLETE")}
        },
        "schemaMetadata": {"originalTypeMappings": _mappings(target, columns)},
        "status": outcome,
        "sizeGB": round(0.0001 * (1 + index % 97), 6),
        "target": target,
    }
    if outcome == "FAILED":
        entry["warningMessage"] = _FAILED_REASON
    return entry


def _mappings(target: str, columns: int) -> list[dict[str, Any]]:
    """A table's columns: those of its Parquet data (``parquet.py``, so the catalog reads what the data holds) for
    the stand-in's named tables, else ``columns`` generated ones."""
    if target.rsplit(".", 1)[-1] in parquet.TABLES:
        return parquet.type_mappings(target)
    return [_column(k) for k in range(columns)]


def _column(k: int) -> dict[str, Any]:
    name, original, exported, chars, precision, time_precision = _COLUMNS[k % len(_COLUMNS)]
    return {
        "columnName": name if k < len(_COLUMNS) else f"{name}_{k // len(_COLUMNS)}",
        "originalType": original,
        "expectedExportedType": exported,
        "originalCharMaxLength": chars,
        "originalNumPrecision": precision,
        "originalDateTimePrecision": time_precision,
    }


def put_files(task: Task, files: Iterable[tuple[str, bytes]]) -> list[str]:
    """Write ``files`` (name relative to the export folder, content), one at a time, into moto's S3 of the task's
    account; return the keys."""
    from moto.s3.models import s3_backends

    backend = s3_backends[task.account]["aws"]
    if task.s3_bucket not in s3_backends.bucket_accounts:
        backend.create_bucket(task.s3_bucket, task.region)
    else:
        partition, account = s3_backends.bucket_accounts[task.s3_bucket]
        backend = s3_backends[account][partition]
    keys = []
    for name, content in files:
        key = folder(task) + name
        backend.put_object(task.s3_bucket, key, content)
        keys.append(key)
    return keys


def validate_outcomes(outcomes: Mapping[str, str]) -> dict[str, str]:
    bad = {t: s for t, s in outcomes.items() if s.partition(":")[0] not in OUTCOMES or s.endswith(":")}
    if bad:
        raise ValueError(f"table outcomes must be one of {', '.join(OUTCOMES)}: {bad}")
    return dict(outcomes)


def exported_tables(files: Mapping[str, bytes]) -> Sequence[str]:
    """The tables (not the database-level entries) listed in generated table files (tests of the stand-in)."""
    targets: list[str] = []
    for name, content in files.items():
        if name.startswith("export_tables_info_"):
            targets += [e["target"] for e in json.loads(content)["perTableStatus"] if "status" in e]
    return targets


class S3Controls:
    """The stand-in's controls over the export's info files, the WarningMessage of skipped tables and S3 access
    (a part of :class:`localdev.standin.server.RdsExportStandIn`)."""

    _lock: threading.RLock
    _exports: ExportService
    _tables: TableFiles
    _s3_calls: list[S3Call]

    def table_outcomes(self, pattern: str, outcomes: Mapping[str, str]) -> None:
        """Tasks whose identifier matches ``pattern`` (``fnmatch``) report these tables with these outcomes
        (COMPLETE, FAILED, SKIPPED or ``SKIPPED:<REASON>``), on top of the default tables (or the exportOnly
        tables) that are COMPLETE; e.g. ``table_outcomes("*", {"postgres.public.orders": "FAILED"})``. Skipped
        tables are left out of the files and listed in the task's WarningMessage. Later calls win."""
        checked = validate_outcomes(outcomes)
        with self._lock:
            self._tables.outcomes.append((pattern, checked))

    def table_shape(self, pattern: str, **shape: Any) -> None:
        """Tasks whose identifier matches ``pattern`` write their files in this shape (:class:`Shape`: ``count``
        generated tables, ``columns`` per table, ``per_file`` entries per file, ``databases`` with a
        database-level entry, ``general`` WarningMessage reasons); e.g. ``table_shape(ident, count=50_000,
        columns=30, per_file=500)``. Files are generated and written one at a time. Later calls win."""
        checked = Shape(**shape)
        with self._lock:
            self._tables.shapes.append((pattern, checked))

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
            return put_files(task, self._tables.files_of(task) if files is None else files.items())

    def table_files(
        self, identifier: str, *, account: str | None = None, region: str | None = None
    ) -> dict[str, bytes]:
        """The info files the stand-in writes for this task (name relative to the export folder -> content)."""
        with self._lock:
            return dict(self._tables.files_of(self._exports.tasks[self._exports.find(identifier, account, region)]))

    def deny_bucket(self, bucket: str) -> None:
        """Every S3 request for ``bucket`` answers 403 AccessDenied (as without s3:ListBucket / s3:GetObject)."""
        with self._lock:
            self._tables.denied.add(bucket)

    def allow_bucket(self, bucket: str) -> None:
        """Lift :meth:`deny_bucket` (an IAM fix taking effect)."""
        with self._lock:
            self._tables.denied.discard(bucket)

    def s3_calls(self, bucket: str | None = None) -> list[S3Call]:
        """S3 requests (method, bucket, key, caller: the assumed role ARN or "default"), optionally of one bucket."""
        with self._lock:
            return [c for c in self._s3_calls if bucket is None or c.bucket == bucket]

    def _started(self, task: Task) -> None:
        """A task left STARTING (called under the lock): RDS writes export_info now, and again at the end."""
        if self._tables.is_held(task) or task.status in TERMINAL:
            return
        try:
            put_files(task, [self._tables.export_info_file(task)])
        except Exception:  # a test's odd bucket must not turn DescribeExportTasks into a 500
            logger.exception("stand-in: could not write the export_info of %s", task.identifier)

    def _finished(self, task: Task) -> None:
        """A task became COMPLETE or FAILED (called under the lock): RDS writes the info files of a complete one,
        and lists its skipped tables in WarningMessage (unless a test set one)."""
        if task.status != "COMPLETE":
            return
        warning = self._tables.warning_of(task)
        if task.warning is None and warning is not None:
            key = (task.account, task.region, task.identifier)
            self._exports.tasks[key] = task = replace(task, warning=warning)
        if self._tables.is_held(task):
            return
        try:
            put_files(task, itertools.chain(self._tables.data_of(task).items(), self._tables.files_of(task)))
        except Exception:  # a test's odd bucket must not turn DescribeExportTasks into a 500
            logger.exception("stand-in: could not write the info files of %s", task.identifier)

    def write_parquet(self, pattern: str) -> None:
        """Tasks whose identifier matches ``pattern`` also write real Parquet data for their COMPLETE tables
        (:mod:`localdev.standin.parquet`) when they complete. Off by default: benchmarks export thousands."""
        with self._lock:
            self._tables.data.append(pattern)
