"""The decisions for one finished export's table report: read the info files, map them to status and Events.

Plain Python, no Kubernetes: given the export's location, the object's last status and an S3 reader, it makes the
reads, asks ``tables`` for a report and returns a ``Result`` (status fields, the ``TablesComplete`` condition,
Events, when to look again). It never touches Complete or Failed: the table report is about the data, the export
verdict is AWS's.

No verdict before the files are complete: their names' ranges must tile 1..M, each file must hold the entries its
name says, and export_info must be its final version (RDS writes it at the start and again at the end; a missing
last file shows only there). Skipped tables come from the task's WarningMessage, merged with the files; database-
level entries are reported apart, never as tables. The files are streamed one at a time (``entries.py``).

While the files are missing, incomplete or S3 refuses (they can appear a little after COMPLETE) it retries with
backoff until ``wait`` has passed since ``status.tablesPendingSince``, then gives up with ``TablesComplete=Unknown``
and the reason; AccessDenied is retried for ``access_wait`` (a day: an IAM change may be under way), every
``max_delay`` after ``wait``. A report that can never be read (malformed, too large, archived) is final at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rds_export_operator.api import status as st
from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.identity import Identity, IdentityUnavailable, Refusal
from rds_export_operator.aws.s3 import ObjectTooLarge, S3Object
from rds_export_operator.exports.reconcile import Event, Result, RetryPolicy, backoff
from rds_export_operator.tables import parsing as tables

TABLES_COMPLETE = "TablesComplete"
ENABLED, DISABLED = "Enabled", "Disabled"
REPORTED_STATUSES = ("COMPLETE", "FAILED")  # a FAILED export may have written the files for what it did
REPORT_FIELDS = ("tables", "failedTables", "tablesSummary", "tablesPendingSince")
EVENT_TABLES = 5  # failed tables named in an Event's message


class Reader(Protocol):
    """``s3.S3``, or a fake in tests."""

    def list(
        self, region: str, bucket: str, prefix: str, *, limit: int, identity: Identity | None = None
    ) -> tuple[list[S3Object], bool]: ...
    def stream(
        self, region: str, bucket: str, key: str, *, max_bytes: int, identity: Identity | None = None
    ) -> Iterator[bytes] | None: ...


@dataclass(frozen=True)
class Target:
    """Where an export's files are: s3://bucket/folder, folder ending in ``<identifier>/``."""

    region: str
    bucket: str
    folder: str
    identifier: str
    export_status: str
    ended: datetime | None = None  # the export's taskEndTime
    namespace: str = ""  # whose AWS identity reads the files, with per-namespace identities

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.folder}"


def target_of(
    spec: Mapping[str, Any], status: Mapping[str, Any], *, region: str, identifier: str, namespace: str = ""
) -> Target | None:
    """The export's location as AWS reported it (status), falling back to the spec; None without a bucket."""
    bucket = status.get("s3Bucket") or spec.get("s3BucketName")
    if not bucket:
        return None
    prefix = status.get("s3Prefix") if "s3Prefix" in status else st.s3_prefix_as_stored(spec.get("s3Prefix"))
    identifier = status.get("exportTaskIdentifier") or identifier
    folder = f"{prefix.rstrip('/')}/{identifier}/" if prefix and prefix.strip("/") else f"{identifier}/"
    ended = st.parse_time(status.get("taskEndTime"))
    return Target(region, str(bucket), folder, str(identifier), str(status.get("status")), ended, namespace)


def enabled(spec: Mapping[str, Any]) -> bool:
    value = spec.get("tableReport", ENABLED)
    return value is not False and value != DISABLED


def condition_of(status: Mapping[str, Any]) -> Mapping[str, Any]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == TABLES_COMPLETE:
            return dict(cond)
    return {}


