"""User-facing RBAC: the chart's ClusterRoles aggregate into the built-in admin, edit and view roles, and grant a
namespace's editors and viewers what Kubernetes users expect of them there, and nothing elsewhere.

These tests check the two halves separately against the real API server (that kube-controller-manager's aggregation
then fills the built-in roles is tests/cluster/test_control_plane.py's job): the roles' labels match the
selectors of the built-in roles' aggregationRule (what the aggregation controller selects on), and the roles' rules,
bound to a user in one namespace, allow and refuse what they should (`kubectl auth can-i` and real requests made
with `--as`, the admin's impersonation).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from helmchart import CHART, Helm
from localdev.kube import Kubectl

TASKS = "rdsexporttasks.rdsexport.dev"
WRITE = ["create", "update", "patch", "delete", "deletecollection"]
READ = ["get", "list", "watch"]
USER_WRITE_RULES = [
    {
        "apiGroups": ["rdsexport.dev"],
        "resources": ["rdsexporttasks", "rdsexportschedules"],
        "verbs": READ + WRITE,
    },
    {
        "apiGroups": ["rdsexport.dev"],
        "resources": ["rdsexporttasks/status", "rdsexportschedules/status"],
        "verbs": READ,
    },
]
USER_READ_RULES = [
    {
        "apiGroups": ["rdsexport.dev"],
        "resources": ["rdsexporttasks", "rdsexporttasks/status", "rdsexportschedules", "rdsexportschedules/status"],
        "verbs": READ,
    }
]
# Built-in role -> (our role's name suffix, the label that aggregates it there, its rules).
ROLES = {
    "admin": ("admin", "rbac.authorization.k8s.io/aggregate-to-admin", USER_WRITE_RULES),
    "edit": ("edit", "rbac.authorization.k8s.io/aggregate-to-edit", USER_WRITE_RULES),
    "view": ("view", "rbac.authorization.k8s.io/aggregate-to-view", USER_READ_RULES),
}


def cluster_roles(helm: Helm, *args: str) -> dict[str, dict[str, Any]]:
    done = helm("template", "r1", str(CHART), "--namespace", "ops", *args)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}


def user_roles(roles: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The chart's user-facing roles: those carrying an aggregate-to-* label."""
    return {
        name: role
        for name, role in roles.items()
        if any(key.startswith("rbac.authorization.k8s.io/aggregate-to-") for key in role["metadata"]["labels"])
    }


# --- rendering -----------------------------------------------------------------------------------------------------


MODE = ("--set", "tenancyMode=single")  # write access is aggregated only once a tenancy mode is chosen


def test_a_default_install_aggregates_only_read_access(helm: Helm) -> None:
    # Bug (issue 23): a default install let any namespace's editors drive the operator's AWS identity for any source.
    roles = user_roles(cluster_roles(helm))
    assert sorted(roles) == ["r1-rds-export-operator-view"]
    for mode in ("single", "perNamespace"):
        args = ("--set", f"tenancyMode={mode}", "--set", "identities.rules[0].namespace=a")
        args += ("--set", "identities.rules[0].roleArn=arn:aws:iam::111111111111:role/a")
        assert len(user_roles(cluster_roles(helm, *args))) == 3


def test_the_chart_renders_one_role_per_builtin_role_with_its_aggregation_label(helm: Helm) -> None:
    roles = user_roles(cluster_roles(helm, *MODE))
    assert sorted(roles) == [f"r1-rds-export-operator-{suffix}" for suffix in ("admin", "edit", "view")]
    for suffix, label, rules in ROLES.values():
        role = roles[f"r1-rds-export-operator-{suffix}"]
        aggregation = {k: v for k, v in role["metadata"]["labels"].items() if k.startswith("rbac.authorization.k8s.io")}
        assert aggregation == {label: "true"}
        assert role["rules"] == rules
        assert role["metadata"]["labels"]["app.kubernetes.io/instance"] == "r1"
        assert "aggregationRule" not in role


def test_the_roles_exist_in_namespaced_mode_and_follow_their_switches(helm: Helm) -> None:
    # Users' access does not depend on which namespaces the operator watches.
    assert len(user_roles(cluster_roles(helm, *MODE, "--set", "watchNamespaces={team-a}"))) == 3
    assert user_roles(cluster_roles(helm, "--set", "rbac.aggregateToDefaultRoles=false")) == {}
    assert user_roles(cluster_roles(helm, "--set", "rbac.create=false")) == {}
    done = helm("template", "r1", str(CHART), "--set", "rbac.aggregateToDefaultRoles=yes")
    assert done.returncode != 0
    assert "'/rbac/aggregateToDefaultRoles'" in done.stderr


