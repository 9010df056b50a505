"""The container image's entrypoint starts the operator from an installed package (the Dockerfile's static checks,
hadolint included, are in tests/static/test_dockerfile.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

from e2e.conftest import export_task, status_is
from localdev.controlplane import REPO, ControlPlane
from localdev.kube import Kubectl
from localdev.standin.server import StandInServer
from static.test_dockerfile import directive


def test_entrypoint_starts_the_operator_from_an_installed_package(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    crd: None,
    aws: StandInServer,
    snapshot_arn: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    entrypoint = json.loads(directive("ENTRYPOINT")[-1])
    assert entrypoint == ["rds-export-operator"]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    wheel = next(wheels.glob("rds_export_operator-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # pip --target does not write console scripts: make the one the package declares, as pip would.
    script = venv / "bin" / entrypoint[0]
    script.write_text(
        f"#!{venv}/bin/python\nimport sys\nfrom rds_export_operator.__main__ import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    deps = sysconfig.get_paths()["purelib"]  # the test venv's dependencies, without its editable install
    env = {
        **aws.env(),
        "KUBECONFIG": str(control_plane.kubeconfig),
        "PYTHONPATH": deps,
        "PATH": "/usr/bin:/bin",
        "RDS_EXPORT_HEALTH_ENDPOINT": "",
        "RDS_EXPORT_NAMESPACES": namespace,  # not the objects other tests left behind
        "RDS_EXPORT_METRICS_PORT": "0",
    }
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import rds_export_operator; print(rds_export_operator.__file__)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target)), where
    proc = subprocess.Popen([str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        kubectl.apply(export_task("packaged", snapshot_arn), "-n", namespace)
        kubectl.wait_for("rdsexporttasks", "packaged", namespace, status_is("STARTING"), timeout=60, what="STARTING")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()[-2000:]
