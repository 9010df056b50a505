"""spec.py: ARN parsing, source types, identifier validation and derivation, spec parsing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from rds_export_operator.api.spec import (
    MAX_IDENTIFIER_LENGTH,
    Arn,
    DeletionPolicy,
    ManagementPolicy,
    SpecError,
    derive_identifier,
    is_valid_identifier,
    parse_arn,
    parse_spec,
    source_type,
)

IDENTIFIER_RE = re.compile(r"^[A-Za-z](-?[A-Za-z0-9])*\Z")
SNAPSHOT_ARN = "arn:aws:rds:eu-west-1:123456789012:snapshot:nightly"
CREATE_SPEC = {
    "sourceArn": SNAPSHOT_ARN,
    "s3BucketName": "bucket",
    "iamRoleArn": "arn:aws:iam::123456789012:role/export",
    "kmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/abc",
}


def parse(spec: dict[str, object], *, default_region: str = "") -> object:
    return parse_spec(spec, namespace="team", name="orders", uid="uid-1", default_region=default_region)


# -- parse_arn ----------------------------------------------------------------------------------------------------


def test_parse_arn_splits_all_fields() -> None:
    arn = parse_arn("arn:aws:rds:us-east-1:123456789012:cluster-snapshot:weekly")
    assert arn == Arn("aws", "rds", "us-east-1", "123456789012", "cluster-snapshot:weekly")
    assert arn.resource_type == "cluster-snapshot"


@pytest.mark.parametrize(
    ("text", "partition"),
    [
        ("arn:aws-cn:rds:cn-north-1:123456789012:snapshot:s", "aws-cn"),
        ("arn:aws-us-gov:rds:us-gov-west-1:123456789012:snapshot:s", "aws-us-gov"),
    ],
)
def test_parse_arn_accepts_other_partitions(text: str, partition: str) -> None:
    assert parse_arn(text).partition == partition


def test_parse_arn_allows_empty_region_and_account() -> None:
    arn = parse_arn("arn:aws:s3:::my-bucket/some/key")
    assert (arn.region, arn.account, arn.resource) == ("", "", "my-bucket/some/key")
    assert arn.resource_type == "my-bucket"


@pytest.mark.parametrize(
    ("resource", "resource_type"),
    [
        ("snapshot:rds:automated-1", "snapshot"),
        ("snapshot:awsbackup:job-1", "snapshot"),
        ("role/export", "role"),
        ("key/abc:def", "key"),
        ("cluster:aurora", "cluster"),
    ],
)
def test_arn_resource_type(resource: str, resource_type: str) -> None:
    assert parse_arn(f"arn:aws:rds:us-east-1:1:{resource}").resource_type == resource_type


@pytest.mark.parametrize(
    "text",
    [
        "",
        "arn",
        "arn:aws:rds:us-east-1:123456789012",  # no resource
        "arn:aws:rds:us-east-1:123456789012:",  # empty resource
        "arn:gcp:rds:us-east-1:123456789012:snapshot:s",  # partition must start with aws
        "arn:aws:rds:us-east-1:12345678901x:snapshot:s",  # account is digits
        "arn:aws:RDS:us-east-1:123456789012:snapshot:s",  # service is lower case
        "arn:aws::us-east-1:123456789012:snapshot:s",  # service required
        "ARN:aws:rds:us-east-1:123456789012:snapshot:s",
        " arn:aws:rds:us-east-1:123456789012:snapshot:s",
    ],
)
def test_parse_arn_rejects(text: str) -> None:
    with pytest.raises(SpecError, match="not an ARN"):
        parse_arn(text)


def test_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_arn("nope")


_arn_parts = hs.tuples(
    hs.from_regex(r"aws[a-z-]{0,8}", fullmatch=True),
    hs.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
    hs.from_regex(r"[a-z0-9-]{0,16}", fullmatch=True),
    hs.from_regex(r"[0-9]{0,12}", fullmatch=True),
    hs.text(alphabet=hs.characters(blacklist_characters="\n"), min_size=1, max_size=40),
)


@given(_arn_parts)
def test_parse_arn_round_trips(parts: tuple[str, str, str, str, str]) -> None:
    text = "arn:" + ":".join(parts)
    arn = parse_arn(text)
    assert (arn.partition, arn.service, arn.region, arn.account, arn.resource) == parts
    assert f"arn:{arn.partition}:{arn.service}:{arn.region}:{arn.account}:{arn.resource}" == text


def test_parse_arn_rejects_trailing_newline() -> None:
    with pytest.raises(SpecError):
        parse_arn(SNAPSHOT_ARN + "\n")


# -- source_type --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("snapshot:s", "SNAPSHOT"),
        ("snapshot:rds:automated", "SNAPSHOT"),
        ("snapshot:awsbackup:job", "SNAPSHOT"),
        ("cluster-snapshot:s", "CLUSTER"),
        ("cluster-snapshot:rds:automated", "CLUSTER"),
        ("cluster:aurora-1", "CLUSTER"),
    ],
)
def test_source_type(resource: str, expected: str) -> None:
    assert source_type(parse_arn(f"arn:aws:rds:us-east-1:123456789012:{resource}")) == expected


@pytest.mark.parametrize(
    "text",
    [
        "arn:aws:rds:us-east-1:123456789012:db:instance-1",
        "arn:aws:rds:us-east-1:123456789012:og:options",
        "arn:aws:s3:::snapshot",
        "arn:aws:ec2:us-east-1:123456789012:snapshot:snap-1",  # a snapshot, but not RDS's
    ],
)
def test_source_type_rejects_non_rds_export_sources(text: str) -> None:
    with pytest.raises(SpecError, match="sourceArn must be"):
        source_type(parse_arn(text))


# -- is_valid_identifier --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", ["a", "A", "a1", "a-b", "Abc-1-x9", "a" * MAX_IDENTIFIER_LENGTH, "z-9"])
def test_valid_identifiers(identifier: str) -> None:
    assert is_valid_identifier(identifier)


@pytest.mark.parametrize(
    "identifier",
    ["", "1a", "-a", "a-", "a--b", "a_b", "a.b", "a b", "é", "a" * (MAX_IDENTIFIER_LENGTH + 1), "ab-"],
)
def test_invalid_identifiers(identifier: str) -> None:
    assert not is_valid_identifier(identifier)


def test_identifier_with_trailing_newline_is_invalid() -> None:
    assert not is_valid_identifier("abc\n")


# -- derive_identifier ----------------------------------------------------------------------------------------------


def test_derive_identifier_is_readable_and_stable() -> None:
    first = derive_identifier("team", "orders", "uid-1")
    assert first == derive_identifier("team", "orders", "uid-1")
    assert re.fullmatch(r"team-orders-[0-9a-f]{10}", first)


def test_derive_identifier_depends_on_uid() -> None:
    # A re-created object (new UID) must not adopt the previous object's export.
    assert derive_identifier("team", "orders", "uid-1") != derive_identifier("team", "orders", "uid-2")


def test_derive_identifier_separates_namespace_and_name() -> None:
    left, right = derive_identifier("a-b", "c", "u"), derive_identifier("a", "b-c", "u")
    assert left != right
    assert left.startswith("a-b-c-") and right.startswith("a-b-c-")  # same readable part, different hash


@pytest.mark.parametrize(
    ("namespace", "name", "prefix"),
    [
        ("1ns", "x", "x1ns-x-"),  # must start with a letter
        ("", "", "x-"),  # nothing readable at all
        ("--", "__", "x-"),
        ("Team", "Orders.V2", "team-orders-v2-"),
        ("ns", "a..b__c", "ns-a-b-c-"),
    ],
)
def test_derive_identifier_sanitizes(namespace: str, name: str, prefix: str) -> None:
    identifier = derive_identifier(namespace, name, "u")
    assert identifier.startswith(prefix)
    assert len(identifier) == len(prefix) + 10
    assert is_valid_identifier(identifier)


def test_derive_identifier_truncates_long_names_to_the_limit() -> None:
    identifier = derive_identifier("n" * 63, "m" * 253, "u")
    assert len(identifier) == MAX_IDENTIFIER_LENGTH
    assert identifier.startswith("n" * 49 + "-")
    assert is_valid_identifier(identifier)


def test_derive_identifier_truncation_drops_a_dangling_hyphen() -> None:
    # The cut at 49 characters lands right after the "-" between namespace and name.
    identifier = derive_identifier("n" * 48, "name", "u")
    assert identifier.startswith("n" * 48 + "-")
    assert "--" not in identifier
    assert is_valid_identifier(identifier)


@given(hs.text(), hs.text(), hs.text())
def test_derive_identifier_is_always_valid(namespace: str, name: str, uid: str) -> None:
    identifier = derive_identifier(namespace, name, uid)
    assert len(identifier) <= MAX_IDENTIFIER_LENGTH
    assert IDENTIFIER_RE.match(identifier)
    assert is_valid_identifier(identifier)


# Kubernetes namespaces and names never contain "/", the separator the hash input uses.
_k8s_text = hs.text(alphabet=hs.characters(blacklist_categories=["Cs"], blacklist_characters="/"), max_size=30)


@given(_k8s_text, _k8s_text, hs.text(max_size=30), _k8s_text, _k8s_text, hs.text(max_size=30))
def test_distinct_inputs_give_distinct_identifiers(ns1: str, n1: str, u1: str, ns2: str, n2: str, u2: str) -> None:
    same = derive_identifier(ns1, n1, u1) == derive_identifier(ns2, n2, u2)
    assert same == ((ns1, n1, u1) == (ns2, n2, u2))


@given(hs.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True), hs.uuids())
def test_distinct_names_in_a_namespace_give_distinct_identifiers(name: str, uid: object) -> None:
    assert derive_identifier("ns", name, str(uid)) != derive_identifier("ns", name + "-x", str(uid))
    assert derive_identifier("ns", name, str(uid)) != derive_identifier("ns-" + name, "", str(uid))


# -- parse_spec ---------------------------------------------------------------------------------------------------


def test_parse_create_spec_with_defaults() -> None:
    spec = parse_spec(CREATE_SPEC, namespace="team", name="orders", uid="uid-1", default_region="us-east-1")
    assert spec.identifier == derive_identifier("team", "orders", "uid-1")
    assert spec.region == "eu-west-1"  # the source's region wins over the default
    assert spec.management_policy is ManagementPolicy.CREATE
    assert spec.deletion_policy is DeletionPolicy.CANCEL
    assert spec.creates and spec.cancels_on_delete
    assert spec.source_arn == SNAPSHOT_ARN
    assert spec.s3_bucket_name == "bucket"
    assert spec.iam_role_arn == CREATE_SPEC["iamRoleArn"]
    assert spec.kms_key_id == CREATE_SPEC["kmsKeyId"]
    assert spec.s3_prefix is None
    assert spec.export_only == ()


def test_parse_create_spec_with_everything() -> None:
    spec = parse(
        {
            **CREATE_SPEC,
            "exportTaskIdentifier": "my-export",
            "region": "eu-west-1",
            "deletionPolicy": "Retain",
            "s3Prefix": "exports/",
            "exportOnly": ["db.schema.table", "db2"],
        }
    )
    assert spec.identifier == "my-export"
    assert spec.region == "eu-west-1"
    assert spec.deletion_policy is DeletionPolicy.RETAIN
    assert spec.creates and not spec.cancels_on_delete
    assert spec.s3_prefix == "exports/"
    assert spec.export_only == ("db.schema.table", "db2")


@pytest.mark.parametrize("field", ["sourceArn", "s3BucketName", "iamRoleArn", "kmsKeyId"])
def test_create_requires_fields(field: str) -> None:
    with pytest.raises(SpecError, match=f"requires {field}$"):
        parse({k: v for k, v in CREATE_SPEC.items() if k != field})


def test_create_lists_all_missing_fields() -> None:
    with pytest.raises(SpecError, match="requires sourceArn, s3BucketName, iamRoleArn, kmsKeyId"):
        parse({"s3BucketName": ""}, default_region="us-east-1")


def test_observe_requires_identifier() -> None:
    with pytest.raises(SpecError, match="Observe requires exportTaskIdentifier"):
        parse({"managementPolicy": "Observe"}, default_region="us-east-1")


def test_observe_uses_default_region_and_never_cancels() -> None:
    spec = parse({"managementPolicy": "Observe", "exportTaskIdentifier": "theirs"}, default_region="ap-south-1")
    assert (spec.identifier, spec.region) == ("theirs", "ap-south-1")
    assert not spec.creates
    assert not spec.cancels_on_delete  # even with the default deletionPolicy Cancel
    assert spec.deletion_policy is DeletionPolicy.CANCEL


def test_observe_prefers_spec_region_to_default() -> None:
    spec = parse(
        {"managementPolicy": "Observe", "exportTaskIdentifier": "theirs", "region": "us-west-2"},
        default_region="ap-south-1",
    )
    assert spec.region == "us-west-2"


def test_observe_takes_region_from_source_arn() -> None:
    spec = parse({"managementPolicy": "Observe", "exportTaskIdentifier": "t", "sourceArn": SNAPSHOT_ARN})
    assert spec.region == "eu-west-1"


def test_no_region_at_all_is_an_error() -> None:
    with pytest.raises(SpecError, match="no region"):
        parse({"managementPolicy": "Observe", "exportTaskIdentifier": "t"})


def test_region_must_match_source_arn() -> None:
    with pytest.raises(SpecError, match="differs from the region of sourceArn"):
        parse({**CREATE_SPEC, "region": "us-east-1"})


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("managementPolicy", "Adopt", "Adopt"),
        ("deletionPolicy", "Orphan", "Orphan"),
        ("exportTaskIdentifier", "1-bad", "not a valid export task identifier"),
        ("exportTaskIdentifier", "a" * 61, "not a valid export task identifier"),
        ("sourceArn", "snapshot-name", "not an ARN"),
        ("sourceArn", "arn:aws:rds:eu-west-1:123456789012:db:instance", "sourceArn must be"),
    ],
)
def test_parse_spec_rejects(field: str, value: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse({**CREATE_SPEC, field: value})


def test_parse_spec_accepts_cluster_source() -> None:
    spec = parse({**CREATE_SPEC, "sourceArn": "arn:aws:rds:us-east-2:123456789012:cluster:aurora"})
    assert spec.region == "us-east-2"
