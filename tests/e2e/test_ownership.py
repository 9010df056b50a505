"""Tenants cannot touch what is not theirs (issue 10), with one AWS identity and the tenancy grants: one test per
attack of the issue's "Why"."""

from __future__ import annotations

import json

import pytest

from e2e.conftest import (
    KEY,
    ROLE,
    OperatorFactory,
    condition,
    export_task,
    start_direct,
    start_export,
    status_is,
    wait_condition,
)
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.standin.server import StandInServer

KIND = "rdsexporttasks"


def grants(namespace: str, team_b: str) -> str:
    return json.dumps({namespace: {"s3Buckets": ["exports-bucket"]}, team_b: {"s3Buckets": ["team-b-*"]}})


def test_observing_another_teams_export_reveals_nothing_and_cancels_nothing(
    kubectl: Kubectl,
    namespace: str,
    team_b: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
) -> None:
    # Bug: B observed A's export (source, bucket, prefix, cause), switched to Create (adoption skipped since the
    # status showed a task) and deleted it: CancelExportTask canceled A's running export.
    operator_factory(f"--namespace={team_b}", f"--tenancy={grants(namespace, team_b)}")
    ident = start_export(kubectl, namespace, "orders", snapshot_arn, s3Prefix="secret/prefix")  # A's export
    spy = export_task(
        "spy",
        snapshot_arn,
        managementPolicy="Observe",
        exportTaskIdentifier=ident,
        s3BucketName="team-b-bucket",
    )
    kubectl.apply(spy, "-n", team_b)
    obj = wait_condition(kubectl, KIND, "spy", team_b, "Failed", reason="NotPermitted", what="refused")
    text = json.dumps(obj["status"]) + json.dumps(kubectl.events(team_b, "spy"))
    assert "secret/prefix" not in text and "exports-bucket" not in text and snapshot_arn not in text
    kubectl.run("patch", KIND, "spy", "-n", team_b, "--type=merge", "-p", '{"spec":{"managementPolicy":"Create"}}')
    kubectl.run("delete", KIND, "spy", "-n", team_b, "--wait=false")
    kubectl.wait_gone(KIND, "spy", team_b, timeout=30)
    assert aws.standin.call_count("CancelExportTask", ident) == 0
    assert aws.standin.task(ident).status in ("STARTING", "IN_PROGRESS")


def test_deleting_a_queued_object_cancels_nothing(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    rds_client: object,
    operator_factory: OperatorFactory,
) -> None:
    # Bug: deleting a QUEUED object with an explicit identifier called CancelExportTask on whatever task held it.
    operator_factory("--max-concurrent-exports=1")
    start_direct(rds_client, f"{namespace}-first", snapshot_arn)  # another export takes the one slot
    ident = f"{namespace}-mine"
    kubectl.apply(export_task("waits", snapshot_arn, exportTaskIdentifier=ident), "-n", namespace)
    kubectl.wait_for(KIND, "waits", namespace, status_is("QUEUED"), timeout=30, what="queued")
    rds_client.start_export_task(  # type: ignore[attr-defined]  # someone else takes the identifier meanwhile
        ExportTaskIdentifier=ident, SourceArn=snapshot_arn, S3BucketName="someone-else", IamRoleArn=ROLE, KmsKeyId=KEY
    )
    kubectl.run("delete", KIND, "waits", "-n", namespace, "--wait=false")
    kubectl.wait_gone(KIND, "waits", namespace, timeout=30)
    assert aws.standin.call_count("CancelExportTask", ident) == 0
    assert aws.standin.task(ident).status == "STARTING"


def test_grants_restrict_sources_and_buckets(
    kubectl: Kubectl,
    namespace: str,
    team_b: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
) -> None:
    # Bug: any namespace could export any snapshot the operator could see, to any bucket its role could write.
    policy = json.dumps({namespace: {"sourceArns": ["*:snapshot:team-a-*"], "s3Buckets": ["exports-bucket"]}})
    operator_factory(f"--tenancy={policy}")
    kubectl.apply(export_task("foreign", snapshot_arn), "-n", namespace)
    obj = wait_condition(kubectl, KIND, "foreign", namespace, "Failed", status="True", what="refused")
    assert condition(obj, "Failed")["reason"] == "NotPermitted"
    assert "may not use source" in condition(obj, "Failed")["message"]
    assert aws.standin.call_count("StartExportTask", obj["status"]["exportTaskIdentifier"]) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("s3BucketName", "elsewhere-bucket"),
        ("s3Prefix", "other/prefix"),
        ("kmsKeyId", KEY.replace("0b4a", "ffff")),
        ("iamRoleArn", ROLE + "-other"),
        ("exportOnly", ["db.table"]),
    ],
)
def test_adoption_needs_every_reported_field_to_match(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    rds_client: object,
    operator: OperatorProcess,
    field: str,
    value: object,
) -> None:
    # Bug: adoption compared only the source: an identifier reused with another bucket, prefix, role, key or
    # exportOnly adopted the old export and reported Complete although nothing went where the spec says.
    ident = f"{namespace}-reused"
    start_direct(rds_client, ident, snapshot_arn)
    kubectl.apply(export_task("reuse", snapshot_arn, exportTaskIdentifier=ident, **{field: value}), "-n", namespace)
    obj = wait_condition(kubectl, KIND, "reuse", namespace, "Failed", status="True", what="refused")
    assert condition(obj, "Failed")["reason"] == "IdentifierInUse"
    assert field in condition(obj, "Failed")["message"]
    assert obj["status"]["status"] == "REFUSED"
    assert "percentProgress" not in obj["status"]  # nothing of the other task is reported as ours
    kubectl.run("delete", KIND, "reuse", "-n", namespace, "--wait=false")
    kubectl.wait_gone(KIND, "reuse", namespace, timeout=30)
    assert aws.standin.call_count("CancelExportTask", ident) == 0
