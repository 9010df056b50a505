"""The only module that calls AWS Glue: the catalog's databases and tables, errors as AwsError, calls paced.

Calls block: callers run them in kopf's thread pool. Glue has no batch create and throttles per account and
region (ThrottlingException, no published rate for table calls), so every call first takes a slot from one
process-wide pacer (``calls_per_second``); the pacer's lock is held only to reserve a slot, never across a call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rds_export_operator.aws.clients import AwsClients
from rds_export_operator.aws.errors import (
    CREATE_DATABASE,
    CREATE_TABLE,
    DELETE_TABLES,
    GET_TABLE,
    GET_TABLES,
    UPDATE_TABLE,
    AwsError,
    ErrorKind,
)
from rds_export_operator.aws.identity import Identity

MAX_PAGES = 2000  # GetTables pages (100 tables each) read for one deletion
DELETE_BATCH = 100  # BatchDeleteTable takes at most 100 names


class Pacer:
    """At most ``rate`` calls per second across threads: each call reserves the next free slot and sleeps to it."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep = clock, time.sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


class Glue(AwsClients):
    """CreateDatabase, CreateTable, GetTable, UpdateTable, GetTables and BatchDeleteTable, paced."""

    service = "glue"

    def __init__(self, *, calls_per_second: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pacer = Pacer(calls_per_second)

    def _call(self, operation: str, region: str, identity: Identity | None, **params: Any) -> Any:
        client = self.client(region, identity)
        method = getattr(client, _METHODS[operation])
        self.pacer.wait()
        return self.call(operation, lambda: method(**params))

    def ensure_database(self, region: str, name: str, *, identity: Identity | None = None) -> bool:
        """Create the database if it is missing; True if this call created it."""
        try:
            self._call(CREATE_DATABASE, region, identity, DatabaseInput={"Name": name})
        except AwsError as error:
            if error.kind is ErrorKind.ALREADY_EXISTS:
                return False
            raise
        return True

    def create_table(
        self, region: str, database: str, table_input: dict[str, Any], *, identity: Identity | None = None
    ) -> None:
        """AwsError ALREADY_EXISTS if a table of that name exists (the caller decides whether it is its own)."""
        self._call(CREATE_TABLE, region, identity, DatabaseName=database, TableInput=table_input)

    def get_table(
        self, region: str, database: str, name: str, *, identity: Identity | None = None
    ) -> dict[str, Any] | None:
        try:
            answer = self._call(GET_TABLE, region, identity, DatabaseName=database, Name=name)
        except AwsError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return dict(answer.get("Table") or {})

    def update_table(
        self,
        region: str,
        database: str,
        table_input: dict[str, Any],
        *,
        version_id: str | None = None,
        identity: Identity | None = None,
    ) -> None:
        """Replace the table's definition; Glue keeps the previous one as a table version (SkipArchive false).
        ``version_id``: the version read, so a concurrent change fails (ConcurrentModificationException) instead
        of being overwritten."""
        params: dict[str, Any] = {"DatabaseName": database, "TableInput": table_input, "SkipArchive": False}
        if version_id:
            params["VersionId"] = version_id
        self._call(UPDATE_TABLE, region, identity, **params)

    def tables(self, region: str, database: str, *, identity: Identity | None = None) -> Iterator[dict[str, Any]]:
        """Every table of the database (paginated); nothing if the database does not exist."""
        token: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"DatabaseName": database, "MaxResults": 100}
            if token:
                params["NextToken"] = token
            try:
                page = self._call(GET_TABLES, region, identity, **params)
            except AwsError as error:
                if error.kind is ErrorKind.NOT_FOUND:
                    return
                raise
            yield from page.get("TableList") or []
            token = page.get("NextToken")
            if not token:
                return
        raise AwsError(ErrorKind.RETRYABLE, "PaginationLimit", f"more than {MAX_PAGES} pages", GET_TABLES)

    def delete_tables(
        self, region: str, database: str, names: list[str], *, identity: Identity | None = None
    ) -> list[str]:
        """Delete the named tables (100 per call); returns the names Glue could not delete (already gone ones
        count as deleted)."""
        failed: list[str] = []
        for start in range(0, len(names), DELETE_BATCH):
            batch = names[start : start + DELETE_BATCH]
            answer = self._call(DELETE_TABLES, region, identity, DatabaseName=database, TablesToDelete=batch)
            for error in answer.get("Errors") or []:
                if (error.get("ErrorDetail") or {}).get("ErrorCode") != "EntityNotFoundException":
                    failed.append(str(error.get("TableName")))
        return failed


_METHODS = {
    CREATE_DATABASE: "create_database",
    CREATE_TABLE: "create_table",
    GET_TABLE: "get_table",
    UPDATE_TABLE: "update_table",
    GET_TABLES: "get_tables",
    DELETE_TABLES: "batch_delete_table",
}
