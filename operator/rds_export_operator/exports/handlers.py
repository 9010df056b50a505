"""kopf wiring only: each handler reads the object, calls the reconciler and applies its Result as one patch."""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import kopf

from rds_export_operator.api import status as st
from rds_export_operator.api.names import ANNOTATION_PREFIX, COMPONENT, FINALIZER, GROUP, PLURAL, VERSION, WATCHED
from rds_export_operator.api.spec import ExportSpec, SpecError, parse_object_spec
from rds_export_operator.aws import regions
from rds_export_operator.aws.identity import Identities
from rds_export_operator.aws.rds import Rds
from rds_export_operator.aws.tenancy import Tenancy
from rds_export_operator.exports import ownership
from rds_export_operator.exports.first_looks import FirstLooks
from rds_export_operator.exports.ownership import OWNED, Ownership
from rds_export_operator.exports.polling import PerObject, Poller
from rds_export_operator.exports.quota import UnfinishedQuota
from rds_export_operator.exports.reconcile import Event, Reconciler, Result, RetryPolicy, has_task, refused
from rds_export_operator.exports.wakeups import Wakeups
from rds_export_operator.runtime import events, spawning, status_writes
from rds_export_operator.runtime.identity_source import ConfigMapSource, NamespaceLabels
from rds_export_operator.runtime.kubeapi import KubeApi
from rds_export_operator.runtime.metrics import Metrics
from rds_export_operator.runtime.settings import Settings

logger = logging.getLogger(__name__)


def needs_finalizer(spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> bool:
    """Only an object whose deletion must cancel something holds a finalizer: Create + Cancel, unfinished, and
    with an export of its own or about to start one. Not before its first look (an empty status): most new objects
    adopt a task that exists, often finished, and a finalizer added then removed was two writes and two watch
    events for each. Nor while queued or refused: the start path writes a status that asks for it and starts only
    once it is stored (Reconciler.sync's ``has_finalizer``). Observe and Retain objects, and their namespaces,
    delete while the operator is down."""
    return (
        spec.get("managementPolicy", "Create") == "Create"
        and spec.get("deletionPolicy", "Cancel") == "Cancel"
        and bool(status)
        and not st.is_finished(status)
        and status.get("status") not in (st.QUEUED, st.REFUSED)
        and (not has_task(status) or status.get("ownership") in OWNED)
    )


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf keeps a copy of each object's spec in an annotation (one write per new object, and the copy in every
    body held) to tell an update from a creation. Our only change-detecting handler is on.delete, which needs no
    diff: nothing is stored, and kopf sees each event as a creation with no handlers (a no-op). An on.create,
    on.update or on.resume handler would need a real storage (tests/unit/test_settings.py checks there is none)."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


class ApiBackoffs:
    """kopf's backoffs for a failed API request (1 to 21 s), then every 30 s for as long as it takes. kopf's own
    schedule ends after 9 tries (54 s) and lets the error out: out of a daemon or timer, which kopf then never
    starts again for that object, so an API-server outage of a minute froze an export's status until the operator
    restarted. Events are not held up by it: kopf posts them with backoffs of their own (``settings.posting``)."""

    def __iter__(self) -> Iterator[float]:
        return itertools.chain((1, 1, 2, 3, 5, 8, 13, 21), itertools.repeat(30.0))


def unfinished(status: Mapping[str, Any], **_: Any) -> bool:
    return not st.is_finished(status)


@dataclass
class _Looks:
    """One object's daemon between two looks."""

    attempt: int = 0  # failed looks in a row (the backoff's exponent)
    sleep: float | None = None  # how long to wait for a wake-up before the next look; None: look at once
    generation: int | None = None  # of the spec, as last seen in a watch event
    finalized: bool = False  # our finalizer was on the object in the last watch event
    written: dict[str, Any] = field(default_factory=dict)  # the status fields of our last write
    behind: int = 0  # safety-net wake-ups in a row that found kopf not yet showing our finishing write


