from __future__ import annotations

import pytest

from constants import ACCOUNT, ROLE
from rds_export_operator.api.spec import ExportSpec, parse_spec
from rds_export_operator.aws.tenancy import Tenancy


def spec_of(role: str = ROLE, key_account: str = ACCOUNT) -> ExportSpec:
    body = {
        "sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:s",
        "s3BucketName": "bucket",
        "iamRoleArn": role,
        "kmsKeyId": f"arn:aws:kms:us-east-1:{key_account}:key/k",
    }
    return parse_spec(body, namespace="team-a", name="n", uid="u", default_region="")


SPEC = spec_of()


def test_no_policy_allows_everything() -> None:
    assert Tenancy.parse("").refusal(SPEC) is None


def test_namespace_without_grant_is_refused() -> None:
    policy = Tenancy.parse('{"team-b": {}}')
    assert "not granted any AWS account" in (policy.refusal(SPEC) or "")


def test_wildcard_namespace_applies_to_the_rest() -> None:
    assert Tenancy.parse('{"*": {"accounts": ["1234*"]}}').refusal(SPEC) is None


@pytest.mark.parametrize(
    ("grant", "refused"),
    [
        ('{"accounts": ["999999999999"]}', "may not use AWS account 123456789012"),
        ('{"regions": ["eu-*"]}', "may not use region us-east-1"),
        ('{"iamRoleArns": ["arn:aws:iam::123456789012:role/other"]}', "may not use IAM role"),
        ('{"sourceArns": ["*:snapshot:other-*"]}', "may not use source"),
        ('{"s3Buckets": ["team-b-*"]}', "may not use S3 bucket bucket"),
        ('{"kmsKeys": ["*:key/other"]}', "may not use KMS key"),
        ('{"accounts": ["123456789012"], "regions": ["us-*"], "iamRoleArns": ["*:role/rds-s3-*"]}', None),
        ('{"sourceArns": ["*:snapshot:s"], "s3Buckets": ["buck*"], "kmsKeys": ["*:key/k"]}', None),
    ],
)
def test_each_dimension_is_checked(grant: str, refused: str | None) -> None:
    reason = Tenancy.parse(f'{{"team-a": {grant}}}').refusal(SPEC)
    assert reason is None if refused is None else refused in (reason or "")


def test_the_kms_key_account_counts_too() -> None:
    spec = spec_of(role="arn:aws:iam::123456789012:role/r", key_account="666666666666")
    assert "666666666666" in (Tenancy.parse('{"*": {"accounts": ["123456789012"]}}').refusal(spec) or "")


@pytest.mark.parametrize("text", ["[]", "{", '{"a": {"roles": []}}', '{"a": {"accounts": "x"}}', '{"a": 1}'])
def test_bad_policies_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="tenancy"):
        Tenancy.parse(text)


TASK = {
    "ExportTaskIdentifier": "theirs",
    "SourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:team-b-orders",
    "S3Bucket": "team-b-exports",
    "IamRoleArn": "arn:aws:iam::123456789012:role/team-b",
    "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/k",
}


@pytest.mark.parametrize(
    ("grant", "allowed"),
    [
        ('{"s3Buckets": ["team-a-*"]}', False),
        ('{"sourceArns": ["*:snapshot:team-a-*"]}', False),
        ('{"iamRoleArns": ["*:role/team-a"]}', False),
        ('{"regions": ["eu-*"]}', False),
        ('{"s3Buckets": ["team-b-*"], "sourceArns": ["*:snapshot:team-b-*"]}', True),
    ],
)
def test_an_observed_task_is_checked_against_what_aws_reports(grant: str, allowed: bool) -> None:
    policy = Tenancy.parse(f'{{"team-a": {grant}}}')
    assert (policy.task_refusal("team-a", TASK) is None) is allowed
    assert Tenancy.parse("").task_refusal("team-a", TASK) is None


def test_glue_databases_are_granted_by_pattern() -> None:
    policy = Tenancy.parse('{"team-a": {"glueDatabases": ["team_a_*"]}}')
    assert policy.catalog_refusal("team-a", "team_a_analytics") is None
    assert "may not use Glue database analytics" in (policy.catalog_refusal("team-a", "analytics") or "")
    assert "not granted" in (policy.catalog_refusal("team-b", "team_a_analytics") or "")
    assert Tenancy.parse("").catalog_refusal("anyone", "anything") is None
