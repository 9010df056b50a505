"""The operator as a real process, the AWS stand-in in this process, and helpers to build RdsExportTask objects."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from constants import API_VERSION, BUCKET, KEY, KIND, PLURAL, ROLE
from localdev.controlplane import REPO, ControlPlane
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.standin.server import Script, StandInServer, create_snapshot

OperatorFactory = Callable[..., OperatorProcess]  # the operator_factory fixture: start(*args, **env)
POLL = 1.0  # the operator's poll interval in these tests (seconds)


@pytest.fixture(scope="session")
def aws() -> Iterator[StandInServer]:
    # Manual mode: tests drive each task's lifecycle; the demo uses the timed script instead.
    with StandInServer(auto=False, script=Script()) as server:
        yield server


@pytest.fixture(scope="session")
def rds_client(aws: StandInServer) -> Any:
    return boto3.client(
        "rds", endpoint_url=aws.url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


@pytest.fixture
def snapshot_arn(rds_client: Any) -> str:
    return create_snapshot(rds_client, f"snap-{uuid.uuid4().hex[:8]}")


RELEASE = "rds-export-operator"
RELEASE_NAMESPACE = "rds-export-system"
CHART = REPO / "charts" / "rds-export-operator"
MAPPING = f"{RELEASE}-identities"  # the chart's ConfigMap, which the chart's RBAC lets the operator read
ROLE_A = "arn:aws:iam::111111111111:role/team-a-exports"
ROLE_B = "arn:aws:iam::222222222222:role/team-b-exports"


@pytest.fixture(scope="session")
def operator_kubeconfig(
    control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The operator runs as the chart's ServiceAccount, under exactly the RBAC that ``helm install`` applied."""
    subprocess.run(
        [
            control_plane.helm,
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            "--set",
            "leaderElection.enabled=true",
        ],
        env=control_plane.env(),
        check=True,
        capture_output=True,
        text=True,
    )
    token = kubectl.run("create", "token", RELEASE, "-n", RELEASE_NAMESPACE, "--duration=6h").strip()
    return control_plane.kubeconfig_for_token(token, tmp_path_factory.mktemp("operator") / "kubeconfig")


@pytest.fixture
def operator_factory(
    operator_kubeconfig: Path, aws: StandInServer, crd: None, namespace: str, tmp_path: Path
) -> Iterator[OperatorFactory]:
    """Operators that watch only the test's namespace: objects other tests leave behind (their namespaces are
    deleted asynchronously) must not disturb this test's counts."""
    started: list[OperatorProcess] = []

    def start(*args: str, **env: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        op = OperatorProcess(
            operator_kubeconfig,
            aws.env(),
            log,
            args=[
                f"--namespace={namespace}",
                f"--poll-interval={POLL}",
                "--retry-base-delay=0.5",
                "--retry-max-delay=2",
                *args,
            ],
            env=env,
        )
        started.append(op.start())
        return op

    yield start
    for op in started:
        op.stop()
        print(f"--- {op.log_file.name} ---\n{op.log()[-4000:]}")


@pytest.fixture
def operator(operator_factory: OperatorFactory) -> OperatorProcess:
    return operator_factory()


def export_task(name: str, source_arn: str, **spec: Any) -> dict[str, Any]:
    body = {"sourceArn": source_arn, "s3BucketName": BUCKET, "iamRoleArn": ROLE, "kmsKeyId": KEY}
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


@pytest.fixture(autouse=True)
def free_export_slots(aws: StandInServer) -> Iterator[None]:
    """Tasks left running by a test would hold the stand-in's 5 export slots: finish them afterwards (and drop
    the test's faults, hooks, modes and role denials)."""
    yield
    aws.standin.reset()


@pytest.fixture
def team_b(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """A second team's namespace (``<namespace>-b``), deleted afterwards."""
    name = f"{namespace}-b"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def set_mapping(kubectl: Kubectl, data: dict[str, str]) -> None:
    """Replace the data of the chart's identity mapping ConfigMap."""
    patch = json.dumps({"data": data})
    kubectl.run("patch", "configmap", MAPPING, "-n", RELEASE_NAMESPACE, "--type=merge", "-p", patch)


@contextmanager
def identity_mapping(kubectl: Kubectl, roles: dict[str, str]) -> Iterator[None]:
    """Namespaces act as these IAM roles (namespace -> role ARN) through the chart's mapping, restored afterwards."""
    before = kubectl.get("configmap", MAPPING, RELEASE_NAMESPACE)["data"]
    rules = [{"namespace": namespace, "roleArn": role} for namespace, role in roles.items()]
    set_mapping(kubectl, {"identities.json": json.dumps({"rules": rules})})
    try:
        yield
    finally:
        set_mapping(kubectl, before)


def tasks_of(aws: StandInServer, source_arn: str) -> list[str]:
    """The identifiers of the stand-in's export tasks of this source, oldest first."""
    return [t.identifier for t in aws.standin.tasks() if t.source_arn == source_arn]


def start_direct(rds_client: Any, identifier: str, source_arn: str, role: str = ROLE, key: str = KEY) -> None:
    """Start an export behind the operator's back, as another tool would."""
    rds_client.start_export_task(
        ExportTaskIdentifier=identifier, SourceArn=source_arn, S3BucketName=BUCKET, IamRoleArn=role, KmsKeyId=key
    )


def progress_is(percent: int) -> Callable[[dict[str, Any]], bool]:
    """A predicate for ``Kubectl.wait_for``: the object reports ``percent`` progress."""
    return lambda o: o.get("status", {}).get("percentProgress") == percent


def condition_is(kind: str, **fields: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate for ``Kubectl.wait_for``: the condition ``kind`` has these fields (status, reason, ...)."""
    return lambda o: all(condition(o, kind).get(key) == value for key, value in fields.items())


def status_is(value: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate for ``Kubectl.wait_for``: the object's status.status is ``value``."""
    return lambda o: o.get("status", {}).get("status") == value


def wait_condition(
    kubectl: Kubectl,
    plural: str,
    name: str,
    namespace: str,
    condition_type: str,
    *,
    timeout: float = 30,
    what: str | None = None,
    **fields: str,
) -> dict[str, Any]:
    """Wait until the object's condition ``condition_type`` has these fields (status, reason, ...); return it."""
    wanted = what or f"{condition_type} with {fields}"
    return dict(
        kubectl.wait_for(plural, name, namespace, condition_is(condition_type, **fields), timeout=timeout, what=wanted)
    )


def started(kubectl: Kubectl, namespace: str, name: str, timeout: float = 30) -> str:
    """Wait until the operator has started the export ``name`` (STARTING); return its AWS identifier."""
    obj = kubectl.wait_for(PLURAL, name, namespace, status_is("STARTING"), timeout=timeout, what=f"{name} STARTING")
    return str(obj["status"]["exportTaskIdentifier"])


def start_export(kubectl: Kubectl, namespace: str, name: str, source_arn: str, **spec: Any) -> str:
    """Apply an export, wait until the operator has started it (STARTING) and return its AWS identifier."""
    kubectl.apply(export_task(name, source_arn, **spec), "-n", namespace)
    return started(kubectl, namespace, name)
