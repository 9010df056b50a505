"""Which AWS identity a namespace uses, and boto3 clients that act as it (STS AssumeRole, cached credentials).

The cluster admin maps namespaces to IAM roles (as ACK's cross-account resource management and Crossplane's
ProviderConfig do); the operator assumes the role before any AWS call for an object in that namespace, so AWS
IAM, not only the operator, decides what each team may export. The mapping is JSON (the ConfigMap key
``identities.json``; the runtime has no YAML parser and Helm renders JSON with ``toPrettyJson``)::

    {"rules": [
        {"namespace": "team-a", "roleArn": "arn:aws:iam::111111111111:role/exports-a", "externalId": "x"},
        {"namespaceSelector": {"matchLabels": {"team": "b"}}, "roleArn": "arn:aws:iam::222222222222:role/b",
         "sessionDuration": 3600}
     ],
     "default": "none"}

Rules are tried in order, the first match wins. A namespace no rule matches gets ``default``: ``"none"`` (a
refusal: the object may do nothing) or ``"operator"`` (the operator's own identity). ``default`` defaults to
``"none"`` when there are rules and to ``"operator"`` when there are none, so no mapping (or an empty one) is the
single-tenant operator of before. ``namespaceSelector`` is a Kubernetes label selector (``matchLabels`` and
``matchExpressions``; ``{}`` matches every namespace).

Credentials are cached per (role, external id, duration, namespace): the RoleSessionName names the namespace
(``rdsexp-<namespace>``), which is what CloudTrail then shows as the caller; the object itself appears in
CloudTrail as the request's ExportTaskIdentifier. botocore's ``DeferredRefreshableCredentials`` call AssumeRole
on first use and again before expiry (from 15 minutes before it, or a third of a shorter session), under
botocore's own lock; no lock of ours is held across an AWS call.

STS failures (AccessDenied while a trust policy is created or changed, throttling, network) raise
``IdentityUnavailable``: retryable, and never a verdict on the object's spec.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session

from rds_export_operator.api.jsontext import load_json
from rds_export_operator.aws.client_cache import ClientCache

if TYPE_CHECKING:
    from mypy_boto3_rds.client import RDSClient

DATA_KEY = "identities.json"
OPERATOR_DEFAULT = "operator"
NO_DEFAULT = "none"
NOT_PERMITTED = "NotPermitted"

_RULE_KEYS = ("namespace", "namespaceSelector", "roleArn", "externalId", "sessionDuration")
_TOP_KEYS = ("rules", "default")
_ROLE_ARN = re.compile(
    r"arn:(?P<partition>aws(?:-[a-z]+)*):iam::(?P<account>\d{12}):role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}", re.ASCII
)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_SESSION_UNSAFE = re.compile(r"[^\w+=,.@-]", re.ASCII)
MIN_SESSION_DURATION, MAX_SESSION_DURATION = 900, 43200  # what STS accepts (the role's maximum may be lower)
DEFAULT_SESSION_DURATION = 3600  # STS's default when DurationSeconds is not sent
MAX_SESSION_NAME = 64


class MappingError(ValueError):
    """The identity mapping is invalid; ``problems`` says what, one entry per problem, each with its place."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid identity mapping: " + "; ".join(problems))
        self.problems = tuple(problems)