UP_TO_DATE = "up to date; asleep until the task changes"
# First looks at once (first_looks.py). A look only decides and writes (a lookup's answer comes with a wake-up,
# without holding a worker), so a few keep the writes going; each holds one object's trimmed body and a thread
# of kopf's pool while it decides.
FIRST_LOOK_WORKERS = 16
# What a first look reads of an object's metadata (spec parsing, the export queue's order, the finalizer, the
# write's precondition, an Event's reference): not managedFields nor kubectl's copy of the last applied object.
# (body, the look's status) -> the report's status fields, its Events, and what to call once the write is stored,
# or None: the table report of an export whose first look finished it (tables.handlers.TableReportHandlers).
FirstReportAnswer = tuple[dict[str, Any], list[Event], Callable[[], None]]
FirstReport = Callable[[kopf.Body, Mapping[str, Any]], FirstReportAnswer | None]
FIRST_REPORT_THREADS = 4  # reports read with first looks at once; more wait for a thread within the budget
FIRST_REPORT_BUDGET = 2.0  # seconds a first look waits for its report before writing without it

_LOOK_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "finalizers")


class Handlers:
    def __init__(self, config: Settings, rds: Rds, metrics: Metrics) -> None:
        self.config, self.metrics = config, metrics
        self.wakeups = Wakeups()
        self._looks: dict[str, _Looks] = {}
        # Per-namespace AWS identities (identity.py), when the chart's mapping ConfigMap is configured.
        self.identities: Identities | None = None
        self.identity_source: ConfigMapSource | None = None
        if config.identities_configmap:
            namespace, name = config.identities_configmap.split("/", 1)
            api = KubeApi()
            self.identities = rds.identities = Identities(
                labels=NamespaceLabels(api), observe=metrics.observe_call, sts_region=config.default_region or None
            )
            self.identity_source = ConfigMapSource(self.identities, namespace, name, api=api)
            metrics.registry.register(self.identity_source.collector())
        policy = RetryPolicy(
            poll_interval=config.poll_interval,
            base_delay=config.retry_base_delay,
            max_delay=config.retry_max_delay,
            source_wait=config.source_wait,
            iam_wait=config.iam_wait,
            warn_after=config.aws_warn_after,
            observe_wait=config.observe_wait,
        )
        tenancy = Tenancy.parse(config.tenancy)
        self.quota = UnfinishedQuota(config.max_unfinished_per_namespace)
        if config.polling == "coalesced":
            self.tick = config.tick_interval
            self.sleep = 10 * config.poll_interval  # a safety net: the poller wakes objects whose task changed
            # A region may hold a quarter of the worker threads: a hanging endpoint cannot take them all.
            self.gateway: Poller | PerObject = Poller(
                rds,
                config.poll_interval,
                config.max_concurrent_exports,
                max_backoff=config.retry_max_delay,
                wait_for_page=min(5.0, config.aws_timeout),
                threads_per_scope=max(1, config.max_workers // 4),
                lookup_delay=min(1.0, config.poll_interval / 4),
                wake=self.wakeups.wake,
                # A live waiter looks at least once per safety-net sleep or backoff: two of those without a look
                # mean its daemon is gone without a word (withdraw below covers every exit we hear of).
                queue_lease=2 * max(self.sleep, config.retry_max_delay) + config.poll_interval,
                per_namespace=config.max_exports_per_namespace,
            )
        else:
            self.gateway = PerObject(rds)
            self.tick = self.sleep = config.poll_interval  # the baseline: every object looks every interval
        resolve = self.identities.usable if self.identities else None  # the namespace's own credentials work
        self.ownership = Ownership()  # filled from the cluster at start-up (configure), then by every watch event
        account = self.identities.account_of if self.identities else None
        self.reconciler = Reconciler(
            self.gateway,
            policy,
            tenancy=tenancy,
            identity=resolve,
            ownership=self.ownership,
            account=account,
            region_refusal=regions.refusal,
        )
        metrics.tracker.queue_length = self.gateway.queue_length
        self.rng = random.Random()
        self.own_write_wait = 2.0  # seconds a look waits for the watch event of our last write
        # Objects with no status yet get no daemon: a bounded pool makes their first look (first_looks.py).
        self.first_looks = FirstLooks(self.first_look, workers=FIRST_LOOK_WORKERS)
        self.wakeups.listen(self.first_looks.wake)
        self.kopf_settings: kopf.OperatorSettings | None = None
        # Set by the wiring when the table report is on: a first look that finds its export finished also reads
        # the report, so that one status write carries both (see first_look).
        self.report_with: FirstReport | None = None
        self._report_slots: asyncio.Semaphore | None = None  # made on kopf's loop, at the first report
        self._report_threads = ThreadPoolExecutor(FIRST_REPORT_THREADS, thread_name_prefix="first-report")

    def register(self, registry: kopf.OperatorRegistry) -> None:
        kopf.on.startup(registry=registry)(self.configure)
        kopf.on.cleanup(registry=registry)(self.cleanup)
        kopf.on.login(registry=registry)(self.login)
        kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="track")(self.track)
        # One daemon per unfinished object, asleep until the poller wakes it (push, not tick); no finalizer.
        registry._spawning.append(spawning.daemon(self.sync, "sync", when=self.runs, initial_delay=self.first_delay))
        kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="cancel", when=needs_finalizer)(self.cancel)

    async def configure(self, settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf starts its watches only after the start-up handlers: no object decides before every task's owner
        # is known, so after a restart no other namespace's object can win a race for an owned identifier.
        try:
            owned = await asyncio.to_thread(self.fill_ownership, KubeApi())
        except Exception as exc:  # a failed list is retried: deciding without the index could hand a task away
            raise kopf.TemporaryError(f"cannot list RdsExportTask objects for their owners: {exc}", delay=2) from exc
        logger.info("ownership index filled: %d objects own an export task", owned)
        self.wakeups.bind(asyncio.get_running_loop())
        if isinstance(self.gateway, Poller):  # the pump: one refresh per interval, waking what changed
            threading.Thread(target=self.gateway.pump, name="poller", daemon=True).start()
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = NoDiffBase()
        settings.networking.error_backoffs = ApiBackoffs()
        settings.watching.server_timeout = self.config.watch_server_timeout
        settings.watching.client_timeout = self.config.watch_client_timeout
        settings.execution.max_workers = self.config.max_workers
        # kopf handles each object's events in a worker of its own, with no limit: at start-up every object at
        # once, the memory peak that RSS keeps. 200 at a time measured lower in memory (-30 MiB at 1,000 objects)
        # and CPU (-35 %) with no slower sync. A worker is held while a delete handler waits for AWS to finish a
        # cancel; AWS runs at most 5 exports per account and region, so 200 are all busy only when 40 accounts
        # and regions cancel at once, and then other events wait, none is lost.
        settings.queueing.worker_limit = 200
        settings.queueing.idle_timeout = 1.0  # kopf's default 5 s would hold a worker that long after each event
        # A stopped daemon returns from its sleep at once; kopf's default of 10 zero-time loop cycles may be short
        # of that under load, and a daemon kopf must cancel costs a warning and an Event.
        settings.background.instant_exit_timeout = 0.5
        settings.posting.reporting_component = COMPONENT
        self.kopf_settings = settings
        settings.posting.reporting_instance = self.config.identity
        # Our resource is known: no CRD discovery watch, which least-privilege RBAC does not (and need not) allow.
        settings.scanning.disabled = True
        if self.identity_source is not None:  # only the leader reads the mapping: it is the one that acts on it
            self.identity_source.start()

    def fill_ownership(self, api: KubeApi) -> int:
        """List every watched object (paged) into the ownership index; returns how many own a task."""
        base = f"/apis/{GROUP}/{VERSION}"
        plain = [ns for ns in self.config.namespaces if not any(c in ns for c in "*?[!")]
        paths = [f"{base}/namespaces/{ns}/{PLURAL}" for ns in plain] if plain == list(self.config.namespaces) else []
        count = 0
        for path in paths or [f"{base}/{PLURAL}"]:
            token = ""
            while True:
                query = "?limit=500" + (f"&continue={urllib.parse.quote(token)}" if token else "")
                page = api.get(path + query) or {}
                count += ownership.fill(self.ownership, (self._owner_row(obj) for obj in page.get("items") or []))
                token = str((page.get("metadata") or {}).get("continue") or "")
                if not token:
                    break
        return count

    def _owner_row(self, obj: Mapping[str, Any]) -> tuple[str, str, str, Mapping[str, Any]]:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        region = self._region(obj.get("spec") or {}, meta) if ownership.owned(status) else ""  # parsed only if held
        return str(meta.get("uid") or ""), str(meta.get("namespace") or ""), region, status

    def _region(self, spec: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
        try:
            parsed = parse_object_spec(spec, meta, self.config.default_region)
        except SpecError:
            return ""  # an invalid spec starts nothing: it owns no task
        return parsed.region

    def cleanup(self, **_: Any) -> None:
        self.first_looks.stop()
        self._report_threads.shutdown(wait=False, cancel_futures=True)
        if isinstance(self.gateway, Poller):
            self.gateway.stop()
        if self.identity_source is not None:
            self.identity_source.stop()

    async def login(self, **kwargs: Any) -> kopf.AiohttpSession | None:
        # In a pod: the ServiceAccount token; elsewhere: $KUBECONFIG. No API client library needed.
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is None:
            return None
        # kopf's own session has no connection limit: one TLS connection (~0.3 MiB) per request in flight. Each
        # watch stream holds one connection for minutes, so they come on top of the connections for writes.
        watch_streams = max(1, len(self.config.namespaces)) * len(WATCHED)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.config.api_connections + watch_streams, ssl=info.as_ssl_context()
            ),
            headers=info.as_http_headers(),
            proxy=info.proxy_url,
            trust_env=info.trust_env,
        )
        return kopf.AiohttpSession(
            aiohttp_session=session,
            server=info.server,
            default_namespace=info.default_namespace,
            priority=info.priority,
            expiration=info.expiration,
        )

    def runs(self, status: Mapping[str, Any], uid: str, **_: Any) -> bool:
        """Whether the object has a daemon: it has a status (its first look is the pool's, first_looks.py),
        unfinished, and not over its namespace's quota."""
        return bool(status) and unfinished(status) and not self.quota.refused(uid)

    async def track(
        self,
        event: kopf.RawEvent,
        uid: str,
        status: kopf.Status,
        spec: kopf.Spec,
        meta: kopf.Meta,
        body: kopf.Body,
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        """Every watch event, on the event loop: kopf runs a sync handler in a thread, a hop per event (30,000 at
        10,000 objects adopted); this one only updates memory (its locks are never held across an AWS call),
        and writes the verdict of an object over its namespace's quota (kopf applies the patch)."""
        deleted = event.get("type") == "DELETED"
        namespace = meta.get("namespace") or ""
        if deleted:
            self.ownership.forget(uid)
        else:
            row = self._owner_row(event.get("object") or {})
            ownership.fill(self.ownership, [row])
        self.metrics.tracker.observe(uid, status.get("status"), deleted=deleted)
        self.metrics.tables.observe(uid, status.get("tables"), deleted=deleted)
        exporting = status.get("status") in st.ACTIVE_STATUSES and status.get("ownership") in OWNED
        self.gateway.slots.exporting(uid, namespace, exporting and not deleted)
        if deleted or status:
            self.first_looks.drop(uid)  # its first status is written: a daemon (or nothing) looks from now on
        if deleted or st.is_finished(status):
            self.reconciler.drop(uid)  # nothing left to watch or wake
            self.quota.drop(namespace, uid)
            self.wakeups.forget(uid)
            self._looks.pop(uid, None)
            return
        if meta.get("deletionTimestamp"):
            # Marked for deletion: kopf stops the daemon and no DELETED event may come for long (a finalizer of
            # someone else's): its place in the export queue must not wait for that.
            self.gateway.slots.withdraw(uid)
        if not self.quota.admit(namespace, uid, new=not status):
            limit = self.quota.limit
            message = f"namespace {namespace} already has {limit} unfinished RdsExportTask objects (the operator's cap)"
            self._apply(refused("QuotaExceeded", message), None, body, patch)
            return
        if has_task(status) or spec.get("managementPolicy") == "Observe":
            self.reconciler.forget(uid)  # no longer waiting for an export slot, nor a start in flight
        looks = self._looks.setdefault(uid, _Looks())
        finalized = FINALIZER in (meta.get("finalizers") or [])
        if looks.generation not in (None, meta.get("generation")) or finalized > looks.finalized:
            self.wakeups.wake([uid])  # the spec changed (a policy), or the finalizer a start waits for is stored
        looks.generation, looks.finalized = meta.get("generation"), finalized
        if not status and not meta.get("deletionTimestamp"):
            self.first_looks.offer(uid, _trimmed(event.get("object") or {}))

    def first_delay(self, status: Mapping[str, Any], **_: Any) -> float:
        # New objects start at once; known tasks spread their polls over one interval (no stampede on restart).
        return self.rng.uniform(0, self.tick) if has_task(status) else 0.0

    async def sync(self, body: kopf.Body, patch: kopf.Patch, uid: str, stopped: kopf.DaemonStopped, **_: Any) -> None:
        """The object's daemon: look, write, then sleep until the poller wakes it (or a backoff ends).

        Each look ends in a TemporaryError so that kopf applies the patch and calls again: with the backoff's
        delay after an error, at once (to sleep on the wake-up) after a look that went well. It returns when kopf
        stops it (the object finished or goes).
        """
        looks = self._looks.setdefault(uid, _Looks())
        woken = True
        if looks.sleep is not None:
            woken = await self.wakeups.wait(uid, looks.sleep, stopped.wait())
        # Never decide on a body older than our own last write: wait (briefly) for its watch event. Another
        # writer (kopf adding the finalizer) may change the body first: only our own fields tell.
        deadline = time.monotonic() + self.own_write_wait
        while True:
            shown = all(body.status.get(key) == value for key, value in looks.written.items())
            if stopped or shown or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if stopped:  # the object finished, or deletion began: it never asks for its place in the queue again
            self.gateway.slots.withdraw(uid)
            return
        if not shown and not woken and st.is_finished(looks.written) and looks.behind < 10:
            # The safety net's wake-up, and our write that finished the object is stored (kopf applies a daemon's
            # patch before it calls it again) but kopf's queue of watch events is behind: minutes when 1,000s of
            # objects are adopted at once. kopf stops this daemon when it gets there; a look now would decide on
            # the body from before that write, and look its task up again.
            looks.behind += 1
            raise kopf.TemporaryError(UP_TO_DATE, delay=0)
        looks.behind = 0
        # The live body changes under us (watch events): decide on one version of it.
        snapshot = kopf.Body(cast(kopf.RawBody, copy.deepcopy(dict(body))))
        result = await asyncio.to_thread(self._look, snapshot, patch, looks.attempt)
        looks.written = copy.deepcopy(dict(patch.status))
        if result.retry_after is not None:
            if not result.status:
                # Our own congestion (threads busy, a page in flight): no news, so no error log and no Event
                # either; look again after the delay, or sooner when woken.
                looks.sleep = result.retry_after
                raise kopf.TemporaryError(UP_TO_DATE, delay=0)
            looks.attempt, looks.sleep = looks.attempt + 1, None
            raise kopf.TemporaryError(_synced_message(result), delay=result.retry_after)
        looks.attempt, looks.sleep = 0, self.sleep
        raise kopf.TemporaryError(UP_TO_DATE, delay=0)

    def _look(self, body: kopf.Body, patch: kopf.Patch, attempt: int, *, post: bool = True) -> Result:
        """``post``: post the Events now (False: the caller posts them once it has stored the write)."""
        spec = self._spec(body, patch, post=post)
        if isinstance(spec, Result):
            return spec
        meta = body.metadata
        result = self.reconciler.sync(
            spec,
            body.status,
            attempt=attempt,
            uid=meta.uid or "",
            created=str(meta.get("creationTimestamp", "")),
            has_finalizer=FINALIZER in (meta.get("finalizers") or []),
        )
        self._apply(result, spec, body, patch, post=post)
        return result

    async def first_look(self, raw: dict[str, Any]) -> float | None:
        """The first look of an object with no status (first_looks.FirstLooks calls it): the daemon's look, its
        status written only onto the body it decided on, then its Events. None: done (or the object changed
        since: its next watch event brings it back); a number: look again after that long, or when woken."""
        assert self.kopf_settings is not None  # set at start-up, before kopf's watches begin
        body, patch = kopf.Body(cast(kopf.RawBody, raw)), kopf.Patch()
        meta = body.metadata
        uid = meta.uid or ""
        result = await asyncio.to_thread(self._look, body, patch, 0, post=False)
        reported: tuple[list[Event], Callable[[], None]] = ([], lambda: None)
        if self.report_with is not None and st.is_finished(patch.status):
            # An export adopted finished (1,000s at once when a cluster's objects are re-created): its report in
            # the same write, rather than a second write and watch event of the whole body per object during the
            # burst (issue 27 item 1: about a third of the adoption's peak memory).
            report = await self._report_with(body, dict(patch.status))
            if report is not None:
                for key, value in report[0].items():
                    patch.status[key] = value
                reported = report[1], report[2]
        written = dict(patch.status)
        if written:
            stored = await status_writes.patch_status(
                self.kopf_settings, meta.namespace or "", meta.name or "", str(meta.get("resourceVersion")), written
            )
            if not stored:  # changed or gone since: forget what this look set up (its slot), decide again
                self.reconciler.forget(uid)
                return None
        reported[1]()
        events.post(body, [*result.events, *reported[0]], logger)
        if written:
            if st.is_finished(written):
                return None  # no daemon will come; track may already have forgotten the object (no _Looks to leak)
            # The daemon kopf spawns on our write's watch event carries on from here, as after its own look.
            looks = self._looks.setdefault(uid, _Looks())
            looks.written = written
            if result.retry_after is not None:
                looks.attempt, looks.sleep = 1, result.retry_after
            else:
                looks.attempt, looks.sleep = 0, self.sleep
            return None
        if result.retry_after is not None:
            return result.retry_after  # our own congestion: no news
        return self.sleep  # the answer comes with a wake-up (a lookup by identifier); the safety net after that

    async def _report_with(self, body: kopf.Body, look: dict[str, Any]) -> FirstReportAnswer | None:
        """The table report for a first look's write, within ``FIRST_REPORT_BUDGET`` seconds (waiting for a thread
        included) and on ``FIRST_REPORT_THREADS`` threads of its own: S3 must not hold the looks' threads, nor the
        look's write for long (an edit meanwhile refuses it). None: too slow or failed; the report's timer reads
        it. A read that overruns keeps its thread until it ends; its answer is dropped."""
        assert self.report_with is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FIRST_REPORT_BUDGET
        slots = self._report_slots = self._report_slots or asyncio.Semaphore(FIRST_REPORT_THREADS)
        try:
            await asyncio.wait_for(slots.acquire(), FIRST_REPORT_BUDGET)
        except TimeoutError:
            return None
        try:
            future = self._report_threads.submit(self.report_with, body, look)
        except RuntimeError:  # shut down
            slots.release()
            return None

        def done(_: object) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(slots.release)

        future.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return None
        except Exception:  # a bug in the report must not hold up the export's own status
            logger.exception("table report with the first look of %s failed", body.metadata.uid)
            return None

    def cancel(self, body: kopf.Body, status: kopf.Status, patch: kopf.Patch, retry: int = 0, **_: Any) -> None:
        spec = self._spec(body, patch)
        if isinstance(spec, Result):
            return
        result = self.reconciler.cancel(spec, status, attempt=retry, uid=body.metadata.uid or "")
        self._apply(result, spec, body, patch)
        if not result.done:
            raise kopf.TemporaryError("waiting for AWS to finish canceling", delay=result.retry_after or 1.0)

    def _spec(self, body: kopf.Body, patch: kopf.Patch, *, post: bool = True) -> ExportSpec | Result:
        """The typed spec, or the InvalidSpec verdict after applying it (a terminal condition, and an Event posted
        unless ``post`` is False: see ``_apply``)."""
        try:
            return parse_object_spec(body.spec, body.metadata, self.config.default_region)
        except SpecError as exc:
            invalid = refused("InvalidSpec", str(exc))
            self._apply(invalid, None, body, patch, post=post)
            return invalid

    def _apply(
        self, result: Result, spec: ExportSpec | None, body: kopf.Body, patch: kopf.Patch, *, post: bool = True
    ) -> None:
        """``post``: post the result's Events now (False: the caller posts them once its write is stored)."""
        if result.status:  # nothing to say (waiting for the finalizer): no write at all
            _write({"exportTaskIdentifier": spec.identifier, **result.status} if spec else result.status, body, patch)
        for cond in result.status.get("conditions", []):
            if cond.type == st.SYNCED and cond.status == "False":
                self.metrics.reconcile_errors.labels(cond.reason).inc()
        if post:
            events.post(body, result.events, logger)


def _trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a first look needs of a raw body, copied: a few hundred bytes, where the body is kilobytes."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {key: copy.deepcopy(meta[key]) for key in _LOOK_METADATA if key in meta},
        "spec": copy.deepcopy(obj.get("spec") or {}),
        "status": {},
    }


def _synced_message(result: Result) -> str:
    for cond in result.status.get("conditions", []):
        if cond.type == st.SYNCED:
            return f"{cond.reason}: {cond.message}"
    return "retrying"


def _write(desired: Mapping[str, Any], body: kopf.Body, patch: kopf.Patch) -> None:
    """Patch status with what changed, and nothing when nothing did."""
    current = body.status
    now = datetime.now(UTC)
    desired = dict(desired)
    if "conditions" in desired:
        desired["conditions"] = st.merge_conditions(
            current.get("conditions"), desired["conditions"], now=now, generation=body.metadata.get("generation")
        )
    desired["observedGeneration"] = body.metadata.get("generation")
    desired["lastUpdateTime"] = st.rfc3339(now)
    for key, value in st.status_patch(current, desired).items():
        patch.status[key] = value
