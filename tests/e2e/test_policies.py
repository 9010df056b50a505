"""Observe, deletion with Cancel and Retain, the 5-export queue, throttling, and restarts."""

from __future__ import annotations

from typing import Any

from constants import FINALIZER
from constants import PLURAL as KIND
from e2e.conftest import (
    OperatorFactory,
    condition,
    export_task,
    progress_is,
    start_direct,
    start_export,
    status_is,
    wait_condition,
)
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.standin.server import StandInServer


def test_observe_reports_but_never_starts_or_cancels(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, rds_client: Any, operator: OperatorProcess
) -> None:
    ident = f"observed-{namespace}"
    start_direct(rds_client, ident, snapshot_arn)
    aws.standin.set_task(ident, status="IN_PROGRESS", percent=10)
    body = {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportTask",
        "metadata": {"name": "watcher"},
        "spec": {"managementPolicy": "Observe", "exportTaskIdentifier": ident, "region": "us-east-1"},
    }
    kubectl.apply(body, "-n", namespace)
    kubectl.wait_for(KIND, "watcher", namespace, progress_is(10), timeout=30, what="observed progress")
    kubectl.run("delete", KIND, "watcher", "-n", namespace, "--timeout=30s")
    assert aws.standin.call_count("StartExportTask", ident) == 1  # only the direct one
    assert aws.standin.call_count("CancelExportTask", ident) == 0
    assert aws.standin.task(ident).status == "IN_PROGRESS"


def test_observe_of_a_missing_task_says_so(kubectl: Kubectl, namespace: str, operator: OperatorProcess) -> None:
    body = {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportTask",
        "metadata": {"name": "ghost"},
        "spec": {"managementPolicy": "Observe", "exportTaskIdentifier": "no-such-task", "region": "us-east-1"},
    }
    kubectl.apply(body, "-n", namespace)
    obj = wait_condition(kubectl, KIND, "ghost", namespace, "Synced", status="False")
    assert condition(obj, "Synced")["reason"] == "ExportTaskNotFound"
    assert [e["reason"] for e in kubectl.events(namespace, "ghost")].count("ExportTaskNotFound") == 1


def test_delete_with_cancel_waits_for_canceled(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    ident = start_export(kubectl, namespace, "cancel-me", snapshot_arn)
    assert FINALIZER in kubectl.get(KIND, "cancel-me", namespace)["metadata"]["finalizers"]
    kubectl.run("delete", KIND, "cancel-me", "-n", namespace, "--wait=false")
    kubectl.wait_for(KIND, "cancel-me", namespace, status_is("CANCELING"), timeout=30, what="CANCELING")
    assert aws.standin.task(ident).status == "CANCELING"
    aws.standin.set_task(ident, status="CANCELED")
    kubectl.wait_gone(KIND, "cancel-me", namespace, timeout=30)
    assert aws.standin.call_count("CancelExportTask", ident) == 1
    reasons = [e["reason"] for e in kubectl.events(namespace, "cancel-me")]
    assert "Canceling" in reasons and "Canceled" in reasons


def test_delete_with_retain_leaves_the_export_running(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    ident = start_export(kubectl, namespace, "keep", snapshot_arn, deletionPolicy="Retain")
    kubectl.run("delete", KIND, "keep", "-n", namespace, "--timeout=30s")
    assert aws.standin.call_count("CancelExportTask", ident) == 0
    assert aws.standin.task(ident).status == "STARTING"


def test_queued_at_the_limit_then_started_when_a_slot_frees(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, rds_client: Any, operator: OperatorProcess
) -> None:
    busy = [f"busy-{i}-{namespace}" for i in range(5)]
    for ident in busy:
        start_direct(rds_client, ident, snapshot_arn)
    kubectl.apply(export_task("waiting", snapshot_arn), "-n", namespace)
    obj = kubectl.wait_for(KIND, "waiting", namespace, status_is("QUEUED"), timeout=30, what="QUEUED")
    assert condition(obj, "Synced")["reason"] == "ExportLimitReached"
    assert condition(obj, "Failed")["status"] == "False"
    assert obj["status"]["queuedSince"]
    aws.standin.set_task(busy[0], status="COMPLETE")
    obj = kubectl.wait_for(KIND, "waiting", namespace, status_is("STARTING"), timeout=30, what="STARTING")
    assert "queuedSince" not in obj["status"]
    reasons = [e["reason"] for e in kubectl.events(namespace, "waiting")]
    # The shared page knows the 5 slots are taken, so the operator waits without a refused StartExportTask (one
    # refusal at most, if its page is older than AWS's answer). One Queued event per wait: the first, and one
    # after such a refusal (a queued object's status is cleared while its finalizer is stored, before it starts).
    starts = aws.standin.call_count("StartExportTask", obj["status"]["exportTaskIdentifier"])
    assert 1 <= starts <= 2
    assert 1 <= reasons.count("Queued") <= starts and "Started" in reasons


def test_throttling_storm_is_retried_without_losing_an_update(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    ident = start_export(kubectl, namespace, "storm", snapshot_arn)
    aws.standin.inject("DescribeExportTasks", times=12)
    aws.standin.set_task(ident, status="IN_PROGRESS", percent=60, gb=5)
    obj = wait_condition(
        kubectl, KIND, "storm", namespace, "Synced", reason="Throttling", what="Synced=False because of throttling"
    )
    assert condition(obj, "Synced")["status"] == "False"
    assert "Rate exceeded" in condition(obj, "Synced")["message"]
    obj = kubectl.wait_for(
        KIND, "storm", namespace, progress_is(60), timeout=60, what="the update made during the storm"
    )
    assert condition(obj, "Synced")["status"] == "True"
    assert obj["status"]["totalExtractedDataInGB"] == 5
    assert aws.standin.faults_pending("DescribeExportTasks") == 0  # every injected fault was consumed
    assert aws.standin.call_count("StartExportTask", ident) == 1


def test_restart_mid_export_resumes_without_a_second_start(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    first = operator_factory()
    ident = start_export(kubectl, namespace, "resume", snapshot_arn)
    first.kill()
    aws.standin.set_task(ident, status="IN_PROGRESS", percent=30)
    operator_factory()
    kubectl.wait_for(
        KIND, "resume", namespace, progress_is(30), timeout=30, what="progress seen by the restarted operator"
    )
    aws.standin.set_task(ident, status="COMPLETE")
    kubectl.run("wait", f"{KIND}/resume", "-n", namespace, "--for=condition=Complete", "--timeout=30s")
    assert aws.standin.call_count("StartExportTask", ident) == 1
