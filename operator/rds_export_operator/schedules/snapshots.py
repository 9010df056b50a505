"""The snapshots of a DB instance or cluster (DescribeDBSnapshots / DescribeDBClusterSnapshots), listed at most once
per poll interval per region, source and type, and shared by every schedule of that source.

Single flight without a lock across the AWS call: the first caller for a key lists; the others wait (bounded) for
its answer. A failed listing is shared too (for the same interval): a throttled endpoint is not asked again by
every schedule. Errors are AwsError with the taxonomy's meaning; none of them is a verdict for a schedule.
The calls block: callers run them in kopf's thread pool (sync handlers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.identity import Identity
from rds_export_operator.aws.rds import MAX_PAGES, Rds
from rds_export_operator.schedules.decisions import Snapshot

DESCRIBE_SNAPSHOTS, DESCRIBE_CLUSTER_SNAPSHOTS = "DescribeDBSnapshots", "DescribeDBClusterSnapshots"
DESCRIBE_CLUSTERS = "DescribeDBClusters"
# region, "instance" | "cluster" | "live", source identifier, snapshot type, and the identity (role ARN, "" for the
# operator's own): an answer is only shared between schedules that list as the same identity.
Key = tuple[str, str, str, str, str, str]  # region, kind, source, type, role, external id


@dataclass
class _Entry:
    at: float
    snapshots: list[Snapshot] | None = None
    error: AwsError | None = None


def describe(
    rds: Rds,
    region: str,
    kind: str,
    source: str,
    snapshot_type: str,
    identity: Identity | None = None,
    page_size: int = 100,
) -> list[Snapshot]:
    """Every snapshot of ``source`` of that type (all statuses), following Marker pages; for ``kind`` "live",
    the cluster itself (its ARN and status, created = now). As ``identity`` (None: the operator's own)."""
    client = rds.client(region, identity)
    if kind == "live":
        answer = rds.call(DESCRIBE_CLUSTERS, lambda: client.describe_db_clusters(DBClusterIdentifier=source))
        clusters = answer.get("DBClusters", [])
        return [
            Snapshot(source, str(c["DBClusterArn"]), datetime.now(UTC), str(c.get("Status", "")).lower())
            for c in clusters
            if str(c.get("DBClusterIdentifier") or "").lower() == source.lower() and c.get("DBClusterArn")
        ]
    cluster = kind == "cluster"
    operation = DESCRIBE_CLUSTER_SNAPSHOTS if cluster else DESCRIBE_SNAPSHOTS
    params: dict[str, Any] = {"MaxRecords": page_size}
    params["DBClusterIdentifier" if cluster else "DBInstanceIdentifier"] = source
    if snapshot_type != "any":
        params["SnapshotType"] = snapshot_type
    call = client.describe_db_cluster_snapshots if cluster else client.describe_db_snapshots
    found: list[Snapshot] = []
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        response: dict[str, Any] = dict(rds.call(operation, lambda: call(**params)))
        for item in response.get("DBClusterSnapshots" if cluster else "DBSnapshots", []):
            snapshot = _snapshot(item, cluster, source, snapshot_type)
            if snapshot is not None:
                found.append(snapshot)
        marker = response.get("Marker")
        if not marker:
            return found
        if marker in seen:
            raise AwsError(ErrorKind.RETRYABLE, "PaginationLoop", f"marker {marker!r} repeated", operation)
        seen.add(marker)
        params["Marker"] = marker
    raise AwsError(ErrorKind.RETRYABLE, "PaginationLimit", f"more than {MAX_PAGES} pages", operation)


def _snapshot(item: Any, cluster: bool, source: str, snapshot_type: str) -> Snapshot | None:
    # Endpoints that ignore a filter (or a snapshot shared into the account) must not slip through.
    # RDS stores identifiers in lower case and compares them case-insensitively: "Orders-DB" names "orders-db".
    owner = str(item.get("DBClusterIdentifier" if cluster else "DBInstanceIdentifier") or "")
    if owner.lower() != source.lower() or (
        snapshot_type != "any" and item.get("SnapshotType") not in (None, snapshot_type)
    ):
        return None
    identifier = item.get("DBClusterSnapshotIdentifier" if cluster else "DBSnapshotIdentifier")
    arn = item.get("DBClusterSnapshotArn" if cluster else "DBSnapshotArn")
    if not identifier or not arn:
        return None
    created = item.get("SnapshotCreateTime")
    if not isinstance(created, datetime):
        created = None  # RDS lists a snapshot being taken (or copied) without one: it is not yet placed in time
    elif created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return Snapshot(str(identifier), str(arn), created, str(item.get("Status", "")).lower())


class SnapshotCache:
    """``get`` lists a source's snapshots, reusing an answer younger than ``ttl`` seconds."""

    def __init__(
        self,
        rds: Rds,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: float = 30.0,
        lister: Callable[[Rds, str, str, str, str, Identity | None], list[Snapshot]] = describe,
    ) -> None:
        self.rds, self.ttl, self.clock, self.wait, self.lister = rds, ttl, clock, wait, lister
        self._lock = threading.Lock()
        self._entries: dict[Key, _Entry] = {}
        self._inflight: dict[Key, threading.Event] = {}
        self.calls = 0  # listings made (tests and metrics)

    def get(
        self, region: str, kind: str, source: str, snapshot_type: str, identity: Identity | None = None
    ) -> list[Snapshot]:
        role, external_id = (identity.role_arn or "", identity.external_id or "") if identity else ("", "")
        key: Key = (region, kind, source, snapshot_type, role, external_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self.clock() - entry.at < self.ttl:
                return _result(entry)
            done = self._inflight.get(key)
            leader = done is None
            if done is None:
                done = self._inflight[key] = threading.Event()
                self.calls += 1
        if not leader:
            if not done.wait(self.wait):
                raise AwsError(ErrorKind.RETRYABLE, "ListingInProgress", "another listing is still running", "")
            with self._lock:
                entry = self._entries.get(key)
            if entry is None:
                raise AwsError(ErrorKind.RETRYABLE, "ListingInProgress", "no answer yet", "")
            return _result(entry)
        entry = _Entry(at=0.0)
        try:
            entry.snapshots = self.lister(self.rds, region, kind, source, snapshot_type, identity)
        except AwsError as error:
            entry.error = error
        except Exception as exc:  # a bug or an unexpected answer: retry later, never a verdict
            entry.error = AwsError(ErrorKind.RETRYABLE, type(exc).__name__, str(exc), "")
        finally:
            entry.at = self.clock()
            with self._lock:
                self._entries[key] = entry
                self._inflight.pop(key, None)
            done.set()
        return _result(entry)


def _result(entry: _Entry) -> list[Snapshot]:
    if entry.error is not None:
        raise entry.error
    return list(entry.snapshots or [])
