"""The RdsExportTask CRD refuses at admission what AWS would refuse, with the message a user sees."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from localdev.kube import Kubectl

SNAPSHOT = "arn:aws:rds:us-east-1:123456789012:snapshot:nightly"
ROLE = "arn:aws:iam::123456789012:role/rds-s3-export"
KEY = "arn:aws:kms:us-east-1:123456789012:key/0b4a2e46-1f86-4b34-9d4f-0fbd5d2c3b7f"
VALID = {"sourceArn": SNAPSHOT, "s3BucketName": "my-exports", "iamRoleArn": ROLE, "kmsKeyId": KEY}


def obj(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {**VALID, **spec}
    return {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportTask",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


ACCEPTED = [
    {},
    {"sourceArn": "arn:aws:rds:eu-west-1:123456789012:cluster-snapshot:weekly", "kmsKeyId": "alias/exports"},
    {"sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:rds:db1-2026-11-28-03-10"},
    {"sourceArn": "arn:aws:rds:us-east-1:123456789012:cluster:aurora-prod", "region": "us-east-1"},
    {"sourceArn": "arn:aws-cn:rds:cn-north-1:123456789012:snapshot:s1", "kmsKeyId": "mrk-1234abcd"},
    {"s3Prefix": "team/a b", "exportOnly": ["db", "db.table", "db.schema.table"], "exportTaskIdentifier": "A1-b2"},
    {
        "managementPolicy": "Observe",
        "exportTaskIdentifier": "existing-task",
        "sourceArn": None,
        "s3BucketName": None,
        "iamRoleArn": None,
        "kmsKeyId": None,
    },
    {"deletionPolicy": "Retain"},
]

REJECTED: list[tuple[dict[str, Any], str]] = [
    ({"sourceArn": "arn:aws:rds:us-east-1:123456789012:db:prod"}, "spec.sourceArn: Invalid value"),
    ({"sourceArn": "arn:aws:s3:::bucket"}, "spec.sourceArn: Invalid value"),
    ({"sourceArn": "arn:aws:rds:us-east-1:12345:snapshot:x"}, "spec.sourceArn: Invalid value"),
    ({"s3BucketName": "My_Bucket"}, "spec.s3BucketName: Invalid value"),
    ({"s3BucketName": "ab"}, "spec.s3BucketName: Invalid value"),
    ({"s3BucketName": "a..b"}, "s3BucketName must not contain two adjacent periods"),
    ({"iamRoleArn": "arn:aws:iam::123456789012:user/bob"}, "spec.iamRoleArn: Invalid value"),
    ({"kmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/abc"}, "kmsKeyId must be a key in the region of sourceArn"),
    ({"kmsKeyId": "alias/aws/rds"}, "exports need a customer managed key"),
    ({"s3Prefix": "a:b"}, "spec.s3Prefix: Invalid value"),
    ({"exportOnly": ["a.b.c.d"]}, "spec.exportOnly[0]: Invalid value"),
    ({"exportOnly": []}, "spec.exportOnly: Invalid value"),
    ({"exportTaskIdentifier": "1abc"}, "spec.exportTaskIdentifier: Invalid value"),
    ({"exportTaskIdentifier": "a--b"}, "spec.exportTaskIdentifier: Invalid value"),
    ({"exportTaskIdentifier": "abc-"}, "spec.exportTaskIdentifier: Invalid value"),
    ({"exportTaskIdentifier": "a" * 61}, "spec.exportTaskIdentifier: Too long"),
    ({"exportTaskIdentifier": "ünïcode"}, "spec.exportTaskIdentifier: Invalid value"),
    ({"region": "eu-west-1"}, "region must be the region of sourceArn"),
    ({"managementPolicy": "Delete"}, 'spec.managementPolicy: Unsupported value: "Delete"'),
    ({"deletionPolicy": "Orphan"}, 'spec.deletionPolicy: Unsupported value: "Orphan"'),
    ({"s3BucketName": None}, "managementPolicy Create requires sourceArn, s3BucketName, iamRoleArn and kmsKeyId"),
    ({"managementPolicy": "Observe"}, "managementPolicy Observe requires exportTaskIdentifier"),
    ({"sourceArn": 42}, 'spec.sourceArn: Invalid value: "integer"'),
    # Wrong types, oversize values, unicode and strings that look like injections.
    ({"exportOnly": "db"}, 'spec.exportOnly: Invalid value: "string"'),
    ({"managementPolicy": 1}, 'spec.managementPolicy: Invalid value: "integer"'),
    ({"exportOnly": ["db", "db"]}, "spec.exportOnly[1]: Duplicate value"),
    ({"s3Prefix": "x" * 513}, "spec.s3Prefix: Too long"),
    ({"iamRoleArn": "arn:aws:iam::123456789012:role/" + "r" * 513}, "spec.iamRoleArn: Invalid value"),
    ({"exportOnly": ["t" * 201]}, "spec.exportOnly[0]: Too long"),
    ({"sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:x; rm -rf /"}, "spec.sourceArn: Invalid value"),
    ({"sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:x\n"}, "spec.sourceArn: Invalid value"),
    ({"s3BucketName": "bucket$(whoami)"}, "spec.s3BucketName: Invalid value"),
    ({"exportTaskIdentifier": "a'; DROP TABLE x--"}, "spec.exportTaskIdentifier: Invalid value"),
    ({"kmsKeyId": "alias/clé"}, "spec.kmsKeyId: Invalid value"),
    ({"region": "us-east-1\n"}, "spec.region: Invalid value"),
    ({"exportOnly": ["db name"]}, "spec.exportOnly[0]: Invalid value"),
    ({"sourceArnn": SNAPSHOT}, 'unknown field "spec.sourceArnn"'),
]


@pytest.mark.parametrize("spec", ACCEPTED, ids=[json.dumps(s)[:60] for s in ACCEPTED])
def test_valid_objects_are_accepted(kubectl: Kubectl, crd: None, namespace: str, spec: dict[str, Any]) -> None:
    ok, out = kubectl.try_create(obj(namespace, "ok", **spec))
    assert ok, out


@pytest.mark.parametrize(("spec", "message"), REJECTED, ids=[m[:50] + json.dumps(s)[:30] for s, m in REJECTED])
def test_invalid_objects_are_rejected(
    kubectl: Kubectl, crd: None, namespace: str, spec: dict[str, Any], message: str
) -> None:
    ok, out = kubectl.try_create(obj(namespace, "bad", **spec))
    assert not ok
    assert "is invalid" in out or "strict decoding error" in out
    assert message in out, out


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sourceArn", "arn:aws:rds:us-east-1:123456789012:snapshot:other"),
        ("s3BucketName", "other-bucket"),
        ("iamRoleArn", "arn:aws:iam::123456789012:role/other"),
        ("kmsKeyId", "alias/other"),
        ("s3Prefix", "other"),
        ("exportOnly", ["other"]),
        ("exportTaskIdentifier", "other"),
    ],
)
def test_export_defining_fields_are_immutable(
    kubectl: Kubectl, crd: None, namespace: str, field: str, value: Any
) -> None:
    kubectl.create(obj(namespace, "imm", s3Prefix="p", exportOnly=["db"], exportTaskIdentifier="fixed-id"))
    patch = json.dumps({"spec": {field: value}})
    out = kubectl.run("patch", "rdsexporttask", "imm", "-n", namespace, "--type=merge", "-p", patch, check=False)
    assert f"{field} is immutable" in out, out


def test_export_defining_fields_cannot_be_added_later(kubectl: Kubectl, crd: None, namespace: str) -> None:
    kubectl.create(obj(namespace, "add"))
    out = kubectl.run(
        "patch",
        "rdsexporttask",
        "add",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"s3Prefix": "late"}}',
        check=False,
    )
    assert "cannot be added or removed after creation" in out, out


def test_policies_stay_editable(kubectl: Kubectl, crd: None, namespace: str) -> None:
    kubectl.create(obj(namespace, "pol"))
    kubectl.run(
        "patch", "rdsexporttask", "pol", "-n", namespace, "--type=merge", "-p", '{"spec": {"deletionPolicy": "Retain"}}'
    )
    assert kubectl.get("rdsexporttask", "pol", namespace)["spec"]["deletionPolicy"] == "Retain"


def test_defaults_are_applied(kubectl: Kubectl, crd: None, namespace: str) -> None:
    kubectl.create(obj(namespace, "defaults"))
    spec = kubectl.get("rdsexport", "defaults", namespace)["spec"]
    assert spec["managementPolicy"] == "Create"
    assert spec["deletionPolicy"] == "Cancel"


def test_every_spec_and_status_field_is_explained(kubectl: Kubectl, crd: None) -> None:
    for path in ("rdsexporttask.spec", "rdsexporttask.status"):
        out = kubectl.run("explain", path)
        fields = re.findall(r"^  (\w+)\s+<", out.split("FIELDS:")[1], flags=re.MULTILINE)
        assert len(fields) >= 8, out
        for name in fields:
            text = kubectl.run("explain", f"{path}.{name}")
            description = text.split("DESCRIPTION:")[1].strip()
            assert description and not description.startswith("<empty>"), f"{path}.{name} has no description"


def test_printer_columns(kubectl: Kubectl, crd: None, namespace: str) -> None:
    kubectl.create(obj(namespace, "cols"))
    header = kubectl.run("get", "rdsexporttasks", "-n", namespace).splitlines()[0].split()
    assert header == ["NAME", "IDENTIFIER", "STATUS", "PROGRESS", "GB", "AGE"]
