"""The export's own info files in the stand-in's S3 (moto), and S3 access denied per bucket.

When a task completes the stand-in writes what RDS writes next to the data (``shared/rds-export-api.md``, "The
export's own info files"): ``export_info_<id>.json`` and ``export_tables_info_<id>_from_<n>_to_<m>.json`` (100
tables per file) under ``<prefix>/<id>/``, into moto's S3 of the task's account (the bucket is created when
missing). Which tables and with which outcome is set per identifier pattern; files can be held back (they then
appear late, when a test writes them) or replaced by raw bytes (malformed, huge).
"""

from __future__ import annotations

import fnmatch
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from localdev.standin import parquet
from localdev.standin.rds_exports import Task

DEFAULT_TABLES = ("postgres.public.customers", "postgres.public.orders", "postgres.public.order_items")
TABLES_PER_FILE = 100
OUTCOMES = ("COMPLETE", "FAILED", "SKIPPED")
_REASONS = {
    "FAILED": "Table export failed: an internal error occurred while extracting the table",
    "SKIPPED": "Table skipped: the table has a data type the export does not support",
}
_SERVICE = re.compile(r"Credential=[^/]+/\d{8}/[a-z0-9-]+/(?P<service>[a-z0-9-]+)/")


def folder(task: Task) -> str:
    return f"{task.s3_prefix.rstrip('/')}/{task.identifier}/" if task.s3_prefix else f"{task.identifier}/"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class TableFiles:
    """Per identifier pattern (``fnmatch``): table outcomes and held-back files; buckets that deny S3 access."""

    outcomes: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    denied: set[str] = field(default_factory=set)
    data: list[str] = field(default_factory=list)  # identifier patterns whose COMPLETE tables get Parquet data

    def clear(self) -> None:
        self.outcomes.clear()
        self.held.clear()
        self.denied.clear()
        self.data.clear()

    def data_of(self, task: Task) -> dict[str, bytes]:
        """The Parquet files of the task's COMPLETE tables (``parquet.py``), if its identifier asks for data."""
        if not any(fnmatch.fnmatchcase(task.identifier, p) for p in self.data):
            return {}
        files: dict[str, bytes] = {}
        for target, status in self.tables_of(task).items():
            if status == "COMPLETE":
                files.update(parquet.data_files(target))
        return files

    def tables_of(self, task: Task) -> dict[str, str]:
        """target -> status: the default tables (or the exportOnly tables) with the matching overrides applied."""
        listed = [t for t in task.export_only if t.count(".") == 2] or list(DEFAULT_TABLES)
        tables = dict.fromkeys(listed, "COMPLETE")
        for pattern, overrides in self.outcomes:
            if fnmatch.fnmatchcase(task.identifier, pattern):
                tables.update(overrides)
        return tables

    def is_held(self, task: Task) -> bool:
        return any(fnmatch.fnmatchcase(task.identifier, p) for p in self.held)

    def files_of(self, task: Task) -> dict[str, bytes]:
        """File name (relative to the export folder) -> content, as RDS would write it for this task."""
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
            "totalExportedDataInGB": task.gb,
        }
        files = {f"export_info_{task.identifier}.json": json.dumps(info).encode()}
        entries = [_entry(target, status, task) for target, status in self.tables_of(task).items()]
        for start in range(0, len(entries), TABLES_PER_FILE):
            chunk = entries[start : start + TABLES_PER_FILE]
            name = f"export_tables_info_{task.identifier}_from_{start + 1}_to_{start + len(chunk)}.json"
            files[name] = json.dumps({"perTableStatus": chunk}).encode()
        return files

    def deny(self, bucket: str) -> bytes | None:
        """The S3 AccessDenied answer for a request to a denied bucket, or None to let it through."""
        if bucket in self.denied:
            return (
                '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                f"<Message>Access Denied</Message><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
            ).encode()
        return None


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


def _entry(target: str, status: str, task: Task) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "tableStatistics": {
            "extractionStartTime": _time(task.start_time),
            "extractionEndTime": _time(task.end_time),
            "partitioningInfo": {"numberOfPartitions": 1, "numberOfCompletedPartitions": int(status == "COMPLETE")},
        },
        "schemaMetadata": {"originalTypeMappings": parquet.type_mappings(target)},
        "status": status,
        "sizeGB": 0.0,
        "target": target,
    }
    if status in _REASONS:
        entry["warningMessage"] = _REASONS[status]
    return entry


def put_files(task: Task, files: Mapping[str, bytes]) -> list[str]:
    """Write ``files`` (names relative to the export folder) into moto's S3 of the task's account; return the keys."""
    from moto.s3.models import s3_backends

    backend = s3_backends[task.account]["aws"]
    if task.s3_bucket not in s3_backends.bucket_accounts:
        backend.create_bucket(task.s3_bucket, task.region)
    else:
        partition, account = s3_backends.bucket_accounts[task.s3_bucket]
        backend = s3_backends[account][partition]
    keys = []
    for name, content in files.items():
        key = folder(task) + name
        backend.put_object(task.s3_bucket, key, content)
        keys.append(key)
    return keys


def validate_outcomes(outcomes: Mapping[str, str]) -> dict[str, str]:
    bad = {t: s for t, s in outcomes.items() if s not in OUTCOMES}
    if bad:
        raise ValueError(f"table outcomes must be one of {', '.join(OUTCOMES)}: {bad}")
    return dict(outcomes)


def exported_tables(files: Mapping[str, bytes]) -> Sequence[str]:
    """The targets listed in generated table files (for tests of the stand-in itself)."""
    targets: list[str] = []
    for name, content in files.items():
        if name.startswith("export_tables_info_"):
            targets += [e["target"] for e in json.loads(content)["perTableStatus"]]
    return targets
