"""kopf wiring for RdsExportSchedule (a timer per schedule) and for ttlSecondsAfterFinished on RdsExportTask.

Neither timer holds a finalizer (built as ``handlers.py`` builds its ``sync`` timer): a schedule's children are
garbage-collected through their ownerReference, and a finished task has nothing left to clean up. Decisions are
``schedule.py``'s; this module lists, creates and deletes objects and writes the status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from rds_export_operator.api import status as st
from rds_export_operator.api.names import SCHEDULE_PLURAL
from rds_export_operator.aws.errors import AwsError
from rds_export_operator.aws.identity import OPERATOR, Identities, Identity, IdentityUnavailable, Refusal
from rds_export_operator.aws.rds import Rds
from rds_export_operator.aws.tenancy import Tenancy, database_arn
from rds_export_operator.runtime import events, spawning
from rds_export_operator.runtime.kubeapi import ApiError
from rds_export_operator.runtime.settings import Settings
from rds_export_operator.schedules import decisions as sch
from rds_export_operator.schedules.children import TaskApi
from rds_export_operator.schedules.snapshots import SnapshotCache

logger = logging.getLogger(__name__)
# DescribeDBSnapshots / DescribeDBClusterSnapshots for a source that does not exist (shared/rds-export-api.md):
# Ready=False SourceNotFound, listed again at every poll (it may be created, or be a typo fixed in the spec).
SOURCE_NOT_FOUND_CODES = frozenset({"DBInstanceNotFound", "DBInstanceNotFoundFault", "DBClusterNotFoundFault"})
_QUIET = ("Timer 'schedule' succeeded", "Timer 'ttl' succeeded")


def finished_with_ttl(spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> bool:
    return spec.get("ttlSecondsAfterFinished") is not None and st.is_finished(status)


def finished_at(status: Mapping[str, Any]) -> datetime | None:
    """When the export finished: the task's end time, else when Complete or Failed became True."""
    for cond in status.get("conditions") or []:
        if cond.get("type") in (st.COMPLETE, st.FAILED) and cond.get("status") == "True":
            return st.parse_time(status.get("taskEndTime")) or st.parse_time(cond.get("lastTransitionTime"))
    return None


