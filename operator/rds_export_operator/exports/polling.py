"""Coalesced polling, shared by every object of one AWS account and region (a "scope").

Cost grows with pages, not with objects: per interval, one paginated ``DescribeExportTasks`` filtered to the active
statuses, plus the tasks that unfinished objects asked about but that page does not hold (they just finished, or
are unknown), fetched by identifier in batches of 100. Every unfinished object reads the shared page. An object
whose task the page does not hold (new, adopted, switched to Observe, or back after a restart) is not answered at
once: its identifier joins the scope's next lookup and the object sleeps until the answer wakes it. A lookup is a
describe by identifier, 100 per call: full calls go at once, the rest when no identifier came for ``lookup_delay``.
A burst of N new objects costs about N/100 calls, whatever order they arrive in. The page also counts the running
exports.

A scope that watches more than 100 unfinished tasks sweeps instead of listing (unless objects wait for its export
slots, or its endpoint ignores filters): each watched identifier has a fixed phase in the interval (from its
CRC-32), and ceil(W/100)+1 times per interval the identifiers whose phase came are described by identifier. Each
task is still seen once per interval, for one call more per interval than the listing's ceil(W/100) pages; but a
change is written when its group is described, not with every other change after the last page of a listing:
at 500 unfinished, the API server took 1.7 s for the listing's 450 status writes (issue 27: p99 latency).

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

import contextlib
import math
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field

from rds_export_operator.api.spec import ExportSpec
from rds_export_operator.api.status import ACTIVE_STATUSES, normalize_status
from rds_export_operator.aws.errors import DESCRIBE, AwsError, ErrorKind, ExportTask
from rds_export_operator.aws.identity import Identity, role_account
from rds_export_operator.aws.rds import BATCH, Rds
from rds_export_operator.exports.reconcile import LOOKUP_PENDING
from rds_export_operator.exports.slots import ExportSlots, State

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
    # identifier -> (task or None: AWS does not know it, when learned): Start answers and lookups the page lacks
    recent: dict[str, tuple[ExportTask | None, float]] = field(default_factory=dict)
    lost: dict[str, float] = field(default_factory=dict)  # identifier -> when a Start/Cancel answer was lost
    lookups: dict[str, set[str]] = field(default_factory=dict)  # identifier -> uids waiting for the next lookup
    readers: dict[str, set[str]] = field(default_factory=dict)  # identifier -> uids woken with an answer, not back
    asked: dict[str, float] = field(default_factory=dict)  # identifier -> when an object last asked for it
    watched: dict[str, set[str]] = field(default_factory=dict)  # identifier -> uids of unfinished objects
    identity: Identity | None = None  # who fetches this scope's pages (any of the scope's namespaces)
    region: str = ""
    swept_at: float | None = None  # sweeping (see the module): phases up to this time are described; None: listing
    sweep_due: float = 0.0  # the next step: on a grid of steps, so that a task is described every interval
    # identifier -> the answer a sweep step last read (and woke its watchers for, if it was news): what the next step
    # or listing compares with, rather than a listing from before the sweep
    told: dict[str, ExportTask | None] = field(default_factory=dict)


def phase(identifier: str, interval: float) -> float:
    """When in each interval a sweep describes this task: fixed, whatever else the scope watches."""
    return zlib.crc32(identifier.encode()) / 2**32 * interval


def since(at: float, last: float, interval: float) -> float:
    """How long after ``last`` (a monotonic time) the phase ``at`` comes next."""
    return (at - last) % interval or interval


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
        lookup_delay: float = 1.0,
        rng: random.Random | None = None,
        wake: Callable[[Iterable[str]], None] = lambda uids: None,
        queue_lease: float = math.inf,
        per_namespace: int = 0,
        queue_interval: float | None = None,
        sweep_above: int = BATCH,
    ) -> None:
        """``wake(uids)``: called (from a poller thread) with the objects whose task changed in a new page, that
        may start now because slots freed, or whose lookup is answered. ``queue_lease`` and ``per_namespace``:
        see ``slots.ExportSlots``. ``queue_interval`` (default a third of ``interval``): the page interval of a
        scope while objects wait for its export slots and every slot is taken, so that a freed slot is seen, and
        the next export started, that much sooner (issue 27: the slots are a backfill's bottleneck). It costs a
        page per ``queue_interval`` instead of per ``interval`` only while such a queue waits. ``sweep_above``: a
        scope that watches more tasks than this sweeps (see the module) rather than lists."""
        self.rds, self.interval, self.clock, self.wake = rds, interval, clock, wake
        self.queue_interval = min(interval, interval / 3 if queue_interval is None else queue_interval)
        self.lookup_delay = lookup_delay
        self._quiet = lookup_delay  # no new identifier for this long: the burst is over (adapts, see _gather)
        self._partial_at = -math.inf  # when the pump last let a part-filled lookup go
        self.max_backoff, self.wait_for_page = max(max_backoff, interval), wait_for_page
        self.threads_per_scope, self.sweep_above = threads_per_scope, sweep_above
        self.slots = ExportSlots(max_concurrent, per_namespace=per_namespace, lease=queue_lease, clock=clock)
        self.rng = rng or random.Random()
        self._scopes: dict[tuple[str | None, str], _Scope] = {}
        self._lock = threading.Lock()
        self._watching: dict[str, tuple[_Scope, str]] = {}  # uid -> (scope, identifier), under self._lock
        self._stop = threading.Event()
        self._nudge = threading.Event()  # a lookup is wanted: the pump runs before its interval is up

    def _scope(self, key: tuple[str | None, str]) -> _Scope:
        with self._lock:
            state = self._scopes.get(key)
            if state is None:
                state = self._scopes[key] = _Scope(threading.BoundedSemaphore(self.threads_per_scope))
            return state

    @contextmanager
    def _using(self, region: str, identity: Identity | None, operation: str) -> Iterator[_Scope]:
        state = self._scope(page_scope(region, identity))
        state.identity, state.region = identity, region
        if not state.gate.acquire(blocking=False):
            message = f"{region}: every call slot of this region is waiting on AWS"
            raise AwsError(ErrorKind.RETRYABLE, "RegionBusy", message, operation)
        try:
            yield state
        finally:
            state.gate.release()

    def page(self, region: str, identity: Identity | None = None, *, max_age: float | None = None) -> Page:
        with self._using(region, identity, DESCRIBE) as state:
            return self._page(region, identity, state, max_age=max_age)

    def _page(
        self,
        region: str,
        identity: Identity | None,
        state: _Scope,
        *,
        wait: bool = True,
        max_age: float | None = None,
    ) -> Page:
        """The scope's page: the last one while fresh (younger than ``max_age``, by default the interval), else a
        new one (fetched by one caller, the others wait for it). ``wait`` False: while another caller fetches, the
        last page (or an empty one) rather than waiting."""
        now = self.clock()
        fresh = self.interval if max_age is None else max_age
        with state.lock:
            if state.page is not None and now - state.page.fetched_at < fresh:
                return state.page
            if not wait and state.inflight is not None:
                return state.page or Page({}, 0, -1.0)
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
        with state.lock:  # identifiers of unfinished objects, and those asked for since the last page
            since = state.page.fetched_at if state.page else 0.0
            state.asked = {i: at for i, at in state.asked.items() if at >= since}
            asked = sorted(state.asked.keys() | state.watched.keys())
            before = state.page
        try:
            found = self.rds.describe_by_status(region, ACTIVE_FILTER, identity=identity)
            tasks = {t["ExportTaskIdentifier"]: t for t in found}
            absent = [i for i in asked if i not in tasks]
            more = self.rds.describe_many(region, absent, identity) if absent else []
        except AwsError as error:
            with state.lock:
                state.inflight = None
                told = self._failed(state, error)
            future.set_exception(error)
            self.wake(told)
            raise
        running = [i for i, t in tasks.items() if normalize_status(t.get("Status")) in ACTIVE_STATUSES]
        tasks.update((t["ExportTaskIdentifier"], t) for t in more)
        page = Page(tasks, len(running), now, frozenset(absent) - tasks.keys())
        with state.lock:
            recovered = state.failures > 0  # watchers showed the failure: all of them are news now
            state.page, state.failures, state.error, state.inflight = page, 0, None, None
            # What the page now answers is the page's; older news of what it does not hold stays (expiring).
            state.recent = {
                i: v for i, v in state.recent.items() if self._keeps(page, i, v[1], now, self._limit(state, i))
            }
            state.lost = {i: at for i, at in state.lost.items() if self._keeps(page, i, at, now, self._keep)}
            changed = []  # while sweeping (a listing for the slots' count), the sweep tells each at its phase
            if recovered or state.swept_at is None:
                changed = [
                    uid
                    for identifier, uids in state.watched.items()
                    if recovered or self._news(state, before, identifier, page.tasks.get(identifier))
                    for uid in uids
                ]
                state.told.clear()  # the listing answers them all
        scope = slot_scope(region, identity)
        self.slots.page(scope, now, running)
        future.set_result(page)
        self.wake(changed + self.slots.next_up(scope, len(running)))
        return page

    def _failed(self, state: _Scope, error: AwsError) -> list[str]:
        """A page or lookup failed (under ``state.lock``): back off; the uids to tell. The first failure is news
        for every watcher (Synced=False); later ones are not."""
        state.failures += 1
        delay = min(self.max_backoff, self.interval * 2 ** min(state.failures - 1, 20))
        state.retry_at, state.error = self.clock() + self.rng.uniform(delay, 1.5 * delay), error
        return [uid for uids in state.watched.values() for uid in uids] if state.failures == 1 else []

    @property
    def _keep(self) -> float:
        """How long news the page lacks is kept once read (other objects may ask for the same task)."""
        return max(60.0, 2 * self.interval)

    @property
    def _hold(self) -> float:
        """How long a lookup's answer waits for the objects it woke. In a burst they queue for kopf's loop and the
        worker threads for minutes (5,000 objects adopted at once); an answer dropped before they come back is a
        second lookup and a second wake-up for each. An object deleted meanwhile never comes: hence a limit."""
        return 10 * self._keep

    def _limit(self, state: _Scope, identifier: str) -> float:
        """How long news of a task is kept (under ``state.lock``): held while objects a lookup woke have not read
        it yet, then kept; while a sweep answers it, until the sweep's next answer (a long backoff would otherwise
        leave only the listing from before the sweep)."""
        if state.swept_at is not None and identifier in state.watched:
            return math.inf
        return self._hold if identifier in state.readers else self._keep

    @staticmethod
    def _news(state: _Scope, page: Page | None, identifier: str, task: ExportTask | None) -> bool:
        """Whether ``task`` is news to the watchers of its identifier (under ``state.lock``): against what a sweep
        step last read of it, else against the page before."""
        if identifier in state.told:
            return state.told[identifier] != task
        return page is None or page.tasks.get(identifier) != task

    def _view(self, region: str, identity: Identity | None, state: _Scope, *, wait: bool) -> Page:
        """The page to answer from. While the scope sweeps, no listing is fetched for an answer (each would cost
        the pages the sweep replaces, and wake every watcher at once); a page older than an interval then says
        nothing, and the sweep's, lookups' and calls' answers (``recent``) do."""
        with state.lock:
            sweeping, page = state.swept_at is not None, state.page
        if not sweeping:
            # Fresh until the scope's own next listing (``_age``), not a whole interval after the last: when that
            # listing fails, the objects it wakes must not be answered from the page it failed to renew.
            return self._page(region, identity, state, wait=wait, max_age=self._age(state, self.interval))
        if page is not None and self.clock() - page.fetched_at < self.interval:
            return page
        return Page({}, 0, -1.0)

    @staticmethod
    def _keeps(page: Page, identifier: str, at: float, now: float, limit: float) -> bool:
        return at >= page.fetched_at or (
            identifier not in page.tasks and identifier not in page.unknown and now - at < limit
        )

    @staticmethod
    def _known(state: _Scope, page: Page, identifier: str) -> tuple[bool, ExportTask | None]:
        """What is known of a task (under ``state.lock``): the newest of the page, a Start, Cancel or lookup answer,
        and a Start or Cancel whose answer was lost (then nothing is: AWS may have acted on it)."""
        at, task = -1.0, None
        if identifier in page.tasks or identifier in page.unknown:
            at, task = page.fetched_at, page.tasks.get(identifier)
        news = state.recent.get(identifier)
        if news is not None and news[1] >= at:
            task, at = news
        lost = state.lost.get(identifier)
        if lost is not None and lost >= at:
            return False, None
        return at >= 0, task

    # -- lookups: many objects' tasks by identifier, one call ------------------------------------------------------

    def find(self, region: str, identifier: str, identity: Identity | None = None, uid: str = "") -> ExportTask | None:
        """The task (None: AWS does not know it) from the shared page or an earlier lookup; otherwise the
        identifier joins the scope's next lookup and AwsError LOOKUP_PENDING says the answer comes with a wake-up.
        """
        with self._using(region, identity, DESCRIBE) as state:
            with state.lock:
                swept = state.swept_at is not None and identifier in state.watched
                if swept and state.error is not None and self.clock() < state.retry_at:
                    raise state.error  # the sweep fails: the object shows it, as a failed page's objects do
            page = self._view(region, identity, state, wait=False)  # a burst of new objects need not wait
            with state.lock:
                known, task = self._known(state, page, identifier)
                if known:
                    readers = state.readers.get(identifier, set())
                    readers.discard(uid)
                    if not readers:
                        state.readers.pop(identifier, None)
                    return task
                if state.error is not None and self.clock() < state.retry_at:
                    raise state.error  # no lookup before the backoff ends: the object shows why
                state.lookups.setdefault(identifier, set()).add(uid)
        self._nudge.set()
        raise AwsError(ErrorKind.RETRYABLE, LOOKUP_PENDING, f"looking up {identifier} by identifier", DESCRIBE)

    def lookup(self, state: _Scope, *, whole_batches: bool = False) -> None:
        """Answer the identifiers waiting in this scope with describes by identifier (100 per call), and wake the
        objects that asked. ``whole_batches``: only as many as fill calls (more may be on their way). A failure
        backs the scope off as a failed page does; the objects see the error when woken."""
        with state.lock:
            count = len(state.lookups) // BATCH * BATCH if whole_batches else len(state.lookups)
            if not count or (state.error is not None and self.clock() < state.retry_at):
                return
        if not state.gate.acquire(blocking=False):
            return  # the region's call slots hang on AWS: try again at the next pump
        try:
            with state.lock:
                wanted = {i: state.lookups.pop(i) for i in list(state.lookups)[:count]}
            asked = self.clock()
            try:
                tasks = self.rds.describe_many(state.region, sorted(wanted), state.identity)
            except AwsError as error:
                with state.lock:
                    told = self._failed(state, error)
                self.wake(told + [uid for uids in wanted.values() for uid in uids])
                return
            with state.lock:  # the next page ends a failure streak: it tells the watchers of the recovery
                found = {t["ExportTaskIdentifier"]: t for t in tasks}
                state.recent.update((i, (found.get(i), asked)) for i in wanted)
                for i, uids in wanted.items():
                    state.readers.setdefault(i, set()).update(uids)
            self.wake(uid for uids in wanted.values() for uid in uids)
        finally:
            state.gate.release()

    # -- push: who is told, and the refresh that tells them ----------------------------------------------------

    def watch(self, uid: str, region: str, identifier: str, identity: Identity | None = None) -> None:
        """This unfinished object wants to be woken when its task changes."""
        state = self._scope(page_scope(region, identity))
        with self._lock:
            old = self._watching.get(uid)
            if old == (state, identifier):
                return
            self._watching[uid] = (state, identifier)
        if old is not None:
            self._unwatch(uid, *old)
        with state.lock:
            state.identity, state.region = identity, region
            state.watched.setdefault(identifier, set()).add(uid)

    def unwatch(self, uid: str) -> None:
        with self._lock:
            old = self._watching.pop(uid, None)
        if old is not None:
            self._unwatch(uid, *old)

    @staticmethod
    def _unwatch(uid: str, state: _Scope, identifier: str) -> None:
        with state.lock:
            uids = state.watched.get(identifier, set())
            uids.discard(uid)
            if not uids:
                state.watched.pop(identifier, None)
                state.told.pop(identifier, None)

    def refresh(self) -> float:
        """Answer the waiting lookups, and fetch a page for every scope someone watches or waits in (the pump).
        Returns the seconds until the next page is due (at most a quarter interval: new watchers come)."""
        due = self.interval / 4
        self.slots.expire()  # ghosts' places go; the next page of their scope wakes whoever's turn came
        with self._lock:
            scopes = list(self._scopes.values())
        for state in scopes:
            self.lookup(state)
            with state.lock:  # answers nobody came back for
                if state.recent or state.lost:
                    now = self.clock()
                    state.recent = {i: v for i, v in state.recent.items() if now - v[1] < self._limit(state, i)}
                    state.readers = {i: uids for i, uids in state.readers.items() if i in state.recent}
                    state.lost = {i: at for i, at in state.lost.items() if now - at < self._keep}
            slots = slot_scope(state.region, state.identity)
            waiting = self.slots.waiting_in(slots)
            if not waiting and len(state.watched) > self.sweep_above and self.rds.filters_honoured(state.region):
                due = min(due, self._sweep(state))
                continue
            self._stop_sweeping(state)
            if state.watched or waiting:
                every = self.interval
                if waiting and state.page is not None and self.slots.full(slots, state.page.running):
                    every = self.queue_interval  # the page that shows a freed slot starts the next export
                with contextlib.suppress(AwsError):  # objects see the error at their next look
                    self.page(state.region, state.identity, max_age=self._age(state, every))
                with state.lock:  # a page at the scope's next phase (or when the backoff ends)
                    now = self.clock()
                    if state.error is not None and now < state.retry_at:
                        due = min(due, state.retry_at - now)
                    elif state.page is not None:
                        due = min(due, state.page.fetched_at + self._age(state, every) - now)
        return max(0.05, due)

    @staticmethod
    def _age(state: _Scope, every: float) -> float:
        """How old the scope's page gets before the pump renews it: up to the scope's own phase of the interval,
        then every interval. Scopes whose first pages came together (the operator's start) would otherwise stay
        aligned, and every account's changes of an interval be written in one burst (the sweep's reason, across
        scopes). Costs at most one early page per scope."""
        fetched = state.page.fetched_at if state.page is not None else 0.0
        return (
            phase(f"{state.identity.role_arn if state.identity else ''} {state.region}", every) - fetched
        ) % every or every

    def _stop_sweeping(self, state: _Scope) -> None:
        """The scope lists again. A listing from before the sweep must not answer while the next one comes (a
        watched task would go back to what it was then): it is dropped; the sweep's answers, kept meanwhile
        (``recent``, expiring as usual from now on) and what it told (``told``), bridge the gap."""
        with state.lock:
            if state.swept_at is None:
                return
            state.swept_at = None
            if state.page is not None and self.clock() - state.page.fetched_at >= self.interval:
                state.page = None

    def _sweep(self, state: _Scope) -> float:
        """One step of a sweep (see the module), if one is due: describe the watched tasks whose phase came since
        the last step, and wake the objects whose task changed. Returns the seconds until the next step.

        Steps fall on a grid of ceil(W/100)+1 per interval, so that a task's phase is followed by the same step
        each interval. More than 100 phases in one step (phases are random, not even) are not a second call: the
        100 earliest are described, the rest go with the next step."""
        now = self.clock()
        with state.lock:
            if state.error is not None and now < state.retry_at:
                return state.retry_at - now
            watched = list(state.watched)
            step = self.interval / (math.ceil(len(watched) / BATCH) + 1)
            if state.swept_at is None:  # the last page showed every watched task: go on from there
                state.swept_at = state.page.fetched_at if state.page is not None else now - self.interval
                state.sweep_due = (math.floor(state.swept_at / step) + 1) * step
            last = state.swept_at
            if now < state.sweep_due:
                return state.sweep_due - now
        after = {i: since(phase(i, self.interval), last, self.interval) for i in watched}
        wanted = sorted((i for i in watched if after[i] <= now - last), key=after.__getitem__)
        covered = now
        if len(wanted) > BATCH and now - last < self.interval:  # after a backoff, all are due: a call per 100
            cut = BATCH  # not between two equal phases (a CRC-32 shared): the second would never come again
            while cut > 1 and after[wanted[cut]] == after[wanted[cut - 1]]:
                cut -= 1
            wanted = wanted[:cut]
            covered = last + after[wanted[-1]]
        if not state.gate.acquire(blocking=False):
            return step  # the region's call slots hang on AWS
        try:
            tasks = self.rds.describe_many(state.region, wanted, state.identity) if wanted else []
        except AwsError as error:
            with state.lock:
                told = self._failed(state, error)  # the backoff is longer than an interval: then all are due
            self.wake(told)
            return max(0.0, state.retry_at - now)
        finally:
            state.gate.release()
        found = {t["ExportTaskIdentifier"]: t for t in tasks}
        with state.lock:
            recovered, state.failures, state.error = state.failures > 0, 0, None
            state.swept_at, state.sweep_due = covered, (math.floor(now / step) + 1) * step
            changed: list[str] = []
            for identifier in wanted:
                news = state.recent.get(identifier)
                if news is not None and news[1] > now:
                    continue  # a Start or Cancel answered after this call was asked: it is newer
                answer = found.get(identifier)
                if identifier in state.watched:  # (it may have been let go during the call)
                    if recovered or self._news(state, state.page, identifier, answer):
                        changed.extend(state.watched[identifier])
                    state.told[identifier] = answer
                state.recent[identifier] = (answer, now)
            if recovered:  # watchers showed the failure: all of them are news now
                changed = [uid for uids in state.watched.values() for uid in uids]
            due = state.sweep_due - now
        self.wake(changed)
        return due

    def pump(self) -> None:
        """Refresh until ``stop``; run in a daemon thread. When the next page is due (a page a quarter interval
        late would add that much to every object's status latency), or ``lookup_delay`` after the first
        identifier of a lookup: the delay gathers a burst into one call."""
        wait = 0.0
        while not self._stop.is_set():
            if self._nudge.wait(wait):
                self._nudge.clear()
                self._gather()
            wait = self.refresh()

    def _gather(self) -> None:
        """Let a burst of lookups gather: full calls go at once, the rest (in ``refresh``) when no identifier came
        for the quiet time, or ten ``lookup_delay`` after the gathering began.

        The quiet time adapts. Under load the arrivals pause while kopf's loop handles the writes of the objects
        just answered: identifiers that come within the quiet time after a part-filled call went mean the burst
        was not over, so it doubles (up to half the gathering's limit); an interval without a part-filled call
        brings it back to ``lookup_delay`` (a lone new object waits about that long)."""
        began = time.monotonic()
        limit = 10 * self.lookup_delay
        if began - self._partial_at < self._quiet:
            self._quiet = min(2 * self._quiet, limit / 2)
        elif began - self._partial_at > self.interval:
            self._quiet = self.lookup_delay
        before, changed = -1, began
        while True:
            self._nudge.clear()  # set by each identifier that joins a lookup: a call that fills goes at once
            if self._stop.is_set():  # after the clear: a stop after it leaves the nudge set
                return
            with self._lock:
                scopes = list(self._scopes.values())
            for state in scopes:
                self.lookup(state, whole_batches=True)
            waiting = sum(len(state.lookups) for state in scopes)
            now = time.monotonic()
            if not waiting:
                return
            if waiting != before:
                before, changed = waiting, now
            wait = min(changed + self._quiet, began + limit) - now
            if wait <= 0:
                break
            self._nudge.wait(wait)
        self._partial_at = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._nudge.set()

    def peek(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask | None:
        """The task if the shared page has it as active; never an extra call, nor a wait for a page in flight."""
        with self._using(region, identity, DESCRIBE) as state:
            task = self._view(region, identity, state, wait=False).tasks.get(identifier)
        return task if task is not None and normalize_status(task.get("Status")) in ACTIVE_STATUSES else None

    def describe(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask | None:
        """From the shared page if it holds the task; else one targeted call (the task left the active set).

        A task started after the page was fetched is not in it yet: until the next page its answer is what
        StartExportTask returned, rather than a call per tick; likewise an identifier AWS does not know.
        """
        with self._using(region, identity, DESCRIBE) as state:
            with state.lock:
                sweeping = state.swept_at is not None
                if not sweeping:  # the next listing describes it too (no listing comes while sweeping)
                    state.asked[identifier] = self.clock()
            page = self._view(region, identity, state, wait=True)
            with state.lock:
                known, task = self._known(state, page, identifier)
            # While sweeping, only a watched task's answer is kept current: any other is a call (a deletion's
            # cancel waits on it).
            if known and (not sweeping or identifier in state.watched):
                return task
            asked = self.clock()
            task = self.rds.describe(region, identifier, identity)
            with state.lock:
                state.recent[identifier] = (task, asked)
            return task

    def start(self, spec: ExportSpec) -> ExportTask:
        with self._using(spec.region, spec.identity, "StartExportTask") as state:
            return self._changing(state, spec.identifier, lambda: self.rds.start(spec))

    def cancel(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask:
        with self._using(region, identity, "CancelExportTask") as state:
            return self._changing(state, identifier, lambda: self.rds.cancel(region, identifier, identity))

    def _changing(self, state: _Scope, identifier: str, call: Callable[[], ExportTask]) -> ExportTask:
        """A Start or Cancel: what was known of the task is stale from now on, even if the answer is lost (AWS may
        have acted on a call that timed out); the answer, if any, is the news until a page shows the task."""
        asked = self.clock()
        try:
            task = call()
        except AwsError:
            with state.lock:
                state.lost[identifier] = asked
            raise
        with state.lock:
            state.recent[identifier] = (task, asked)
        return task

    # -- the export slots -------------------------------------------------------------------------------------

    def may_start(
        self, region: str, uid: str, created: str, identity: Identity | None = None, namespace: str = ""
    ) -> bool:
        running = self.page(region, identity).running
        return self.slots.want(slot_scope(region, identity), uid, created, running, namespace)

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

    def find(self, region: str, identifier: str, identity: Identity | None = None, uid: str = "") -> ExportTask | None:
        return self.rds.describe(region, identifier, identity)

    def may_start(
        self, region: str, uid: str, created: str, identity: Identity | None = None, namespace: str = ""
    ) -> bool:
        return self.slots.want(region, uid, created, 0, namespace)

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

    def watch(self, uid: str, region: str, identifier: str, identity: Identity | None = None) -> None:
        pass  # the baseline looks again every interval

    def unwatch(self, uid: str) -> None:
        pass
