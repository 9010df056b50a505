"""Coalesced polling and the fair export queue, shared by every object of one AWS account and region.

Cost grows with pages, not with objects: one paginated ``DescribeExportTasks`` filtered to the active statuses
(``MaxRecords=100``) per interval serves every active object; an object whose task is not in that snapshot (it
just finished, or was never seen) gets one targeted describe. The snapshot also counts the account's running
exports, which is what the queue needs to start exports oldest first without hammering ``StartExportTask``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rds_export_operator.rds import ExportTask, Rds
from rds_export_operator.spec import ExportSpec
from rds_export_operator.status import ACTIVE_STATUSES, normalize_status

ACTIVE_FILTER = ["starting", "in_progress", "canceling"]  # filter values are lower case


@dataclass
class Snapshot:
    tasks: dict[str, ExportTask]
    fetched_at: float  # monotonic


@dataclass
class _Region:
    lock: threading.Lock = field(default_factory=threading.Lock)
    snapshot: Snapshot | None = None
    started_since: int = 0  # exports we started after the snapshot was taken (not in it yet)
    recent: dict[str, ExportTask | None] = field(default_factory=dict)  # learned since: Start's answer, misses
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # uid -> (creationTimestamp, uid)
    failure: tuple[float, Exception] | None = None  # the last refresh failed: when, and why


class Poller:
    """Per-region snapshot of active export tasks, refreshed at most once per ``interval`` (single flight).

    It is the reconciler's AWS gateway (start, describe, cancel) and its export slots (peek, may_start, forget,
    limit_reached). The per-object baseline (``--polling=per-object``) uses the plain Rds client instead.
    """

    def __init__(
        self, rds: Rds, interval: float, max_concurrent: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rds, self.interval, self.max_concurrent, self.clock = rds, interval, max_concurrent, clock
        self.retry_after_failure = min(5.0, interval)
        self._regions: dict[str, _Region] = {}
        self._lock = threading.Lock()

    def _region(self, region: str) -> _Region:
        with self._lock:
            state = self._regions.get(region)
            if state is None:
                state = self._regions[region] = _Region()
            return state

    def snapshot(self, region: str) -> Snapshot:
        """The active tasks, fetched now if the last snapshot is older than the interval.

        Callers that arrive while a refresh is running wait for it and share its result.
        """
        state = self._region(region)
        with state.lock:
            if state.snapshot is None or self.clock() - state.snapshot.fetched_at >= self.interval:
                # A failed refresh is the answer for everyone for a while: no stampede of retries on AWS.
                if state.failure and self.clock() - state.failure[0] < self.retry_after_failure:
                    raise state.failure[1]
                try:
                    tasks = {t["ExportTaskIdentifier"]: t for t in self.rds.describe_by_status(region, ACTIVE_FILTER)}
                except Exception as exc:
                    state.failure = (self.clock(), exc)
                    raise
                state.failure = None
                state.snapshot = Snapshot(tasks, self.clock())
                state.started_since = 0
                state.recent.clear()
            return state.snapshot

    def peek(self, region: str, identifier: str) -> ExportTask | None:
        """The task if the shared snapshot has it as active; never an extra call."""
        task = self.snapshot(region).tasks.get(identifier)
        return task if task is not None and normalize_status(task.get("Status")) in ACTIVE_STATUSES else None

    def describe(self, region: str, identifier: str) -> ExportTask | None:
        """From the shared snapshot when active there; else one targeted call (the task left the active set).

        A task started after the snapshot was taken is not in it yet: until the next refresh its answer is what
        StartExportTask returned, rather than a call per tick; likewise an identifier AWS does not know.
        """
        task = self.peek(region, identifier)
        if task is not None:
            return task
        state = self._region(region)
        with state.lock:
            if identifier in state.recent:
                return state.recent[identifier]
        task = self.rds.describe(region, identifier)
        if task is None:  # unknown to AWS: ask again after the next refresh, not on every tick
            with state.lock:
                state.recent[identifier] = None
        return task

    def start(self, spec: ExportSpec) -> ExportTask:
        task = self.rds.start(spec)
        state = self._region(spec.region)
        with state.lock:
            state.recent[spec.identifier] = task
            state.started_since += 1
        return task

    def cancel(self, region: str, identifier: str) -> ExportTask:
        task = self.rds.cancel(region, identifier)
        state = self._region(region)
        with state.lock:
            state.recent[identifier] = task
        return task

    # -- the queue --------------------------------------------------------------------------------------------

    def may_start(self, region: str, uid: str, created: str) -> bool:
        """Whether this object may call StartExportTask now: oldest waiting objects first, while slots are free."""
        snapshot = self.snapshot(region)
        state = self._region(region)
        with state.lock:
            state.waiting[uid] = (created, uid)
            free = self.max_concurrent - len(snapshot.tasks) - state.started_since
            if free <= 0:
                return False
            ahead = sorted(state.waiting.values())[:free]
            return (created, uid) in ahead

    def forget(self, uid: str) -> None:
        """The object no longer waits (started, adopted, deleted, failed)."""
        with self._lock:
            regions = list(self._regions.values())
        for state in regions:
            with state.lock:
                state.waiting.pop(uid, None)

    def limit_reached(self, region: str) -> None:
        """AWS said no although we counted a free slot (exports started by others): wait for the next snapshot."""
        state = self._region(region)
        with state.lock:
            state.started_since = self.max_concurrent

    def queue_length(self) -> int:
        with self._lock:
            regions = list(self._regions.values())
        return sum(len(r.waiting) for r in regions)
