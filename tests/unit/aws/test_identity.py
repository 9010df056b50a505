"""identity.py: the mapping's parser and resolution, session names, and STS credentials (cached, refreshed)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rds_export_operator.aws.identity import (
    OPERATOR,
    Identities,
    Identity,
    IdentityMapping,
    IdentityUnavailable,
    MappingError,
    Refusal,
    refresh_windows,
    role_account,
    session_name,
)

ROLE_A = "arn:aws:iam::111111111111:role/exports-a"
ROLE_B = "arn:aws:iam::222222222222:role/teams/exports-b"


def mapping(rules: list[dict[str, Any]], **top: Any) -> IdentityMapping:
    return IdentityMapping.parse(json.dumps({"rules": rules, **top}))


def problems(raw: Any) -> list[str]:
    with pytest.raises(MappingError) as caught:
        IdentityMapping.parse(raw if isinstance(raw, str) else json.dumps(raw))
    assert str(caught.value).startswith("invalid identity mapping: ")
    return list(caught.value.problems)


# --- parsing -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "  \n", "{}", '{"rules": []}'])
def test_no_rules_means_the_operators_own_identity_for_everyone(text: str) -> None:
    parsed = IdentityMapping.parse(text)
    assert parsed.rules == ()
    assert parsed.resolve("anything", {}) == OPERATOR
    assert not parsed.needs_labels


def test_a_full_mapping_parses() -> None:
    parsed = mapping(
        [
            {"namespace": "team-a", "roleArn": ROLE_A, "externalId": "team-a-secret", "sessionDuration": 900},
            {
                "namespaceSelector": {
                    "matchLabels": {"example.com/team": "b"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod", "stage"]}],
                },
                "roleArn": ROLE_B,
            },
        ],
        default="operator",
    )
    assert len(parsed.rules) == 2
    assert parsed.effective_default == "operator"
    assert parsed.needs_labels
    assert parsed.resolve("team-a", {}) == Identity(ROLE_A, "team-a-secret", 900, "team-a")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", ["not JSON: "]),
        ([], ["the mapping must be an object with keys ['rules', 'default'], not a list"]),
        ({"rules": {}}, ["rules must be a list, not an object"]),
        ({"rules": [], "defaults": "none"}, ["unknown keys ['defaults']"]),
        ({"default": "everyone"}, ['default must be "operator" or "none", not \'everyone\'']),
        ({"rules": ["team-a"]}, ["rules[0]: a rule must be an object, not a string"]),
        (
            {"rules": [{"namespace": "a", "roleArn": "arn:aws:iam::111111111111:user/bob"}]},
            ["rules[0].roleArn: 'arn:aws:iam::111111111111:user/bob' is not an IAM role ARN"],
        ),
        (
            {"rules": [{"namespace": "a", "roleArn": "arn:aws:iam::1111:role/x"}]},
            ["rules[0].roleArn: 'arn:aws:iam::1111:role/x' is not an IAM role ARN"],
        ),
        ({"rules": [{"namespace": "a"}]}, ["rules[0]: roleArn is required"]),
        (
            {"rules": [{"namespace": "a", "namespaceSelector": {}, "roleArn": ROLE_A}]},
            ["rules[0]: give exactly one of namespace and namespaceSelector"],
        ),
        ({"rules": [{"roleArn": ROLE_A}]}, ["rules[0]: give exactly one of namespace and namespaceSelector"]),
        (
            {"rules": [{"namespace": "Team_A", "roleArn": ROLE_A}]},
            ["rules[0].namespace: 'Team_A' is not a namespace name"],
        ),
        (
            {"rules": [{"namespace": "a", "roleArn": ROLE_A, "role": "x"}]},
            ["rules[0]: unknown keys ['role'] (allowed: "],
        ),
        (
            {"rules": [{"namespace": "a", "roleArn": ROLE_A, "externalId": "x"}]},
            ["rules[0].externalId: must be 2 to 1224 characters"],
        ),
        (
            {"rules": [{"namespace": "a", "roleArn": ROLE_A, "externalId": "has space"}]},
            ["rules[0].externalId: must be 2 to 1224 characters"],
        ),
        (
            {"rules": [{"namespace": "a", "roleArn": ROLE_A, "sessionDuration": 899}]},
            ["rules[0].sessionDuration: must be whole seconds from 900 to 43200, not 899"],
        ),
        (
            {"rules": [{"namespace": "a", "roleArn": ROLE_A, "sessionDuration": True}]},
            ["rules[0].sessionDuration: must be whole seconds from 900 to 43200, not True"],
        ),
        (
            {"rules": [{"namespace": "a", "roleArn": ROLE_A, "sessionDuration": "3600"}]},
            ["rules[0].sessionDuration: must be whole seconds from 900 to 43200, not '3600'"],
        ),
        (
            {"rules": [{"namespace": "a", "roleArn": ROLE_A}, {"namespace": "a", "roleArn": ROLE_B}]},
            ["rules[1]: namespace a is already mapped by rules[0]; this rule never matches"],
        ),
        (
            {
                "rules": [
                    {"namespaceSelector": {"matchLabels": {"t": "a"}}, "roleArn": ROLE_A},
                    {"namespaceSelector": {"matchLabels": {"t": "a"}}, "roleArn": ROLE_B},
                ]
            },
            ["rules[1]: the same namespaceSelector is already mapped by rules[0]"],
        ),
        (
            {"rules": [{"namespaceSelector": {}, "roleArn": ROLE_A}, {"namespace": "b", "roleArn": ROLE_B}]},
            ["rules[1]: never matches: rules[0] has an empty namespaceSelector (every namespace)"],
        ),
        (
            {"rules": [{"namespaceSelector": {"matchLabel": {"t": "a"}}, "roleArn": ROLE_A}]},
            ["rules[0].namespaceSelector: unknown keys ['matchLabel']"],
        ),
        (
            {"rules": [{"namespaceSelector": {"matchLabels": {"bad key!": "a"}}, "roleArn": ROLE_A}]},
            ["rules[0].namespaceSelector.matchLabels: 'bad key!' is not a label key"],
        ),
        (
            {"rules": [{"namespaceSelector": {"matchLabels": {"t": 1}}, "roleArn": ROLE_A}]},
            ["rules[0].namespaceSelector.matchLabels['t']: 1 is not a label value"],
        ),
        (
            {
                "rules": [
                    {
                        "namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "Equals", "values": []}]},
                        "roleArn": ROLE_A,
                    }
                ]
            },
            ["rules[0].namespaceSelector.matchExpressions[0].operator: must be In, NotIn, Exists or DoesNotExist"],
        ),
        (
            {
                "rules": [
                    {
                        "namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "In", "values": []}]},
                        "roleArn": ROLE_A,
                    }
                ]
            },
            ["rules[0].namespaceSelector.matchExpressions[0].values: must not be empty for In"],
        ),
        (
            {
                "rules": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [{"key": "t", "operator": "Exists", "values": ["x"]}]
                        },
                        "roleArn": ROLE_A,
                    }
                ]
            },
            ["rules[0].namespaceSelector.matchExpressions[0].values: must be empty for Exists"],
        ),
    ],
)
def test_parse_errors_say_what_is_wrong_and_where(raw: Any, expected: list[str]) -> None:
    found = problems(raw)
    assert len(found) == len(expected), found
    for problem, prefix in zip(found, expected, strict=True):
        assert problem.startswith(prefix), problem


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {
            "rules": [
                {"namespace": "a", "roleArn": "nope"},
                {"namespace": "b", "roleArn": ROLE_A, "sessionDuration": 10},
                {"namespace": "a", "roleArn": ROLE_B},
            ],
            "extra": 1,
        }
    )
    assert [re.split(r"[: ]", p)[0] for p in found] == ["unknown", "rules[0].roleArn", "rules[1].sessionDuration"]
    # rules[2] repeats rules[0]'s namespace, but rules[0] is invalid: that shows once rules[0] is fixed.


@pytest.mark.parametrize(
    "data", [None, {}, {"identities.json": ""}, {"identities.json": "{}"}, {"identities.json": '{"rules": []}'}]
)
def test_an_empty_configmap_is_refused_not_read_as_the_operators_identity(data: dict[str, str] | None) -> None:
    # Bug (issue 23, review): an edit that emptied the ConfigMap gave every namespace, also those refused by
    # "default": "none", the operator's own identity. Refused like an invalid mapping: the last good one stays.
    with pytest.raises(MappingError, match="the mapping is empty"):
        IdentityMapping.from_configmap_data(data)


def test_configmap_data() -> None:
    assert IdentityMapping.from_configmap_data({"identities.json": '{"default": "operator"}'}).effective_default == (
        "operator"
    )
    good = json.dumps({"rules": [{"namespace": "a", "roleArn": ROLE_A}]})
    assert len(IdentityMapping.from_configmap_data({"identities.json": good}).rules) == 1
    with pytest.raises(MappingError, match=r"the ConfigMap has no key identities.json \(it has: identities.yaml\)"):
        IdentityMapping.from_configmap_data({"identities.yaml": "rules: []"})


# --- resolution ----------------------------------------------------------------------------------------------------


def test_first_match_wins() -> None:
    parsed = mapping(
        [
            {"namespace": "team-a", "roleArn": ROLE_A},
            {"namespaceSelector": {"matchLabels": {"team": "a"}}, "roleArn": ROLE_B},
            {"namespaceSelector": {}, "roleArn": "arn:aws:iam::333333333333:role/catch-all"},
        ]
    )
    assert parsed.resolve("team-a", {"team": "a"}) == Identity(ROLE_A, namespace="team-a")
    assert parsed.resolve("team-a2", {"team": "a"}) == Identity(ROLE_B, namespace="team-a2")
    assert parsed.resolve("other", {}) == Identity("arn:aws:iam::333333333333:role/catch-all", namespace="other")


@pytest.mark.parametrize(
    ("expression", "labels", "matches"),
    [
        ({"key": "tier", "operator": "In", "values": ["prod", "stage"]}, {"tier": "prod"}, True),
        ({"key": "tier", "operator": "In", "values": ["prod"]}, {"tier": "dev"}, False),
        ({"key": "tier", "operator": "In", "values": ["prod"]}, {}, False),
        ({"key": "tier", "operator": "NotIn", "values": ["prod"]}, {"tier": "dev"}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["prod"]}, {}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["prod"]}, {"tier": "prod"}, False),
        ({"key": "tier", "operator": "Exists"}, {"tier": ""}, True),
        ({"key": "tier", "operator": "Exists"}, {}, False),
        ({"key": "tier", "operator": "DoesNotExist"}, {}, True),
        ({"key": "tier", "operator": "DoesNotExist"}, {"tier": "x"}, False),
    ],
)
def test_selector_expressions(expression: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    parsed = mapping([{"namespaceSelector": {"matchExpressions": [expression]}, "roleArn": ROLE_A}])
    assert (parsed.resolve("ns", labels) == Identity(ROLE_A, namespace="ns")) is matches


def test_match_labels_need_every_pair() -> None:
    parsed = mapping([{"namespaceSelector": {"matchLabels": {"team": "b", "env": "prod"}}, "roleArn": ROLE_B}])
    assert parsed.resolve("x", {"team": "b", "env": "prod", "other": "1"}) == Identity(ROLE_B, namespace="x")
    assert isinstance(parsed.resolve("x", {"team": "b"}), Refusal)


def test_no_match_is_a_refusal_unless_the_default_is_the_operator() -> None:
    rules = [{"namespace": "team-a", "roleArn": ROLE_A}]
    refused = mapping(rules).resolve("team-b", {})
    assert refused == Refusal("team-b", "no AWS identity mapped for namespace team-b", "NotPermitted")
    assert mapping(rules, default="none").resolve("team-b", {}) == refused
    assert mapping(rules, default="operator").resolve("team-b", {}) == OPERATOR
    # An explicit "none" without rules locks every namespace out.
    assert isinstance(mapping([], default="none").resolve("team-a", {}), Refusal)


def test_selectors_need_labels() -> None:
    parsed = mapping([{"namespaceSelector": {"matchLabels": {"t": "a"}}, "roleArn": ROLE_A}])
    with pytest.raises(ValueError, match="needs the namespace's labels"):
        parsed.resolve("x")
    # Without selectors, no labels are needed (so no namespace reads either).
    assert mapping([{"namespace": "x", "roleArn": ROLE_A}]).resolve("x") == Identity(ROLE_A, namespace="x")


def test_runtime_resolution_fetches_labels_only_when_needed() -> None:
    asked: list[str] = []

    def labels(namespace: str) -> dict[str, str]:
        asked.append(namespace)
        return {"team": "a"}

    identities = Identities(labels=labels)
    with pytest.raises(IdentityUnavailable) as caught:
        identities.resolve("x")
    assert caught.value.code == "MappingNotLoaded"
    identities.load_error = "ConfigMap ops/ids is invalid: rules[0]: roleArn is required"
    with pytest.raises(IdentityUnavailable, match="rules\\[0\\]: roleArn is required"):
        identities.resolve("x")

    identities.update(mapping([{"namespace": "x", "roleArn": ROLE_A}]))
    assert identities.resolve("x") == Identity(ROLE_A, namespace="x")
    assert asked == []
    identities.update(mapping([{"namespaceSelector": {"matchLabels": {"team": "a"}}, "roleArn": ROLE_B}]))
    assert identities.resolve("y") == Identity(ROLE_B, namespace="y")
    assert asked == ["y"]
    assert identities.resolve("z", {"team": "b"}) == Refusal("z", "no AWS identity mapped for namespace z")
    assert asked == ["y"]  # labels given: none fetched


# --- session names -------------------------------------------------------------------------------------------------

SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)


def test_session_names() -> None:
    assert session_name("team-a") == "rdsexp-team-a"
    assert session_name("team-a", "nightly.db") == "rdsexp-team-a-nightly.db"
    long_ns = "n" * 63
    name = session_name(long_ns)
    assert len(name) == 64
    assert SESSION_NAME.fullmatch(name)
    assert name.startswith("rdsexp-nnnn")
    assert name != session_name("n" * 62)
    assert SESSION_NAME.fullmatch(session_name("a", "x:y/z")), session_name("a", "x:y/z")


@given(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,200}[a-z0-9])?", fullmatch=True),
)
def test_session_names_are_valid_for_any_namespace_and_object(namespace: str, name: str) -> None:
    assert SESSION_NAME.fullmatch(session_name(namespace, name))
    assert SESSION_NAME.fullmatch(session_name(namespace))


def test_role_account() -> None:
    assert role_account(ROLE_B) == "222222222222"
    assert role_account("arn:aws-cn:iam::333333333333:role/x") == "333333333333"
    with pytest.raises(ValueError, match="not an IAM role ARN"):
        role_account("arn:aws:iam::333333333333:user/x")


def test_refresh_windows_follow_the_session_length() -> None:
    assert refresh_windows(3600) == (900, 600)  # botocore's defaults
    assert refresh_windows(900) == (300, 150)  # not "always": a 15-minute session is not re-assumed on every call


# --- credentials ---------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeSts:
    """AssumeRole and GetCallerIdentity as STS answers them; records calls; can be told to refuse."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[dict[str, Any]] = []
        self.identity_calls = 0
        self.refuse: str | None = None
        self._lock = threading.Lock()

    def assume_role(self, **params: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(params)
            n = len(self.calls)
        if self.refuse:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": self.refuse, "Message": "not authorized to perform: sts:AssumeRole"}},
                "AssumeRole",
            )
        return {
            "Credentials": {
                "AccessKeyId": f"ASIA{n:016d}",
                "SecretAccessKey": f"secret-{n}",
                "SessionToken": f"token-{n}",
                "Expiration": self.clock() + timedelta(seconds=params.get("DurationSeconds", 3600)),
            }
        }

    def get_caller_identity(self) -> dict[str, Any]:
        self.identity_calls += 1
        return {"Account": "999999999999", "Arn": "arn:aws:sts::999999999999:assumed-role/operator/x"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sts(clock: Clock) -> FakeSts:
    return FakeSts(clock)


@pytest.fixture
def identities(clock: Clock, sts: FakeSts) -> Identities:
    observed: list[tuple[str, str]] = []
    runtime = Identities(
        mapping=IdentityMapping(),
        base_session=lambda: boto3.session.Session(
            aws_access_key_id="AKIAOPERATOR", aws_secret_access_key="s", region_name="us-east-1"
        ),
        clock=clock,
        sts=sts,
        observe=lambda operation, outcome, seconds: observed.append((operation, outcome)),
    )
    runtime.observed = observed  # type: ignore[attr-defined]
    return runtime


def access_key(identities: Identities, identity: Identity) -> str:
    creds = identities.session(identity).get_credentials()
    assert creds is not None
    return str(creds.get_frozen_credentials().access_key)


def test_assume_role_parameters_and_caching(identities: Identities, sts: FakeSts) -> None:
    identity = Identity(ROLE_A, "ext-id-1", 1800, "team-a")
    session = identities.session(identity)
    assert sts.calls == []  # deferred: nothing is assumed until a call needs credentials
    assert access_key(identities, identity) == "ASIA0000000000000001"
    assert sts.calls == [
        {"RoleArn": ROLE_A, "RoleSessionName": "rdsexp-team-a", "ExternalId": "ext-id-1", "DurationSeconds": 1800}
    ]
    assert identities.session(identity) is session
    assert access_key(identities, identity) == "ASIA0000000000000001"
    assert len(sts.calls) == 1
    assert identities.observed == [("AssumeRole", "Success")]  # type: ignore[attr-defined]
    # Without externalId and duration, neither is sent.
    access_key(identities, Identity(ROLE_B, namespace="team-b"))
    assert sts.calls[-1] == {"RoleArn": ROLE_B, "RoleSessionName": "rdsexp-team-b"}


def test_credentials_are_cached_per_role_and_namespace(identities: Identities, sts: FakeSts) -> None:
    a, b = Identity(ROLE_A, namespace="team-a"), Identity(ROLE_A, namespace="team-a2")
    assert access_key(identities, a) != access_key(identities, b)
    assert [c["RoleSessionName"] for c in sts.calls] == ["rdsexp-team-a", "rdsexp-team-a2"]
    assert identities.clients(a) is identities.clients(a)
    assert identities.clients(a) is not identities.clients(b)


def test_credentials_are_refreshed_before_expiry(identities: Identities, sts: FakeSts, clock: Clock) -> None:
    identity = Identity(ROLE_A, namespace="team-a")  # 3600 s: refreshed from 15 minutes before expiry
    assert access_key(identities, identity) == "ASIA0000000000000001"
    clock.advance(3600 - 15 * 60 - 1)
    assert access_key(identities, identity) == "ASIA0000000000000001"
    assert len(sts.calls) == 1
    clock.advance(2)  # inside the advisory window, well before expiry
    assert access_key(identities, identity) == "ASIA0000000000000002"
    assert len(sts.calls) == 2
    assert access_key(identities, identity) == "ASIA0000000000000002"
    assert len(sts.calls) == 2


def test_short_sessions_are_not_reassumed_on_every_call(identities: Identities, sts: FakeSts, clock: Clock) -> None:
    identity = Identity(ROLE_A, session_duration=900, namespace="team-a")
    access_key(identities, identity)
    clock.advance(900 - 300 - 1)
    access_key(identities, identity)
    assert len(sts.calls) == 1
    clock.advance(2)
    access_key(identities, identity)
    assert len(sts.calls) == 2


def test_a_failed_refresh_keeps_valid_credentials_until_they_must_be_replaced(
    identities: Identities, sts: FakeSts, clock: Clock
) -> None:
    identity = Identity(ROLE_A, namespace="team-a")
    access_key(identities, identity)
    sts.refuse = "AccessDenied"
    clock.advance(3600 - 14 * 60)  # advisory window: the old credentials still serve
    assert access_key(identities, identity) == "ASIA0000000000000001"
    clock.advance(5 * 60)  # mandatory window: no valid credentials without STS
    with pytest.raises(IdentityUnavailable) as caught:
        access_key(identities, identity)
    assert caught.value.code == "AccessDenied"
    assert caught.value.role_arn == ROLE_A
    assert "AssumeRole of arn:aws:iam::111111111111:role/exports-a" in str(caught.value)
    sts.refuse = None  # the trust policy is fixed: the next call works again
    assert access_key(identities, identity) == f"ASIA{len(sts.calls):016d}"


def test_sts_refusal_surfaces_from_an_rds_call_as_identity_unavailable(identities: Identities, sts: FakeSts) -> None:
    sts.refuse = "AccessDenied"
    rds = identities.clients(Identity(ROLE_A, namespace="team-a")).rds("eu-west-1")
    with pytest.raises(IdentityUnavailable) as caught:
        rds.describe_export_tasks()  # refused while signing: no request leaves the process
    assert caught.value.code == "AccessDenied"
    assert ("AssumeRole", "AccessDenied") in identities.observed  # type: ignore[attr-defined]


def test_the_operators_own_identity_is_never_assumed(identities: Identities, sts: FakeSts) -> None:
    assert access_key(identities, OPERATOR) == "AKIAOPERATOR"
    assert sts.calls == []
    assert identities.account_of(OPERATOR) == "999999999999"
    assert identities.account_of(OPERATOR) == "999999999999"
    assert sts.identity_calls == 1  # looked up once
    assert identities.account_of(Identity(ROLE_B, namespace="b")) == "222222222222"
    assert sts.identity_calls == 1


def test_one_client_per_identity_and_region(identities: Identities) -> None:
    a = identities.clients(Identity(ROLE_A, namespace="team-a"))
    assert a.rds("eu-west-1") is a.rds("eu-west-1")
    assert a.rds("eu-west-1") is not a.rds("us-east-1")
    assert a.rds("eu-west-1").meta.region_name == "eu-west-1"
    assert identities.clients(OPERATOR).rds("eu-west-1") is not a.rds("eu-west-1")


def test_concurrent_first_use_assumes_once_and_makes_one_client(identities: Identities, sts: FakeSts) -> None:
    wanted = [Identity(ROLE_A, namespace=f"team-{i}") for i in range(3)]
    seen: dict[Identity, set[int]] = {i: set() for i in wanted}
    keys: dict[Identity, set[str]] = {i: set() for i in wanted}
    start = threading.Barrier(24)
    errors: list[BaseException] = []

    def work(identity: Identity) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(20):
                seen[identity].add(id(identities.clients(identity).rds("eu-west-1")))
                keys[identity].add(access_key(identities, identity))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(wanted[n % 3],)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert all(len(ids) == 1 for ids in seen.values())
    assert all(len(k) == 1 for k in keys.values())
    assert sorted(c["RoleSessionName"] for c in sts.calls) == ["rdsexp-team-0", "rdsexp-team-1", "rdsexp-team-2"]


# --- against moto's STS, over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """The stand-in behind a recorder of the access key id each request was signed with."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from localdev.controlplane import free_port
    from localdev.standin.server import RdsExportStandIn

    app = RdsExportStandIn(DomainDispatcherApplication(create_backend_app), auto=False)
    signed_with: list[str] = []

    def recorder(environ: dict[str, Any], start_response: Any) -> Any:
        match = re.search(r"Credential=([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        signed_with.append(match[1] if match else "-")
        return app(environ, start_response)

    port = free_port()
    server = make_server("127.0.0.1", port, recorder, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "AKIAOPERATORDEFAULT",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        yield url, signed_with
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_an_assumed_roles_rds_client_reaches_aws_with_the_assumed_credentials(
    standin: tuple[str, list[str]],
) -> None:
    _, signed_with = standin
    identities = Identities(mapping=IdentityMapping(), sts_region="us-east-1")
    identity = Identity("arn:aws:iam::111111111111:role/team-a-exports", "ext-a", 900, "team-a")
    rds = identities.clients(identity).rds("us-east-1")
    assert rds.describe_export_tasks()["ExportTasks"] == []

    assumed = identities.session(identity).get_credentials()
    assert assumed is not None
    key = str(assumed.get_frozen_credentials().access_key)
    assert key.startswith("ASIA")  # moto's temporary credentials
    assert key != "AKIAOPERATORDEFAULT"
    # First AssumeRole signed as the operator, then DescribeExportTasks signed as the assumed role.
    assert signed_with == ["AKIAOPERATORDEFAULT", key]

    # AWS (moto) sees the assumed role, its account and the session name naming the namespace.
    who = identities.session(identity).client("sts", region_name="us-east-1").get_caller_identity()
    assert who["Arn"] == "arn:aws:sts::111111111111:assumed-role/team-a-exports/rdsexp-team-a"
    assert identities.account_of(identity) == who["Account"] == "111111111111"
    assert identities.account_of(OPERATOR) == "123456789012"  # moto's default account for the operator's keys


# --- the setting ---------------------------------------------------------------------------------------------------


def test_identities_configmap_setting() -> None:
    from rds_export_operator.runtime import settings

    assert settings.parse([], {}).identities_configmap == ""
    env = {"RDS_EXPORT_IDENTITIES_CONFIGMAP": "ops/r1-identities", "POD_NAMESPACE": "elsewhere"}
    assert settings.parse([], env).identities_configmap == "ops/r1-identities"
    # A bare name is in the operator's own namespace.
    assert settings.parse(["--identities-configmap=ids"], {"POD_NAMESPACE": "ops"}).identities_configmap == "ops/ids"
    assert settings.parse(["--identities-configmap=ids"], {}).identities_configmap == "default/ids"


@pytest.mark.parametrize("value", ["ops/Bad_Name", "a/b/c", "/name"])
def test_identities_configmap_setting_refuses_bad_names(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from rds_export_operator.runtime import settings

    with pytest.raises(SystemExit):
        settings.parse([f"--identities-configmap={value}"], {})
    assert "identities ConfigMap must be namespace/name" in capsys.readouterr().err


def test_usable_fetches_the_namespaces_own_credentials_so_a_refused_namespace_is_never_answered(
    identities: Identities, sts: FakeSts
) -> None:
    # Issue 23: the page cache is shared by the namespaces of one role; a namespace whose own AssumeRole is refused
    # (another externalId, a trust policy on the session name) must not be answered from another's page.
    identities.update(IdentityMapping.parse(json.dumps({"rules": [{"namespaceSelector": {}, "roleArn": ROLE_A}]})))
    identities.labels = lambda namespace: {}
    assert identities.usable("team-a") == Identity(ROLE_A, namespace="team-a")
    assert [c["RoleSessionName"] for c in sts.calls] == ["rdsexp-team-a"]
    identities.usable("team-a")
    assert len(sts.calls) == 1  # cached until near expiry: no STS call per sync
    sts.refuse = "AccessDenied"
    with pytest.raises(IdentityUnavailable) as caught:
        identities.usable("team-b")
    assert caught.value.code == "AccessDenied"
    assert identities.usable("team-a") == Identity(ROLE_A, namespace="team-a")
