"""kopf wiring of the catalog: a timer for COMPLETE exports with ``spec.catalog`` whose table report is settled
and whose registration is not final for this generation, and a deletion handler for ``catalogDeletionPolicy:
Delete``. Sync handlers: the Glue and S3 calls run in kopf's thread pool. It writes only ``status.catalog`` and
the ``Cataloged`` condition.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from rds_export_operator.api import status as st
from rds_export_operator.api.names import GROUP, PLURAL, VERSION
from rds_export_operator.api.spec import SpecError, parse_object_spec
from rds_export_operator.aws.errors import AwsError
from rds_export_operator.aws.identity import Identities, Identity, IdentityUnavailable, Refusal
from rds_export_operator.aws.tenancy import Tenancy
from rds_export_operator.catalog.register import (
    CATALOGED,
    DELETE,
    REGISTERING,
    Catalog,
    CatalogSpec,
    Pass,
    Registrar,
    Where,
)
from rds_export_operator.exports.ownership import OWNED
from rds_export_operator.exports.reconcile import Event, Result
from rds_export_operator.runtime import events, spawning
from rds_export_operator.runtime.metrics import Metrics
from rds_export_operator.runtime.settings import Settings
from rds_export_operator.tables.report import Reader

logger = logging.getLogger(__name__)
SCHEDULE_KIND = "RdsExportSchedule"


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def needs_catalog(
    spec: Mapping[str, Any], status: Mapping[str, Any], body: kopf.Body, *, reports: bool = True, **_: Any
) -> bool:
    """spec.catalog set, the export COMPLETE and this namespace's (started or adopted: an Observe of another
    tenant's task registers nothing), its table report settled (or off: for the object, or for the operator,
    ``reports``), and no final registration for this generation of the spec."""
    if not spec.get("catalog") or status.get("status") != "COMPLETE" or status.get("ownership") not in OWNED:
        return False
    report_on = reports and spec.get("tableReport", "Enabled") != "Disabled"
    if report_on and (not _condition(status, "TablesComplete") or status.get("tablesPendingSince")):
        return False
    cond = _condition(status, CATALOGED)
    if not cond or cond.get("status") == "Unknown":
        return True
    return cond.get("observedGeneration") not in (None, body.metadata.get("generation"))


def needs_removal(spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> bool:
    """Only an object that registered tables with catalogDeletionPolicy Delete holds a finalizer for them."""
    catalog = spec.get("catalog") or {}
    return catalog.get("catalogDeletionPolicy") == DELETE and bool((status.get("catalog") or {}).get("database"))


def owner_of(body: kopf.Body) -> str:
    """Who registers: the schedule that controls this export (its Latest tables outlive each export), else the
    object itself."""
    meta = body.metadata
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == SCHEDULE_KIND:
            return f"{SCHEDULE_KIND}/{meta.namespace}/{ref.get('name')}"
    return f"RdsExportTask/{meta.namespace}/{meta.name}"


class CatalogHandlers:
    def __init__(
        self,
        config: Settings,
        glue: Catalog,
        s3: Reader,
        metrics: Metrics,
        identities: Identities | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.metrics, self.identities, self.clock = config, metrics, identities, clock
        self.registrar = Registrar(glue, s3, on_pass=self._count)
        self._horizon = self.registrar.policy.max_delay
        self.tenancy = Tenancy.parse(config.tenancy)
        # uid -> (Glue/S3 failures in a row, when the last was): kopf's ``retry`` also counts the passes that made
        # progress, which would start a throttled export's backoff at its maximum. Only registrations that are
        # failing are held, and one not tried again for twice the longest backoff (its object deleted, or no
        # longer asking for a catalog) is dropped: it would only have started the next backoff one step lower.
        self._failures: dict[str, tuple[int, float]] = {}
        self._forgot = clock()

    def register(self, registry: kopf.OperatorRegistry) -> None:
        registry._spawning.append(
            spawning.timer(self.catalog, "catalog", when=self.needs_catalog, initial_delay=1.0, interval=60.0)
        )
        kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="uncatalog", when=needs_removal)(self.remove)

    def needs_catalog(self, **kwargs: Any) -> bool:
        return needs_catalog(**kwargs, reports=self.config.table_report)

    def catalog(self, body: kopf.Body, patch: kopf.Patch, retry: int = 0, **_: Any) -> None:
        # Decide on one version of the body (kopf replaces a timer's body in place as events arrive).
        body = kopf.Body(cast(kopf.RawBody, copy.deepcopy(dict(body))))
        try:
            where = self._where(body)
        except IdentityUnavailable as exc:  # the identity mapping is loading or changing: not a verdict
            raise kopf.TemporaryError(f"catalog: {exc.message}", delay=min(300, 5 * 2**retry)) from exc
        if isinstance(where, Result):
            self._apply(where, body, patch)
            return
        spec = CatalogSpec.parse(body.spec.get("catalog") or {})
        refusal = self.tenancy.catalog_refusal(body.metadata.namespace or "", spec.database)
        if refusal:  # final for this generation: the spec (or the grant) must change
            self._apply(_final("NotGranted", refusal), body, patch)
            return
        uid = body.metadata.uid or ""
        failures = self._failures.get(uid, (0, 0.0))[0]
        result = self.registrar.register(spec, where, body.status, attempt=failures)
        self._apply(result, body, patch)
        cond = result.status["conditions"][0]
        if result.retry_after is not None and cond.reason != REGISTERING:
            self._failures[uid] = (failures + 1, self.clock())
        else:
            self._failures.pop(uid, None)
        self._forget()
        if result.retry_after is not None:
            raise kopf.TemporaryError(f"catalog: {cond.reason}: {cond.message}", delay=result.retry_after)

    def _forget(self) -> None:
        """Drop, at most once per longest backoff, the failures not renewed for twice that. Passes run on several
        threads: ``list`` copies the items at once; a failure counted meanwhile in the old dict is lost (harmless)."""
        now, horizon = self.clock(), self._horizon
        if now - self._forgot < horizon:
            return
        self._forgot = now
        self._failures = {uid: seen for uid, seen in list(self._failures.items()) if now - seen[1] < 2 * horizon}

    def remove(self, body: kopf.Body, retry: int = 0, **_: Any) -> None:
        self._failures.pop(body.metadata.uid or "", None)
        try:
            where = self._where(body)
        except IdentityUnavailable as exc:
            raise kopf.TemporaryError(f"catalog: {exc.message}", delay=min(300, 5 * 2**retry)) from exc
        if isinstance(where, Result):
            return  # nothing can be acted on: never block the deletion for it
        # The database the tables were registered in (status), not the spec's, which an edit may have changed.
        registered = str((body.status.get("catalog") or {}).get("database") or "")
        spec = replace(CatalogSpec.parse(body.spec.get("catalog") or {}), database=registered)
        refusal = self.tenancy.catalog_refusal(body.metadata.namespace or "", registered)
        if refusal:  # the grant no longer covers it: delete nothing there, never block the deletion for it
            kopf.event(body, type="Warning", reason="CatalogNotDeleted", message=refusal)
            return
        try:
            failed = self.registrar.remove(spec, where)
        except AwsError as error:
            raise kopf.TemporaryError(f"catalog: deleting tables: {error}", delay=min(300, 5 * 2**retry)) from error
        if failed:
            raise kopf.TemporaryError(f"catalog: Glue did not delete {', '.join(failed[:5])}", delay=30)
        kopf.event(body, type="Normal", reason="CatalogDeleted", message=f"tables deleted from {spec.database}")

    def _where(self, body: kopf.Body) -> Where | Result:
        meta, status = body.metadata, body.status
        try:
            spec = parse_object_spec(body.spec, meta, self.config.default_region)
        except SpecError as exc:
            return _final("InvalidSpec", str(exc))
        bucket = status.get("s3Bucket") or spec.s3_bucket_name
        if not bucket:
            return _final("NoBucket", "neither status nor spec names the export's bucket")
        prefix = status.get("s3Prefix") if "s3Prefix" in status else st.s3_prefix_as_stored(spec.s3_prefix)
        identifier = status.get("exportTaskIdentifier") or spec.identifier
        folder = f"{prefix.strip('/')}/{identifier}/" if prefix and prefix.strip("/") else f"{identifier}/"
        identity: Identity | None = None
        if self.identities is not None:
            resolved = self.identities.resolve(spec.namespace)
            if isinstance(resolved, Refusal):
                return _final("NoIdentity", resolved.message)
            identity = resolved
        snapshot_time = str(status.get("snapshotTime") or "")
        return Where(spec.region, str(bucket), folder, str(identifier), owner_of(body), identity, snapshot_time)

    def _count(self, done: Pass) -> None:
        for outcome, count in (
            ("created", done.created),
            ("adopted", done.adopted),
            ("repointed", done.repointed),
            ("left_out", len(done.left_out)),
        ):
            if count:
                self.metrics.catalog_tables.labels(outcome).inc(count)

    def _apply(self, result: Result, body: kopf.Body, patch: kopf.Patch) -> None:
        now = datetime.now(UTC)
        desired = dict(result.status)
        desired["conditions"] = st.merge_conditions(
            body.status.get("conditions"), desired["conditions"], now=now, generation=body.metadata.get("generation")
        )
        for key, value in st.status_patch(body.status, desired).items():
            patch.status[key] = value
        events.post(body, result.events, logger)


def _final(reason: str, message: str) -> Result:
    result = Result()
    result.status["conditions"] = [st.Condition(CATALOGED, "False", reason, message)]
    result.events.append(Event("Warning", f"Catalog{reason}", message))
    return result