def wants_report(spec: Mapping[str, Any], status: Mapping[str, Any], generation: int | None) -> bool:
    """Whether the report must be (re)read: the export finished, the report is on, and no final verdict was
    made for this generation of the spec (editing the spec, e.g. after fixing S3 permissions, reads it again)."""
    if not enabled(spec) or status.get("status") not in REPORTED_STATUSES:
        return False
    cond = condition_of(status)
    if not cond or status.get("tablesPendingSince"):
        return True
    return generation is not None and cond.get("observedGeneration") not in (None, generation)


@dataclass(frozen=True)
class ReportPolicy:
    wait: float = 900.0  # how long missing files or S3 errors are retried before TablesComplete=Unknown
    base_delay: float = 5.0
    max_delay: float = 300.0
    # AccessDenied is retried this long (after ``wait``, every ``max_delay``): an IAM fix takes effect unasked
    access_wait: float = 86400.0
    # Streamed, so these bound time, not memory: 50,000 tables of 30 columns are about 300 MB.
    max_file_bytes: int = 1024**3
    max_total_bytes: int = 4 * 1024**3


class Unavailable(Exception):
    """The files cannot be read now; ``retryable`` says whether another try can change that."""

    def __init__(self, reason: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.reason, self.message, self.retryable = reason, message, retryable


def checked_files(
    s3: Reader, target: Target, policy: ReportPolicy, identity: Identity | None
) -> tuple[list[tables.TableFile], tables.ExportInfo]:
    """The export's table files in range order, once their names tile 1..M, their sizes are within ``policy``
    and export_info is final; else ``Unavailable`` (retryable while the files may still come). The table report
    and the Glue catalog both read the files through this. AwsError passes through."""
    listed, more = s3.list(
        target.region,
        target.bucket,
        f"{target.folder}export_tables_info_{target.identifier}_from_",
        limit=tables.MAX_FILES,
        identity=identity,
    )
    if more:
        raise Unavailable("TooLarge", f"more than {tables.MAX_FILES} table files under {target.url}", retryable=False)
    files = tables.table_files(target.identifier, target.folder, ((o.key, o.size) for o in listed))
    if not files:
        raise Unavailable("NotFound", f"no export_tables_info files under {target.url} (yet)", retryable=True)
    # Sizes from the listing: refuse before downloading anything (the reads check again as they go).
    for f in files:
        if f.size > policy.max_file_bytes:
            message = f"{f.name} has {f.size} bytes, more than {policy.max_file_bytes}"
            raise Unavailable("TooLarge", message, retryable=False)
    if sum(f.size for f in files) > policy.max_total_bytes:
        message = f"the table files have more than {policy.max_total_bytes} bytes"
        raise Unavailable("TooLarge", message, retryable=False)
    if (gap := tables.gap(files)) is not None:
        raise Unavailable("Incomplete", f"{target.url}: {gap}", retryable=True)
    name = f"export_info_{target.identifier}.json"
    chunks = s3.stream(
        target.region, target.bucket, target.folder + name, max_bytes=tables.MAX_INFO_BYTES, identity=identity
    )
    if chunks is None:
        raise Unavailable("NotFound", f"no {name} under {target.url} (yet)", retryable=True)
    info = tables.parse_export_info(name, b"".join(chunks))
    if isinstance(info, tables.Refused):
        raise Unavailable(info.reason, info.message, retryable=False)
    if why := tables.not_final(info, target.export_status):
        raise Unavailable("Incomplete", f"{target.url}: {why}", retryable=True)
    return files, info


def open_file(
    s3: Reader, target: Target, file: tables.TableFile, policy: ReportPolicy, identity: Identity | None
) -> Iterator[bytes]:
    """One table file's chunks; ``Unavailable`` if it is gone (listed a moment ago: being replaced)."""
    chunks = s3.stream(target.region, target.bucket, file.key, max_bytes=policy.max_file_bytes, identity=identity)
    if chunks is None:
        raise Unavailable("NotFound", f"{file.name} disappeared while it was read", retryable=True)
    return chunks


def unavailable(error: AwsError, target: Target) -> Unavailable:
    """An S3 error while the files are read, as the report names it (archived files are not retried)."""
    reason = _reason(error)
    message = f"{error.operation} {target.url}: {error.code}: {error.message}"
    if reason == "Archived":
        message += " (restore the export's info files, then edit the object's spec to read them again)"
    return Unavailable(reason, message, retryable=reason != "Archived")


class TableReporter:
    def __init__(
        self,
        s3: Reader,
        policy: ReportPolicy | None = None,
        rng: random.Random | None = None,
        *,
        identity: Callable[[str], Identity | Refusal] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``identity``: the AWS identity of a namespace (identity.Identities.resolve); None: the operator's own."""
        self.s3, self.policy, self.rng, self.clock = s3, policy or ReportPolicy(), rng or random.Random(), clock
        self.resolve = identity
        self._backoff = RetryPolicy(base_delay=self.policy.base_delay, max_delay=self.policy.max_delay)

    def report(self, target: Target, status: Mapping[str, Any], *, attempt: int = 0) -> Result:
        result = Result()
        try:
            report = self._read(target, status)
        except Unavailable as problem:
            return self._unavailable(problem, target, status, result, attempt)
        if isinstance(report, tables.Refused):
            return self._unavailable(
                Unavailable(report.reason, report.message, retryable=False), target, status, result, attempt
            )
        result.status.update(_report_fields(report))
        result.status["tablesPendingSince"] = None
        cond, event = _verdict(report, target)
        result.status["conditions"] = [cond]
        result.events.append(event)
        return result

    def _read(self, target: Target, status: Mapping[str, Any]) -> tables.Report | tables.Refused:
        """Every table file, streamed one at a time, once the names tile 1..M and export_info is final."""
        policy = self.policy
        try:
            identity = self._identity(target.namespace)
            files, info = checked_files(self.s3, target, policy, identity)
            opened = ((f, open_file(self.s3, target, f, policy, identity)) for f in files)
            report = tables.build_report(opened, tables.parse_warning(status.get("warningMessage")), info.exported_gb)
        except ObjectTooLarge as exc:
            return tables.Refused("TooLarge", str(exc))
        except AwsError as error:
            raise unavailable(error, target) from error
        if isinstance(report, tables.Incomplete):
            raise Unavailable("Incomplete", f"{target.url}: {report.message}", retryable=True)
        return report

    def _identity(self, namespace: str) -> Identity | None:
        """The namespace's AWS identity, as the export's own calls use it (reconcile.Reconciler._with_identity)."""
        if self.resolve is None:
            return None
        try:
            identity = self.resolve(namespace)
        except IdentityUnavailable as exc:
            raise AwsError(ErrorKind.UNAUTHORIZED, exc.code, exc.message, "AssumeRole") from exc
        if isinstance(identity, Refusal):
            raise AwsError(ErrorKind.UNAUTHORIZED, "NoIdentity", identity.message, "AssumeRole")
        return identity

    def _unavailable(
        self, problem: Unavailable, target: Target, status: Mapping[str, Any], result: Result, attempt: int
    ) -> Result:
        now = self.clock()
        since = st.parse_time(status.get("tablesPendingSince")) or now
        wait = self.policy.wait
        if problem.reason == "NotFound" and target.export_status == "FAILED":
            wait = 0.0  # a failed export often writes no report at all: say so at once
        elif problem.reason == "NotFound" and target.ended and now - target.ended > timedelta(seconds=wait):
            wait = 0.0  # long finished (an object from before the report existed): the files will not come now
        slow = problem.reason == "AccessDenied" and now >= since + timedelta(seconds=wait)
        if problem.reason == "AccessDenied":
            wait = max(wait, self.policy.access_wait)  # an IAM fix takes effect without a spec edit
        deadline = since + timedelta(seconds=wait)
        if problem.retryable and now < deadline:
            result.status["tablesPendingSince"] = st.rfc3339(since)
            message = f"{problem.message}; retrying until {st.rfc3339(deadline)}"
            result.status["conditions"] = [st.Condition(TABLES_COMPLETE, "Unknown", problem.reason, message)]
            result.retry_after = self.policy.max_delay if slow else backoff(self._backoff, attempt, self.rng)
            return result
        if problem.retryable and wait > 0:
            message = f"{problem.message}; gave up after {wait:g}s (edit the object's spec to read again)"
        else:
            message = problem.message
        result.status["tablesPendingSince"] = None
        result.status["conditions"] = [st.Condition(TABLES_COMPLETE, "Unknown", problem.reason, message)]
        if not (problem.reason == "NotFound" and target.export_status == "FAILED"):
            result.events.append(Event("Warning", f"TableReport{problem.reason}", f"no table report: {message}"))
        return result


def _reason(error: AwsError) -> str:
    if error.code == "InvalidObjectState":  # archived (Glacier, Deep Archive): readable only after a restore
        return "Archived"
    if error.kind is ErrorKind.UNAUTHORIZED:
        return "AccessDenied"
    if error.kind is ErrorKind.NOT_FOUND:
        return "NotFound"
    return "S3Unavailable"


def _report_fields(report: tables.Report) -> dict[str, Any]:
    problems = [_named(p) for p in report.problems]
    counts: dict[str, Any] = {
        "total": report.total,
        "complete": report.complete,
        "failed": report.failed,
        "skipped": report.skipped,
        "databases": [_named(d) for d in report.databases] or None,
        "exportedDataInGB": report.exported_gb,
    }
    return {
        "tables": counts,  # None deletes a key an earlier report of this object wrote (a merge patch)
        "failedTables": problems or None,
        "tablesSummary": report.summary,
    }


def _named(p: tables.Problem) -> dict[str, str]:
    return {"target": p.target, "status": p.status, **({"reason": p.reason} if p.reason else {})}


def _notes(report: tables.Report) -> str:
    """What AWS said beside the tables: general reasons, database-level entries (not tables)."""
    notes = []
    if report.general:
        notes.append("AWS warns: " + "; ".join(report.general))
    if report.database_count:
        named = _names(report.databases, report.database_count, status=False)
        notes.append(f"{report.database_count} database-level entries, not tables ({named})")
    return "".join(f"; {n}" for n in notes)


def _names(items: Sequence[tables.Problem], count: int, *, status: bool = True) -> str:
    """The first EVENT_TABLES of ``count`` items, with their status and reason, and how many more."""
    shown = items[:EVENT_TABLES]
    named = ", ".join(
        f"{p.target} ({p.status}{': ' + p.reason if p.reason else ''})"
        if status
        else f"{p.target}{': ' + p.reason if p.reason else ''}"
        for p in shown
    )
    return named + (f" and {count - len(shown)} more" if count > len(shown) else "")


def _verdict(report: tables.Report, target: Target) -> tuple[st.Condition, Event]:
    notes = _notes(report)
    if report.all_complete:
        size = f", {report.exported_gb:g} GB" if report.exported_gb is not None else ""
        message = f"all {report.total} tables exported{size}{notes}"
        return st.Condition(TABLES_COMPLETE, "True", "AllTablesComplete", message), Event(
            "Normal", "TablesComplete", message
        )
    not_exported = report.total - report.complete
    if not_exported:
        named = _names(report.problems, not_exported)
        counts = f"{report.failed} failed, {report.skipped} skipped"
        message = f"{not_exported} of {report.total} tables not exported ({counts}): {named}{notes}"
        reason = "TablesFailed" if report.failed else "TablesSkipped" if report.skipped else "TablesIncomplete"
        return st.Condition(TABLES_COMPLETE, "False", reason, message), Event("Warning", reason, message)
    if report.truncated:
        message = f"the report lists more than {report.total} tables; only those were counted, all complete{notes}"
        return st.Condition(TABLES_COMPLETE, "Unknown", "TooManyTables", message), Event(
            "Warning", "TooManyTables", message
        )
    message = f"the export's table report under {target.url} lists no tables{notes}"
    return st.Condition(TABLES_COMPLETE, "False", "NoTables", message), Event("Warning", "NoTables", message)
