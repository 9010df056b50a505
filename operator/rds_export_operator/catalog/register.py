"""Register one finished export's tables in Glue, in bounded passes that resume where the last one stopped.

A pass streams the export's table files one at a time, as the table report reads them (``tables.report``: the
names' ranges tile 1..M, export_info is final, each file holds its range), and plans the tables as they pass
(``schema.plan``: deterministic for the same files); it keeps only the registrations from ``status.catalog.next``
on, at most ``batch`` of them, and the tables' names, so memory does not grow with the schemas of a 50,000-table
export (each pass reads the files again to reach its cursor). It then makes sure the database exists and
registers them; the status it returns carries the new cursor and counts, written in one patch. A crash
between Glue calls repeats at most one pass's calls: a table that exists already and is this object's for this
export is adopted (AlreadyExists is not a failure), so nothing is registered twice and nothing is skipped.

Modes: ``PerExport`` creates (1 call per table; an existing table of the same export costs a GetTable more);
``Latest`` reads the stable name first and repoints a table this owner registered with ``UpdateTable`` (Glue
keeps the previous definition as a table version), else creates it (2 calls per table). A table of the same name
that is not this owner's is never changed: it is left out (``NameTaken``). Throttling, 5xx and AccessDenied end
the pass and retry with backoff: never a verdict on the export.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rds_export_operator.api import status as st
from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.identity import Identity
from rds_export_operator.aws.s3 import ObjectTooLarge
from rds_export_operator.catalog import schema
from rds_export_operator.exports.reconcile import Event, Result, RetryPolicy, backoff
from rds_export_operator.tables import parsing
from rds_export_operator.tables.entries import Malformed, TableEntry
from rds_export_operator.tables.report import (
    Reader,
    ReportPolicy,
    Target,
    Unavailable,
    checked_files,
    open_file,
    unavailable,
)

CATALOGED = "Cataloged"
REGISTERING = "Registering"  # the Cataloged reason while passes make progress
PER_EXPORT, LATEST = "PerExport", "Latest"
RETAIN, DELETE = "Retain", "Delete"
MAX_LISTED = schema.MAX_LEFT_OUT  # tables named in status.catalog.leftOut


class Catalog(Protocol):
    """``glue.Glue``, or a fake in tests."""

    def ensure_database(self, region: str, name: str, *, identity: Identity | None = None) -> bool: ...
    def create_table(
        self, region: str, database: str, table_input: dict[str, Any], *, identity: Identity | None = None
    ) -> None: ...
    def get_table(
        self, region: str, database: str, name: str, *, identity: Identity | None = None
    ) -> dict[str, Any] | None: ...
    def update_table(
        self,
        region: str,
        database: str,
        table_input: dict[str, Any],
        *,
        version_id: str | None = None,
        identity: Identity | None = None,
    ) -> None: ...
    def tables(self, region: str, database: str, *, identity: Identity | None = None) -> Iterator[dict[str, Any]]: ...
    def delete_tables(
        self, region: str, database: str, names: list[str], *, identity: Identity | None = None
    ) -> list[str]: ...


@dataclass(frozen=True)
class CatalogSpec:
    database: str
    table_pattern: str = schema.DEFAULT_PATTERN
    mode: str = PER_EXPORT
    deletion_policy: str = RETAIN

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> CatalogSpec:
        return cls(
            database=str(raw.get("database") or ""),
            table_pattern=str(raw.get("tablePattern") or schema.DEFAULT_PATTERN),
            mode=str(raw.get("mode") or PER_EXPORT),
            deletion_policy=str(raw.get("catalogDeletionPolicy") or RETAIN),
        )

    @property
    def naming(self) -> schema.Naming:
        return schema.Naming(self.database, self.table_pattern, per_export=self.mode != LATEST)


@dataclass(frozen=True)
class Where:
    """The export's files and who acts: region, bucket, folder (ending in ``<identifier>/``), identity."""

    region: str
    bucket: str
    folder: str
    identifier: str
    owner: str  # namespace/name of the object, or of the schedule that owns it (Latest tables outlive exports)
    identity: Identity | None = None
    snapshot_time: str = ""  # the exported snapshot's creation time (status.snapshotTime)


@dataclass
class Pass:
    """What one pass did (for metrics and tests)."""

    created: int = 0
    adopted: int = 0
    repointed: int = 0
    left_out: list[schema.LeftOut] = field(default_factory=list)


