from __future__ import annotations

import pytest

from rds_export_operator.spec import parse_spec
from rds_export_operator.tenancy import Tenancy

SPEC = parse_spec(
    {
        "sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:s",
        "s3BucketName": "bucket",
        "iamRoleArn": "arn:aws:iam::123456789012:role/rds-s3-export",
        "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/k",
    },
    namespace="team-a",
    name="n",
    uid="u",
    default_region="",
)


def test_no_policy_allows_everything() -> None:
    assert Tenancy.parse("").refusal("anything", SPEC) is None


def test_namespace_without_grant_is_refused() -> None:
    policy = Tenancy.parse('{"team-b": {}}')
    assert "not granted any AWS account" in (policy.refusal("team-a", SPEC) or "")


def test_wildcard_namespace_applies_to_the_rest() -> None:
    assert Tenancy.parse('{"*": {"accounts": ["1234*"]}}').refusal("team-a", SPEC) is None


@pytest.mark.parametrize(
    ("grant", "refused"),
    [
        ('{"accounts": ["999999999999"]}', "may not use AWS account 123456789012"),
        ('{"regions": ["eu-*"]}', "may not use region us-east-1"),
        ('{"iamRoleArns": ["arn:aws:iam::123456789012:role/other"]}', "may not use IAM role"),
        ('{"accounts": ["123456789012"], "regions": ["us-*"], "iamRoleArns": ["*:role/rds-s3-*"]}', None),
    ],
)
def test_each_dimension_is_checked(grant: str, refused: str | None) -> None:
    reason = Tenancy.parse(f'{{"team-a": {grant}}}').refusal("team-a", SPEC)
    assert reason is None if refused is None else refused in (reason or "")


def test_the_kms_key_account_counts_too() -> None:
    spec = parse_spec(
        {
            "sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:s",
            "s3BucketName": "bucket",
            "iamRoleArn": "arn:aws:iam::123456789012:role/r",
            "kmsKeyId": "arn:aws:kms:us-east-1:666666666666:key/k",
        },
        namespace="team-a",
        name="n",
        uid="u",
        default_region="",
    )
    assert "666666666666" in (Tenancy.parse('{"*": {"accounts": ["123456789012"]}}').refusal("team-a", spec) or "")


@pytest.mark.parametrize("text", ["[]", "{", '{"a": {"roles": []}}', '{"a": {"accounts": "x"}}', '{"a": 1}'])
def test_bad_policies_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="tenancy"):
        Tenancy.parse(text)
