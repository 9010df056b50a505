"""kopf handlers only: each reads the object, calls the reconciler and applies its Result."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf

from rds_export_operator import status as st
from rds_export_operator.metrics import Metrics
from rds_export_operator.polling import Poller
from rds_export_operator.rds import Rds
from rds_export_operator.reconcile import Reconciler, Result, has_task
from rds_export_operator.settings import ANNOTATION_PREFIX, FINALIZER, GROUP, PLURAL, VERSION, Settings
from rds_export_operator.spec import ExportSpec, SpecError, parse_spec
from rds_export_operator.tenancy import Tenancy


def register(registry: kopf.OperatorRegistry, config: Settings, rds: Rds, metrics: Metrics) -> None:
    tenancy = Tenancy.parse(config.tenancy)
    if config.polling == "coalesced":
        poller = Poller(rds, config.poll_interval, config.max_concurrent_exports)
        reconciler = Reconciler(poller, config, slots=poller)
        tick = config.tick_interval
    else:
        reconciler = Reconciler(rds, config)
        tick = config.poll_interval
    rng = random.Random()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=ANNOTATION_PREFIX)
        settings.watching.server_timeout = config.watch_server_timeout
        settings.watching.client_timeout = config.watch_client_timeout
        settings.execution.max_workers = config.max_workers
        # Our resource is known: no CRD discovery watch, which least-privilege RBAC does not (and need not) allow.
        settings.scanning.disabled = True

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
        # In a pod: the ServiceAccount token; elsewhere: $KUBECONFIG. No API client library needed.
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is None:
            return None
        # kopf's own session has no connection limit: one TLS connection (~0.3 MiB) per request in flight,
        # which at 1,000 objects starting together meant ~3,000 connections and ~1 GiB RSS.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.api_connections, ssl=info.as_ssl_context()),
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

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="track")
    def track(event: kopf.RawEvent, uid: str, status: kopf.Status, **_: Any) -> None:
        deleted = event.get("type") == "DELETED"
        metrics.tracker.observe(uid, status.get("status"), deleted=deleted)
        if deleted or has_task(status):
            reconciler.forget(uid)  # no longer waiting for an export slot, nor a start in flight

    def first_delay(status: Mapping[str, Any], **_: Any) -> float:
        # New objects start at once; known tasks spread their polls over one interval (no stampede on restart).
        return rng.uniform(0, tick) if has_task(status) else 0.0

    def unfinished(status: Mapping[str, Any], **_: Any) -> bool:
        return not st.is_finished(status)

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="sync",
        interval=tick,
        initial_delay=first_delay,
        when=unfinished,
    )
    def sync(body: kopf.Body, status: kopf.Status, patch: kopf.Patch, retry: int = 0, **_: Any) -> None:
        spec = _spec(body, config, tenancy, patch)
        if spec is None:
            return
        meta = body.metadata
        result = reconciler.sync(
            spec, status, attempt=retry, uid=meta.uid or "", created=str(meta.get("creationTimestamp", ""))
        )
        _apply(result, spec, body, patch, metrics)
        if result.retry_after is not None:
            raise kopf.TemporaryError(_synced_message(result), delay=result.retry_after)

    def cancels(spec: kopf.Spec, status: Mapping[str, Any], **_: Any) -> bool:
        return (
            spec.get("managementPolicy", "Create") == "Create"
            and spec.get("deletionPolicy", "Cancel") == "Cancel"
            and not st.is_finished(status)
        )

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="cancel", when=cancels)
    def cancel(body: kopf.Body, status: kopf.Status, patch: kopf.Patch, retry: int = 0, **_: Any) -> None:
        spec = _spec(body, config, tenancy, patch)
        if spec is None:
            return
        result = reconciler.cancel(spec, status, attempt=retry)
        _apply(result, spec, body, patch, metrics)
        if not result.done:
            raise kopf.TemporaryError("waiting for AWS to finish canceling", delay=result.retry_after or 1.0)


def _synced_message(result: Result) -> str:
    for cond in result.status.get("conditions", []):
        if cond.type == st.SYNCED:
            return f"{cond.reason}: {cond.message}"
    return "retrying"


def _spec(body: kopf.Body, config: Settings, tenancy: Tenancy, patch: kopf.Patch) -> ExportSpec | None:
    """The typed spec, or None after reporting why it cannot be acted on (a terminal condition and an Event)."""
    meta = body.metadata
    namespace = meta.namespace or ""
    try:
        spec = parse_spec(
            body.spec,
            namespace=namespace,
            name=meta.name or "",
            uid=meta.uid or "",
            default_region=config.default_region,
        )
        reason, message = "NotPermitted", tenancy.refusal(namespace, spec)
    except SpecError as exc:
        reason, message = "InvalidSpec", str(exc)
    if message is None:
        return spec
    desired: dict[str, Any] = {"exportTaskIdentifier": spec.identifier} if reason == "NotPermitted" else {}
    desired["conditions"] = [
        st.Condition(st.COMPLETE, "False", reason),
        st.Condition(st.FAILED, "True", reason, message),
        st.Condition(st.SYNCED, "False", reason, message),
    ]
    _write(desired, body, patch)
    kopf.warn(body, reason=reason, message=message)
    return None


def _apply(result: Result, spec: ExportSpec, body: kopf.Body, patch: kopf.Patch, metrics: Metrics) -> None:
    desired = {"exportTaskIdentifier": spec.identifier, **result.status}
    if desired.get("status") == st.QUEUED:
        desired["queuedSince"] = body.status.get("queuedSince") or st.rfc3339(datetime.now(UTC))
    elif "status" in desired:
        desired["queuedSince"] = None
    _write(desired, body, patch)
    for cond in result.status.get("conditions", []):
        if cond.type == st.SYNCED and cond.status == "False":
            metrics.reconcile_errors.labels(cond.reason).inc()
    for event in result.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        logging.getLogger(__name__).info(
            "%s/%s: %s: %s", body.metadata.namespace, body.metadata.name, event.reason, event.message
        )


def _write(desired: dict[str, Any], body: kopf.Body, patch: kopf.Patch) -> None:
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
