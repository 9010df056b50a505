"""The local control plane is the real thing: version, CRDs, OpenAPI and CEL validation, status, RBAC, and
kube-controller-manager's garbage collection, namespace deletion, default ServiceAccounts, ClusterRole aggregation."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.waiting import wait_until

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.local"},
    "spec": {
        "group": "test.local",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "x-kubernetes-validations": [
                                    {"rule": "self.size <= self.max", "message": "size must not exceed max"}
                                ],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "max": {"type": "integer", "default": 10},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def widgets(kubectl: Kubectl) -> None:
    kubectl.apply(WIDGET_CRD)
    kubectl.run("wait", "--for=condition=Established", "crd/widgets.test.local", "--timeout=60s")


def widget(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "test.local/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def test_server_reports_the_built_version(kubectl: Kubectl) -> None:
    version = json.loads(kubectl.run("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == "v1.34.4"
    assert version["serverVersion"]["minor"] == "34"


def test_crd_is_accepted_and_served(kubectl: Kubectl, widgets: None, namespace: str) -> None:
    kubectl.create(widget("ok", size=3), "-n", namespace)
    obj = kubectl.get("widgets", "ok", namespace)
    assert obj["spec"] == {"size": 3, "max": 10}  # defaulted by the server
    assert "widgets" in kubectl.run("api-resources", "--api-group=test.local")


def test_schema_violation_is_rejected_with_the_schema_message(kubectl: Kubectl, widgets: None, namespace: str) -> None:
    ok, out = kubectl.try_create(
        {**widget("bad", size=0, color="green"), "metadata": {"name": "bad", "namespace": namespace}}
    )
    assert not ok
    assert "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1" in out
    assert 'spec.color: Unsupported value: "green"' in out


def test_cel_rule_is_enforced(kubectl: Kubectl, widgets: None, namespace: str) -> None:
    ok, out = kubectl.try_create({**widget("big", size=11), "metadata": {"name": "big", "namespace": namespace}})
    assert not ok
    assert "size must not exceed max" in out


def test_status_subresource_does_not_change_spec(kubectl: Kubectl, widgets: None, namespace: str) -> None:
    kubectl.create(widget("st", size=2), "-n", namespace)
    patch = json.dumps({"spec": {"size": 9}, "status": {"phase": "Ready"}})
    kubectl.run("patch", "widget", "st", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)
    obj = kubectl.get("widgets", "st", namespace)
    assert obj["status"] == {"phase": "Ready"}
    assert obj["spec"]["size"] == 2
    # ...and a write to the main resource ignores status.
    kubectl.run("patch", "widget", "st", "-n", namespace, "--type=merge", "-p", json.dumps({"status": {"phase": "X"}}))
    assert kubectl.get("widgets", "st", namespace)["status"] == {"phase": "Ready"}


def test_rbac_limited_token_is_denied_what_it_was_not_granted(
    control_plane: ControlPlane, kubectl: Kubectl, widgets: None, namespace: str, tmp_path: Path
) -> None:
    kubectl.run("create", "serviceaccount", "reader", "-n", namespace)
    kubectl.run("create", "role", "widget-reader", "-n", namespace, "--verb=get,list", "--resource=widgets.test.local")
    kubectl.run(
        "create",
        "rolebinding",
        "reader",
        "-n",
        namespace,
        "--role=widget-reader",
        f"--serviceaccount={namespace}:reader",
    )
    token = kubectl.run("create", "token", "reader", "-n", namespace).strip()
    assert token.count(".") == 2  # a signed JWT
    reader = Kubectl(control_plane.kubectl, control_plane.kubeconfig_for_token(token, tmp_path / "reader.kubeconfig"))
    assert reader.get("widgets", namespace=namespace)["items"] == []
    assert reader.run("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}") == (
        f"system:serviceaccount:{namespace}:reader"
    )
    ok, out = Kubectl(reader.binary, reader.kubeconfig).try_create(
        {**widget("nope", size=1), "metadata": {"name": "nope", "namespace": namespace}}
    )
    assert not ok
    assert "forbidden" in out and "cannot create resource" in out
    denied = subprocess.run(
        [reader.binary, f"--kubeconfig={reader.kubeconfig}", "get", "secrets", "-n", namespace],
        capture_output=True,
        text=True,
    )
    assert denied.returncode != 0 and "forbidden" in denied.stderr


# --- kube-controller-manager ---------------------------------------------------------------------------------------

CHART = Path(__file__).resolve().parents[2] / "charts" / "rds-export-operator"
# The garbage collector rediscovers resources every 30 s (fixed upstream): a CRD's objects may wait that long.
GC_TIMEOUT = 75


def config_map(name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"]}


def export_task(name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportTask",
        "metadata": meta,
        "spec": {
            "sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:nightly",
            "s3BucketName": "team-exports",
            "iamRoleArn": "arn:aws:iam::123456789012:role/rds-s3-export",
            "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/0b4a2e46-1f86-4b34-9d4f-0fbd5d2c3b7f",
        },
    }


def created(kubectl: Kubectl, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(
        kubectl.run("create", "-f", "-", "-n", namespace, "-o", "json", input=json.dumps(obj))
    )
    return out


@pytest.mark.parametrize("cascade", ["background", "foreground"])
def test_deleting_an_owner_deletes_its_dependents(kubectl: Kubectl, namespace: str, cascade: str) -> None:
    owner = created(kubectl, config_map("owner"), namespace)
    created(kubectl, config_map("dependent", owner), namespace)
    created(kubectl, config_map("grandchild", kubectl.get("configmap", "dependent", namespace)), namespace)
    created(kubectl, config_map("bystander"), namespace)
    # Foreground: the owner carries the foregroundDeletion finalizer, which only the garbage collector removes.
    kubectl.run("delete", "configmap", "owner", "-n", namespace, f"--cascade={cascade}", "--wait=false")
    for name in ("grandchild", "dependent", "owner"):
        kubectl.wait_gone("configmap", name, namespace, timeout=30)
    assert kubectl.get("configmap", "bystander", namespace)["data"] == {"k": "v"}


def test_orphaned_dependents_stay_and_lose_their_owner_reference(kubectl: Kubectl, namespace: str) -> None:
    owner = created(kubectl, config_map("owner"), namespace)
    created(kubectl, config_map("dependent", owner), namespace)
    kubectl.run("delete", "configmap", "owner", "-n", namespace, "--cascade=orphan", "--wait=false")
    kubectl.wait_gone("configmap", "owner", namespace, timeout=30)  # the orphan finalizer is the collector's too
    dependent = kubectl.get("configmap", "dependent", namespace)
    assert "ownerReferences" not in dependent["metadata"]


def test_custom_resources_are_collected_with_their_owner(kubectl: Kubectl, crd: None, namespace: str) -> None:
    owner = created(kubectl, config_map("owner"), namespace)
    created(kubectl, export_task("child", owner), namespace)
    kubectl.run("delete", "configmap", "owner", "-n", namespace, "--wait=false")
    kubectl.wait_gone("rdsexporttask", "child", namespace, timeout=GC_TIMEOUT)


def test_a_deleted_namespace_empties_and_disappears(kubectl: Kubectl, crd: None, namespace: str) -> None:
    created(kubectl, config_map("settings"), namespace)
    kubectl.run("create", "secret", "generic", "s", "-n", namespace, "--from-literal=k=v")
    created(kubectl, export_task("nightly"), namespace)
    assert kubectl.get("rdsexporttask", "nightly", namespace)["metadata"].get("finalizers") is None
    kubectl.run("delete", "namespace", namespace, "--wait=false")
    assert kubectl.get("namespace", namespace)["status"]["phase"] == "Terminating"
    wait_until(
        lambda: kubectl.get_or_none("namespace", namespace) is None,
        timeout=60,
        what=f"namespace {namespace} to be finalized and removed",
    )
    # The name is free again: a namespace re-created under it starts empty.
    kubectl.run("create", "namespace", namespace)
    assert kubectl.get("rdsexporttasks", namespace=namespace)["items"] == []
    assert kubectl.get_or_none("configmap", "settings", namespace) is None


def test_a_new_namespace_gets_its_default_service_account_and_root_ca(kubectl: Kubectl, namespace: str) -> None:
    kubectl.wait_for("serviceaccount", "default", namespace, lambda _: True, timeout=30, what="created")
    root_ca = kubectl.wait_for("configmap", "kube-root-ca.crt", namespace, lambda _: True, timeout=30, what="published")
    assert root_ca["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")


def rules_of(kubectl: Kubectl, role: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = kubectl.get("clusterrole", role).get("rules") or []
    return rules


def wait_for_rules(kubectl: Kubectl, role: str, rules: list[dict[str, Any]], *, present: bool = True) -> None:
    wait_until(
        lambda: all((rule in rules_of(kubectl, role)) == present for rule in rules),
        timeout=30,
        what=f"{rules} {'in' if present else 'gone from'} ClusterRole {role}",
    )


@pytest.fixture
def labelled_roles(kubectl: Kubectl) -> Iterator[list[str]]:
    """Names of ClusterRoles a test applies; deleted afterwards (they would otherwise widen edit/view for good)."""
    names: list[str] = []
    yield names
    for name in names:
        kubectl.run("delete", "clusterrole", name, "--ignore-not-found", check=False)


def test_a_labelled_cluster_role_is_aggregated_into_edit_and_withdrawn(
    kubectl: Kubectl, labelled_roles: list[str]
) -> None:
    suffix = uuid.uuid4().hex[:8]
    rule = {"apiGroups": ["test.local"], "resources": [f"probes{suffix}"], "verbs": ["get"]}
    assert rule not in rules_of(kubectl, "edit")
    labelled_roles.append(f"probe-{suffix}")
    kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"probe-{suffix}", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
            "rules": [rule],
        }
    )
    for role in ("edit", "admin"):  # admin aggregates edit
        wait_for_rules(kubectl, role, [rule])
    assert rule not in rules_of(kubectl, "view")
    kubectl.run("delete", "clusterrole", f"probe-{suffix}")
    wait_for_rules(kubectl, "edit", [rule], present=False)


def test_the_charts_user_roles_reach_the_builtin_roles(
    control_plane: ControlPlane, kubectl: Kubectl, crd: None, namespace: str, labelled_roles: list[str]
) -> None:
    release = f"agg-{uuid.uuid4().hex[:6]}"
    rendered = subprocess.run(
        # tenancyMode: the user roles are aggregated into admin and edit only once a tenancy mode is chosen
        [control_plane.helm, "template", release, str(CHART), "--namespace", namespace, "--set", "tenancyMode=single"],
        env=control_plane.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    roles = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(rendered)
        if doc
        and doc["kind"] == "ClusterRole"
        and doc["metadata"]["name"].rsplit("-", 1)[-1] in ("admin", "edit", "view")
    }
    assert sorted(roles) == [f"{release}-rds-export-operator-{s}" for s in ("admin", "edit", "view")]
    labelled_roles.extend(roles)
    for role in roles.values():
        kubectl.apply(role)
    for builtin in ("admin", "edit", "view"):
        wait_for_rules(kubectl, builtin, roles[f"{release}-rds-export-operator-{builtin}"]["rules"])
    # What it means for users: the built-in roles, bound in a namespace, now cover this API.
    for builtin in ("edit", "view"):
        kubectl.run(
            "create", "rolebinding", builtin, "-n", namespace, f"--clusterrole={builtin}", f"--user=u-{builtin}"
        )

    def can_i(user: str, verb: str) -> bool:
        args = ("auth", "can-i", verb, "rdsexporttasks.rdsexport.dev", "-n", namespace, f"--as={user}")
        return kubectl.run(*args, check=False).strip() == "yes"

    assert can_i("u-edit", "create") and can_i("u-edit", "delete")
    assert can_i("u-view", "list") and not can_i("u-view", "create")
