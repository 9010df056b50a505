"""Create -> COMPLETE, FAILED with its cause, adoption, Observe: on the real control plane, operator as a process."""

from __future__ import annotations

from typing import Any

from constants import PLURAL as KIND
from e2e.conftest import condition, export_task, progress_is, start_direct, started, status_is, wait_condition
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.standin.server import StandInServer


def identifier_of(kubectl: Kubectl, namespace: str, name: str) -> str:
    """The export's AWS identifier once its task exists: the status names the identifier before the Start (a
    set_task then found no task in the stand-in), so wait for STARTING."""
    return started(kubectl, namespace, name)


def test_create_runs_to_complete_with_progress_and_conditions(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    kubectl.apply(export_task("nightly", snapshot_arn, s3Prefix="exports/nightly"), "-n", namespace)
    obj = kubectl.wait_for(KIND, "nightly", namespace, status_is("STARTING"), timeout=30, what="STARTING")
    ident = obj["status"]["exportTaskIdentifier"]
    assert ident.startswith(f"{namespace}-nightly-")
    assert condition(obj, "Synced")["status"] == "True"
    assert condition(obj, "Complete")["status"] == "False"

    aws.standin.set_task(ident, status="IN_PROGRESS", percent=40, gb=3)
    obj = kubectl.wait_for(KIND, "nightly", namespace, progress_is(40), timeout=30, what="40% progress")
    assert obj["status"]["status"] == "IN_PROGRESS"
    assert obj["status"]["totalExtractedDataInGB"] == 3
    assert obj["status"]["taskStartTime"].endswith("Z")

    aws.standin.set_task(ident, status="COMPLETE", gb=7)
    kubectl.run("wait", f"{KIND}/nightly", "-n", namespace, "--for=condition=Complete", "--timeout=30s")
    obj = kubectl.get(KIND, "nightly", namespace)
    assert obj["status"]["status"] == "COMPLETE"
    assert obj["status"]["percentProgress"] == 100
    assert obj["status"]["totalExtractedDataInGB"] == 7
    assert obj["status"]["s3Prefix"] == "exports/nightly"
    assert obj["status"]["sourceType"] == "SNAPSHOT"
    assert condition(obj, "Failed")["status"] == "False"
    assert aws.standin.call_count("StartExportTask", ident) == 1

    reasons = [e["reason"] for e in kubectl.events(namespace, "nightly")]
    assert {"Started", "InProgress", "Progress", "Complete"} <= set(reasons), reasons
    # Finished: no timer, no finalizer left to block deletion.
    assert obj["metadata"].get("finalizers", []) == [] or kubectl.wait_for(
        KIND, "nightly", namespace, lambda o: not o["metadata"].get("finalizers"), timeout=15, what="no finalizer"
    )


def test_failed_export_surfaces_cause(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    kubectl.apply(export_task("broken", snapshot_arn), "-n", namespace)
    ident = identifier_of(kubectl, namespace, "broken")
    cause = "The S3 bucket exports-bucket isn't located in the current AWS Region. Please, review your S3 bucket name."
    aws.standin.set_task(ident, status="FAILED", failure_cause=cause)
    kubectl.run("wait", f"{KIND}/broken", "-n", namespace, "--for=condition=Failed", "--timeout=30s")
    obj = kubectl.get(KIND, "broken", namespace)
    assert obj["status"]["status"] == "FAILED"
    assert obj["status"]["failureCause"] == cause
    assert condition(obj, "Failed")["message"] == cause
    warnings = [e for e in kubectl.events(namespace, "broken") if e["type"] == "Warning"]
    assert any(cause in e["message"] for e in warnings)


def test_existing_task_with_same_source_is_adopted(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, rds_client: Any, operator: OperatorProcess
) -> None:
    ident = f"adopt-{namespace}"
    start_direct(rds_client, ident, snapshot_arn)  # every field as the spec below says: adoptable
    aws.standin.set_task(ident, status="IN_PROGRESS", percent=55)
    kubectl.apply(export_task("adopter", snapshot_arn, exportTaskIdentifier=ident), "-n", namespace)
    obj = kubectl.wait_for(KIND, "adopter", namespace, progress_is(55), timeout=30, what="the adopted task's progress")
    assert obj["status"]["status"] == "IN_PROGRESS"
    assert "Adopted" in [e["reason"] for e in kubectl.events(namespace, "adopter")]
    # Ours; the operator adopts from its shared snapshot, or after one refused start if the snapshot predates ours.
    assert 1 <= aws.standin.call_count("StartExportTask", ident) <= 2


def test_identifier_taken_by_another_source_is_terminal(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, rds_client: Any, operator: OperatorProcess
) -> None:
    ident = f"taken-{namespace}"
    other = snapshot_arn.replace(":snapshot:", ":snapshot:") + "x"
    rds_client.create_db_snapshot(
        DBSnapshotIdentifier=other.rsplit(":", 1)[1], DBInstanceIdentifier=f"{snapshot_arn.rsplit(':', 1)[1]}-db"
    )
    start_direct(rds_client, ident, other, role="arn:aws:iam::123456789012:role/r", key="k")
    kubectl.apply(export_task("clash", snapshot_arn, exportTaskIdentifier=ident), "-n", namespace)
    obj = wait_condition(kubectl, KIND, "clash", namespace, "Failed", status="True")
    assert condition(obj, "Failed")["reason"] == "IdentifierInUse"
    assert aws.standin.task(ident).source_arn == other
    assert "different sourceArn" in condition(obj, "Failed")["message"]
    assert 1 <= aws.standin.call_count("StartExportTask", ident) <= 2  # never a second task
