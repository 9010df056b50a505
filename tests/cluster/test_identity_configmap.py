"""The identity mapping on a real API server: the chart renders it and grants exactly its reading, and the operator's
ConfigMap source (running as the chart's ServiceAccount) applies a change, refuses a bad one and notices a
deletion, without a restart.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from prometheus_client import CollectorRegistry

from helmchart import CHART, Helm
from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.waiting import wait_until
from rds_export_operator.aws.identity import (
    OPERATOR,
    Identities,
    Identity,
    IdentityMapping,
    IdentityUnavailable,
    Refusal,
)
from rds_export_operator.runtime.identity_source import ConfigMapSource, NamespaceLabels
from rds_export_operator.runtime.kubeapi import KubeApi

ROLE_A = "arn:aws:iam::111111111111:role/rds-export-team-a"
ROLE_B = "arn:aws:iam::222222222222:role/rds-export-team-b"
DEADLINE = 15.0  # seconds for a change to apply; the source reads every 0.5 s here (10 s in the chart)


def values_file(tmp_path: Path, identities: dict[str, Any]) -> str:
    path = tmp_path / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"identities": identities}))
    return str(path)


def render(helm: Helm, *args: str) -> list[dict[str, Any]]:
    done = helm("template", "r1", str(CHART), "--namespace", "ops", *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) <= 1
    return found[0] if found else None


TWO_TEAMS = {
    "rules": [
        {"namespace": "team-a", "roleArn": ROLE_A, "externalId": "team-a-3f9c2b", "sessionDuration": 900},
        {"namespaceSelector": {"matchLabels": {"team": "b"}}, "roleArn": ROLE_B},
    ],
    "default": "none",
}


# --- rendering -----------------------------------------------------------------------------------------------------


def test_default_values_render_an_empty_mapping_the_operator_reads(helm: Helm) -> None:
    docs = render(helm)
    configmap = named(docs, "ConfigMap", "r1-rds-export-operator-identities")
    assert configmap is not None
    assert configmap["metadata"]["namespace"] == "ops"
    # The operator's own identity is rendered as an explicit choice (issue 23), never left to an absence.
    assert json.loads(configmap["data"]["identities.json"]) == {"rules": [], "default": "operator"}
    mapping = IdentityMapping.from_configmap_data(configmap["data"])
    assert mapping.resolve("anyone") == OPERATOR
    for mode, default in (("single", "operator"), ("perNamespace", "none")):
        args = ("--set", f"tenancyMode={mode}", "--set", "identities.rules[0].namespace=a")
        args += ("--set", f"identities.rules[0].roleArn={ROLE_A}")
        rendered = named(render(helm, *args), "ConfigMap", "r1-rds-export-operator-identities")
        assert rendered is not None and json.loads(rendered["data"]["identities.json"])["default"] == default
    refused = helm("template", "r1", str(CHART), "--set", "tenancyMode=perNamespace")
    assert refused.returncode != 0 and "tenancyMode perNamespace needs identities.rules" in refused.stderr
    role = named(docs, "Role", "r1-rds-export-operator-identities")
    assert role is not None
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["r1-rds-export-operator-identities"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    binding = named(docs, "RoleBinding", "r1-rds-export-operator-identities")
    assert binding is not None
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r1-rds-export-operator", "namespace": "ops"}]
    assert named(docs, "ClusterRole", "r1-rds-export-operator-namespace-labels") is None
    deployment = named(docs, "Deployment", "r1-rds-export-operator")
    assert deployment is not None
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RDS_EXPORT_IDENTITIES_CONFIGMAP"] == "ops/r1-rds-export-operator-identities"


def test_rules_render_into_the_mapping_and_selectors_add_namespace_reading(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, "-f", values_file(tmp_path, TWO_TEAMS))
    configmap = named(docs, "ConfigMap", "r1-rds-export-operator-identities")
    assert configmap is not None
    assert json.loads(configmap["data"]["identities.json"]) == TWO_TEAMS
    mapping = IdentityMapping.from_configmap_data(configmap["data"])
    assert mapping.resolve("team-a", {}) == Identity(ROLE_A, "team-a-3f9c2b", 900, "team-a")
    assert mapping.resolve("b-1", {"team": "b"}) == Identity(ROLE_B, namespace="b-1")
    assert isinstance(mapping.resolve("team-c", {}), Refusal)
    cluster_role = named(docs, "ClusterRole", "r1-rds-export-operator-namespace-labels")
    assert cluster_role is not None
    assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}]
    assert named(docs, "ClusterRoleBinding", "r1-rds-export-operator-namespace-labels") is not None

    # Without selectors, no namespace is ever read: no ClusterRole for it.
    docs = render(helm, "-f", values_file(tmp_path, {"rules": TWO_TEAMS["rules"][:1]}))
    assert named(docs, "ClusterRole", "r1-rds-export-operator-namespace-labels") is None
    # rbac.create=false: the ConfigMap still, no RBAC.
    docs = render(helm, "-f", values_file(tmp_path, TWO_TEAMS), "--set", "rbac.create=false")
    assert named(docs, "ConfigMap", "r1-rds-export-operator-identities") is not None
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]


@pytest.mark.parametrize(
    ("identities", "message"),
    [
        ({"rules": [{"namespace": "a", "roleArn": "arn:aws:iam::1:role/x"}]}, "'/identities/rules/0/roleArn'"),
        ({"rules": [{"namespace": "a", "namespaceSelector": {}, "roleArn": ROLE_A}]}, "'/identities/rules/0'"),
        ({"rules": [{"roleArn": ROLE_A}]}, "'/identities/rules/0'"),
        ({"rules": [{"namespace": "a", "roleArn": ROLE_A, "role": "x"}]}, "additional properties 'role'"),
        ({"rules": [{"namespace": "a", "roleArn": ROLE_A, "sessionDuration": 60}]}, "minimum: got 60, want 900"),
        ({"rules": [], "default": "everyone"}, "'/identities/default'"),
    ],
    ids=["bad-arn", "both", "neither", "unknown-key", "short-session", "bad-default"],
)
def test_schema_refuses_bad_identities(helm: Helm, tmp_path: Path, identities: dict[str, Any], message: str) -> None:
    done = helm("template", "r1", str(CHART), "-f", values_file(tmp_path, identities))
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


# --- on the API server, as the chart's ServiceAccount ----------------------------------------------------------


@pytest.fixture
def installed(
    helm: Helm, kubectl: Kubectl, namespace: str, tmp_path: Path, control_plane: ControlPlane
) -> Iterator[tuple[str, KubeApi]]:
    """The chart installed in ``namespace`` with TWO_TEAMS; the ConfigMap's name and an API client as its SA."""
    release = f"r-{uuid.uuid4().hex[:8]}"
    done = helm("install", release, str(CHART), "--namespace", namespace, "-f", values_file(tmp_path, TWO_TEAMS))
    assert done.returncode == 0, done.stderr
    fullname = f"{release}-rds-export-operator"
    token = kubectl.run("create", "token", fullname, "-n", namespace).strip()
    info = kopf.ConnectionInfo(server=control_plane.url, ca_path=str(control_plane.ca_file), token=token)
    try:
        yield f"{fullname}-identities", KubeApi(login=lambda: info)
    finally:
        helm("uninstall", release, "--namespace", namespace)


