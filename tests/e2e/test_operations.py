"""Operating the operator: leader election failover with two replicas, and the metrics it serves."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from constants import PLURAL as KIND
from e2e.conftest import RELEASE, RELEASE_NAMESPACE, OperatorFactory, export_task, progress_is, status_is
from localdev.controlplane import free_port
from localdev.kube import Kubectl
from localdev.standin.server import StandInServer
from localdev.waiting import wait_until


def holder(kubectl: Kubectl) -> str | None:
    lease = kubectl.get_or_none("lease", RELEASE, RELEASE_NAMESPACE)
    return (lease or {}).get("spec", {}).get("holderIdentity")


def test_standby_takes_over_when_the_leader_is_killed(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    # The one Lease the chart's leader-election Role allows (get/update by name), in the release namespace.
    election = [
        "--leader-election",
        f"--leader-election-namespace={RELEASE_NAMESPACE}",
        f"--leader-election-name={RELEASE}",
        "--lease-duration=4",
        "--renew-deadline=3",
        "--retry-period=0.5",
    ]
    leader = operator_factory(*election, "--identity=replica-a")
    wait_until(lambda: holder(kubectl) == "replica-a", timeout=30, what="replica-a to lead")
    standby = operator_factory(*election, "--identity=replica-b")
    wait_until(
        lambda: "waiting to become the leader as replica-b" in standby.log(),
        timeout=30,
        what="replica-b to wait as a standby",
    )

    kubectl.apply(export_task("ha", snapshot_arn), "-n", namespace)
    obj = kubectl.wait_for(KIND, "ha", namespace, status_is("STARTING"), timeout=30, what="STARTING")
    ident = obj["status"]["exportTaskIdentifier"]
    assert "became the leader" not in standby.log()

    leader.kill()
    aws.standin.set_task(ident, status="IN_PROGRESS", percent=20)
    # Bounded takeover: the lease (4 s) expires, the standby acquires it within a retry period and reconciles.
    wait_until(lambda: holder(kubectl) == "replica-b", timeout=20, what="replica-b to take over")
    kubectl.wait_for(KIND, "ha", namespace, progress_is(20), timeout=20, what="progress reported by the new leader")
    assert aws.standin.call_count("StartExportTask", ident) == 1
    lease = kubectl.get("lease", RELEASE, RELEASE_NAMESPACE)
    assert lease["spec"]["leaseTransitions"] >= 1

    # A clean stop hands the lease back at once instead of letting it expire.
    assert standby.stop() == 0
    assert holder(kubectl) in ("", None)


def test_metrics_show_exports_calls_throttles_and_latency(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    port = free_port()
    operator_factory(f"--metrics-port={port}")
    kubectl.apply(export_task("measured", snapshot_arn), "-n", namespace)
    obj = kubectl.wait_for(KIND, "measured", namespace, status_is("STARTING"), timeout=30, what="STARTING")
    aws.standin.inject("DescribeExportTasks", times=2)
    aws.standin.set_task(obj["status"]["exportTaskIdentifier"], status="COMPLETE", gb=2)
    kubectl.run("wait", f"{KIND}/measured", "-n", namespace, "--for=condition=Complete", "--timeout=30s")

    def scrape() -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }

    def has_complete() -> Any:
        series = scrape()
        return series if series.get('rds_export_tasks{status="COMPLETE"}', 0) >= 1 else None

    series = wait_until(has_complete, timeout=15, what="the COMPLETE export in the metrics")
    assert series['rds_export_aws_calls_total{operation="StartExportTask",outcome="Success"}'] >= 1
    assert series['rds_export_aws_calls_total{operation="DescribeExportTasks",outcome="Throttling"}'] >= 1
    assert series['rds_export_aws_throttles_total{operation="DescribeExportTasks"}'] >= 1
    assert series['rds_export_aws_call_duration_seconds_count{operation="DescribeExportTasks"}'] >= 2
    assert series['rds_export_reconcile_errors_total{reason="Throttling"}'] >= 1
    assert series["rds_export_queue_length"] == 0


def test_the_operator_identity_has_only_the_chart_rbac(kubectl: Kubectl, operator_kubeconfig: Path) -> None:
    sa = f"system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}"

    def can(verb: str, resource: str, namespace: str = "default") -> bool:
        out = kubectl.run("auth", "can-i", verb, resource, "-n", namespace, f"--as={sa}", check=False)
        return out.strip() == "yes"

    # create and delete: a schedule's exports (its children), history pruning and ttlSecondsAfterFinished.
    for verb in ("get", "list", "watch", "patch", "create", "delete"):
        assert can(verb, "rdsexporttasks.rdsexport.dev")
    assert can("patch", "rdsexporttasks.rdsexport.dev/status")
    assert can("create", "events")
    assert can("get", f"leases.coordination.k8s.io/{RELEASE}", RELEASE_NAMESPACE)
    for verb, resource in [
        ("update", "rdsexporttasks.rdsexport.dev"),
        ("get", "secrets"),
        ("list", "pods"),
        ("get", "configmaps"),
        ("list", "namespaces"),
        ("create", "leases.coordination.k8s.io/x"),
        ("update", "leases.coordination.k8s.io/other"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ]:
        assert not can(verb, resource), f"the operator may {verb} {resource}"
    # ... and the e2e tests in this session ran the operator with this very identity.
    assert "token:" in operator_kubeconfig.read_text()
