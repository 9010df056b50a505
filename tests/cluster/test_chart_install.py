"""The Helm chart installed into the local control plane: objects, permissions as the API server decides them,
upgrades, and the operator running with exactly the chart's RBAC. Render-only checks are in tests/static.

There is no kubelet, so Deployments never run pods: installs never wait (Helm 4's default ``--wait=hookOnly`` with no
hooks), and the one test that proves the chart's RBAC is enough runs the operator as a local process authenticated
as the chart's ServiceAccount.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from helmchart import CHART, CRD_NAME, OPERATOR_RULES, SCHEMA_ERROR, Helm
from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.standin.server import Script, StandInServer, create_snapshot
from rds_export_operator.aws.tenancy import GRANT_KEYS

pytestmark = pytest.mark.cluster

OPTIONAL_SCANS = re.compile(
    r"Not enough permissions to|"
    r'cannot (list|watch) resource \\?"(customresourcedefinitions|namespaces)\\?" .* at the cluster scope'
)
# Not RBAC: earlier tests' objects whose namespaces are going away (the cluster-wide operator sees them too, when
# tests/e2e ran before this test in the same session) get no new Events there.
TERMINATING = re.compile(r"unable to create new content in namespace \S+ because it is being terminated")


@pytest.fixture
def release(helm: Helm) -> Iterator[Callable[[str], str]]:
    """Unique release names (the ClusterRole is cluster-scoped), uninstalled after the test."""
    made: list[tuple[str, str]] = []

    def name(namespace: str) -> str:
        made.append((f"r-{uuid.uuid4().hex[:8]}", namespace))
        return made[-1][0]

    yield name
    for rel, namespace in made:
        helm("uninstall", rel, "--namespace", namespace)


def install(helm: Helm, rel: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    # No --wait: Helm 4 defaults to hookOnly and the chart has no hooks; without a kubelet no pod ever gets ready.
    return helm("install", rel, str(CHART), "--namespace", namespace, *args)


def can_i(kubectl: Kubectl, namespace: str, service_account: str, *args: str) -> bool:
    out = kubectl.run("auth", "can-i", *args, f"--as=system:serviceaccount:{namespace}:{service_account}", check=False)
    return out.strip() == "yes"


# --- real installs -------------------------------------------------------------------------------------------------


def test_install_cluster_wide(helm: Helm, kubectl: Kubectl, namespace: str, release: Callable[[str], str]) -> None:
    rel = release(namespace)
    done = install(helm, rel, namespace)
    assert done.returncode == 0, done.stderr
    assert "kubectl get rdsexporttasks" in done.stdout  # NOTES.txt
    assert "Tenancy mode: not chosen: only cluster admins" in done.stdout
    fullname = f"{rel}-rds-export-operator"

    crd = kubectl.get("crd", CRD_NAME)
    established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
    assert established and established[0]["status"] == "True"
    assert kubectl.get("serviceaccount", fullname, namespace)["automountServiceAccountToken"] is True
    assert kubectl.get("clusterrole", fullname)["rules"] == OPERATOR_RULES
    binding = kubectl.get("clusterrolebinding", fullname)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": fullname, "namespace": namespace}]
    deployment = kubectl.get("deployment", fullname, namespace)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    service = kubectl.get("service", f"{fullname}-metrics", namespace)
    assert service["spec"]["ports"][0]["port"] == 9090
    assert kubectl.get_or_none("role", f"{fullname}-leader-election", namespace) is None
    assert kubectl.get_or_none("poddisruptionbudget", fullname, namespace) is None
    status = json.loads(helm("status", rel, "--namespace", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"

    # What the ServiceAccount may do, as the API server decides it: exactly the operator's needs, in any namespace.
    assert can_i(kubectl, namespace, fullname, "watch", "rdsexporttasks.rdsexport.dev", "--all-namespaces")
    assert can_i(kubectl, namespace, fullname, "patch", "rdsexporttasks.rdsexport.dev", "-n", "default")
    assert can_i(kubectl, namespace, fullname, "patch", "rdsexporttasks.rdsexport.dev", "--subresource=status")
    assert can_i(kubectl, namespace, fullname, "create", "events", "-n", "default")
    assert not can_i(kubectl, namespace, fullname, "create", "events.events.k8s.io", "-n", "default")
    # Schedules create and prune their exports (and ttlSecondsAfterFinished deletes them); users own the specs.
    assert can_i(kubectl, namespace, fullname, "delete", "rdsexporttasks.rdsexport.dev", "-n", "default")
    assert can_i(kubectl, namespace, fullname, "create", "rdsexporttasks.rdsexport.dev", "-n", "default")
    assert not can_i(kubectl, namespace, fullname, "update", "rdsexporttasks.rdsexport.dev", "-n", "default")
    assert can_i(kubectl, namespace, fullname, "watch", "rdsexportschedules.rdsexport.dev", "--all-namespaces")
    assert can_i(kubectl, namespace, fullname, "patch", "rdsexportschedules.rdsexport.dev", "--subresource=status")
    assert not can_i(kubectl, namespace, fullname, "create", "rdsexportschedules.rdsexport.dev", "-n", "default")
    assert not can_i(kubectl, namespace, fullname, "delete", "rdsexportschedules.rdsexport.dev", "-n", "default")
    assert not can_i(kubectl, namespace, fullname, "get", "secrets", "-n", namespace)
    assert not can_i(kubectl, namespace, fullname, "get", "leases.coordination.k8s.io", "-n", namespace)

    # Uninstall removes this release's cluster-scoped objects (named after it), and never the CRD.
    done = helm("uninstall", rel, "--namespace", namespace)
    assert done.returncode == 0, done.stderr
    assert kubectl.get_or_none("clusterrole", fullname) is None
    assert kubectl.get_or_none("clusterrolebinding", fullname) is None
    assert kubectl.get_or_none("crd", CRD_NAME) is not None  # Helm never deletes crds/
    # The chart README's CRD upgrade command works on the chart's crds/ directory (kubectl follows the symlink).
    out = kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    assert f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME} serverside-applied" in out


def test_install_with_every_grant_key_and_a_tenancy_mode(
    helm: Helm, kubectl: Kubectl, namespace: str, release: Callable[[str], str]
) -> None:
    # Bug (issue 23, attack 7): the schema refused sourceArns, s3Buckets and kmsKeys, so the only control the docs
    # name for single-identity installs could not be set through Helm.
    grant = {key: [f"{key}-*"] for key in GRANT_KEYS}
    rel = release(namespace)
    done = install(
        helm, rel, namespace, "--set", "tenancyMode=single", "--set-json", f"tenancy={json.dumps({'team-a': grant})}"
    )
    assert done.returncode == 0, done.stderr
    assert "Tenancy mode: single" in done.stdout and "within the tenancy grants (team-a)" in done.stdout
    container = kubectl.get("deployment", f"{rel}-rds-export-operator", namespace)["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in container["containers"][0]["env"]}
    assert json.loads(env["RDS_EXPORT_TENANCY"]) == {"team-a": grant}
    assert (
        kubectl.get("clusterrole", f"{rel}-rds-export-operator-edit")["metadata"]["labels"][
            "rbac.authorization.k8s.io/aggregate-to-edit"
        ]
        == "true"
    )


def test_install_namespaced(helm: Helm, kubectl: Kubectl, namespace: str, release: Callable[[str], str]) -> None:
    rel = release(namespace)
    done = install(helm, rel, namespace, "--set", f"watchNamespaces={{{namespace}}}")
    assert done.returncode == 0, done.stderr
    fullname = f"{rel}-rds-export-operator"
    assert kubectl.get("role", fullname, namespace)["rules"] == OPERATOR_RULES
    binding = kubectl.get("rolebinding", fullname, namespace)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": fullname}
    assert kubectl.get_or_none("clusterrole", fullname) is None
    assert kubectl.get_or_none("clusterrolebinding", fullname) is None
    assert kubectl.get_or_none("role", f"{fullname}-leader-election", namespace) is None
    env = {
        e["name"]: e.get("value")
        for e in kubectl.get("deployment", fullname, namespace)["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["RDS_EXPORT_NAMESPACES"] == namespace

    assert can_i(kubectl, namespace, fullname, "watch", "rdsexporttasks.rdsexport.dev", "-n", namespace)
    assert not can_i(kubectl, namespace, fullname, "watch", "rdsexporttasks.rdsexport.dev", "-n", "default")
    assert not can_i(kubectl, namespace, fullname, "watch", "rdsexporttasks.rdsexport.dev", "--all-namespaces")


def test_install_with_two_replicas_grants_exactly_its_lease(
    helm: Helm, kubectl: Kubectl, namespace: str, release: Callable[[str], str]
) -> None:
    rel = release(namespace)
    done = install(helm, rel, namespace, "--set", "replicas=2")
    assert done.returncode == 0, done.stderr
    fullname = f"{rel}-rds-export-operator"
    assert kubectl.get("deployment", fullname, namespace)["spec"]["strategy"]["type"] == "RollingUpdate"
    assert kubectl.get("poddisruptionbudget", fullname, namespace)["spec"]["maxUnavailable"] == 1
    lease = "leases.coordination.k8s.io"
    assert can_i(kubectl, namespace, fullname, "create", lease, "-n", namespace)
    assert can_i(kubectl, namespace, fullname, "get", f"{lease}/{fullname}", "-n", namespace)
    assert can_i(kubectl, namespace, fullname, "update", f"{lease}/{fullname}", "-n", namespace)
    assert not can_i(kubectl, namespace, fullname, "get", f"{lease}/someone-else", "-n", namespace)
    assert not can_i(kubectl, namespace, fullname, "delete", f"{lease}/{fullname}", "-n", namespace)
    assert not can_i(kubectl, namespace, fullname, "list", lease, "-n", namespace)
    assert not can_i(kubectl, namespace, fullname, "create", lease, "-n", "default")


def test_upgrade_scales_between_one_and_several_replicas(
    helm: Helm, kubectl: Kubectl, namespace: str, release: Callable[[str], str]
) -> None:
    """Recreate <-> RollingUpdate both ways: Recreate is refused while a (defaulted) rollingUpdate section is left."""
    rel = release(namespace)
    fullname = f"{rel}-rds-export-operator"
    for replicas, strategy, leader_role in [
        (2, {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, True),
        (1, {"type": "Recreate"}, False),
        (3, {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, True),
    ]:
        done = helm("upgrade", "--install", rel, str(CHART), "--namespace", namespace, "--set", f"replicas={replicas}")
        assert done.returncode == 0, done.stderr
        deployment = kubectl.get("deployment", fullname, namespace)
        assert deployment["spec"]["replicas"] == replicas
        assert deployment["spec"]["strategy"] == strategy
        role = kubectl.get_or_none("role", f"{fullname}-leader-election", namespace)
        assert (role is not None) == leader_role
        pdb = kubectl.get_or_none("poddisruptionbudget", fullname, namespace)
        assert (pdb is not None) == leader_role


def test_install_refuses_bad_values_before_touching_the_cluster(
    helm: Helm, kubectl: Kubectl, namespace: str, release: Callable[[str], str]
) -> None:
    rel = release(namespace)
    done = install(helm, rel, namespace, "--set", "replicas=0", "--set", "watchNamespaces[0]=Bad_NS")
    assert done.returncode != 0
    assert SCHEMA_ERROR in done.stderr
    assert "'/replicas'" in done.stderr
    assert "'Bad_NS' does not match pattern" in done.stderr
    assert helm("status", rel, "--namespace", namespace).returncode != 0
    assert kubectl.get("deployments", namespace=namespace)["items"] == []


# --- the chart's RBAC is enough for the operator -------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws() -> Iterator[StandInServer]:
    with StandInServer(auto=False, script=Script()) as server:
        # A cluster-wide operator also sees objects other tests left behind (namespaces never go away here): they
        # must not fill the 5 export slots and queue this test's export.
        server.standin.limit = 1000
        yield server


def test_operator_runs_with_exactly_the_charts_permissions(
    control_plane: ControlPlane,
    helm: Helm,
    kubectl: Kubectl,
    namespace: str,
    release: Callable[[str], str],
    aws: StandInServer,
    tmp_path: Path,
) -> None:
    """Install (cluster-wide, leader election on), then run the operator with the ServiceAccount's token and the
    Deployment's environment: it takes the Lease, starts the export, reports status and posts Events.

    Cluster-wide because that is the default, and because in namespaced mode kopf first retries its (optional,
    not granted) namespace listing for about 54 s (its default error backoffs) before it falls back to the listed
    namespaces and starts: correct, but too slow for this suite. The namespaced Roles are checked with can-i above.
    """
    rel = release(namespace)
    done = install(helm, rel, namespace, "--set", "leaderElection.enabled=true")
    assert done.returncode == 0, done.stderr
    fullname = f"{rel}-rds-export-operator"
    deployment = kubectl.get("deployment", fullname, namespace)
    env: dict[str, str] = {}
    for var in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        env[var["name"]] = {"metadata.name": "operator-pod-0", "metadata.namespace": namespace}.get(
            field, var.get("value", "")
        )
    token = kubectl.run("create", "token", fullname, "-n", namespace).strip()
    kubeconfig = control_plane.kubeconfig_for_token(token, tmp_path / "operator-kubeconfig")

    rds = boto3.client(
        "rds", endpoint_url=aws.url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    snapshot = create_snapshot(rds, f"snap-{uuid.uuid4().hex[:8]}")
    with OperatorProcess(kubeconfig, aws.env(), tmp_path / "operator.log", args=["--poll-interval=1"], env=env) as op:
        try:
            kubectl.apply(
                {
                    "apiVersion": "rdsexport.dev/v1alpha1",
                    "kind": "RdsExportTask",
                    "metadata": {"name": "nightly", "namespace": namespace},
                    "spec": {
                        "sourceArn": snapshot,
                        "s3BucketName": "exports-bucket",
                        "iamRoleArn": "arn:aws:iam::123456789012:role/rds-s3-export",
                        "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/0b4a2e46-1f86-4b34-9d4f-0fbd5d2c3b7f",
                        # Retain: no finalizer, so the object can be deleted below without an operator to cancel it.
                        "deletionPolicy": "Retain",
                    },
                }
            )
            kubectl.wait_for(
                "rdsexporttasks",
                "nightly",
                namespace,
                lambda o: o.get("status", {}).get("status") == "STARTING",
                timeout=60,
                what="STARTING, reported by the operator running as the chart's ServiceAccount",
            )
            assert kubectl.get("lease", fullname, namespace)["spec"]["holderIdentity"] == "operator-pod-0"
            assert any(e["reason"] == "Started" for e in kubectl.events(namespace, "nightly"))
            # Leave nothing for later tests' cluster-wide operators (this namespace never really goes away).
            kubectl.run("delete", "rdsexporttask", "nightly", "-n", namespace, "--timeout=30s")
        finally:
            op.stop()
            print(op.log()[-4000:])
        # The only refusals are kopf's optional cluster scans (CRDs, namespaces), not granted on purpose: kopf falls
        # back to its start-up discovery and the listed namespaces. Nothing the operator itself needs is refused.
        for line in op.log().splitlines():
            if re.search(r"\b403\b", line) or "forbidden" in line.lower():  # not the digits of a timestamp
                assert OPTIONAL_SCANS.search(line) or TERMINATING.search(line), line