def can_i(kubectl: Kubectl, namespace: str, service_account: str, *args: str) -> bool:
    out = kubectl.run("auth", "can-i", *args, f"--as=system:serviceaccount:{namespace}:{service_account}", check=False)
    return out.strip() == "yes"


def test_the_service_account_reads_exactly_its_configmap(
    kubectl: Kubectl, namespace: str, installed: tuple[str, KubeApi]
) -> None:
    name, _ = installed
    sa = name.removesuffix("-identities")
    assert can_i(kubectl, namespace, sa, "get", f"configmaps/{name}", "-n", namespace)
    assert not can_i(kubectl, namespace, sa, "get", "configmaps/someone-else", "-n", namespace)
    assert not can_i(kubectl, namespace, sa, "list", "configmaps", "-n", namespace)
    assert not can_i(kubectl, namespace, sa, "watch", "configmaps", "-n", namespace)
    assert not can_i(kubectl, namespace, sa, "update", f"configmaps/{name}", "-n", namespace)
    assert can_i(kubectl, namespace, sa, "create", "events", "-n", namespace)
    # A selector rule is rendered: namespaces may be read one by one, not listed.
    assert can_i(kubectl, namespace, sa, "get", "namespaces/default")
    assert not can_i(kubectl, namespace, sa, "list", "namespaces")


def configmap(namespace: str, name: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"identities.json": text},
    }


