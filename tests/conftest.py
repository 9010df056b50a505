"""Fixtures shared by the suites: a real control plane per session, a fresh namespace per test, the AWS stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev import controlplane
from localdev.kube import Kubectl
from localdev.stack import install_crd


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[controlplane.ControlPlane]:
    with controlplane.running(tmp_path_factory.mktemp("control-plane")) as cp:
        yield cp


@pytest.fixture(scope="session")
def kubectl(control_plane: controlplane.ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubectl, control_plane.kubeconfig)


@pytest.fixture(scope="session")
def crd(kubectl: Kubectl) -> None:
    install_crd(kubectl)


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    # Unique names: deletion (by kube-controller-manager) is asynchronous, so the last test's namespace may still
    # be Terminating while the next one starts.
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
