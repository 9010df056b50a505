"""The operator as a real process against the local control plane and the AWS stand-in (tests, demo, bench)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from localdev.controlplane import REPO, _die_with_parent
from localdev.kube import Kubectl

CRD_FILE = REPO / "crds" / "rdsexporttasks.rdsexport.dev.yaml"
CRD_NAME = "rdsexporttasks.rdsexport.dev"
SCHEDULE_CRD_FILE = REPO / "crds" / "rdsexportschedules.rdsexport.dev.yaml"
SCHEDULE_CRD_NAME = "rdsexportschedules.rdsexport.dev"


def install_crd(kubectl: Kubectl) -> None:
    """Every CRD of the project (RdsExportTask, RdsExportSchedule), applied and Established."""
    for path, name in ((CRD_FILE, CRD_NAME), (SCHEDULE_CRD_FILE, SCHEDULE_CRD_NAME)):
        kubectl.run("apply", "--server-side", "-f", str(path))
        kubectl.run("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


class OperatorProcess:
    """``python -m rds_export_operator`` in a child process, its output in a log file."""

    def __init__(
        self,
        kubeconfig: Path,
        aws_env: Mapping[str, str],
        log_file: Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log_file = log_file
        self.cmd = [sys.executable, "-m", "rds_export_operator", "--health-endpoint=", "--metrics-port=0", *args]
        self.env = {
            **os.environ,
            **aws_env,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": str(REPO / "operator"),
            "PYTHONUNBUFFERED": "1",
            "MALLOC_ARENA_MAX": "2",  # as in the image (Dockerfile): glibc arenas per thread bloat RSS otherwise
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        return self

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the crash case, nothing gets to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