def answer(identities: Identities, namespace: str, labels: dict[str, str] | None = None) -> object:
    try:
        return identities.resolve(namespace, labels if labels is not None else {})
    except IdentityUnavailable as exc:
        return exc.code


def test_changes_apply_live_bad_versions_keep_the_last_good_one(
    kubectl: Kubectl, namespace: str, installed: tuple[str, KubeApi]
) -> None:
    name, api = installed
    identities = Identities()
    source = ConfigMapSource(identities, namespace, name, api=api, interval=0.5)
    registry = CollectorRegistry()
    registry.register(source.collector())
    source.start()
    try:
        assert identities.wait_loaded(DEADLINE)
        assert answer(identities, "team-a") == Identity(ROLE_A, "team-a-3f9c2b", 900, "team-a")
        assert answer(identities, "team-c") == Refusal("team-c", "no AWS identity mapped for namespace team-c")
        assert registry.get_sample_value("rds_export_identity_mapping_valid") == 1
        assert registry.get_sample_value("rds_export_identity_mapping_rules") == 2

        # The admin maps team-c too.
        rules = [*TWO_TEAMS["rules"], {"namespace": "team-c", "roleArn": ROLE_B}]
        kubectl.apply(configmap(namespace, name, json.dumps({"rules": rules})))
        wait_until(
            lambda: answer(identities, "team-c") == Identity(ROLE_B, namespace="team-c"),
            timeout=DEADLINE,
            what="team-c's new role to apply",
        )

        # A broken version: refused with the reason, as a Warning Event on the ConfigMap; the last good one stays.
        kubectl.apply(configmap(namespace, name, json.dumps({"rules": [{"namespace": "team-a", "roleArn": "x"}]})))
        warning = wait_until(
            lambda: [e for e in kubectl.events(namespace, name) if e["reason"] == "InvalidIdentityMapping"],
            timeout=DEADLINE,
            what="a Warning Event on the ConfigMap",
        )[0]
        assert warning["type"] == "Warning"
        assert warning["involvedObject"]["kind"] == "ConfigMap"
        assert "rules[0].roleArn: 'x' is not an IAM role ARN" in warning["message"]
        assert "the last good mapping stays in force" in warning["message"]
        assert source.state.valid is False
        assert registry.get_sample_value("rds_export_identity_mapping_valid") == 0
        assert registry.get_sample_value("rds_export_identity_mapping_reads_total", {"outcome": "rejected"}) == 1
        assert answer(identities, "team-c") == Identity(ROLE_B, namespace="team-c")

        # Deleted (issue 23, attack 6): the last good mapping stays in force, never the operator's own identity;
        # a Warning Event and the metrics say so.
        kubectl.run("delete", "configmap", name, "-n", namespace)
        wait_until(
            lambda: registry.get_sample_value("rds_export_identity_mapping_reads_total", {"outcome": "missing"}),
            timeout=DEADLINE,
            what="the deletion noticed",
        )
        assert answer(identities, "team-c") == Identity(ROLE_B, namespace="team-c")
        assert answer(identities, "team-a") == Identity(ROLE_A, "team-a-3f9c2b", 900, "team-a")
        assert answer(identities, "team-d") == Refusal("team-d", "no AWS identity mapped for namespace team-d")
        assert source.state.valid is False
        assert registry.get_sample_value("rds_export_identity_mapping_valid") == 0
        missing = wait_until(
            lambda: [e for e in kubectl.events(namespace, name) if e["reason"] == "IdentityMappingMissing"],
            timeout=DEADLINE,
            what="a Warning Event on the missing ConfigMap",
        )[0]
        assert missing["type"] == "Warning" and "the last good mapping stays in force" in missing["message"]

        # Created again (`helm upgrade` would do this): in force again.
        kubectl.apply(configmap(namespace, name, json.dumps({"rules": [{"namespace": "team-a", "roleArn": ROLE_A}]})))
        wait_until(
            lambda: answer(identities, "team-c") == Refusal("team-c", "no AWS identity mapped for namespace team-c"),
            timeout=DEADLINE,
            what="the recreated mapping",
        )
        applied = [e for e in kubectl.events(namespace, name) if e["reason"] == "IdentityMappingApplied"]
        assert applied and applied[-1]["type"] == "Normal"
    finally:
        source.stop()
    assert not source._thread or not source._thread.is_alive()


