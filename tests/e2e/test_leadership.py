"""Leader election on the real control plane: a leader that cannot renew stops, and the standby takes over."""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path

import kopf
import pytest

from e2e.conftest import RELEASE, RELEASE_NAMESPACE, OperatorFactory
from e2e.test_probes import Probed
from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.waiting import wait_until
from rds_export_operator.runtime.kubeapi import KubeApi
from rds_export_operator.runtime.leader import HttpLeaseApi

LEASE_DURATION, RENEW_DEADLINE = 6.0, 4.0
# The one Lease the chart's leader-election Role allows (get/update by name), in the release namespace.
ELECTION = [
    "--leader-election",
    f"--leader-election-namespace={RELEASE_NAMESPACE}",
    f"--leader-election-name={RELEASE}",
    f"--lease-duration={LEASE_DURATION}",
    f"--renew-deadline={RENEW_DEADLINE}",
    "--retry-period=0.5",
]


def lease_spec(kubectl: Kubectl) -> dict[str, object]:
    lease = kubectl.get_or_none("lease", RELEASE, RELEASE_NAMESPACE)
    return dict((lease or {}).get("spec", {}))


def test_a_leader_that_cannot_renew_exits_1_and_the_standby_takes_over(
    control_plane: ControlPlane, kubectl: Kubectl, operator_factory: OperatorFactory
) -> None:
    a = Probed(operator_factory, *ELECTION, "--identity=renewer-a")
    wait_until(lambda: lease_spec(kubectl).get("holderIdentity") == "renewer-a", timeout=30, what="a to lead")
    b = Probed(operator_factory, *ELECTION, "--identity=renewer-b")
    wait_until(lambda: b.ready() == (200, "standby"), timeout=30, what="b Ready as a standby")
    assert b.live() == (200, "standby")
    wait_until(lambda: a.ready() == (200, "ok"), timeout=30, what="a Ready as the leader")
    transitions = int(str(lease_spec(kubectl).get("leaseTransitions") or 0))

    control_plane.stop_component("kube-apiserver", kill=True)
    try:
        killed = time.monotonic()
        assert a.op.proc is not None and b.op.proc is not None
        wait_until(
            lambda: a.op.proc.poll() is not None,  # type: ignore[union-attr]
            timeout=20,
            what="the leader to stop",
            max_interval=0.2,  # the time it took is asserted below
        )
        took = time.monotonic() - killed
        assert a.op.proc.returncode == 1
        assert "lost the leader lease (no renewal" in a.op.log()
        assert "leadership lost: exiting with code 1" in a.op.log()
        # It stopped before any standby could have taken over: no two leaders even for a moment.
        assert took < LEASE_DURATION, f"the leader stopped only {took:.1f}s after its last chance to renew"
        assert b.op.proc.poll() is None
        assert b.ready() == (200, "standby")
    finally:
        control_plane.start_component("kube-apiserver")
    wait_until(lambda: lease_spec(kubectl).get("holderIdentity") == "renewer-b", timeout=30, what="b to take over")
    wait_until(lambda: b.ready() == (200, "ok"), timeout=30, what="b Ready as the leader")
    assert int(str(lease_spec(kubectl).get("leaseTransitions"))) == transitions + 1
    print(f"the leader exited 1 {took:.1f}s after the API server went away")

    assert b.op.stop() == 0  # a clean stop hands the Lease back at once
    assert lease_spec(kubectl).get("holderIdentity") in ("", None)


def test_the_service_account_token_file_is_read_for_each_request(
    control_plane: ControlPlane, kubectl: Kubectl, operator_kubeconfig: Path, tmp_path: Path
) -> None:
    # As in a pod, where the projected token rotates under a running process.
    token = tmp_path / "token"
    token.write_text("expired-token\n")
    info = kopf.ConnectionInfo(server=control_plane.url, ca_path=str(control_plane.ca_file))
    lease = HttpLeaseApi(KubeApi(info, token_file=token), RELEASE_NAMESPACE, RELEASE)
    with pytest.raises(urllib.error.HTTPError) as refused:
        lease.get(timeout=5)
    assert refused.value.code == 401
    token.write_text(kubectl.run("create", "token", RELEASE, "-n", RELEASE_NAMESPACE, "--duration=10m").strip())
    lease.get(timeout=5)  # the same client, authenticated with the new token: no 401
