"""Coalesced polling, shared by every object of one AWS account and region (a "scope").

Cost grows with pages, not with objects: per interval, one paginated ``DescribeExportTasks`` filtered to the active
statuses, plus the tasks that unfinished objects asked about but that page does not hold (they just finished, or
are unknown), fetched by identifier in batches of 100. Every unfinished object reads the shared page; only an
identifier never asked about before costs a targeted describe. The page also counts the running exports.

Failure is never a verdict and never a stampede:
- the page is fetched by one caller (single flight through a shared future; no lock held across the call), and
  others wait for its answer for a bounded time only;
- after a failed page the scope backs off exponentially with jitter, never sooner than the healthy interval, so
  the call rate under throttling or 5xx is at most the healthy rate; meanwhile callers get the last error;
- each scope may hold at most ``threads_per_scope`` executor threads in AWS calls or waits: a region whose
  endpoint hangs answers "busy" to its own objects instead of taking every thread from the others;
- nothing the server filters is trusted: only tasks whose normalised status is active count as running.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field

from rds_export_operator.aws_errors import DESCRIBE, AwsError, ErrorKind, ExportTask
from rds_export_operator.identity import Identity, role_account
from rds_export_operator.rds import Rds
from rds_export_operator.slots import ExportSlots, State
from rds_export_operator.spec import ExportSpec
from rds_export_operator.status import ACTIVE_STATUSES, normalize_status

ACTIVE_FILTER = ["starting", "in_progress", "canceling"]  # filter values are lower case


def page_scope(region: str, identity: Identity | None) -> tuple[str | None, str]:
    """Whose page: one per role and region (a namespace's role sees its account's tasks; None: the operator)."""
    return (identity.role_arn if identity else None, region)


def slot_scope(region: str, identity: Identity | None) -> tuple[str, str]:
    """Whose export slots: AWS's limit is per account and region ("": the operator's own account)."""
    return (role_account(identity.role_arn) if identity and identity.role_arn else "", region)


@dataclass
class Page:
    tasks: dict[str, ExportTask]  # every task the page held, whatever the filter asked for
    running: int  # tasks whose own status is active
    fetched_at: float  # monotonic
    unknown: frozenset[str] = frozenset()  # asked for by identifier, and AWS does not know them


@dataclass
class _Scope:
    gate: threading.BoundedSemaphore
    lock: threading.Lock = field(default_factory=threading.Lock)
    page: Page | None = None
    inflight: Future[Page] | None = None
    failures: int = 0
    retry_at: float = 0.0  # after a failure: no new page before this
    error: AwsError | None = None
    recent: dict[str, ExportTask | None] = field(default_factory=dict)  # learned since the page: Start, misses
    asked: dict[str, float] = field(default_factory=dict)  # identifier -> when an object last asked for it


class Poller:
    """The reconciler's AWS gateway (start, describe, cancel) and its export slots, per region.

    The per-object baseline (``--polling=per-object``) uses the plain Rds client instead.
    """

    def __init__(
        self,
        rds: Rds,
        interval: float,
        max_concurrent: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_backoff: float = 300.0,
        wait_for_page: float = 5.0,
        threads_per_scope: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        self.rds, self.interval, self.clock = rds, interval, clock
        self.max_backoff, self.wait_for_page = max(max_backoff, interval), wait_for_page
        self.threads_per_scope = threads_per_scope
        self.slots = ExportSlots(max_concurrent)
        self.rng = rng or random.Random()
        self._scopes: dict[tuple[str | None, str], _Scope] = {}
        self._lock = threading.Lock()

    def _scope(self, key: tuple[str | None, str]) -> _Scope:
        with self._lock:
            state = self._scopes.get(key)
            if state is None:
                state = self._scopes[key] = _Scope(threading.BoundedSemaphore(self.threads_per_scope))
            return state

    @contextmanager
    def _using(self, region: str, identity: Identity | None, operation: str) -> Iterator[_Scope]:
        state = self._scope(page_scope(region, identity))
        if not state.gate.acquire(blocking=False):
            message = f"{region}: every call slot of this region is waiting on AWS"
            raise AwsError(ErrorKind.RETRYABLE, "RegionBusy", message, operation)
        try:
            yield state
        finally:
            state.gate.release()

    def page(self, region: str, identity: Identity | None = None) -> Page:
        with self._using(region, identity, DESCRIBE) as state:
            return self._page(region, identity, state)

    def _page(self, region: str, identity: Identity | None, state: _Scope) -> Page:
        now = self.clock()
        with state.lock:
            if state.page is not None and now - state.page.fetched_at < self.interval:
                return state.page
            future = state.inflight
            if future is None:
                if state.error is not None and now < state.retry_at:
                    raise state.error  # the last failure is the answer until the backoff ends
                future = state.inflight = Future()
                owner = True
            else:
                owner = False
        if not owner:
            try:
                return future.result(timeout=self.wait_for_page)
            except FutureTimeout:
                raise AwsError(ErrorKind.RETRYABLE, "RefreshPending", "waiting for AWS to answer", DESCRIBE) from None
        with state.lock:  # identifiers still asked for since the last page (their objects are unfinished)
            since = state.page.fetched_at if state.page else 0.0
            state.asked = {i: at for i, at in state.asked.items() if at >= since}
            asked = sorted(state.asked)
        try:
            found = self.rds.describe_by_status(region, ACTIVE_FILTER, identity=identity)
            tasks = {t["ExportTaskIdentifier"]: t for t in found}
            absent = [i for i in asked if i not in tasks]
            more = self.rds.describe_many(region, absent, identity) if absent else []
        except AwsError as error:
            with state.lock:
                state.failures += 1
                delay = min(self.max_backoff, self.interval * 2 ** min(state.failures - 1, 20))
                state.retry_at, state.error = self.clock() + self.rng.uniform(delay, 1.5 * delay), error
                state.inflight = None
            future.set_exception(error)
            raise
        running = [i for i, t in tasks.items() if normalize_status(t.get("Status")) in ACTIVE_STATUSES]
        tasks.update((t["ExportTaskIdentifier"], t) for t in more)
        page = Page(tasks, len(running), now, frozenset(absent) - tasks.keys())
        with state.lock:
            state.page, state.failures, state.error, state.inflight = page, 0, None, None
            state.recent.clear()
        self.slots.page(slot_scope(region, identity), now, running)
        future.set_result(page)
        return page

    def peek(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask | None:
        """The task if the shared page has it as active; never an extra call."""
        task = self.page(region, identity).tasks.get(identifier)
        return task if task is not None and normalize_status(task.get("Status")) in ACTIVE_STATUSES else None

    def describe(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask | None:
        """From the shared page if it holds the task; else one targeted call (the task left the active set).

        A task started after the page was fetched is not in it yet: until the next page its answer is what
        StartExportTask returned, rather than a call per tick; likewise an identifier AWS does not know.
        """
        with self._using(region, identity, DESCRIBE) as state:
            with state.lock:
                state.asked[identifier] = self.clock()
            page = self._page(region, identity, state)
            task = page.tasks.get(identifier)
            if task is not None or identifier in page.unknown:
                return task
            with state.lock:
                if identifier in state.recent:
                    return state.recent[identifier]
            task = self.rds.describe(region, identifier, identity)
            with state.lock:
                state.recent[identifier] = task
            return task

    def start(self, spec: ExportSpec) -> ExportTask:
        with self._using(spec.region, spec.identity, "StartExportTask") as state:
            task = self.rds.start(spec)
            with state.lock:
                state.recent[spec.identifier] = task
            return task

    def cancel(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask:
        with self._using(region, identity, "CancelExportTask") as state:
            task = self.rds.cancel(region, identifier, identity)
            with state.lock:
                state.recent[identifier] = task
            return task

    # -- the export slots -------------------------------------------------------------------------------------

    def may_start(self, region: str, uid: str, created: str, identity: Identity | None = None) -> bool:
        running = self.page(region, identity).running
        return self.slots.want(slot_scope(region, identity), uid, created, running)

    def started(self, uid: str) -> bool:
        return self.slots.state(uid) is State.STARTED

    def mark_started(
        self, region: str, uid: str, identifier: str, *, visible: bool = False, identity: Identity | None = None
    ) -> None:
        self.slots.started(slot_scope(region, identity), uid, identifier, None if visible else self.clock())

    def limit_reached(self, uid: str) -> None:
        self.slots.limit_reached(uid)

    def release(self, uid: str) -> None:
        self.slots.release(uid)

    def queue_length(self) -> int:
        return self.slots.waiting()


class PerObject:
    """The naive baseline (``--polling=per-object``): one describe per object per poll, no queue of our own
    (StartExportTask is tried and ExportTaskLimitReachedFault says when to wait)."""

    def __init__(self, rds: Rds) -> None:
        self.rds = rds
        self.start, self.describe, self.cancel = rds.start, rds.describe, rds.cancel
        self.slots = ExportSlots(limit=1 << 30)

    def peek(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask | None:
        return None

    def may_start(self, region: str, uid: str, created: str, identity: Identity | None = None) -> bool:
        return self.slots.want(region, uid, created, running=0)

    def started(self, uid: str) -> bool:
        return self.slots.state(uid) is State.STARTED

    def mark_started(
        self, region: str, uid: str, identifier: str, *, visible: bool = False, identity: Identity | None = None
    ) -> None:
        self.slots.started(region, uid, identifier, None)

    def limit_reached(self, uid: str) -> None:
        self.slots.release(uid)

    def release(self, uid: str) -> None:
        self.slots.release(uid)

    def queue_length(self) -> int:
        return 0