class IdentityUnavailable(Exception):
    """The identity cannot be used right now (STS refused or failed, mapping not loaded): retry later.

    ``code`` is the AWS error code (``AccessDenied``, ``Throttling``, ...) or one of ours (``MappingNotLoaded``,
    ``NamespaceLabelsUnavailable``, or an exception type name for network errors).
    """

    def __init__(self, code: str, message: str, role_arn: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.role_arn = code, message, role_arn


@dataclass(frozen=True)
class Identity:
    """An AWS identity: an IAM role assumed for ``namespace``, or (``role_arn`` None) the operator's own."""

    role_arn: str | None = None
    external_id: str | None = None
    session_duration: int | None = None  # None: STS's default (3600 s)
    namespace: str = ""  # the RoleSessionName names it; "" for the operator's own identity

    @property
    def is_operator(self) -> bool:
        return self.role_arn is None

    def __str__(self) -> str:
        return "the operator's own AWS identity" if self.role_arn is None else f"role {self.role_arn}"


OPERATOR = Identity()


@dataclass(frozen=True)
class Refusal:
    """The namespace has no AWS identity: its objects may make no AWS call (terminal until the mapping changes)."""

    namespace: str
    message: str
    reason: str = NOT_PERMITTED


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector: every ``matchLabels`` pair and every expression must hold; empty matches all."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


@dataclass(frozen=True)
class Rule:
    identity: Identity  # namespace "" here; resolve() fills in the namespace it matched
    namespace: str | None = None
    selector: LabelSelector | None = None

    def matches(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if self.namespace is not None:
            return namespace == self.namespace
        return self.selector is not None and self.selector.matches(labels)


EMPTY_MAPPING = (
    'the mapping is empty: say which identity a namespace gets ({"default": "operator"} for the operator\'s own, '
    '{"default": "none"} for none, or rules)'
)


@dataclass(frozen=True)
class IdentityMapping:
    """The parsed mapping (immutable; a reload replaces it whole). ``IdentityMapping()``: single tenant."""

    rules: tuple[Rule, ...] = ()
    default: str | None = None  # None: "none" with rules, "operator" without

    @property
    def effective_default(self) -> str:
        if self.default is not None:
            return self.default
        return NO_DEFAULT if self.rules else OPERATOR_DEFAULT

    @property
    def needs_labels(self) -> bool:
        """Whether resolving needs the namespace's labels (some rule has a selector)."""
        return any(rule.selector is not None for rule in self.rules)

    def resolve(self, namespace: str, labels: Mapping[str, str] | None = None) -> Identity | Refusal:
        """The identity of ``namespace`` (pure). ``labels`` are the namespace's labels, needed if ``needs_labels``."""
        for rule in self.rules:
            if rule.selector is not None and labels is None:
                raise ValueError("this mapping has namespace selectors: resolving needs the namespace's labels")
            if rule.matches(namespace, labels or {}):
                return Identity(
                    rule.identity.role_arn, rule.identity.external_id, rule.identity.session_duration, namespace
                )
        if self.effective_default == OPERATOR_DEFAULT:
            return OPERATOR
        return Refusal(namespace, f"no AWS identity mapped for namespace {namespace}")

    @classmethod
    def parse(cls, text: str) -> IdentityMapping:
        """Parse and validate the JSON mapping; raise MappingError listing every problem. Blank: no mapping."""
        raw = load_json(text, lambda reason: MappingError([reason]))
        return cls() if raw is None else cls.from_object(raw)

    @classmethod
    def from_configmap_data(cls, data: Mapping[str, str] | None) -> IdentityMapping:
        """The mapping held by a ConfigMap's ``data`` (key ``identities.json``). An empty one (no data, blank, or
        neither rules nor a default) is refused like an invalid one, so the last good mapping stays in force: the
        operator's own identity for every namespace is said explicitly (``{"default": "operator"}``), never a
        consequence of an edit that emptied the ConfigMap (issue 23)."""
        if not data:
            raise MappingError([EMPTY_MAPPING])
        if DATA_KEY not in data:
            raise MappingError([f"the ConfigMap has no key {DATA_KEY} (it has: {', '.join(sorted(data))})"])
        mapping = cls.parse(data[DATA_KEY])
        if mapping.default is None and not mapping.rules:
            raise MappingError([EMPTY_MAPPING])
        return mapping

    @classmethod
    def from_object(cls, raw: Any) -> IdentityMapping:
        problems: list[str] = []
        if not isinstance(raw, dict):
            raise MappingError([f"the mapping must be an object with keys {list(_TOP_KEYS)}, not {_kind(raw)}"])
        unknown = sorted(set(raw) - set(_TOP_KEYS))
        if unknown:
            problems.append(f"unknown keys {unknown} (allowed: {list(_TOP_KEYS)})")
        default = raw.get("default")
        if default is not None and default not in (OPERATOR_DEFAULT, NO_DEFAULT):
            problems.append(f'default must be "{OPERATOR_DEFAULT}" or "{NO_DEFAULT}", not {default!r}')
        raw_rules = raw.get("rules", [])
        rules: list[Rule] = []
        if not isinstance(raw_rules, list):
            problems.append(f"rules must be a list, not {_kind(raw_rules)}")
            raw_rules = []
        seen: dict[object, int] = {}
        catch_all: int | None = None
        for index, raw_rule in enumerate(raw_rules):
            where = f"rules[{index}]"
            rule = _parse_rule(raw_rule, where, problems)
            if rule is None:
                continue
            key: object = ("namespace", rule.namespace) if rule.namespace is not None else rule.selector
            what = f"namespace {rule.namespace}" if rule.namespace is not None else "the same namespaceSelector"
            if key in seen:
                problems.append(f"{where}: {what} is already mapped by rules[{seen[key]}]; this rule never matches")
            elif catch_all is not None:
                problems.append(
                    f"{where}: never matches: rules[{catch_all}] has an empty namespaceSelector (every namespace)"
                )
            seen.setdefault(key, index)
            if rule.selector is not None and rule.selector.empty and catch_all is None:
                catch_all = index
            rules.append(rule)
        if problems:
            raise MappingError(problems)
        return cls(tuple(rules), default)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _parse_rule(raw: Any, where: str, problems: list[str]) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a rule must be an object, not {_kind(raw)}")
        return None
    before = len(problems)
    unknown = sorted(set(raw) - set(_RULE_KEYS))
    if unknown:
        problems.append(f"{where}: unknown keys {unknown} (allowed: {list(_RULE_KEYS)})")
    namespace, selector = raw.get("namespace"), None
    if ("namespace" in raw) == ("namespaceSelector" in raw):
        problems.append(f"{where}: give exactly one of namespace and namespaceSelector")
    elif "namespace" in raw:
        if not isinstance(namespace, str) or not _DNS_LABEL.fullmatch(namespace):
            problems.append(f"{where}.namespace: {namespace!r} is not a namespace name (a DNS-1123 label)")
    else:
        selector = _parse_selector(raw["namespaceSelector"], f"{where}.namespaceSelector", problems)
    role_arn = raw.get("roleArn")
    if role_arn is None:
        problems.append(f"{where}: roleArn is required")
    elif not isinstance(role_arn, str) or not _ROLE_ARN.fullmatch(role_arn):
        problems.append(f"{where}.roleArn: {role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    external_id = raw.get("externalId")
    if external_id is not None and (not isinstance(external_id, str) or not _EXTERNAL_ID.fullmatch(external_id)):
        problems.append(f"{where}.externalId: must be 2 to 1224 characters of letters, digits and +=,.@:/-_")
    duration = raw.get("sessionDuration")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int)
        or not MIN_SESSION_DURATION <= duration <= MAX_SESSION_DURATION
    ):
        problems.append(
            f"{where}.sessionDuration: must be whole seconds from {MIN_SESSION_DURATION} to {MAX_SESSION_DURATION}, "
            f"not {duration!r}"
        )
    if len(problems) > before:
        return None
    return Rule(Identity(role_arn, external_id, duration), namespace, selector)


def _parse_selector(raw: Any, where: str, problems: list[str]) -> LabelSelector | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object with matchLabels and/or matchExpressions")
        return None
    before = len(problems)
    unknown = sorted(set(raw) - {"matchLabels", "matchExpressions"})
    if unknown:
        problems.append(f"{where}: unknown keys {unknown} (allowed: matchLabels, matchExpressions)")
    labels = raw.get("matchLabels", {})
    if not isinstance(labels, dict):
        problems.append(f"{where}.matchLabels: must be an object of label -> value")
        labels = {}
    for key, value in labels.items():
        if not _valid_label_key(key):
            problems.append(f"{where}.matchLabels: {key!r} is not a label key")
        if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
            problems.append(f"{where}.matchLabels[{key!r}]: {value!r} is not a label value")
    expressions = raw.get("matchExpressions", [])
    if not isinstance(expressions, list):
        problems.append(f"{where}.matchExpressions: must be a list")
        expressions = []
    requirements = []
    for index, expr in enumerate(expressions):
        at = f"{where}.matchExpressions[{index}]"
        if not isinstance(expr, dict) or set(expr) - {"key", "operator", "values"}:
            problems.append(f"{at}: must be an object with key, operator and values")
            continue
        key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values", [])
        if not _valid_label_key(key):
            problems.append(f"{at}.key: {key!r} is not a label key")
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            problems.append(f"{at}.operator: must be In, NotIn, Exists or DoesNotExist, not {operator!r}")
            continue
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            problems.append(f"{at}.values: must be a list of strings")
            continue
        if operator in ("In", "NotIn") and not values:
            problems.append(f"{at}.values: must not be empty for {operator}")
        if operator in ("Exists", "DoesNotExist") and values:
            problems.append(f"{at}.values: must be empty for {operator}")
        requirements.append(Requirement(str(key), operator, frozenset(values)))
    if len(problems) > before:
        return None
    return LabelSelector(tuple(sorted(labels.items())), tuple(requirements))


def _valid_label_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix)):
        return False
    return bool(_LABEL_NAME.fullmatch(name))


