"""The Helm chart as the tests see it: paths, the RBAC rules it must grant, a ``helm`` runner and rendered objects.

Shared by the render-only checks (``tests/static``, no cluster), the installs (``tests/cluster``) and the alert check
against a live operator (``tests/e2e``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "rds-export-operator"
CRD_SOURCE = REPO / "crds" / "rdsexporttasks.rdsexport.dev.yaml"
CRD_LINK = CHART / "crds" / "rdsexporttasks.rdsexport.dev.yaml"
CRD_NAME = "rdsexporttasks.rdsexport.dev"
SCHEMA_ERROR = "values don't meet the specifications of the schema"

OPERATOR_RULES = [
    {
        "apiGroups": ["rdsexport.dev"],
        "resources": ["rdsexporttasks"],
        "verbs": ["get", "list", "watch", "patch", "create", "delete"],
    },
    {"apiGroups": ["rdsexport.dev"], "resources": ["rdsexporttasks/status"], "verbs": ["get", "patch"]},
    {"apiGroups": ["rdsexport.dev"], "resources": ["rdsexportschedules"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["rdsexport.dev"], "resources": ["rdsexportschedules/status"], "verbs": ["get", "patch"]},
    {"apiGroups": ["rdsexport.dev"], "resources": ["rdsexportschedules/finalizers"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def leader_election_rules(lease: str) -> list[dict[str, Any]]:
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "update"],
        },
    ]


Helm = Callable[..., subprocess.CompletedProcess[str]]
Render = Callable[..., list[dict[str, Any]]]


def helm_runner(binary: str, env: Mapping[str, str], home: Path) -> Helm:
    """``helm`` with its cache, config and data kept in ``home``, out of the user's home directory."""
    full_env = {
        **env,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, *args], env=full_env, capture_output=True, text=True, timeout=120, check=False)

    return run


def renderer(helm: Helm) -> Render:
    """``helm template`` (release ``r1`` in namespace ``ops`` unless told) parsed into a list of objects, without
    the user-facing aggregated ClusterRoles (``<fullname>-admin/-edit/-view``, tested in test_user_rbac.py)."""

    def run(*args: str, release: str = "r1", namespace: str = "ops") -> list[dict[str, Any]]:
        done = helm("template", release, str(CHART), "--namespace", namespace, *args)
        assert done.returncode == 0, done.stderr
        docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
        aggregated = "rbac.authorization.k8s.io/aggregate-to-"
        return [d for d in docs if not any(k.startswith(aggregated) for k in d["metadata"].get("labels", {}))]

    return run


def not_identities(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without the identity mapping's ConfigMap and RBAC (always rendered; test_identity_configmap.py covers them)."""
    return [d for d in docs if not d["metadata"]["name"].endswith(("-identities", "-namespace-labels"))]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata'] for d in found]}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}
