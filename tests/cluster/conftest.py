"""Fixtures of the tests that install the chart into the real control plane."""

from __future__ import annotations

import pytest

from helmchart import Helm, helm_runner
from localdev.controlplane import ControlPlane


@pytest.fixture(scope="session")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Helm pointed at the control plane, its cache, config and data kept out of the user's home."""
    return helm_runner(control_plane.helm, control_plane.env(), tmp_path_factory.mktemp("helm-home"))
