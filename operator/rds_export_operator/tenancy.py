"""Which AWS accounts, regions and IAM roles each namespace may use: decided by the cluster operator (Helm
values), not by the namespace's users. Checked before any AWS call; a refusal is terminal for that spec.

The policy is JSON: ``{"<namespace>" | "*": {"accounts": [...], "regions": [...], "iamRoleArns": [...]}}``;
each list holds shell-style patterns (``fnmatch``) and defaults to ``["*"]``. No policy at all allows
everything (single-tenant clusters); with a policy, a namespace without an entry (and no ``"*"``) may do nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from rds_export_operator.spec import ExportSpec, SpecError, parse_arn

_KEYS = {"accounts", "regions", "iamRoleArns"}


@dataclass(frozen=True)
class Grant:
    accounts: tuple[str, ...] = ("*",)
    regions: tuple[str, ...] = ("*",)
    iam_role_arns: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class Tenancy:
    grants: dict[str, Grant] | None = None  # None: no policy, everything allowed

    @classmethod
    def parse(cls, text: str) -> Tenancy:
        if not text.strip():
            return cls()
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"tenancy policy is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError("tenancy policy must be an object of namespace -> grant")
        grants = {}
        for namespace, grant in raw.items():
            if not isinstance(grant, dict) or set(grant) - _KEYS:
                raise ValueError(f"tenancy grant for {namespace!r} must be an object with keys {sorted(_KEYS)}")
            lists = {k: grant.get(k, ["*"]) for k in _KEYS}
            if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists.values()):
                raise ValueError(f"tenancy grant for {namespace!r}: every value must be a list of strings")
            grants[namespace] = Grant(tuple(lists["accounts"]), tuple(lists["regions"]), tuple(lists["iamRoleArns"]))
        return cls(grants)

    def refusal(self, namespace: str, spec: ExportSpec) -> str | None:
        """Why this namespace may not run this export, or None if it may."""
        if self.grants is None:
            return None
        grant = self.grants.get(namespace) or self.grants.get("*")
        if grant is None:
            return f"namespace {namespace} is not granted any AWS account by the operator's tenancy policy"
        accounts = set()
        for arn in (spec.source_arn, spec.iam_role_arn, spec.kms_key_id):
            if arn and arn.startswith("arn:"):
                try:
                    accounts.add(parse_arn(arn).account)
                except SpecError:
                    return f"cannot tell the account of {arn}"
        for account in sorted(accounts):
            if not any(fnmatchcase(account, p) for p in grant.accounts):
                return f"namespace {namespace} may not use AWS account {account}"
        if not any(fnmatchcase(spec.region, p) for p in grant.regions):
            return f"namespace {namespace} may not use region {spec.region}"
        if spec.iam_role_arn and not any(fnmatchcase(spec.iam_role_arn, p) for p in grant.iam_role_arns):
            return f"namespace {namespace} may not use IAM role {spec.iam_role_arn}"
        return None
