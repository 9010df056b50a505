"""Liveness and readiness, served on one port for the whole life of the process (standby and leader alike).

- ``GET <health endpoint path>`` (``/healthz``), liveness: the process answers and, once kopf runs, its event
  loop runs a callback within ``LOOP_TIMEOUT``. A standby answers 200 ``standby``.
- ``GET /readyz``, readiness: this replica is connected and useful. A standby is Ready as a standby (200
  ``standby``): it is healthy and will take over, and a rollout should not wait for it to lead. A leader (or the
  single replica without leader election) is Ready while kopf runs (between its startup and cleanup) and a
  light API call -- a one-item list of the watched resource, with the operator's own credentials and RBAC,
  every ``period`` seconds -- succeeded within the last ``2 * period``. So a replica whose API server goes away
  turns not Ready within ``2 * period`` and Ready again within ``period`` after it returns.

Why a call of our own: kopf exposes no state of its watch streams (they are internal tasks that reconnect on
their own, and ``@kopf.on.probe`` handlers only feed kopf's single liveness path), and a quiet watch stream
carries no traffic, so silence cannot tell "nothing happened" from "disconnected". The list call exercises what
the watch streams need -- the API server, etcd behind it, our token and our ``list`` permission.
kopf's own liveness server is not used: it serves one path only, and one server for both paths also avoids the
moment at which a standby's server closes before kopf's opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import kopf

from rds_export_operator.api.names import GROUP, PLURAL, VERSION
from rds_export_operator.runtime.kubeapi import KubeApi

logger = logging.getLogger(__name__)

READINESS_PATH = "/readyz"
LOOP_TIMEOUT = 3.0  # seconds kopf's event loop may take to run a callback before the process counts as hung


def readiness_check_path(namespaces: tuple[str, ...]) -> str:
    """A one-item list of our resource where the operator watches (a pattern: cluster-wide discovery instead)."""
    plain = [n for n in namespaces if not any(c in n for c in "*?[!")]
    if plain:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{plain[0]}/{PLURAL}?limit=1"
    if namespaces:
        return f"/apis/{GROUP}/{VERSION}"
    return f"/apis/{GROUP}/{VERSION}/{PLURAL}?limit=1"


def api_check(api: KubeApi, namespaces: tuple[str, ...]) -> Callable[[float], object]:
    path = readiness_check_path(namespaces)
    return lambda timeout: api.request("GET", path, timeout=timeout)


class Probes:
    """What the two endpoints answer, fed by leader election (``role``), kopf (``running``) and the API check."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period, self.clock = period, clock
        self.role = "starting"  # then "standby", "leader", or "single" without leader election
        self.loop: asyncio.AbstractEventLoop | None = None
        self.running = False  # kopf between its startup and cleanup
        self.api_ok_at: float | None = None  # our clock when the last successful API check started

    def register(self, registry: kopf.OperatorRegistry) -> None:
        """kopf's startup and cleanup mark when this replica does its work."""

        @kopf.on.startup(registry=registry)
        def probes_kopf_started(**_: Any) -> None:
            self.running = True

        @kopf.on.cleanup(registry=registry)
        def probes_kopf_stopping(**_: Any) -> None:
            self.running = False

    def loop_responds(self) -> bool:
        loop, ran = self.loop, threading.Event()
        if loop is None or not loop.is_running():
            return True  # kopf has not started (standby, start-up) or has stopped: nothing to hang
        try:
            loop.call_soon_threadsafe(ran.set)
        except RuntimeError:  # closed meanwhile
            return True
        return ran.wait(LOOP_TIMEOUT)

    def liveness(self) -> tuple[int, str]:
        if not self.loop_responds():
            return 500, f"event loop did not respond within {LOOP_TIMEOUT:.0f}s"
        return 200, "standby" if self.role == "standby" else "ok"

    def readiness(self) -> tuple[int, str]:
        if self.role == "standby":
            return 200, "standby"
        if not self.running:
            return 503, f"not running ({self.role})"
        if self.api_ok_at is None:
            return 503, "API server not reached yet"
        age = self.clock() - self.api_ok_at
        if age > 2 * self.period:
            return 503, f"API server not reached for {age:.0f}s"
        return 200, "ok"

    def wants_api_check(self) -> bool:
        return self.role in ("leader", "single")


def check_api(probes: Probes, call: Callable[[float], object], stop: threading.Event) -> None:
    """One API call (bounded by the period) every ``period``, at a fixed rate; a success records its start."""
    while not stop.is_set():
        started = probes.clock()
        if probes.wants_api_check():
            try:
                call(probes.period)
                probes.api_ok_at = started
            except Exception as exc:
                logger.debug("readiness API check failed: %s: %s", type(exc).__name__, exc)
        stop.wait(max(0.0, started + probes.period - probes.clock()))


@contextlib.contextmanager
def serving(endpoint: str, probes: Probes, api_call: Callable[[float], object] | None) -> Iterator[None]:
    """Serve liveness on ``endpoint`` (empty: nothing) and readiness on /readyz of the same port until the end."""
    if not endpoint:
        yield
        return
    url = urlparse(endpoint)
    answers = {url.path or "/": probes.liveness, READINESS_PATH: probes.readiness}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = answers.get(self.path.split("?")[0])
            code, body = answer() if answer else (404, "not found")
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(f"{body}\n".encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 80), Handler)
    server.daemon_threads = True
    stop = threading.Event()
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    if api_call is not None:
        threading.Thread(target=check_api, args=(probes, api_call, stop), name="readiness", daemon=True).start()
    try:
        yield
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
