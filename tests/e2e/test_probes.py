"""Probes on the real control plane: readiness follows the API server, liveness follows the process."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from localdev.controlplane import ControlPlane, free_port
from localdev.stack import OperatorProcess
from localdev.waiting import wait_until

PERIOD = 1.0  # --readiness-period in these tests


def probe(url: str) -> tuple[int, str]:
    """Status and body; 0 when nothing answers (the process is gone or not listening yet)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


class Probed:
    """An operator process with its health endpoint on a free port."""

    def __init__(self, factory: Callable[..., OperatorProcess], *args: str) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.op = factory(f"--health-endpoint={self.base}/healthz", f"--readiness-period={PERIOD}", *args)

    def live(self) -> tuple[int, str]:
        return probe(f"{self.base}/healthz")

    def ready(self) -> tuple[int, str]:
        return probe(f"{self.base}/readyz")


def test_readiness_follows_the_api_server_and_liveness_stays(
    control_plane: ControlPlane, operator_factory: Callable[..., OperatorProcess]
) -> None:
    replica = Probed(operator_factory)
    wait_until(lambda: replica.ready() == (200, "ok"), timeout=60, what="the operator to be Ready")
    assert replica.live() == (200, "ok")

    control_plane.stop_component("kube-apiserver", kill=True)  # gone at once, as on a network partition
    try:
        stopped = time.monotonic()
        wait_until(
            lambda: replica.ready()[0] == 503, timeout=15, what="not Ready without an API server", max_interval=0.2
        )
        took = time.monotonic() - stopped
        status, body = replica.ready()
        assert status == 503
        assert "API server not reached" in body
        assert took <= 2 * PERIOD + 1.5, f"not Ready only after {took:.1f}s"  # ~2 periods, plus probing slack
        assert replica.live() == (200, "ok")  # the process and its loop are fine: no restart for this
    finally:
        control_plane.start_component("kube-apiserver")  # returns once the API server's /readyz answers ok
    started = time.monotonic()
    wait_until(lambda: replica.ready() == (200, "ok"), timeout=30, what="Ready again with the API server back")
    back = time.monotonic() - started
    assert back <= PERIOD + 1.5, f"Ready only {back:.1f}s after the API server"
    print(f"not Ready {took:.1f}s after kube-apiserver was killed; Ready again {back:.1f}s after it answered")
    assert replica.live() == (200, "ok")
    assert replica.op.proc is not None and replica.op.proc.poll() is None
