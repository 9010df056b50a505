"""The RdsExportTask CRD refuses at admission what AWS would refuse, with the message a user sees."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from constants import API_VERSION, KEY, KIND, ROLE
from localdev.kube import Kubectl

SNAPSHOT = "arn:aws:rds:us-east-1:123456789012:snapshot:nightly"
VALID = {"sourceArn": SNAPSHOT, "s3BucketName": "my-exports", "iamRoleArn": ROLE, "kmsKeyId": KEY}
RDS = "arn:aws:rds:us-east-1:123456789012"
KMS = "arn:aws:kms:us-east-1:123456789012"
UUID = "0b4a2e46-1f86-4b34-9d4f-0fbd5d2c3b7f"
MRK = "mrk-1234abcd12ab34cd56ef1234567890ab"


def obj(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {**VALID, **spec}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


ACCEPTED = [
    {},
    {"sourceArn": "arn:aws:rds:eu-west-1:123456789012:cluster-snapshot:weekly", "kmsKeyId": "alias/exports"},
    {"sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:rds:db1-2026-11-28-03-10"},
    {"sourceArn": "arn:aws:rds:us-east-1:123456789012:cluster:aurora-prod", "region": "us-east-1"},
    {"sourceArn": "arn:aws-cn:rds:cn-north-1:123456789012:snapshot:s1", "kmsKeyId": MRK},
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
    {"tableReport": "Disabled"},
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
    ({"tableReport": "Maybe"}, 'spec.tableReport: Unsupported value: "Maybe"'),
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
    ({"region": "zz-fake-1"}, "spec.region: Invalid value"),  # no AWS partition has that prefix
    ({"exportOnly": ["db name"]}, "spec.exportOnly[0]: Invalid value"),
    ({"sourceArnn": SNAPSHOT}, 'unknown field "spec.sourceArnn"'),
]

# What AWS refuses beyond the character patterns: S3 bucket naming rules, RDS identifier rules inside the source ARN,
# KMS key-id forms. Each refusal names the rule; each accepted case sits just inside a rule.
BUCKET_IP = "s3BucketName must not be formatted as an IP address"
BUCKET_PREFIX = "s3BucketName must not start with a prefix that S3 reserves (xn--, sthree-, amzn-s3-demo-)"
BUCKET_SUFFIX = (
    "s3BucketName must not end with a suffix that S3 reserves (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3)"
)
RDS_HYPHENS = "the RDS identifier in sourceArn must not contain two consecutive hyphens or end with a hyphen"
CLUSTER_LONG = "the DB cluster identifier in sourceArn has at most 63 characters"
CLUSTER_SNAPSHOT_LONG = "the DB cluster snapshot identifier in sourceArn has at most 63 characters"
SNAPSHOT_LONG = "the snapshot identifier in sourceArn has at most 255 characters"
KMS_FORM = "kmsKeyId must be a key ID (a UUID, or mrk- and 32 hex digits), a key ARN"
KMS_MANAGED = "exports need a customer managed key"

AWS_REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"s3BucketName": "192.168.5.4"}, BUCKET_IP),
    ({"s3BucketName": "10.0.0.1"}, BUCKET_IP),
    ({"s3BucketName": "xn--bucket"}, BUCKET_PREFIX),
    ({"s3BucketName": "sthree-bucket"}, BUCKET_PREFIX),
    ({"s3BucketName": "sthree-configurator"}, BUCKET_PREFIX),
    ({"s3BucketName": "amzn-s3-demo-bucket"}, BUCKET_PREFIX),
    ({"s3BucketName": "bucket-s3alias"}, BUCKET_SUFFIX),
    ({"s3BucketName": "bucket--ol-s3"}, BUCKET_SUFFIX),
    ({"s3BucketName": "bucket.mrap"}, BUCKET_SUFFIX),
    ({"s3BucketName": "bucket--x-s3"}, BUCKET_SUFFIX),
    ({"s3BucketName": "bucket--table-s3"}, BUCKET_SUFFIX),
    ({"s3BucketName": "-bucket"}, "spec.s3BucketName: Invalid value"),
    ({"s3BucketName": "bucket."}, "spec.s3BucketName: Invalid value"),
    ({"s3BucketName": "b" * 64}, "spec.s3BucketName: Too long"),
    ({"sourceArn": f"{RDS}:snapshot:a--b"}, RDS_HYPHENS),
    ({"sourceArn": f"{RDS}:snapshot:ab-"}, RDS_HYPHENS),
    ({"sourceArn": f"{RDS}:cluster-snapshot:weekly-"}, RDS_HYPHENS),
    ({"sourceArn": f"{RDS}:cluster:aurora--prod"}, RDS_HYPHENS),
    ({"sourceArn": f"{RDS}:snapshot:rds:db1--2026-11-28-03-10"}, RDS_HYPHENS),
    ({"sourceArn": f"{RDS}:snapshot:awsbackup:job-"}, RDS_HYPHENS),
    ({"sourceArn": f"{RDS}:cluster:c" + "a" * 63}, CLUSTER_LONG),
    ({"sourceArn": f"{RDS}:cluster-snapshot:s" + "a" * 63}, CLUSTER_SNAPSHOT_LONG),
    ({"sourceArn": f"{RDS}:snapshot:s" + "a" * 255}, SNAPSHOT_LONG),
    ({"sourceArn": f"{RDS}:snapshot:rds:s" + "a" * 255}, SNAPSHOT_LONG),
    ({"sourceArn": f"{RDS}:snapshot:1abc"}, "spec.sourceArn: Invalid value"),
    ({"sourceArn": f"{RDS}:snapshot:a_b"}, "spec.sourceArn: Invalid value"),
    ({"sourceArn": "not-an-arn", "region": "us-east-1"}, "spec.sourceArn: Invalid value"),
    ({"sourceArn": "arn:aws:rds", "kmsKeyId": "arn:x"}, "spec.kmsKeyId: Invalid value"),
    ({"kmsKeyId": f"{KMS}:key/not-a-uuid"}, KMS_FORM),
    ({"kmsKeyId": f"{KMS}:key/{UUID[:-1]}"}, KMS_FORM),
    ({"kmsKeyId": f"{KMS}:key/mrk-1234abcd"}, KMS_FORM),
    ({"kmsKeyId": f"{KMS}:key/{UUID}-extra"}, KMS_FORM),
    ({"kmsKeyId": f"{KMS}:alias/"}, KMS_FORM),
    ({"kmsKeyId": "mrk-1234abcd"}, KMS_FORM),
    ({"kmsKeyId": "mrk-" + "g" * 32}, KMS_FORM),
    ({"kmsKeyId": "my-key"}, KMS_FORM),
    ({"kmsKeyId": f"key/{UUID}"}, KMS_FORM),
    ({"kmsKeyId": "alias/"}, KMS_FORM),
    ({"kmsKeyId": "alias/" + "a" * 251}, KMS_FORM),
    ({"kmsKeyId": f"{KMS}:alias/aws/rds"}, KMS_MANAGED),
    (
        {
            "sourceArn": "arn:aws-us-gov:rds:us-gov-west-1:123456789012:snapshot:s1",
            "kmsKeyId": "arn:aws-us-gov:kms:us-gov-west-1:123456789012:alias/aws/rds",
        },
        KMS_MANAGED,
    ),
]

AWS_ACCEPTED: list[dict[str, Any]] = [
    {"s3BucketName": "abc"},
    {"s3BucketName": "b" * 63},
    {"s3BucketName": "1.2.3"},
    {"s3BucketName": "1.2.3.4.5"},
    {"s3BucketName": "192.168.5.4x"},
    {"s3BucketName": "a--b.c-d"},
    {"s3BucketName": "xn-bucket"},
    {"s3BucketName": "sthree"},
    {"s3BucketName": "amzn-s3-demo"},
    {"s3BucketName": "my-xn--bucket"},
    {"s3BucketName": "s3alias-bucket"},
    {"s3BucketName": "bucket-ol-s3"},
    {"s3BucketName": "bucket-mrap"},
    {"s3BucketName": "bucket-x-s3"},
    {"s3BucketName": "bucket-table-s3"},
    {"s3BucketName": "team-123456789012-us-east-1-an"},
    {"sourceArn": f"{RDS}:snapshot:a"},
    {"sourceArn": f"{RDS}:snapshot:s" + "a" * 254},
    {"sourceArn": f"{RDS}:snapshot:My-Snapshot-1"},
    {"sourceArn": f"{RDS}:cluster:c" + "a" * 62},
    {"sourceArn": f"{RDS}:cluster-snapshot:s" + "a" * 62},
    {"sourceArn": f"{RDS}:cluster-snapshot:rds:c" + "a" * 62 + "-2026-11-28-03-10"},
    {"sourceArn": f"{RDS}:snapshot:awsbackup:job-80f5fbc6-2e1b-ed56-3cf0-71df898be9c6"},
    {"sourceArn": f"{RDS}:cluster-snapshot:awsbackup:job-aea72c7a-bbf2-44a1-be9f-88f4a274f6f7"},
    {"kmsKeyId": UUID},
    {"kmsKeyId": UUID.upper()},
    {"kmsKeyId": MRK},
    {"kmsKeyId": f"{KMS}:key/{MRK}"},
    {"kmsKeyId": f"{KMS}:alias/exports"},
    {"kmsKeyId": "alias/team_a/exports-1"},
    {"kmsKeyId": "alias/" + "a" * 250},
    {"kmsKeyId": "alias/awsome"},
    {"kmsKeyId": f"{KMS}:alias/awsome/key"},
    {
        "sourceArn": "arn:aws-us-gov:rds:us-gov-west-1:123456789012:cluster-snapshot:weekly",
        "kmsKeyId": f"arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/{UUID}",
    },
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


@pytest.mark.parametrize("spec", AWS_ACCEPTED, ids=[json.dumps(s)[:70] for s in AWS_ACCEPTED])
def test_values_aws_accepts_are_accepted(kubectl: Kubectl, crd: None, namespace: str, spec: dict[str, Any]) -> None:
    ok, out = kubectl.try_create(obj(namespace, "ok", **spec))
    assert ok, out


@pytest.mark.parametrize(("spec", "message"), AWS_REFUSED, ids=[json.dumps(s)[:70] for s, _ in AWS_REFUSED])
def test_values_aws_refuses_are_refused_with_the_rule(
    kubectl: Kubectl, crd: None, namespace: str, spec: dict[str, Any], message: str
) -> None:
    ok, out = kubectl.try_create(obj(namespace, "bad", **spec))
    assert not ok
    assert message in out, out
    assert "evaluating rule" not in out, out  # no rule may fail to evaluate (an error instead of its message)


def test_kubectl_apply_shows_the_rule(kubectl: Kubectl, crd: None, namespace: str) -> None:
    bad = obj(namespace, "applied", s3BucketName="exports--x-s3", kmsKeyId=f"{KMS}:alias/aws/rds")
    out = kubectl.run("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert 'The RdsExportTask "applied" is invalid' in out, out
    assert f'spec.s3BucketName: Invalid value: "string": {BUCKET_SUFFIX}' in out, out
    assert 'spec.kmsKeyId: Invalid value: "string": kmsKeyId cannot be an AWS managed key' in out, out


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
    kubectl.run(
        "patch", "rdsexporttask", "pol", "-n", namespace, "--type=merge", "-p", '{"spec": {"tableReport": "Disabled"}}'
    )
    assert kubectl.get("rdsexporttask", "pol", namespace)["spec"]["tableReport"] == "Disabled"


def test_defaults_are_applied(kubectl: Kubectl, crd: None, namespace: str) -> None:
    kubectl.create(obj(namespace, "defaults"))
    spec = kubectl.get("rdsexport", "defaults", namespace)["spec"]
    assert spec["managementPolicy"] == "Create"
    assert spec["deletionPolicy"] == "Cancel"
    assert spec["tableReport"] == "Enabled"


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
    assert header == ["NAME", "IDENTIFIER", "STATUS", "PROGRESS", "GB", "TABLES", "AGE"]
