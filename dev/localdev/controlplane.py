"""A real local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) on loopback, for tests,
demo and benchmarks.

Binaries come from ``dev/build-control-plane.sh`` (built once, cached outside the repo). Each start uses free
ports and a fresh temporary directory, serves TLS with a self-signed certificate, authorizes with RBAC, signs
ServiceAccount tokens (so ``kubectl create token`` works) and authenticates an admin by a static token.
kube-controller-manager runs the controllers that need no nodes and no cloud (:data:`CONTROLLERS`): garbage
collection by ownerReferences, namespace deletion, default ServiceAccounts, ClusterRole aggregation.
Children get PDEATHSIG so that they die with us even if we are SIGKILLed: no orphaned processes.

    python -m localdev.controlplane up      # prints the kubeconfig path, runs until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from localdev.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "dev" / "build-control-plane.sh"
ADMIN_USER = "local-admin"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")
# An allowlist rather than "*,-x,-y": no Pods ever run here (no kubelet, no scheduler), so the workload, node,
# volume, endpoint and CSR-signing controllers would only cost CPU. These need nothing but the API server.
CONTROLLERS = (
    "garbage-collector-controller",  # ownerReferences cascade
    "namespace-controller",  # a deleted namespace empties and disappears
    "serviceaccount-controller",  # the "default" ServiceAccount in every namespace
    "serviceaccount-token-controller",  # tokens for legacy token Secrets (uses the signing key)
    "root-ca-certificate-publisher-controller",  # the kube-root-ca.crt ConfigMap in every namespace
    "clusterrole-aggregation-controller",  # aggregate-to-admin/edit/view labels fill the built-in roles
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached; the message says what to do."""