class Registrar:
    def __init__(
        self,
        glue: Catalog,
        s3: Reader,
        *,
        batch: int = 500,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        on_pass: Callable[[Pass], None] | None = None,
        files: ReportPolicy | None = None,
    ) -> None:
        """``files``: the table report's size bounds for the files (streamed: they bound time, not memory)."""
        self.glue, self.s3, self.batch, self.files = glue, s3, batch, files or ReportPolicy()
        self.policy, self.rng = policy or RetryPolicy(), rng or random.Random()
        self.on_pass = on_pass or (lambda done: None)

    def register(self, spec: CatalogSpec, where: Where, status: Mapping[str, Any], *, attempt: int = 0) -> Result:
        """One pass; the result's status holds ``catalog`` and the Cataloged condition; ``retry_after`` set while
        more passes are needed."""
        previous = dict(status.get("catalog") or {})
        if previous.get("next") is None or previous.get("database") != spec.database:
            previous = {}  # a first pass, a new generation after a final one, or another database: start over
        cursor = int(previous.get("next") or 0)
        done = Pass()
        result = Result()
        export = schema.Export(where.identifier, where.bucket, where.folder, where.owner, where.snapshot_time)
        try:
            plan = schema.plan(self._entries(where), spec.naming, export, start=cursor, limit=self.batch)
        except Unavailable as problem:  # missing, incomplete, too large, archived or refused: as the report says
            if problem.retryable:
                return self._retry(result, problem.reason, problem.message, attempt)
            return _final(
                result, "False", problem.reason, f"the export's table files cannot be read: {problem.message}"
            )
        try:
            self.glue.ensure_database(where.region, spec.database, identity=where.identity)
            for registration in plan.registrations:
                self._one(spec, where, registration, done)
                cursor += 1
        except AwsError as error:
            self.on_pass(done)
            result.status["catalog"] = _catalog(spec, previous, cursor, done)
            if error.kind is ErrorKind.TERMINAL:  # Glue refuses the database itself (InvalidInput): not retried
                return _final(result, "False", "GlueRefused", f"{error.operation}: {error.code}: {error.message}")
            if error.kind is ErrorKind.LIMIT_REACHED:
                reason = "CatalogFull"
            else:
                reason = "AccessDenied" if error.kind is ErrorKind.UNAUTHORIZED else "GlueUnavailable"
            return self._retry(result, reason, f"{error.operation}: {error.code}: {error.message}", attempt)
        self.on_pass(done)
        catalog = _catalog(spec, previous, cursor, done)
        result.status["catalog"] = catalog
        if cursor < plan.total:
            message = f"{catalog['tablesRegistered']} of {plan.total} tables registered so far"
            result.status["conditions"] = [st.Condition(CATALOGED, "Unknown", REGISTERING, message)]
            result.retry_after = 0.1
            return result
        refused = [schema.LeftOut(**x) for x in catalog["leftOut"] or []]
        left_out = plan.left_out + refused
        catalog.update(
            next=None,
            refused=None,
            tablesLeftOut=plan.left_out_count + catalog["refused"],
            leftOut=[{"target": x.target, "reason": x.reason, "message": x.message} for x in left_out[:MAX_LISTED]]
            or None,
        )
        registered = catalog["tablesRegistered"]
        message = f"{registered} tables registered in Glue database {spec.database}" + (
            f"; {catalog['tablesLeftOut']} left out: " + ", ".join(f"{x.target} ({x.reason})" for x in left_out[:5])
            if left_out
            else ""
        )
        result.events.append(Event("Normal" if not left_out else "Warning", CATALOGED, message))
        return _final(result, "True", "Registered" if not left_out else "TablesLeftOut", message)

    def _entries(self, where: Where) -> Iterator[TableEntry | None]:
        """The export's entries, one file streamed at a time; every problem as the table report's ``Unavailable``."""
        # Only COMPLETE exports are registered (handlers.needs_catalog): export_info must say COMPLETE too.
        target = Target(where.region, where.bucket, where.folder, where.identifier, "COMPLETE")
        try:
            files, _ = checked_files(self.s3, target, self.files, where.identity)
            for file in files:
                yield from parsing.file_entries(file, open_file(self.s3, target, file, self.files, where.identity))
        except AwsError as error:
            raise unavailable(error, target) from error
        except ObjectTooLarge as exc:
            raise Unavailable("TooLarge", str(exc), retryable=False) from exc
        except Malformed as exc:
            raise Unavailable("Malformed", f"{target.url}: not valid JSON: {exc}", retryable=False) from exc
        except parsing.Mismatch as exc:
            raise Unavailable("Incomplete", f"{target.url}: {exc}", retryable=True) from exc

    def _one(self, spec: CatalogSpec, where: Where, registration: schema.Registration, done: Pass) -> None:
        region, database, identity = where.region, spec.database, where.identity
        table_input = registration.table_input
        existing = None
        if spec.mode == LATEST:
            existing = self.glue.get_table(region, database, registration.name, identity=identity)
        if existing is None:
            try:
                self.glue.create_table(region, database, table_input, identity=identity)
                done.created += 1
                return
            except AwsError as error:
                if error.kind is ErrorKind.TERMINAL:
                    done.left_out.append(schema.LeftOut(registration.target, "Refused", error.message[:256]))
                    return
                if error.kind is not ErrorKind.ALREADY_EXISTS:
                    raise
            existing = self.glue.get_table(region, database, registration.name, identity=identity)
            if existing is None:  # deleted in between: the next pass creates it
                raise AwsError(ErrorKind.RETRYABLE, "TableVanished", registration.name, "GetTable")
        parameters = existing.get("Parameters") or {}
        if parameters.get(schema.OWNER) != where.owner:
            message = f"a table {registration.name} that this object did not register exists; left unchanged"
            done.left_out.append(schema.LeftOut(registration.target, "NameTaken", message))
        elif parameters.get(schema.EXPORT) == where.identifier:
            done.adopted += 1
        elif spec.mode == LATEST and _newer(parameters.get(schema.SNAPSHOT_TIME), where.snapshot_time):
            message = f"{registration.name} already reads a newer snapshot's export {parameters.get(schema.EXPORT)}"
            done.left_out.append(schema.LeftOut(registration.target, "NewerExport", message))
        elif spec.mode == LATEST:
            self.glue.update_table(
                region, database, table_input, version_id=existing.get("VersionId"), identity=identity
            )
            done.repointed += 1
        else:
            message = f"{registration.name} is registered for export {parameters.get(schema.EXPORT)}"
            done.left_out.append(schema.LeftOut(registration.target, "NameTaken", message))

    def remove(self, spec: CatalogSpec, where: Where) -> list[str]:
        """Delete the tables this owner registered for this export (never another's, never a Latest table that
        a newer export has repointed); returns the names Glue could not delete."""
        names = [
            str(t.get("Name"))
            for t in self.glue.tables(where.region, spec.database, identity=where.identity)
            if (t.get("Parameters") or {}).get(schema.OWNER) == where.owner
            and (t.get("Parameters") or {}).get(schema.EXPORT) == where.identifier
        ]
        return self.glue.delete_tables(where.region, spec.database, names, identity=where.identity) if names else []

    def _retry(self, result: Result, reason: str, message: str, attempt: int) -> Result:
        result.status["conditions"] = [st.Condition(CATALOGED, "Unknown", reason, f"{message}; retrying")]
        result.retry_after = backoff(self.policy, attempt, self.rng)
        return result


def _newer(registered: object, ours: str) -> bool:
    """Whether the table reads a snapshot newer than ours: a late pass of an older export (a report that waited,
    a backoff, concurrencyPolicy Allow) must not move a Latest table back. Unknown times never block."""
    theirs, mine = st.parse_time(registered if isinstance(registered, str) else None), st.parse_time(ours or None)
    return theirs is not None and mine is not None and theirs > mine


def _catalog(spec: CatalogSpec, previous: Mapping[str, Any], cursor: int, done: Pass) -> dict[str, Any]:
    refused = [{"target": x.target, "reason": x.reason, "message": x.message} for x in done.left_out]
    return {
        "database": spec.database,
        "mode": spec.mode,
        "tablesRegistered": int(previous.get("tablesRegistered") or 0) + done.created + done.adopted + done.repointed,
        "next": cursor,
        "refused": int(previous.get("refused") or 0) + len(done.left_out),
        "leftOut": ([*(previous.get("leftOut") or []), *refused][:MAX_LISTED]) or None,
    }


def _final(result: Result, value: str, reason: str, message: str) -> Result:
    result.status["conditions"] = [st.Condition(CATALOGED, value, reason, message)]
    return result
