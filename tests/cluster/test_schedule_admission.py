"""The RdsExportSchedule CRD refuses bad schedules at admission, with the message a user sees; kubectl explain
documents it; RdsExportTask accepts ttlSecondsAfterFinished."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from localdev.kube import Kubectl

ROLE = "arn:aws:iam::123456789012:role/rds-s3-export"
KEY = "arn:aws:kms:us-east-1:123456789012:key/0b4a2e46-1f86-4b34-9d4f-0fbd5d2c3b7f"
VALID: dict[str, Any] = {
    "source": {"dbInstanceIdentifier": "orders", "region": "us-east-1"},
    "schedule": "30 3 * * *",
    "exportTemplate": {"s3BucketName": "my-exports", "iamRoleArn": ROLE, "kmsKeyId": KEY},
}


def schedule(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    body.update(spec)
    return {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportSchedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


ACCEPTED: list[dict[str, Any]] = [
    {},
    {"schedule": "*/15 1-5,22 ? jan-MAR MON-FRI", "timeZone": "Europe/Berlin"},
    {"schedule": "0 0 1,15 */2 0/2"},
    {"schedule": "0 0 * * 1/2", "source": {"dbInstanceIdentifier": "orders"}, "snapshotType": "awsbackup"},
    {"schedule": "@daily"},
    {"schedule": None, "trigger": "NewSnapshot", "snapshotType": "manual", "concurrencyPolicy": "Allow"},
    {"source": {"dbClusterIdentifier": "aurora-prod"}, "suspend": True, "startingDeadlineSeconds": 300},
    {"source": {"dbClusterIdentifier": "aurora-prod", "exportLiveCluster": True}},
    {
        "exportTemplate": {
            "s3BucketName": "b-1",
            "iamRoleArn": ROLE,
            "kmsKeyId": "alias/exports",
            "s3Prefix": "db/{sourceIdentifier}/year={snapshotYear}/{snapshotDate}-{snapshotIdentifier}",
            "exportOnly": ["db.table"],
            "deletionPolicy": "Retain",
            "ttlSecondsAfterFinished": 3600,
        }
    },
]

REJECTED: list[tuple[dict[str, Any], str]] = [
    ({"schedule": "* * * *"}, "schedule must have 5 fields"),
    ({"schedule": "0 0 * * * *"}, "schedule must have 5 fields"),
    ({"schedule": "60 3 * * *"}, "the minute (1st) field of schedule"),
    ({"schedule": "0 24 * * *"}, "the hour (2nd) field of schedule"),
    ({"schedule": "0 3 32 * *"}, "the day-of-month (3rd) field of schedule"),
    ({"schedule": "0 3 * 13 *"}, "the month (4th) field of schedule"),
    ({"schedule": "0 3 * * 8"}, "the day-of-week (5th) field of schedule"),
    ({"schedule": "0 3 * * 7"}, "7 is refused"),  # robfig/cron (CronJob) refuses 7 for Sunday
    ({"source": {"dbClusterIdentifier": "aurora-prod"}, "snapshotType": "awsbackup"}, "awsbackup is not supported"),
    ({"schedule": "*/0 3 * * *"}, "the minute (1st) field of schedule"),
    ({"schedule": "0 3 * * MONDAY"}, "the day-of-week (5th) field of schedule"),
    ({"schedule": "@every 1h"}, "@every is not supported"),
    ({"schedule": "TZ=UTC 0 3 * * *"}, "set timeZone instead"),
    ({"timeZone": "Europe Berlin"}, "spec.timeZone: Invalid value"),
    ({"schedule": None}, "set exactly one of schedule (a cron expression) and trigger"),
    ({"trigger": "NewSnapshot"}, "set exactly one of schedule (a cron expression) and trigger"),
    ({"trigger": "Sometimes", "schedule": None}, "spec.trigger: Unsupported value"),
    ({"source": {"region": "us-east-1"}}, "exactly one of dbInstanceIdentifier and dbClusterIdentifier"),
    ({"source": {"dbInstanceIdentifier": "a", "dbClusterIdentifier": "b"}}, "exactly one of dbInstanceIdentifier"),
    ({"exportTemplate": {"iamRoleArn": ROLE, "kmsKeyId": KEY}}, "spec.exportTemplate.s3BucketName: Required value"),
    ({"exportTemplate": {"s3BucketName": "b-1", "kmsKeyId": KEY}}, "spec.exportTemplate.iamRoleArn: Required value"),
    ({"exportTemplate": {"s3BucketName": "b-1", "iamRoleArn": ROLE}}, "spec.exportTemplate.kmsKeyId: Required value"),
    (
        {"exportTemplate": {"s3BucketName": "b-1", "iamRoleArn": ROLE, "kmsKeyId": KEY, "s3Prefix": "x/{date}"}},
        "s3Prefix placeholders are {scheduleName}",
    ),
    ({"concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy: Unsupported value"),
    ({"source": {"dbInstanceIdentifier": "db", "exportLiveCluster": True}}, "exportLiveCluster exports a DB cluster"),
    (
        {"source": {"dbClusterIdentifier": "c", "exportLiveCluster": True}, "schedule": None, "trigger": "NewSnapshot"},
        "it needs source.dbClusterIdentifier and schedule",
    ),
    ({"successfulExportsHistoryLimit": -1}, "spec.successfulExportsHistoryLimit: Invalid value"),
    ({"source": {"dbInstanceIdentifier": "orders", "region": "eu-west-1"}}, "kmsKeyId must be a key in source.region"),
]


@pytest.mark.parametrize("spec", ACCEPTED)
def test_valid_schedules_are_accepted(kubectl: Kubectl, crd: None, namespace: str, spec: dict[str, Any]) -> None:
    ok, out = kubectl.try_create(schedule(namespace, "s", **spec))
    assert ok, out
    stored = kubectl.get("rdsexportschedule", "s", namespace)["spec"]
    assert stored["concurrencyPolicy"] == spec.get("concurrencyPolicy", "Forbid")
    assert stored["successfulExportsHistoryLimit"] == 3 and stored["failedExportsHistoryLimit"] == 1


@pytest.mark.parametrize(("spec", "message"), REJECTED)
def test_invalid_schedules_are_refused_with_a_clear_message(
    kubectl: Kubectl, crd: None, namespace: str, spec: dict[str, Any], message: str
) -> None:
    ok, out = kubectl.try_create(schedule(namespace, "s", **spec))
    assert not ok
    assert message in out, out


def test_explain_documents_every_field(kubectl: Kubectl, crd: None) -> None:
    out = kubectl.run("explain", "rdsexportschedule.spec", "--recursive")
    fields = re.findall(r"^\s+(\w+)\s+<", out, flags=re.M)
    assert {"source", "schedule", "timeZone", "trigger", "exportTemplate", "concurrencyPolicy"} <= set(fields)
    for path in ("spec.schedule", "spec.exportTemplate.s3Prefix", "spec.startingDeadlineSeconds", "status.active"):
        text = kubectl.run("explain", f"rdsexportschedule.{path}")
        assert "DESCRIPTION:" in text and "<empty>" not in text, text
    assert "{snapshotDate}" in kubectl.run("explain", "rdsexportschedule.spec.exportTemplate.s3Prefix")
    assert "seconds" in kubectl.run("explain", "rdsexporttask.spec.ttlSecondsAfterFinished")


def test_short_name_and_columns(kubectl: Kubectl, crd: None, namespace: str) -> None:
    kubectl.create(schedule(namespace, "nightly"))
    out = kubectl.run("get", "rdsexportsched", "-n", namespace)
    assert out.split()[:8] == ["NAME", "SOURCE", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "SNAPSHOT", "LAST"]
    assert "nightly" in kubectl.run("get", "rds", "-n", namespace)  # in the rds category with the tasks


def test_task_ttl_is_validated(kubectl: Kubectl, crd: None, namespace: str) -> None:
    task = {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportTask",
        "metadata": {"name": "t", "namespace": namespace},
        "spec": {
            "sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:s1",
            "s3BucketName": "my-exports",
            "iamRoleArn": ROLE,
            "kmsKeyId": KEY,
            "ttlSecondsAfterFinished": -5,
        },
    }
    ok, out = kubectl.try_create(task)
    assert not ok and "spec.ttlSecondsAfterFinished: Invalid value" in out
    task["spec"]["ttlSecondsAfterFinished"] = 60
    ok, out = kubectl.try_create(task)
    assert ok, out
