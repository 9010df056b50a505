"""What each namespace may export: accounts, regions, IAM roles, sources, buckets and KMS keys, decided by the
cluster operator (Helm value), not by the namespace's users. Checked before any AWS call (the spec) and after the
first describe of an observed task (what AWS reports); a refusal is terminal for that spec.

The policy is JSON: ``{"<namespace>" | "*": {"accounts": [...], "regions": [...], "iamRoleArns": [...],
"sourceArns": [...], "s3Buckets": [...], "kmsKeys": [...], "identifiers": [...],
"glueDatabases": [...]}}``; each list holds shell-style
patterns (``fnmatch``) and defaults to ``["*"]``. ``identifiers`` names the export tasks not started by the
namespace's own objects that it may observe or adopt (a task another namespace's object owns is never its own,
whatever the grant says: ``exports.ownership``). No policy at all allows everything (single-tenant clusters);
with a policy, a namespace without an entry (and no ``"*"``) may do nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from rds_export_operator.api.jsontext import load_json
from rds_export_operator.api.spec import ExportSpec, SpecError, parse_arn

_KEYS = {"accounts": "accounts", "regions": "regions", "iamRoleArns": "iam_role_arns"}
_KEYS |= {"sourceArns": "source_arns", "s3Buckets": "s3_buckets", "kmsKeys": "kms_keys", "identifiers": "identifiers"}
_KEYS |= {"glueDatabases": "glue_databases"}  # spec.catalog.database (catalog/)
GRANT_KEYS = tuple(_KEYS)  # every key a grant accepts (the chart's schema must accept each: a static test checks)


@dataclass(frozen=True)
class Grant:
    accounts: tuple[str, ...] = ("*",)
    regions: tuple[str, ...] = ("*",)
    iam_role_arns: tuple[str, ...] = ("*",)
    source_arns: tuple[str, ...] = ("*",)
    s3_buckets: tuple[str, ...] = ("*",)
    kms_keys: tuple[str, ...] = ("*",)
    identifiers: tuple[str, ...] = ("*",)
    glue_databases: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class Tenancy:
    grants: dict[str, Grant] | None = None  # None: no policy, everything allowed

    @classmethod
    def parse(cls, text: str) -> Tenancy:
        raw = load_json(text, lambda reason: ValueError(f"tenancy policy is {reason}"))
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError("tenancy policy must be an object of namespace -> grant")
        grants = {}
        for namespace, grant in raw.items():
            if not isinstance(grant, dict) or set(grant) - set(_KEYS):
                raise ValueError(f"tenancy grant for {namespace!r} must be an object with keys {sorted(_KEYS)}")
            lists = {k: grant.get(k, ["*"]) for k in _KEYS}
            if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists.values()):
                raise ValueError(f"tenancy grant for {namespace!r}: every value must be a list of strings")
            grants[namespace] = Grant(**{_KEYS[k]: tuple(v) for k, v in lists.items()})
        return cls(grants)

    def _grant(self, namespace: str) -> Grant | None:
        assert self.grants is not None
        return self.grants.get(namespace) or self.grants.get("*")

    def refusal(self, spec: ExportSpec) -> str | None:
        """Why the spec's namespace may not run this export, or None if it may."""
        if self.grants is None:
            return None
        return _check(
            self._grant(spec.namespace),
            spec.namespace,
            region=spec.region,
            source=spec.source_arn,
            bucket=spec.s3_bucket_name,
            role=spec.iam_role_arn,
            key=spec.kms_key_id,
        )

    def identifier_refusal(self, namespace: str, identifier: str) -> str | None:
        """Why ``namespace`` may not observe or adopt this task, started outside its own objects, or None."""
        return self._pattern_refusal(namespace, "identifiers", identifier, "observe or adopt export task")

    def source_refusal(self, namespace: str, source_arn: str) -> str | None:
        """Why ``namespace`` may not read this source (a schedule's DB instance or cluster ARN), or None."""
        if self.grants is None:
            return None
        region = parse_arn(source_arn).region
        return _check(
            self._grant(namespace), namespace, region=region, source=source_arn, bucket=None, role=None, key=None
        )

    def catalog_refusal(self, namespace: str, database: str) -> str | None:
        """Why ``namespace`` may not register tables in the Glue database ``database``, or None if it may."""
        return self._pattern_refusal(namespace, "glue_databases", database, "use Glue database")

    def _pattern_refusal(self, namespace: str, key: str, value: str, what: str) -> str | None:
        """Why ``namespace``'s grant does not list ``value`` under ``key`` (a ``Grant`` field), or None."""
        if self.grants is None:
            return None
        grant = self._grant(namespace)
        if grant is None:
            return f"namespace {namespace} is not granted any AWS account by the operator's tenancy policy"
        if not any(fnmatchcase(value, p) for p in getattr(grant, key)):
            return f"namespace {namespace} may not {what} {value}"
        return None

    def task_refusal(self, namespace: str, task: Mapping[str, Any]) -> str | None:
        """Why ``namespace`` may not see this task as AWS reports it (for Observe), or None if it may."""
        if self.grants is None:
            return None
        source = task.get("SourceArn")
        region = parse_arn(source).region if isinstance(source, str) and _is_arn(source) else None
        return _check(
            self._grant(namespace),
            namespace,
            region=region,
            source=source,
            bucket=task.get("S3Bucket"),
            role=task.get("IamRoleArn"),
            key=task.get("KmsKeyId"),
        )


def database_arn(region: str, account: str, kind: str, identifier: str) -> str:
    """The ARN of a DB instance (``kind`` "instance") or cluster: what a schedule's source grant is checked on."""
    partition = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
    return f"arn:{partition}:rds:{region}:{account}:{'db' if kind == 'instance' else 'cluster'}:{identifier}"


def _is_arn(text: str) -> bool:
    try:
        parse_arn(text)
    except SpecError:
        return False
    return True


def _check(
    grant: Grant | None,
    namespace: str,
    *,
    region: str | None,
    source: str | None,
    bucket: str | None,
    role: str | None,
    key: str | None,
) -> str | None:
    if grant is None:
        return f"namespace {namespace} is not granted any AWS account by the operator's tenancy policy"
    accounts = set()
    for arn in (source, role, key):
        if arn and arn.startswith("arn:"):
            if not _is_arn(arn):
                return f"cannot tell the account of {arn}"
            accounts.add(parse_arn(arn).account)
    for account in sorted(accounts):
        if not any(fnmatchcase(account, p) for p in grant.accounts):
            return f"namespace {namespace} may not use AWS account {account}"
    checks = (
        ("region", region, grant.regions),
        ("source", source, grant.source_arns),
        ("S3 bucket", bucket, grant.s3_buckets),
        ("IAM role", role, grant.iam_role_arns),
        ("KMS key", key, grant.kms_keys),
    )
    for what, value, patterns in checks:
        if value and not any(fnmatchcase(str(value), p) for p in patterns):
            return f"namespace {namespace} may not use {what} {value}"
    return None
