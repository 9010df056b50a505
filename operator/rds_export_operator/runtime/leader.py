"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it, so ``replicas: 2`` is safe.

kopf's peering is not leader election (instances of equal priority all freeze), so only the holder of the Lease
runs kopf at all; a standby waits and takes over. The rules, as in client-go:

- Expiry is judged by the LOCAL monotonic time at which this replica last saw the Lease record change
  (resourceVersion or spec), plus the record's ``leaseDurationSeconds``. The holder's ``renewTime`` is written
  for humans and never compared with our clock: a holder whose clock is skewed but keeps renewing is never
  taken over, and a holder whose record stops changing is taken over one lease duration after we saw it last.
- Any exception in an attempt (HTTP errors, ``IncompleteRead``, bad JSON, odd fields...) is a failed attempt.
  The leader renews every ``retry_period``; each attempt is bounded by the time left before the renew deadline.
  Without a successful renew for ``renew_deadline`` (or on seeing another holder) it loses: ``on_lost`` is
  called once, kopf is stopped and the process exits 1 (restarted by Kubelet as a standby). Because
  ``renew_deadline < lease_duration``, it stops before a standby may take over; a watchdog ends the process if
  kopf's stop is slower than half the margin between the two.
- A clean stop releases the Lease (holder "", duration 1 s), so a standby takes over at once.