def test_an_invalid_or_unreadable_mapping_at_start_gives_no_namespace_any_identity(
    kubectl: Kubectl, namespace: str, installed: tuple[str, KubeApi]
) -> None:
    name, api = installed
    kubectl.apply(configmap(namespace, name, '{"rules": [{"namespace": "team-a"}]}'))
    identities = Identities()
    source = ConfigMapSource(identities, namespace, name, api=api)
    source.poll_once()
    with pytest.raises(IdentityUnavailable) as caught:
        identities.resolve("team-a", {})
    assert caught.value.code == "MappingNotLoaded"
    assert "is invalid: invalid identity mapping: rules[0]: roleArn is required" in caught.value.message

    # No ConfigMap at all at start: no namespace gets an identity (the operator's own is an explicit mapping).
    kubectl.run("delete", "configmap", name, "-n", namespace)
    absent = Identities()
    ConfigMapSource(absent, namespace, name, api=api).poll_once()
    with pytest.raises(IdentityUnavailable, match="does not exist"):
        absent.resolve("team-a", {})

    # A ConfigMap the ServiceAccount may not read (another name): refused by RBAC, and nobody gets an identity.
    other = Identities()
    ConfigMapSource(other, namespace, "someone-elses", api=api).poll_once()
    with pytest.raises(IdentityUnavailable, match="HTTP 403"):
        other.resolve("team-a", {})


def test_namespace_selectors_follow_label_changes(
    kubectl: Kubectl, namespace: str, installed: tuple[str, KubeApi], control_plane: ControlPlane
) -> None:
    name, api = installed
    labels = NamespaceLabels(api, ttl=0.5)
    identities = Identities(labels=labels)
    ConfigMapSource(identities, namespace, name, api=api).poll_once()
    assert identities.resolve(namespace) == Refusal(namespace, f"no AWS identity mapped for namespace {namespace}")

    kubectl.run("label", "namespace", namespace, "team=b")
    wait_until(
        lambda: identities.resolve(namespace) == Identity(ROLE_B, namespace=namespace),
        timeout=DEADLINE,
        what="the team=b label to map the namespace to team B's role",
    )
    kubectl.run("label", "namespace", namespace, "team-")
    wait_until(
        lambda: isinstance(identities.resolve(namespace), Refusal),
        timeout=DEADLINE,
        what="the removed label to unmap the namespace",
    )

    # The API server unreachable: known labels serve on; unknown ones make the identity unavailable (retryable).
    unreachable = kopf.ConnectionInfo(server="https://127.0.0.1:1", ca_path=str(control_plane.ca_file), token="t")
    labels.api = KubeApi(login=lambda: unreachable, timeout=2)
    labels.ttl = 0
    assert isinstance(identities.resolve(namespace), Refusal)
    with pytest.raises(IdentityUnavailable) as caught:
        identities.resolve("never-seen")
    assert caught.value.code == "NamespaceLabelsUnavailable"


def test_an_unreachable_api_server_keeps_the_last_good_mapping(
    kubectl: Kubectl, namespace: str, installed: tuple[str, KubeApi], control_plane: ControlPlane
) -> None:
    name, api = installed
    identities = Identities()
    source = ConfigMapSource(identities, namespace, name, api=api)
    source.poll_once()
    assert identities.resolve("team-a", {}) == Identity(ROLE_A, "team-a-3f9c2b", 900, "team-a")
    applied = len([e for e in kubectl.events(namespace, name) if e["reason"] == "IdentityMappingApplied"])

    # Nothing listens on port 1: a real connection failure.
    unreachable = kopf.ConnectionInfo(server="https://127.0.0.1:1", ca_path=str(control_plane.ca_file), token="t")
    source.api = KubeApi(login=lambda: unreachable, timeout=2)
    source.poll_once()
    assert source.state.valid is False
    assert source.state.error is not None and source.state.error.startswith(f"cannot read ConfigMap {namespace}/")
    assert identities.resolve("team-a", {}) == Identity(ROLE_A, "team-a-3f9c2b", 900, "team-a")

    # Reachable again and unchanged: valid again, nothing re-applied (no new Event).
    source.api = api
    source.poll_once()
    assert source.state.valid is True
    assert source.state.error is None
    assert source.state.outcomes == {"applied": 1, "unreadable": 1}
    events = [e for e in kubectl.events(namespace, name) if e["reason"] == "IdentityMappingApplied"]
    assert len(events) == applied
