"""Operating the operator: leader election failover with two replicas, and the metrics it serves."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

from e2e.conftest import export_task
from localdev.aws_standin import StandInServer
from localdev.controlplane import free_port
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.waiting import wait_until

KIND = "rdsexporttasks"


def holder(kubectl: Kubectl, namespace: str) -> str | None:
    lease = kubectl.get_or_none("lease", "rds-export-operator", namespace)
    return (lease or {}).get("spec", {}).get("holderIdentity")


def test_standby_takes_over_when_the_leader_is_killed(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    election = [
        "--leader-election",
        f"--leader-election-namespace={namespace}",
        "--lease-duration=4",
        "--renew-deadline=3",
        "--retry-period=0.5",
    ]
    leader = operator_factory(*election, "--identity=replica-a")
    wait_until(lambda: holder(kubectl, namespace) == "replica-a", timeout=30, what="replica-a to lead")
    standby = operator_factory(*election, "--identity=replica-b")
    wait_until(
        lambda: "waiting to become the leader as replica-b" in standby.log(),
        timeout=30,
        what="replica-b to wait as a standby",
    )

    kubectl.apply(export_task("ha", snapshot_arn), "-n", namespace)
    obj = kubectl.wait_for(
        KIND, "ha", namespace, lambda o: o.get("status", {}).get("status") == "STARTING", timeout=30, what="STARTING"
    )
    ident = obj["status"]["exportTaskIdentifier"]
    assert "became the leader" not in standby.log()

    leader.kill()
    aws.standin.set_task(ident, status="IN_PROGRESS", percent=20)
    # Bounded takeover: the lease (4 s) expires, the standby acquires it within a retry period and reconciles.
    wait_until(lambda: holder(kubectl, namespace) == "replica-b", timeout=20, what="replica-b to take over")
    kubectl.wait_for(
        KIND,
        "ha",
        namespace,
        lambda o: o["status"].get("percentProgress") == 20,
        timeout=20,
        what="progress reported by the new leader",
    )
    assert aws.standin.call_count("StartExportTask", ident) == 1
    lease = kubectl.get("lease", "rds-export-operator", namespace)
    assert lease["spec"]["leaseTransitions"] == 1

    # A clean stop hands the lease back at once instead of letting it expire.
    assert standby.stop() == 0
    assert holder(kubectl, namespace) in ("", None)


def test_metrics_show_exports_calls_throttles_and_latency(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    port = free_port()
    operator_factory(f"--metrics-port={port}")
    kubectl.apply(export_task("measured", snapshot_arn), "-n", namespace)
    obj = kubectl.wait_for(
        KIND,
        "measured",
        namespace,
        lambda o: o.get("status", {}).get("status") == "STARTING",
        timeout=30,
        what="STARTING",
    )
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