Why not the ``kubernetes`` package (37.0.2, ``kubernetes.leaderelection`` and ``kubernetes.aio.leaderelection``):
read and found lacking on exactly these points. Its ``LeaseLock`` catches only ``ApiException``: a connection
error, a timeout, ``IncompleteRead`` or bad JSON propagates out of ``renew_loop``, so the sync ``run()`` raises
without ``onstopped_leading`` while the leading thread keeps working, and the asyncio ``run()`` never reaches
``task.cancel()`` -- the two-leaders bug this module fixes. It judges expiry and the renew deadline with
``time.time()`` (a wall-clock step moves both), does not bound an attempt by the renew deadline (a hung request
delays the verdict), has no release on a clean stop and no way to stop a waiting standby, does not count
``leaseTransitions``, and rejects ``retry_period < 1``. Wrapping it would replace everything but the record
comparison, and it would add about ten packages (pydantic, requests, oauthlib, websocket-client, ...) to the
image. It does re-read a rotated token in a pod; here ``kubeapi`` does (the token file is read per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from rds_export_operator.runtime.health import Probes
from rds_export_operator.runtime.kubeapi import KubeApi, NotFound
from rds_export_operator.runtime.settings import Settings

logger = logging.getLogger(__name__)


class LeaseApi(Protocol):
    def get(self, timeout: float) -> dict[str, Any] | None: ...
    def create(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]: ...
    def replace(self, lease: dict[str, Any], spec: dict[str, Any], timeout: float) -> dict[str, Any]: ...


class HttpLeaseApi:
    """GET / POST / PUT of one Lease. A PUT carries the resourceVersion read: a concurrent writer gets a 409."""

    def __init__(self, api: KubeApi, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return dict(self.api.request("GET", f"{self.path}/{self.name}", timeout=timeout))
        except NotFound:
            return None

    def create(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        metadata = {"name": self.name, "namespace": self.namespace}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        return dict(self.api.request("POST", self.path, body, timeout=timeout))

    def replace(self, lease: dict[str, Any], spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        return dict(self.api.request("PUT", f"{self.path}/{self.name}", {**lease, "spec": spec}, timeout=timeout))


def micro_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    api: LeaseApi
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    request_timeout: float = 5.0
    clock: Callable[[], float] = time.monotonic  # judges expiry and deadlines
    wall: Callable[[], datetime] = lambda: datetime.now(UTC)  # only written into the Lease, never compared
    # Sleeps up to ``seconds`` unless the event is set; True if it is set. Tests pass a fake that moves the clock.
    wait: Callable[[threading.Event, float], bool] = lambda event, seconds: event.wait(seconds)
    _record: str | None = field(default=None, init=False)  # the last Lease record seen (or written) by us
    _observed_at: float = field(default=0.0, init=False)  # our clock when that record first appeared
    holder: str = field(default="", init=False)
    _duration: float = field(default=0.0, init=False)
    renewed_at: float = field(default=0.0, init=False)  # our clock when the last successful attempt started

    @property
    def is_leader(self) -> bool:
        return self.holder == self.identity

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        record = json.dumps([(lease.get("metadata") or {}).get("resourceVersion"), spec], sort_keys=True)
        if record == self._record:
            return
        holder = str(spec.get("holderIdentity") or "")
        if holder != self.holder:
            logger.info("the leader lease is held by %s", holder or "nobody")
        duration = spec.get("leaseDurationSeconds")
        self._record, self._observed_at, self.holder = record, self.clock(), holder
        self._duration = float(duration) if isinstance(duration, int | float) and duration > 0 else self.lease_duration

    def _spec(self, acquired: str | None, transitions: int) -> dict[str, Any]:
        now = micro_time(self.wall())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _attempt(self, timeout: float) -> bool:
        lease = self.api.get(timeout=timeout)
        if lease is None:
            self._observe(self.api.create(self._spec(None, 0), timeout=timeout))
            return True
        self._observe(lease)
        if self.holder and not self.is_leader and self.clock() < self._observed_at + self._duration:
            return False  # held by another replica, whose record changed less than a lease duration ago
        spec = lease.get("spec") or {}
        transitions = int(spec.get("leaseTransitions") or 0)
        if self.is_leader:
            spec = self._spec(str(spec.get("acquireTime") or ""), transitions)
        else:
            spec = self._spec(None, transitions + 1)
        self._observe(self.api.replace(lease, spec, timeout=timeout))
        return True

    def try_acquire_or_renew(self, timeout: float | None = None) -> bool:
        """One attempt; True if we hold the Lease afterwards. Never raises: any failure is a failed attempt."""
        started = self.clock()
        try:
            if not self._attempt(self.request_timeout if timeout is None else timeout):
                return False
            self.renewed_at = started  # others saw the write only after this: judging from here is conservative
            return True
        except Exception as exc:
            log = logger.warning if self.is_leader else logger.debug
            log("lease attempt failed: %s: %s", type(exc).__name__, exc)
            return False

    def acquire(self, stop: threading.Event) -> bool:
        """Block until we lead (True) or ``stop`` is set (False)."""
        logger.info("waiting to become the leader as %s", self.identity)
        while not stop.is_set():
            if self.try_acquire_or_renew():
                logger.info("became the leader as %s", self.identity)
                return True
            if self.wait(stop, self.retry_period):
                break
        return False

    def keep_renewing(self, on_lost: Callable[[], None], done: threading.Event) -> None:
        """Renew until ``done`` is set; otherwise call ``on_lost`` exactly once, whatever happens in here."""
        try:
            self._renew_until_lost(done)
        except BaseException:
            logger.exception("the lease renewal failed unexpectedly")
        if not done.is_set():
            on_lost()

    def _renew_until_lost(self, done: threading.Event) -> None:
        while True:
            left = self.renewed_at + self.renew_deadline - self.clock()
            if self.wait(done, min(self.retry_period, max(0.0, left))):
                return
            left = self.renewed_at + self.renew_deadline - self.clock()
            if left > 0 and self.try_acquire_or_renew(timeout=min(self.request_timeout, left)):
                continue
            if self.holder and not self.is_leader:
                logger.error("lost the leader lease to %s; stopping", self.holder)
                return
            if self.clock() - self.renewed_at >= self.renew_deadline:
                logger.error("lost the leader lease (no renewal for %.1fs); stopping", self.clock() - self.renewed_at)
                return

    def release(self) -> bool:
        """Give the Lease up on a clean stop, so that a standby takes over at once instead of after expiry."""
        if not self.is_leader:
            return True
        try:
            lease = self.api.get(timeout=self.request_timeout)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return True
            spec = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": micro_time(self.wall()),
            }
            self._observe(self.api.replace(lease, spec, timeout=self.request_timeout))
            logger.info("released the leader lease")
            return True
        except Exception as exc:
            logger.warning("could not release the leader lease: %s: %s", type(exc).__name__, exc)
            return False


@dataclass
class Leadership:
    """What ``main`` needs: whether to run kopf at all, the flag that stops it, and whether leadership was lost."""

    leading: bool = True  # False: stopped (SIGTERM) while still a standby; do not run kopf
    stop_flag: asyncio.Future[None] | None = None
    lost: threading.Event = field(default_factory=threading.Event)

    @property
    def exit_code(self) -> int:
        return 1 if self.lost.is_set() else 0


def _stop_kopf(loop: asyncio.AbstractEventLoop, flag: asyncio.Future[None]) -> None:
    def set_flag() -> None:
        if not flag.done():
            flag.set_result(None)

    with contextlib.suppress(RuntimeError):  # the loop is already closed: kopf has stopped anyway
        loop.call_soon_threadsafe(set_flag)


@contextlib.contextmanager
def leadership(config: Settings, loop: asyncio.AbstractEventLoop, probes: Probes) -> Iterator[Leadership]:
    """Without leader election: run at once. With it: wait as a standby (SIGTERM ends the wait), then lead with a
    renewing thread; on loss stop kopf (an asyncio flag: kopf waits on a threading.Event in an executor thread,
    which would block the loop's shutdown) and exit 1; on a clean exit release the Lease."""
    if not config.leader_election:
        probes.role = "single"
        yield Leadership()
        return
    api = HttpLeaseApi(KubeApi.from_environment(), config.leader_election_namespace, config.leader_election_name)
    elector = LeaderElector(
        api,
        identity=config.identity,
        lease_duration=config.lease_duration,
        renew_deadline=config.renew_deadline,
        retry_period=config.retry_period,
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    probes.role = "standby"
    try:
        leading = elector.acquire(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not leading:
        yield Leadership(leading=False)
        return
    probes.role = "leader"
    lead = Leadership(stop_flag=loop.create_future())
    assert lead.stop_flag is not None
    flag = lead.stop_flag
    # kopf's graceful stop waits up to 5 s for its tasks (and for running handlers); past half the margin before a
    # standby may take over, the process exits anyway.
    grace = (config.lease_duration - config.renew_deadline) / 2

    def exit_now() -> None:
        logger.error("kopf did not stop within %.1fs of losing the lease; exiting", grace)
        os._exit(1)

    def on_lost() -> None:
        lead.lost.set()
        _stop_kopf(loop, flag)
        watchdog = threading.Timer(grace, exit_now)
        watchdog.daemon = True
        watchdog.start()

    done = threading.Event()
    renewing = threading.Thread(target=elector.keep_renewing, args=(on_lost, done), name="lease", daemon=True)
    renewing.start()
    try:
        yield lead
    finally:
        done.set()
        renewing.join(timeout=elector.request_timeout + 1)  # no renew racing the release below
        if not lead.lost.is_set():
            elector.release()
