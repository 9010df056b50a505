"""Liveness and readiness answers, the readiness API check, and the server that serves both on one port."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from localdev.controlplane import free_port
from rds_export_operator.runtime import health
from rds_export_operator.runtime.health import Probes, check_api, readiness_check_path, serving
from unit.fakes import Clock


@pytest.fixture
def clock() -> Clock[float]:
    return Clock(500.0)


@pytest.fixture
def probes(clock: Clock) -> Probes:
    return Probes(period=5, clock=clock)


@pytest.fixture
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def test_a_standby_is_ready_and_live_as_a_standby(probes: Probes) -> None:
    probes.role = "standby"
    assert probes.readiness() == (200, "standby")
    assert probes.liveness() == (200, "standby")


@pytest.mark.parametrize("role", ["leader", "single"])
def test_a_worker_is_ready_only_while_kopf_runs_and_the_api_answered_recently(
    probes: Probes, clock: Clock, role: str
) -> None:
    probes.role = role
    assert probes.readiness()[0] == 503  # kopf not started yet
    probes.running = True
    assert probes.readiness() == (503, "API server not reached yet")
    probes.api_ok_at = clock.now
    assert probes.readiness() == (200, "ok")
    clock.now += 10  # two periods: still Ready (one missed check is tolerated)
    assert probes.readiness() == (200, "ok")
    clock.now += 0.5
    assert probes.readiness() == (503, "API server not reached for 10s")
    probes.api_ok_at = clock.now  # the API server is back
    assert probes.readiness() == (200, "ok")
    probes.running = False  # kopf's cleanup: stopping
    assert probes.readiness()[0] == 503


def test_liveness_checks_that_kopfs_loop_runs_callbacks(
    probes: Probes, running_loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes.role, probes.loop = "leader", running_loop
    assert probes.liveness() == (200, "ok")
    monkeypatch.setattr(health, "LOOP_TIMEOUT", 0.2)
    release = threading.Event()
    running_loop.call_soon_threadsafe(release.wait, 10)  # a blocking call on the loop: it hangs
    try:
        code, body = probes.liveness()
    finally:
        release.set()
    assert code == 500
    assert "event loop" in body


def test_liveness_before_kopf_starts_needs_no_loop(probes: Probes) -> None:
    probes.loop = asyncio.new_event_loop()  # created, not running yet
    try:
        assert probes.liveness() == (200, "ok")
    finally:
        probes.loop.close()


@pytest.mark.parametrize(
    ("role", "checks"), [("starting", False), ("standby", False), ("leader", True), ("single", True)]
)
def test_only_a_replica_that_works_checks_the_api(probes: Probes, role: str, checks: bool) -> None:
    probes.role = role
    assert probes.wants_api_check() is checks


def test_the_api_check_records_only_successes(probes: Probes, clock: Clock) -> None:
    probes.role, probes.period = "leader", 0.01
    answers: list[BaseException | None] = [None, ConnectionRefusedError(), None]
    seen: list[float | None] = []
    stop = threading.Event()

    def call(timeout: float) -> object:
        assert timeout == probes.period  # a check never outlives its period
        seen.append(probes.api_ok_at)
        clock.now += 1
        answer = answers.pop(0)
        if not answers:
            stop.set()
        if answer:
            raise answer
        return {}

    checker = threading.Thread(target=check_api, args=(probes, call, stop))
    checker.start()
    checker.join(timeout=10)
    assert not checker.is_alive()
    assert seen == [None, 500.0, 500.0]  # the failure (at 501) changed nothing
    assert probes.api_ok_at == 502.0


@pytest.mark.parametrize(
    ("namespaces", "path"),
    [
        ((), "/apis/rdsexport.dev/v1alpha1/rdsexporttasks?limit=1"),
        (("team-a", "team-b"), "/apis/rdsexport.dev/v1alpha1/namespaces/team-a/rdsexporttasks?limit=1"),
        (("team-*", "ops"), "/apis/rdsexport.dev/v1alpha1/namespaces/ops/rdsexporttasks?limit=1"),
        (("team-*",), "/apis/rdsexport.dev/v1alpha1"),
    ],
)
def test_the_readiness_check_lists_where_the_operator_watches(namespaces: tuple[str, ...], path: str) -> None:
    assert readiness_check_path(namespaces) == path


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_both_paths_on_one_port_and_nothing_else(probes: Probes) -> None:
    port = free_port()
    probes.role = "standby"
    with serving(f"http://127.0.0.1:{port}/healthz", probes, None):
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, "standby\n")
        assert get(f"http://127.0.0.1:{port}/readyz") == (200, "standby\n")
        probes.role = "leader"
        assert get(f"http://127.0.0.1:{port}/readyz?verbose") == (503, "not running (leader)\n")
        assert get(f"http://127.0.0.1:{port}/metrics")[0] == 404
    with pytest.raises(urllib.error.URLError):  # the port is closed afterwards
        get(f"http://127.0.0.1:{port}/healthz")


def test_no_endpoint_serves_nothing(probes: Probes) -> None:
    with serving("", probes, lambda _: {}):
        assert probes.api_ok_at is None
