"""Static checks: no cluster. Helm comes from the control plane's binary cache, kube-score from its own build."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helmchart import REPO, Helm, Render, helm_runner, renderer
from localdev.controlplane import binaries_dir

KUBE_SCORE_BUILD = REPO / "dev" / "build-kube-score.sh"


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return helm_runner(str(binaries_dir() / "helm"), dict(os.environ), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def render(helm: Helm) -> Render:
    return renderer(helm)


@pytest.fixture(scope="session")
def kube_score() -> Path:
    """The pinned kube-score: the (idempotent, cached) build script prints its path last."""
    done = subprocess.run(["bash", str(KUBE_SCORE_BUILD)], check=False, stdout=subprocess.PIPE, text=True, timeout=1800)
    assert done.returncode == 0, f"{KUBE_SCORE_BUILD} failed with exit code {done.returncode} (see its output)"
    path = Path(done.stdout.strip().splitlines()[-1])
    assert os.access(path, os.X_OK), path
    return path
