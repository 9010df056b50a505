"""Leader election on a coordination.k8s.io Lease, so that ``replicas: 2`` is safe.

kopf's peering is not leader election (instances of equal priority all freeze), so only the holder of the Lease
runs kopf at all; a standby waits until the Lease expires and takes over. The leader renews every
``retry_period``; if it cannot renew within ``renew_deadline`` it stops reconciling at once (the process exits
and is restarted as a standby), which is before ``lease_duration`` ends and a standby may take over.
The same algorithm as client-go's leaderelection, over plain HTTPS with the operator's own credentials.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

logger = logging.getLogger(__name__)


class LeaseConflict(Exception):
    """Someone else wrote the Lease since we read it (HTTP 409): read again."""


class LeaseApi:
    """GET / POST / PUT of one Lease, authenticated as kopf would be (ServiceAccount, else $KUBECONFIG)."""

    def __init__(self, info: kopf.ConnectionInfo, namespace: str, name: str) -> None:
        self.url = f"{info.server.rstrip('/')}/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name, self.namespace = name, namespace
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if info.token:
            self.headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        cadata = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        self.context = ssl.create_default_context(cafile=info.ca_path, cadata=cadata)
        if info.insecure:
            self.context.check_hostname, self.context.verify_mode = False, ssl.CERT_NONE
        if info.certificate_path and info.private_key_path:
            self.context.load_cert_chain(info.certificate_path, info.private_key_path)

    @classmethod
    def from_environment(cls, namespace: str, name: str) -> LeaseApi:
        settings = kopf.OperatorSettings()
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
        if info is None:
            raise RuntimeError("no Kubernetes credentials for leader election (no ServiceAccount, no KUBECONFIG)")
        return cls(info, namespace, name)

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=5, context=self.context) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as error:
            if error.code == 404 and method == "GET":
                return None
            if error.code == 409:
                raise LeaseConflict(error.read().decode(errors="replace")) from None
            raise

    def get(self) -> dict[str, Any] | None:
        return self._request("GET", f"{self.url}/{self.name}")

    def create(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }
        return self._request("POST", self.url, body)

    def replace(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        body = {**lease, "spec": spec}  # carries metadata.resourceVersion: optimistic concurrency
        return self._request("PUT", f"{self.url}/{self.name}", body)


def _micro_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def lease_is_free(spec: dict[str, Any], identity: str, now: datetime) -> bool:
    """Whether ``identity`` may take the Lease: it holds it, nobody does, or the holder's lease expired."""
    holder = spec.get("holderIdentity") or ""
    if holder in ("", identity):
        return True
    renewed = _parse_time(spec.get("renewTime")) or _parse_time(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or 0)
    return renewed is None or renewed + timedelta(seconds=duration) <= now


@dataclass
class LeaderElector:
    api: LeaseApi
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def try_acquire_or_renew(self) -> bool:
        """One attempt, as client-go does it; True if we hold the Lease afterwards."""
        now = self.clock()
        try:
            lease = self.api.get()
            if lease is None:
                self.api.create(self._spec(now, now, transitions=0))
                return True
            spec = lease.get("spec") or {}
            if not lease_is_free(spec, self.identity, now):
                return False
            ours = spec.get("holderIdentity") == self.identity
            acquired = _parse_time(spec.get("acquireTime")) if ours else now
            transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
            self.api.replace(lease, self._spec(acquired or now, now, transitions))
            return True
        except (LeaseConflict, urllib.error.URLError, OSError) as exc:
            logger.debug("lease attempt failed: %s", exc)
            return False

    def _spec(self, acquired: datetime, renewed: datetime, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": _micro_time(acquired),
            "renewTime": _micro_time(renewed),
            "leaseTransitions": transitions,
        }

    def acquire(self, stop: threading.Event) -> bool:
        """Block until we lead (True) or ``stop`` is set (False)."""
        logger.info("waiting to become the leader as %s", self.identity)
        while not stop.is_set():
            if self.try_acquire_or_renew():
                logger.info("became the leader as %s", self.identity)
                return True
            stop.wait(self.retry_period)
        return False

    def keep_renewing(self, on_lost: Callable[[], None], done: threading.Event) -> None:
        """Renew until ``done``; call ``on_lost`` if no renewal succeeded within the renew deadline."""
        last = time.monotonic()
        while not done.wait(self.retry_period):
            if self.try_acquire_or_renew():
                last = time.monotonic()
            elif time.monotonic() - last > self.renew_deadline:
                logger.error("lost the leader lease (no renewal for %.0fs); stopping", self.renew_deadline)
                on_lost()
                return

    def release(self) -> None:
        """Give the Lease up on a clean stop, so that a standby takes over at once instead of after expiry."""
        try:
            lease = self.api.get()
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
                self.api.replace(lease, spec)
                logger.info("released the leader lease")
        except (LeaseConflict, urllib.error.URLError, OSError) as exc:
            logger.warning("could not release the lease: %s", exc)
