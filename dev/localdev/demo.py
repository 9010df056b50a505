"""The operator's main job, end to end, on the embedded local default (``make demo``).

Starts the local control plane, the AWS stand-in (timed lifecycle) and the operator; applies
``examples/snapshot-export.yaml`` and shows ``kubectl get rdsexporttasks -w`` until the export is COMPLETE;
then prints the object's events and stops everything.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localdev import controlplane
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess, install_crd
from localdev.standin.server import Script, StandInServer, create_db_instance

EXAMPLE = controlplane.REPO / "examples" / "snapshot-export.yaml"


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


@contextmanager
def local_cluster(prefix: str) -> Iterator[tuple[Path, controlplane.ControlPlane, Kubectl]]:
    """A fresh work directory and the local control plane with the CRDs installed (the demos' common start)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    say("starting the local control plane (etcd + kube-apiserver; the first run builds them)")
    with controlplane.running(workdir / "cp") as cp:
        kubectl = Kubectl(cp.kubectl, cp.kubeconfig)
        print(f"kube-apiserver {cp.url} ready; KUBECONFIG={cp.kubeconfig}")
        install_crd(kubectl)
        yield workdir, cp, kubectl


@dataclass(frozen=True)
class Stack:
    cp: controlplane.ControlPlane
    kubectl: Kubectl
    aws: StandInServer
    rds: Any  # a boto3 RDS client of the stand-in


@contextmanager
def local_stack(prefix: str, script: Script, poll_interval: float) -> Iterator[Stack]:
    """The control plane with the CRDs, the stand-in (timed lifecycle) with DB instance ``orders``, the operator."""
    with local_cluster(prefix) as (workdir, cp, kubectl), StandInServer(auto=True, script=script) as aws:
        say(f"AWS stand-in (moto + RDS export lifecycle) at {aws.url}: DB instance orders")
        rds = aws.session().client("rds", endpoint_url=aws.url)
        create_db_instance(rds, "orders")
        say("starting the operator")
        with OperatorProcess(
            cp.kubeconfig, aws.env(), workdir / "operator.log", args=[f"--poll-interval={poll_interval}"]
        ):
            yield Stack(cp, kubectl, aws, rds)


@contextmanager
def watching(cp: controlplane.ControlPlane, *args: str) -> Iterator[None]:
    """``kubectl get <args> -w`` printing to the terminal while the block runs."""
    watch = subprocess.Popen([cp.kubectl, f"--kubeconfig={cp.kubeconfig}", "get", *args, "-w"])
    try:
        yield
    finally:
        watch.terminate()
        watch.wait()


def arguments(module: str, doc: str, *, export_seconds: float, poll_interval: float) -> argparse.ArgumentParser:
    """The demos' common flags (a demo adds its own)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    parser.add_argument("--export-seconds", type=float, default=export_seconds, help="how long an export runs")
    parser.add_argument("--poll-interval", type=float, default=poll_interval, help="the operator's poll interval")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments("localdev.demo", __doc__, export_seconds=40, poll_interval=3).parse_args(argv)
    started = time.monotonic()
    script = Script(starting=5, running=args.export_seconds, size_gb=12)
    with local_stack("rds-export-demo-", script, args.poll_interval) as stack:
        kubectl = stack.kubectl
        say("creating snapshot orders-nightly")
        stack.rds.create_db_snapshot(DBSnapshotIdentifier="orders-nightly", DBInstanceIdentifier="orders")
        say(f"kubectl apply -f {EXAMPLE.relative_to(controlplane.REPO)}")
        print(kubectl.apply(EXAMPLE.read_text()).strip())
        say("kubectl get rdsexporttasks -w   (until COMPLETE)")
        with watching(stack.cp, "rdsexporttasks", "-o", "wide"):
            kubectl.run(
                "wait",
                "rdsexporttask/orders-nightly",
                "--for=condition=Complete",
                f"--timeout={int(args.export_seconds * 3 + 60)}s",
                timeout=args.export_seconds * 3 + 90,
            )
        say("kubectl describe rdsexporttask orders-nightly (events)")
        describe = kubectl.run("describe", "rdsexporttask", "orders-nightly")
        print(describe[describe.find("Events:") :].rstrip())
    say(f"done in {time.monotonic() - started:.0f}s: the export is COMPLETE; everything is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