def session_name(namespace: str, name: str = "") -> str:
    """``rdsexp-<namespace>[-<name>]`` as a RoleSessionName: at most 64 characters of ``[\\w+=,.@-]``.

    Too long or with other characters: cut, with 8 hex digits of a hash of the whole name appended, so that two
    long names stay distinct.
    """
    full = "-".join(part for part in ("rdsexp", namespace, name) if part)
    safe = _SESSION_UNSAFE.sub("-", full)
    if safe == full and len(full) <= MAX_SESSION_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{safe[: MAX_SESSION_NAME - len(digest) - 1]}-{digest}"


def role_account(role_arn: str) -> str:
    match = _ROLE_ARN.fullmatch(role_arn)
    if not match:
        raise ValueError(f"not an IAM role ARN: {role_arn!r}")
    return match["account"]


def refresh_windows(duration: int) -> tuple[int, int]:
    """(advisory, mandatory) seconds before expiry at which credentials are refreshed.

    botocore's defaults (15 and 10 minutes) would refresh a 15-minute session on every call; shorter sessions get
    a third and a sixth of their length.
    """
    return min(15 * 60, duration // 3), min(10 * 60, duration // 6)


class _AssumedRoleCredentials(botocore.credentials.DeferredRefreshableCredentials):
    """Fetched on first use, refreshed before expiry; the refresh windows follow the session's length."""

    def __init__(
        self, refresh_using: Callable[[], dict[str, str]], time_fetcher: Callable[[], datetime], duration: int
    ) -> None:
        super().__init__(refresh_using, "assume-role", time_fetcher)
        self._advisory_refresh_timeout, self._mandatory_refresh_timeout = refresh_windows(duration)


class _Provider(botocore.credentials.CredentialProvider):
    METHOD = "rds-export-assume-role"

    def __init__(self, credentials: botocore.credentials.Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> botocore.credentials.Credentials:
        return self._credentials


class IdentityClients:
    """The boto3 session of one identity and its RDS (and S3) client per region (created once, shared; thread-safe)."""

    def __init__(
        self, identity: Identity, session: boto3.session.Session, config: botocore.config.Config, lock: threading.Lock
    ) -> None:
        self.identity, self.session = identity, session
        self._config = config
        self._made = ClientCache()  # bounded: evicted clients are closed
        self._lock = lock  # shared by all identities: sessions are not thread-safe and share one model loader

    def client(self, service: str, region: str, config: botocore.config.Config | None = None) -> Any:
        """The identity's client of ``service`` ("rds", "s3") for a region; creating one makes no AWS call."""
        with self._lock:
            return self._made.get(
                (service, region),
                lambda: self.session.client(service, region_name=region, config=config or self._config),  # type: ignore[call-overload]
            )

    def rds(self, region: str) -> RDSClient:
        return cast("RDSClient", self.client("rds", region))


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Identities:
    """The runtime: the current mapping (replaced live by ``update``), and sessions and clients per identity.

    ``labels``: namespace -> its labels, used when the mapping has selectors and the caller gave none.
    ``observe(operation, outcome, seconds)`` is called after every STS call, as ``Rds`` does for RDS calls.
    ``sts``: an STS client to use instead of one made from the operator's own session (tests).
    """

    mapping: IdentityMapping | None = None  # None: not loaded yet (resolve raises IdentityUnavailable)
    load_error: str | None = None  # why no mapping is loaded yet, for resolve's message
    labels: Callable[[str], Mapping[str, str]] | None = None
    base_session: Callable[[], boto3.session.Session] = boto3.session.Session
    config: botocore.config.Config = field(
        default_factory=lambda: botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": 2}, user_agent_extra="rds-export-operator"
        )
    )
    sts_region: str | None = None
    observe: Callable[[str, str, float], None] = lambda operation, outcome, seconds: None
    clock: Callable[[], datetime] = _utcnow
    sts: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)  # never held across AWS
    _loaded: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _base: boto3.session.Session | None = field(default=None, init=False, repr=False)
    _clients: dict[Identity, IdentityClients] = field(default_factory=dict, init=False, repr=False)
    _own_account: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mapping is not None:
            self._loaded.set()

    # --- the mapping -------------------------------------------------------------------------------------------

    def update(self, mapping: IdentityMapping) -> None:
        """Replace the mapping (a reload). Sessions of identities no longer mapped stay cached until restart."""
        self.mapping = mapping  # one reference assignment: readers see the old or the new mapping, whole
        self.load_error = None
        self._loaded.set()

    def wait_loaded(self, timeout: float) -> bool:
        return self._loaded.wait(timeout)

    def resolve(self, namespace: str, labels: Mapping[str, str] | None = None) -> Identity | Refusal:
        """The identity for objects in ``namespace``; may fetch the namespace's labels (blocking)."""
        mapping = self.mapping
        if mapping is None:
            raise IdentityUnavailable("MappingNotLoaded", self.load_error or "the identity mapping is not loaded yet")
        if labels is None and mapping.needs_labels:
            if self.labels is None:
                raise IdentityUnavailable(
                    "NamespaceLabelsUnavailable", "the mapping has namespace selectors but no label source is set"
                )
            labels = self.labels(namespace)
        return mapping.resolve(namespace, labels)

    def usable(self, namespace: str) -> Identity | Refusal:
        """``resolve``, and for a role, the namespace's own credentials fetched (AssumeRole as this namespace, cached
        by botocore until near expiry): a namespace whose AssumeRole is refused gets IdentityUnavailable, never an
        answer from the page another namespace of the same role fetched."""
        identity = self.resolve(namespace)
        if isinstance(identity, Identity) and not identity.is_operator:
            session = self.session(identity)
            with self._lock:  # sessions are not thread-safe; the credentials object is (botocore's own lock)
                credentials = session.get_credentials()
            if credentials is None:
                raise IdentityUnavailable("NoCredentials", f"no credentials for {identity}", identity.role_arn)
            credentials.get_frozen_credentials()  # outside our lock: may call AssumeRole
        return identity

    # --- AWS -----------------------------------------------------------------------------------------------------

    def _base_session(self) -> boto3.session.Session:
        with self._lock:
            if self._base is None:
                self._base = self.base_session()
            return self._base

    def _sts(self) -> Any:
        base = self._base_session()
        with self._lock:
            if self.sts is None:
                self.sts = base.client("sts", region_name=self.sts_region, config=self.config)
            return self.sts

    def session(self, identity: Identity) -> boto3.session.Session:
        """A boto3 session acting as ``identity`` (the operator's own session for OPERATOR). Cached."""
        return self.clients(identity).session

    def clients(self, identity: Identity) -> IdentityClients:
        """The session and RDS clients of ``identity``, made once; no AWS call until a client is used."""
        base = self._base_session()
        with self._lock:
            clients = self._clients.get(identity)
            if clients is None:
                session = base if identity.is_operator else self._assumed_session(identity, base)
                clients = self._clients[identity] = IdentityClients(identity, session, self.config, self._lock)
            return clients

    def _assumed_session(self, identity: Identity, base: boto3.session.Session) -> boto3.session.Session:
        duration = identity.session_duration or DEFAULT_SESSION_DURATION
        credentials = _AssumedRoleCredentials(lambda: self._assume(identity), self.clock, duration)
        core = botocore.session.get_session()
        core.register_component(
            "credential_provider", botocore.credentials.CredentialResolver([_Provider(credentials)])
        )
        # One model loader for all sessions: a loader of its own costs ~13 MB per identity once RDS is loaded.
        loader = base._session.get_component("data_loader")
        core.register_component("data_loader", loader)
        paths = list(loader.search_paths)
        session = boto3.session.Session(botocore_session=core)
        loader.search_paths[:] = paths  # boto3 appends its data path again for every session
        return session

    def _assume(self, identity: Identity) -> dict[str, str]:
        """One AssumeRole call (botocore's refresh callback); errors become IdentityUnavailable."""
        assert identity.role_arn is not None
        params: dict[str, Any] = {"RoleArn": identity.role_arn, "RoleSessionName": session_name(identity.namespace)}
        if identity.external_id:
            params["ExternalId"] = identity.external_id
        if identity.session_duration:
            params["DurationSeconds"] = identity.session_duration
        response = self._sts_call("AssumeRole", identity.role_arn, lambda sts: sts.assume_role(**params))
        creds = response["Credentials"]
        expiration = creds["Expiration"]
        if isinstance(expiration, datetime):
            expiration = expiration.isoformat()
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": str(expiration),
        }

    def _sts_call(self, operation: str, role_arn: str | None, call: Callable[[Any], Any]) -> Any:
        sts = self._sts()
        started = time.monotonic()
        try:
            response = call(sts)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "Unknown")), str(error.get("Message", ""))
            self.observe(operation, code, time.monotonic() - started)
            raise IdentityUnavailable(code, f"{operation} of {role_arn or 'caller'}: {message}", role_arn) from exc
        except Exception as exc:  # network, timeouts, missing credentials: all worth another try later
            self.observe(operation, type(exc).__name__, time.monotonic() - started)
            raise IdentityUnavailable(type(exc).__name__, f"{operation}: {exc}", role_arn) from exc
        self.observe(operation, "Success", time.monotonic() - started)
        return response

    def account_of(self, identity: Identity) -> str:
        """The AWS account the identity acts in: the role's, or the operator's own (GetCallerIdentity, cached)."""
        if identity.role_arn is not None:
            return role_account(identity.role_arn)
        if self._own_account is None:
            response = self._sts_call("GetCallerIdentity", None, lambda sts: sts.get_caller_identity())
            self._own_account = str(response["Account"])  # a racing duplicate call writes the same value
        return self._own_account
