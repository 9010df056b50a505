"""Typed view of an RdsExportTask's spec: parsing, identifier derivation and ARN parsing (pure)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rds_export_operator.aws.identity import Identity

MAX_IDENTIFIER_LENGTH = 60
_IDENTIFIER = re.compile(r"[A-Za-z](-?[A-Za-z0-9])*")
_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):(?P<account>[0-9]*):(?P<resource>.+)"
)
_RDS_SOURCE_TYPES = {"snapshot": "SNAPSHOT", "cluster-snapshot": "CLUSTER", "cluster": "CLUSTER"}


class SpecError(ValueError):
    """The spec cannot be acted on; the message says which field and why (admission should catch most)."""


class ManagementPolicy(StrEnum):
    CREATE = "Create"
    OBSERVE = "Observe"


class DeletionPolicy(StrEnum):
    CANCEL = "Cancel"
    RETAIN = "Retain"


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str

    @property
    def resource_type(self) -> str:
        return self.resource.split(":", 1)[0].split("/", 1)[0]


def parse_arn(text: str) -> Arn:
    match = _ARN.fullmatch(text)
    if not match:
        raise SpecError(f"not an ARN: {text!r}")
    return Arn(**match.groupdict())


def source_type(arn: Arn) -> str:
    """SNAPSHOT or CLUSTER, as DescribeExportTasks reports it, for an RDS export source ARN."""
    if arn.service != "rds" or arn.resource_type not in _RDS_SOURCE_TYPES:
        raise SpecError(
            f"sourceArn must be an RDS snapshot, cluster snapshot or cluster ARN, not {arn.resource_type!r}"
        )
    return _RDS_SOURCE_TYPES[arn.resource_type]


def is_valid_identifier(identifier: str) -> bool:
    return len(identifier) <= MAX_IDENTIFIER_LENGTH and bool(_IDENTIFIER.fullmatch(identifier))


def derive_identifier(namespace: str, name: str, uid: str) -> str:
    """A valid, collision-safe export task identifier: readable ``<namespace>-<name>`` plus a hash.

    The hash covers namespace, name and UID, so ``a-b``/``c`` and ``a``/``b-c`` differ, and a re-created object
    (new UID) starts a new export instead of adopting the old one's.
    """
    digest = hashlib.sha256(f"{namespace}/{name}/{uid}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9]+", "-", f"{namespace}-{name}".lower()).strip("-")
    if not readable[:1].isalpha():
        readable = f"x{readable}"
    readable = readable[: MAX_IDENTIFIER_LENGTH - len(digest) - 1].rstrip("-")
    return f"{readable}-{digest}"


@dataclass(frozen=True)
class ExportSpec:
    identifier: str
    region: str
    management_policy: ManagementPolicy
    deletion_policy: DeletionPolicy
    source_arn: str | None = None
    s3_bucket_name: str | None = None
    iam_role_arn: str | None = None
    kms_key_id: str | None = None
    s3_prefix: str | None = None
    export_only: tuple[str, ...] = ()
    namespace: str = ""
    derived_identifier: bool = True  # the identifier derived from this object's UID: no other object can hold it
    identity: Identity | None = None  # the AWS identity the namespace uses; None: the operator's own

    @property
    def creates(self) -> bool:
        return self.management_policy is ManagementPolicy.CREATE

    @property
    def cancels_on_delete(self) -> bool:
        return self.creates and self.deletion_policy is DeletionPolicy.CANCEL


def parse_object_spec(spec: Mapping[str, Any], meta: Mapping[str, Any], default_region: str) -> ExportSpec:
    """``parse_spec`` of an object: its namespace, name and UID from its metadata."""
    return parse_spec(
        spec,
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        default_region=default_region,
    )


def parse_spec(spec: Mapping[str, Any], *, namespace: str, name: str, uid: str, default_region: str) -> ExportSpec:
    """Validate what admission may not have (objects stored before a CRD upgrade) and resolve defaults."""
    try:
        management = ManagementPolicy(spec.get("managementPolicy", "Create"))
        deletion = DeletionPolicy(spec.get("deletionPolicy", "Cancel"))
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    source_arn = spec.get("sourceArn")
    required = ("sourceArn", "s3BucketName", "iamRoleArn", "kmsKeyId")
    if management is ManagementPolicy.CREATE and (missing := [f for f in required if not spec.get(f)]):
        raise SpecError(f"managementPolicy Create requires {', '.join(missing)}")
    identifier = spec.get("exportTaskIdentifier")
    if management is ManagementPolicy.OBSERVE and not identifier:
        raise SpecError("managementPolicy Observe requires exportTaskIdentifier")
    derived = derive_identifier(namespace, name, uid)
    identifier = identifier or derived
    if not is_valid_identifier(identifier):
        raise SpecError(f"exportTaskIdentifier {identifier!r} is not a valid export task identifier")
    region = spec.get("region") or ""
    if source_arn:
        arn = parse_arn(source_arn)
        source_type(arn)
        if region and region != arn.region:
            raise SpecError(f"region {region!r} differs from the region of sourceArn ({arn.region!r})")
        region = arn.region
    region = region or default_region
    if not region:
        raise SpecError("no region: set spec.region, or give the operator a default region")
    return ExportSpec(
        identifier=identifier,
        region=region,
        management_policy=management,
        deletion_policy=deletion,
        source_arn=source_arn,
        s3_bucket_name=spec.get("s3BucketName"),
        iam_role_arn=spec.get("iamRoleArn"),
        kms_key_id=spec.get("kmsKeyId"),
        s3_prefix=spec.get("s3Prefix"),
        export_only=tuple(spec.get("exportOnly") or ()),
        namespace=namespace,
        derived_identifier=identifier == derived,
    )