def test_the_labels_match_the_builtin_roles_aggregation_selectors(helm: Helm, kubectl: Kubectl) -> None:
    """The built-in admin, edit and view ClusterRoles (bootstrapped by this API server) select their parts by label;
    each of our roles is selected by exactly the one it is meant for (view's rules then reach edit and admin through
    the built-in chain view -> edit -> admin)."""
    roles = user_roles(cluster_roles(helm, *MODE))

    def selected_by(builtin: str) -> set[str]:
        rule = kubectl.get("clusterrole", builtin)["aggregationRule"]
        return {
            name
            for name, role in roles.items()
            for selector in rule["clusterRoleSelectors"]
            if selector["matchLabels"].items() <= role["metadata"]["labels"].items()
        }

    for builtin, (suffix, _, _) in ROLES.items():
        assert selected_by(builtin) == {f"r1-rds-export-operator-{suffix}"}, builtin


# --- the rules, bound on the real API server -----------------------------------------------------------------------


@pytest.fixture
def release(helm: Helm, kubectl: Kubectl, crd: None, namespace: str) -> Iterator[str]:
    """The chart installed (cluster-wide defaults) in ``namespace``; its fullname. The ``crd`` fixture runs first, so
    the CRD exists before Helm's crds/ step (which then leaves it alone)."""
    rel = f"r-{uuid.uuid4().hex[:8]}"
    # No --wait: Helm 4 defaults to hookOnly and the chart has no hooks; without a kubelet no pod ever gets ready.
    done = helm("install", rel, str(CHART), "--namespace", namespace, *MODE)
    assert done.returncode == 0, done.stderr
    yield f"{rel}-rds-export-operator"
    helm("uninstall", rel, "--namespace", namespace)


def can_i(kubectl: Kubectl, user: str, verb: str, resource: str, *where: str) -> bool:
    out = kubectl.run("auth", "can-i", verb, resource, *where, f"--as={user}", check=False)
    return out.strip() == "yes"