class ScheduleHandlers:
    def __init__(
        self,
        config: Settings,
        rds: Rds,
        *,
        api: TaskApi | None = None,
        cache: SnapshotCache | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        identities: Identities | None = None,
    ) -> None:
        self.config, self.clock, self.identities = config, clock, identities
        self.tenancy = Tenancy.parse(config.tenancy)
        self.accounts = identities or Identities(sts_region=config.default_region or None)  # account_of only
        self.api = api or TaskApi(timeout=config.aws_timeout)
        # uid -> (when a tick last did the work, the due time and the export request it saw): ticks in between
        # only read the clock.
        self._looked: dict[str, tuple[datetime, datetime | None, str | None]] = {}
        self._forgot = datetime.min.replace(tzinfo=UTC)  # when entries older than a poll were last dropped
        # One listing per source per poll, shared by its schedules.
        self.cache = cache or SnapshotCache(rds, config.poll_interval, wait=2 * config.aws_timeout)

    def register(self, registry: kopf.OperatorRegistry) -> None:
        # The timer runs every tick interval so that a due time is met within it (not up to a poll interval
        # late: a startingDeadlineSeconds below the poll interval would skip most due times); a tick does the
        # work (one list of its children, plus, when due or in trigger mode, one shared snapshot listing) only
        # once per poll interval, at a new due time, or when an export is asked for; otherwise it reads the clock.
        interval = self.config.tick_interval  # timers without a finalizer: see spawning.py
        registry._spawning.append(
            spawning.timer(
                self.tick, "schedule", plural=SCHEDULE_PLURAL, when=None, initial_delay=None, interval=interval
            )
        )
        # The TTL check is a clock comparison (no API call until it expires): a short interval costs nothing.
        registry._spawning.append(
            spawning.timer(
                self.expire, "ttl", when=finished_with_ttl, initial_delay=None, interval=self.config.tick_interval
            )
        )
        logging.getLogger("kopf.objects").addFilter(lambda r: not r.getMessage().startswith(_QUIET))

    # -- schedules --------------------------------------------------------------------------------------------

    def tick(self, body: kopf.Body, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
        meta = body.metadata
        name, namespace, uid = meta.name or "", meta.namespace or "", meta.uid or ""
        now = self.clock()
        try:
            parsed = sch.parse_spec(spec, default_region=self.config.default_region)
        except sch.ScheduleError as exc:
            self._write(body, patch, {}, ("False", exc.reason, str(exc)), warn=True)
            return
        created = st.parse_time(meta.get("creationTimestamp")) or now
        requested = (meta.annotations or {}).get(sch.ANNOTATION_EXPORT_SNAPSHOT) or None
        when = sch.due(parsed, status, created, now)
        scheduled = when.scheduled if when is not None else None
        poll = timedelta(seconds=self.config.poll_interval)
        self._forget(now, poll)
        last = self._looked.get(uid)
        if last is not None and now - last[0] < poll and scheduled in (None, last[1]) and requested == last[2]:
            return  # between polls, and no new due time or request
        try:
            objects = self.api.list_tasks(namespace, f"{sch.LABEL_SCHEDULE_UID}={uid}")
        except Exception as exc:
            raise kopf.TemporaryError(f"cannot list the exports of this schedule: {exc}", delay=5) from exc
        owned = [o for o in objects if _owned_by(o, uid)]  # a label alone can be copied; the owner cannot
        children = [sch.child_from_object(o) for o in owned]
        snapshots, error, missing = None, None, False
        if when is not None or requested:
            try:
                identity = self._identity(namespace)
                self._check_source(namespace, parsed, identity)  # issue 23: no listing of another team's source
                snapshots = self.cache.get(
                    parsed.region, parsed.source_kind, parsed.source_id, parsed.snapshot_type, identity
                )
            except AwsError as exc:  # never a verdict: reported, tried again at the next poll
                error = f"{exc.operation or 'listing snapshots'}: {exc.code}: {exc.message}"
                missing = exc.code in SOURCE_NOT_FOUND_CODES
            except IdentityUnavailable as exc:
                error = f"the namespace's AWS identity is not usable now: {exc}"
            except _Refused as exc:
                error = str(exc)
        plan = sch.plan(
            parsed,
            name=name,
            namespace=namespace,
            uid=uid,
            created=created,
            status=status,
            children=children,
            snapshots=snapshots,
            now=now,
            snapshots_error=error,
            source_missing=missing,
            requested=requested,
        )
        uids = {c.name: c.uid for c in children}
        existed: set[str] = set()
        try:
            if plan.delete:  # delete a running export only once the API server would accept its successor
                for obj in plan.create:
                    self.api.create_task(obj, dry_run=True)
            for child in plan.delete:  # Replace, activeDeadlineSeconds: first (its deletionPolicy applies)
                self.api.delete_task(namespace, child, uids.get(child))
            for obj in plan.create:  # oldest first: if one fails, the status (watermark) is not written
                if not self.api.create_task(obj):
                    existed.add(obj["metadata"]["name"])
                    logger.info("%s/%s: %s exists already", namespace, name, obj["metadata"]["name"])
        except ApiError as exc:
            if exc.code in (400, 422):  # the API server refuses the export the template makes: say so, once
                message = f"the export for this snapshot was refused: {exc}"
                self._write(body, patch, {}, ("False", "ExportRefused", message[:1000]), warn=True)
                self._looked[uid] = (now, scheduled, requested)  # tried again at the next poll, not every tick
                return
            raise kopf.TemporaryError(f"cannot create or delete exports: {exc}", delay=5) from exc
        except Exception as exc:
            raise kopf.TemporaryError(f"cannot create or delete exports: {exc}", delay=5) from exc
        for child in plan.prune:
            try:
                self.api.delete_task(namespace, child, uids.get(child))
            except Exception as exc:  # the next poll prunes it
                logger.warning("%s/%s: cannot delete %s: %s", namespace, name, child, exc)
        if plan.clear_request:  # carried out or refused (an Event says which): the user may ask again
            patch.setdefault("metadata", {}).setdefault("annotations", {})[sch.ANNOTATION_EXPORT_SNAPSHOT] = None
        fields = {**plan.status, "source": _source(parsed), "when": _when(spec)}
        self._write(body, patch, fields, plan.ready, warn=plan.ready[0] == "False")
        # created before a crash or a lagging status: already told
        events.post(body, (e for e in plan.events if e.child not in existed), logger)
        self._looked[uid] = (now, scheduled, requested)  # only after success: a retry after an error works again

    def _forget(self, now: datetime, poll: timedelta) -> None:
        """Drop, once per poll, what ticks saw more than a poll ago: such an entry changes nothing (the tick works
        again), and a deleted schedule's would otherwise stay for ever. Ticks run on several threads: ``list``
        copies the items at once, and an entry written meanwhile into the old dict costs at most one more look."""
        if now - self._forgot < poll:
            return
        self._forgot = now
        self._looked = {uid: seen for uid, seen in list(self._looked.items()) if now - seen[0] < poll}

    def _identity(self, namespace: str) -> Identity | None:
        """The namespace's AWS identity (as its exports run), or None: the operator's own (no mapping)."""
        if self.identities is None:
            return None
        # usable, not resolve: a namespace whose own AssumeRole is refused gets no listing another namespace of
        # the same role fetched (the cache is shared by role).
        resolved = self.identities.usable(namespace)
        if isinstance(resolved, Refusal):
            raise _Refused(f"{resolved.reason}: {resolved.message}")
        return resolved

    def _check_source(self, namespace: str, parsed: sch.ScheduleSpec, identity: Identity | None) -> None:
        """Refuse (before any listing) a source outside the namespace's tenancy grant: its DB instance or cluster ARN
        must match ``sourceArns`` (and its account and region the grant's)."""
        if self.tenancy.grants is None:
            return
        account = self.accounts.account_of(identity or OPERATOR)  # the role's, or GetCallerIdentity (cached)
        arn = database_arn(parsed.region, account, parsed.source_kind, parsed.source_id)
        refusal = self.tenancy.source_refusal(namespace, arn)
        if refusal is not None:
            raise _Refused(f"NotPermitted: {refusal}")

    def _write(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        fields: Mapping[str, Any],
        ready: tuple[str, str, str],
        *,
        warn: bool,
    ) -> None:
        """Patch what changed; a Warning Event when the Ready condition turns to a new problem (not every poll)."""
        current = body.status
        previous: Mapping[str, Any] = next(
            (c for c in current.get("conditions") or [] if c.get("type") == sch.READY), {}
        )
        desired: dict[str, Any] = dict(fields)
        desired["conditions"] = st.merge_conditions(
            current.get("conditions"),
            [st.Condition(sch.READY, *ready)],
            now=self.clock(),
            generation=body.metadata.get("generation"),
        )
        desired["observedGeneration"] = body.metadata.get("generation")
        for key, value in st.status_patch(current, desired).items():
            patch.status[key] = value
        if warn and (previous.get("reason"), previous.get("message")) != ready[1:]:
            kopf.event(body, type="Warning", reason=ready[1], message=ready[2])
            logger.warning("%s/%s: %s: %s", body.metadata.namespace, body.metadata.name, ready[1], ready[2])

    # -- ttlSecondsAfterFinished ------------------------------------------------------------------------------

    def expire(self, body: kopf.Body, spec: kopf.Spec, status: kopf.Status, **_: Any) -> None:
        ttl, end = spec.get("ttlSecondsAfterFinished"), finished_at(status)
        meta = body.metadata
        if ttl is None or end is None or meta.get("deletionTimestamp") or self.clock() < end + timedelta(seconds=ttl):
            return
        try:
            self.api.delete_task(meta.namespace or "", meta.name or "", meta.uid)
        except Exception as exc:
            raise kopf.TemporaryError(f"cannot delete after ttlSecondsAfterFinished: {exc}", delay=5) from exc
        logger.info("%s/%s: deleted %ss after it finished (ttlSecondsAfterFinished)", meta.namespace, meta.name, ttl)


class _Refused(Exception):
    """The identity mapping gives the namespace no AWS identity: no listing (the exports would be refused too)."""


def register(
    registry: kopf.OperatorRegistry,
    config: Settings,
    observe: Callable[[str, str, float], None],
    identities: Identities | None = None,
) -> None:
    """Schedules and TTLs, with their own RDS gateway; snapshots are listed as the namespace's identity (the one
    its exports run as) when an identity mapping is configured."""
    rds = Rds(observe=observe, timeout=config.aws_timeout, identities=identities)
    ScheduleHandlers(config, rds, identities=identities).register(registry)


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def _source(spec: sch.ScheduleSpec) -> str:
    if spec.source_kind == "instance":
        return spec.source_id
    return f"cluster/{spec.source_id}" + (" (live)" if spec.source_kind == "live" else "")


def _when(spec: Mapping[str, Any]) -> str:
    if spec.get("trigger"):
        return str(spec["trigger"])
    zone = spec.get("timeZone")
    return f"{spec.get('schedule')} ({zone})" if zone else str(spec.get("schedule"))
