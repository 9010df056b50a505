"""DB snapshots as RDS takes them, in the stand-in's moto: over time (automated, manual, AWS Backup), with a status.

Schedules export the latest snapshot of a DB instance; these controls make snapshots appear the way RDS names
and lists them (``shared/rds-export-api.md``, "Snapshots"). Evidence: the API reference of DescribeDBSnapshots
(SnapshotType, Status), and the RDS User Guide, "Backup window" (automated identifiers ``rds:<db>-YYYY-MM-DD-HH-MM``);
moto names automated snapshots alike and marks them available at once, so a later status is set here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

from localdev.standin.rds_exports import ACCOUNT, SOURCE

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SnapshotControls:
    """The stand-in's controls over snapshots (a part of :class:`localdev.standin.server.RdsExportStandIn`)."""

    _lock: threading.RLock
    _snapshot_serial: int
    _automated_stamp: dict[str, datetime]  # db -> the next free minute for an automated snapshot
    _snapshotters: list[threading.Event]
    closing: threading.Event

    @property
    def now(self) -> Callable[[], datetime]:  # the stand-in's clock
        raise NotImplementedError

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