def binaries_dir() -> Path:
    """Run the (idempotent, cached) build script and return the directory with the binaries."""
    override = os.environ.get("RDS_EXPORT_OPERATOR_BIN")
    if override:
        path = Path(override)
    else:
        done = subprocess.run(["bash", str(BUILD_SCRIPT)], check=False, stdout=subprocess.PIPE, text=True, timeout=3600)
        if done.returncode != 0:
            raise ControlPlaneError(f"{BUILD_SCRIPT} failed with exit code {done.returncode} (see its output)")
        path = Path(done.stdout.strip().splitlines()[-1])
    missing = [b for b in BINARIES if not os.access(path / b, os.X_OK)]
    if missing:
        raise ControlPlaneError(f"missing binaries {missing} in {path}; run {BUILD_SCRIPT}")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG = 1: the kernel sends SIGTERM to the child when its parent thread exits.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _service_account_keys(directory: Path) -> tuple[Path, Path]:
    key, pub = directory / "sa.key", directory / "sa.pub"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
        check=True,
        capture_output=True,
    )
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True, capture_output=True)
    return key, pub


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver + kube-controller-manager; use :func:`running` to get one."""

    bin_dir: Path
    workdir: Path
    url: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    kubeconfig: Path = Path()
    ca_file: Path = Path()
    controller_manager_url: str = ""
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    commands: dict[str, list[str]] = field(default_factory=dict)
    _stopped: dict[str, int] = field(default_factory=dict)  # stopped component -> its place in the start order

    @property
    def kubectl(self) -> str:
        return str(self.bin_dir / "kubectl")

    @property
    def helm(self) -> str:
        return str(self.bin_dir / "helm")

    def env(self) -> dict[str, str]:
        """Environment for child processes (kubectl, helm, the operator) pointed at this control plane."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": f"{self.bin_dir}:{os.environ['PATH']}"}

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        self.commands[name] = args
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        self.processes.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        for name, proc in self.processes:
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {proc.returncode} during start-up; last log lines:\n{self.log_tail(name)}"
                )

    def start(self, timeout: float = 90.0) -> None:
        etcd_dir = self.workdir / "etcd"
        if etcd_dir.exists() and any(etcd_dir.iterdir()):
            raise ControlPlaneError(f"stale etcd data directory {etcd_dir}: remove it or use a fresh work dir")
        certs = self.workdir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        etcd_port, peer_port, api_port, kcm_port = free_port(), free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={etcd_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        sa_key, sa_pub = _service_account_keys(certs)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={certs}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                f"--token-auth-file={tokens}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                "--v=1",
            ],
        )
        self.url = f"https://127.0.0.1:{api_port}"
        self.ca_file = certs / "apiserver.crt"
        wait_until(lambda: self._ready(), timeout=timeout, what="kube-apiserver /readyz to answer ok")
        self._write_kubeconfig()
        # After /readyz: it needs the admin kubeconfig (which names the apiserver's generated certificate).
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",  # every controller acts as the admin
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.ca_file}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.workdir / 'controller-manager'}",
                "--v=1",
            ],
        )
        self.controller_manager_url = f"https://127.0.0.1:{kcm_port}"
        wait_until(self._controller_manager_ready, timeout=timeout, what="kube-controller-manager /healthz ok")

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Stop one component and start it again as it was, keeping its data; wait until it is ready again."""
        self.stop_component(name)
        self.start_component(name, timeout)

    def stop_component(self, name: str, kill: bool = False) -> None:
        """Stop one component (SIGTERM, or SIGKILL: gone at once), keeping its data for :meth:`start_component`."""
        index, proc = next((i, p) for i, (n, p) in enumerate(self.processes) if n == name)
        proc.kill() if kill else proc.terminate()
        try:
            proc.wait(timeout=10)  # kube-apiserver may hold open watches longer: then it is a crash restart
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        del self.processes[index]
        self._stopped[name] = index

    def start_component(self, name: str, timeout: float = 60.0) -> None:
        self._spawn(name, self.commands[name])
        # Keep the start order: stop() goes in reverse.
        self.processes.insert(self._stopped.pop(name, len(self.processes) - 1), self.processes.pop())
        wait_until(self._ready, timeout=timeout, what=f"kube-apiserver /readyz after starting {name}")
        wait_until(self._controller_manager_ready, timeout=timeout, what=f"controller-manager after starting {name}")

    def _ready(self) -> bool:
        self._check_alive()
        if not self.ca_file.exists():
            return False
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return _answers_ok(f"{self.url}/readyz", context, {"Authorization": f"Bearer {self.token}"})

    def _controller_manager_ready(self) -> bool:
        self._check_alive()
        # Its serving certificate is self-signed at start-up and trusted by nobody; /healthz needs no credentials.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return _answers_ok(f"{self.controller_manager_url}/healthz", context, {})

    def _write_kubeconfig(self) -> None:
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {self.url}
    certificate-authority: {self.ca_file}
users:
- name: {ADMIN_USER}
  user:
    token: {self.token}
contexts:
- name: local
  context: {{cluster: local, user: {ADMIN_USER}, namespace: default}}
current-context: local
"""
        )
        self.kubeconfig.chmod(0o600)

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """A kubeconfig that authenticates with ``token`` (for example a ServiceAccount's) instead of the admin."""
        text = self.kubeconfig.read_text().replace(self.token, token)
        path.write_text(text)
        path.chmod(0o600)
        return path

    def wait_any(self) -> tuple[str, int]:
        """Block until one component exits; return its name and exit code."""

        def exited() -> tuple[str, int] | None:
            return next(((n, p.returncode) for n, p in self.processes if p.poll() is not None), None)

        return wait_until(exited, timeout=math.inf, what="a component to exit", max_interval=1.0)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop kube-controller-manager, kube-apiserver, then etcd: SIGTERM, and SIGKILL after ``timeout`` seconds."""
        for _name, proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.processes.clear()


def _answers_ok(url: str, context: ssl.SSLContext, headers: dict[str, str]) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2, context=context) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return False


@contextlib.contextmanager
def running(workdir: Path | None = None, keep: bool = False) -> Iterator[ControlPlane]:
    """Start a control plane in ``workdir`` (a fresh temporary directory by default); stop it on exit."""
    bin_dir = binaries_dir()
    tmp = Path(tempfile.mkdtemp(prefix="rds-export-cp-")) if workdir is None else workdir
    tmp.mkdir(parents=True, exist_ok=True)
    cp = ControlPlane(bin_dir=bin_dir, workdir=tmp)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()
        if workdir is None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.controlplane", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd, kube-apiserver and kube-controller-manager; run until Ctrl-C")
    up.add_argument("--workdir", type=Path, help="directory for data, certificates and logs (default: a temp dir)")
    sub.add_parser("build", help="build or locate the binaries and print their directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(binaries_dir())
            return 0
        started = time.monotonic()
        with running(args.workdir) as cp:
            print(f"control plane ready in {time.monotonic() - started:.1f}s at {cp.url}", flush=True)
            print(f"export KUBECONFIG={cp.kubeconfig} PATH={cp.bin_dir}:$PATH", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            with contextlib.suppress(KeyboardInterrupt):
                name, code = cp.wait_any()  # blocks until a component exits or Ctrl-C
                print(f"{name} exited with code {code}:\n{cp.log_tail(name)}", file=sys.stderr)
                return 1
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