def allowed(kubectl: Kubectl, user: str, verb: str, resource: str, namespace: str) -> bool:
    """The authorizer's answer (a SubjectAccessReview), for a resource that kubectl cannot resolve because its API
    is not served yet (``kubectl auth can-i`` then answers "no" after a discovery warning)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "resourceAttributes": {
                "namespace": namespace,
                "verb": verb,
                "group": "rdsexport.dev",
                "resource": resource,
            },
        },
    }
    out = kubectl.run("create", "-f", "-", "-o", "json", input=json.dumps(review))
    return bool(json.loads(out)["status"].get("allowed"))


def bind(kubectl: Kubectl, namespace: str, cluster_role: str, user: str) -> None:
    name = f"{user}-{cluster_role}"
    kubectl.run("create", "rolebinding", name, "-n", namespace, f"--clusterrole={cluster_role}", f"--user={user}")


def task(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportTask",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:nightly",
            "s3BucketName": "team-exports",
            "iamRoleArn": "arn:aws:iam::123456789012:role/rds-s3-export",
            "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/0b4a2e46-1f86-4b34-9d4f-0fbd5d2c3b7f",
            "deletionPolicy": "Retain",
        },
    }


def as_user(kubectl: Kubectl, user: str, *args: str, input: str | None = None) -> tuple[bool, str]:
    """Run kubectl as ``user`` (impersonated by the admin); (succeeded, output or error text)."""
    done = subprocess.run(
        [kubectl.binary, f"--kubeconfig={kubectl.kubeconfig}", f"--as={user}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def test_an_editor_of_a_namespace_manages_exports_there_and_nowhere_else(
    kubectl: Kubectl, namespace: str, other_namespace: str, release: str
) -> None:
    user = f"editor-{uuid.uuid4().hex[:6]}"
    bind(kubectl, namespace, f"{release}-edit", user)
    here = ("-n", namespace)
    for verb in READ + WRITE:
        assert can_i(kubectl, user, verb, TASKS, *here), verb
        assert allowed(kubectl, user, verb, "rdsexportschedules", namespace), verb
    assert can_i(kubectl, user, "get", TASKS, "--subresource=status", *here)
    # Status is the operator's: an editor may read it, never write it.
    for verb in ("update", "patch"):
        assert not can_i(kubectl, user, verb, TASKS, "--subresource=status", *here), verb
    for verb in READ + WRITE:
        assert not can_i(kubectl, user, verb, TASKS, "-n", other_namespace), verb
    assert not can_i(kubectl, user, "list", TASKS, "--all-namespaces")
    assert not can_i(kubectl, user, "get", "secrets", *here)  # nothing beyond this API

    # Real requests, as the user: create, edit a policy, try to write status, delete.
    ok, out = as_user(kubectl, user, "create", "-f", "-", input=json.dumps(task(namespace, "nightly")))
    assert ok, out
    patch = ("patch", "rdsexporttask", "nightly", *here, "--type=merge")
    ok, out = as_user(kubectl, user, *patch, "-p", '{"spec":{"deletionPolicy":"Cancel"}}')
    assert ok, out
    ok, out = as_user(kubectl, user, *patch, "--subresource=status", "-p", '{"status":{"status":"COMPLETE"}}')
    assert not ok
    assert "forbidden" in out, out
    ok, out = as_user(kubectl, user, "create", "-f", "-", input=json.dumps(task(other_namespace, "elsewhere")))
    assert not ok
    assert "forbidden" in out, out
    ok, out = as_user(kubectl, user, "delete", "rdsexporttask", "nightly", *here, "--wait=false")
    assert ok, out


def test_a_viewer_of_a_namespace_reads_exports_there_and_changes_nothing(
    kubectl: Kubectl, namespace: str, other_namespace: str, release: str
) -> None:
    user = f"viewer-{uuid.uuid4().hex[:6]}"
    bind(kubectl, namespace, f"{release}-view", user)
    here = ("-n", namespace)
    for verb in READ:
        assert can_i(kubectl, user, verb, TASKS, *here), verb
        assert allowed(kubectl, user, verb, "rdsexportschedules", namespace), verb
        assert not can_i(kubectl, user, verb, TASKS, "-n", other_namespace), verb
    for verb in WRITE:
        assert not can_i(kubectl, user, verb, TASKS, *here), verb
        assert not allowed(kubectl, user, verb, "rdsexportschedules", namespace), verb
    assert can_i(kubectl, user, "get", TASKS, "--subresource=status", *here)
    assert not can_i(kubectl, user, "patch", TASKS, "--subresource=status", *here)

    kubectl.create(task(namespace, "nightly"))
    ok, out = as_user(kubectl, user, "get", "rdsexporttasks", *here, "-o", "json")
    assert ok, out
    assert [item["metadata"]["name"] for item in json.loads(out)["items"]] == ["nightly"]
    ok, out = as_user(kubectl, user, "get", "rdsexporttasks", "-n", other_namespace)
    assert not ok
    assert "forbidden" in out, out
    for args in (
        ("create", "-f", "-"),
        ("delete", "rdsexporttask", "nightly", *here, "--wait=false"),
        ("patch", "rdsexporttask", "nightly", *here, "--type=merge", "-p", '{"spec":{"deletionPolicy":"Cancel"}}'),
    ):
        ok, out = as_user(kubectl, user, *args, input=json.dumps(task(namespace, "mine")))
        assert not ok, args
        assert "forbidden" in out, out
    assert kubectl.get("rdsexporttask", "nightly", namespace)["spec"]["deletionPolicy"] == "Retain"


def test_an_admin_of_a_namespace_manages_exports_there(kubectl: Kubectl, namespace: str, release: str) -> None:
    user = f"admin-{uuid.uuid4().hex[:6]}"
    assert not can_i(kubectl, user, "create", TASKS, "-n", namespace)  # nothing before the binding
    bind(kubectl, namespace, f"{release}-admin", user)
    for verb in READ + WRITE:
        assert can_i(kubectl, user, verb, TASKS, "-n", namespace), verb
    assert not can_i(kubectl, user, "patch", TASKS, "--subresource=status", "-n", namespace)
    ok, out = as_user(kubectl, user, "create", "-f", "-", input=json.dumps(task(namespace, "by-admin")))
    assert ok, out
