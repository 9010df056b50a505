"""Who made a call: the access keys moto's STS hands out in AssumeRole, mapped back to the role and session.

Calls act in the assumed role's account, as in AWS (STS API reference, AssumeRole), which moto's export actions
do not follow. boto3 signs with the assumed role's access key id (SigV4 ``Credential=<AKID>/<date>/<region>/
<service>/...``), so remembering AssumeRole's answers is enough to name the role behind every later request.
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass

DEFAULT_ACCOUNT = "123456789012"
_CREDENTIAL = re.compile(r"Credential=(?P<akid>[^/]+)/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/")
_ACCOUNT_IN_ARN = re.compile(r"^arn:[a-z-]+:(?:iam|sts)::(?P<account>\d{12}):")


@dataclass(frozen=True)
class Identity:
    caller: str  # the assumed role's ARN, or "default" for the stand-in's own (non-STS) credentials
    account: str
    session_name: str | None = None
    external_id: str | None = None


DEFAULT = Identity("default", DEFAULT_ACCOUNT)


def signature(authorization: str) -> tuple[str | None, str | None]:
    """(access key id, region) of a SigV4 ``Authorization`` header, or Nones."""
    match = _CREDENTIAL.search(authorization)
    return (match.group("akid"), match.group("region")) if match else (None, None)


class IdentityBook:
    def __init__(self) -> None:
        self._by_key: dict[str, Identity] = {}
        self._lock = threading.Lock()

    def record_assume_role(self, params: dict[str, str], answer: bytes) -> Identity | None:
        """Remember the access key of a successful AssumeRole answer (moto's XML) under its role and session."""
        try:
            root = ET.fromstring(answer)
        except ET.ParseError:
            return None
        akid = root.findtext(".//{*}Credentials/{*}AccessKeyId")
        if not akid:
            return None  # an error answer
        role_arn = params.get("RoleArn", "")
        # moto puts the assumed role into the account named by the role ARN; its answer says so too.
        user_arn = root.findtext(".//{*}AssumedRoleUser/{*}Arn") or role_arn
        match = _ACCOUNT_IN_ARN.match(user_arn) or _ACCOUNT_IN_ARN.match(role_arn)
        identity = Identity(
            caller=role_arn,
            account=match.group("account") if match else DEFAULT_ACCOUNT,
            session_name=params.get("RoleSessionName"),
            external_id=params.get("ExternalId"),
        )
        with self._lock:
            self._by_key[akid] = identity
        return identity

    def identify(self, access_key_id: str | None) -> Identity:
        with self._lock:
            return self._by_key.get(access_key_id or "", DEFAULT)
