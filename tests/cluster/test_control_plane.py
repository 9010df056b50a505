"""The local control plane is the real thing: version, CRDs, OpenAPI and CEL validation, status, RBAC."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl

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
