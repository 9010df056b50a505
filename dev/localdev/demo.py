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
from pathlib import Path

import boto3

from localdev import controlplane
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess, install_crd
from localdev.standin.server import Script, StandInServer

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-seconds", type=float, default=40, help="how long the simulated export runs")
    parser.add_argument("--poll-interval", type=float, default=3, help="the operator's poll interval")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with local_cluster("rds-export-demo-") as (workdir, cp, kubectl):
        script = Script(starting=5, running=args.export_seconds, size_gb=12)
        with StandInServer(auto=True, script=script) as aws:
            say(f"AWS stand-in (moto + RDS export lifecycle) at {aws.url}: creating snapshot orders-nightly")
            rds = boto3.client(
                "rds",
                endpoint_url=aws.url,
                region_name="us-east-1",
                aws_access_key_id="demo",
                aws_secret_access_key="demo",
            )
            rds.create_db_instance(
                DBInstanceIdentifier="orders",
                DBInstanceClass="db.t3.micro",
                Engine="postgres",
                MasterUsername="admin",
                MasterUserPassword="password123",
                AllocatedStorage=20,
            )
            rds.create_db_snapshot(DBSnapshotIdentifier="orders-nightly", DBInstanceIdentifier="orders")
            say("starting the operator")
            with OperatorProcess(
                cp.kubeconfig, aws.env(), workdir / "operator.log", args=[f"--poll-interval={args.poll_interval}"]
            ):
                say(f"kubectl apply -f {EXAMPLE.relative_to(controlplane.REPO)}")
                print(kubectl.apply(EXAMPLE.read_text()).strip())
                say("kubectl get rdsexporttasks -w   (until COMPLETE)")
                watch = subprocess.Popen(
                    [cp.kubectl, f"--kubeconfig={cp.kubeconfig}", "get", "rdsexporttasks", "-w", "-o", "wide"]
                )
                try:
                    kubectl.run(
                        "wait",
                        "rdsexporttask/orders-nightly",
                        "--for=condition=Complete",
                        f"--timeout={int(args.export_seconds * 3 + 60)}s",
                        timeout=args.export_seconds * 3 + 90,
                    )
                finally:
                    watch.terminate()
                    watch.wait()
                say("kubectl describe rdsexporttask orders-nightly (events)")
                describe = kubectl.run("describe", "rdsexporttask", "orders-nightly")
                print(describe[describe.find("Events:") :].rstrip())
    say(f"done in {time.monotonic() - started:.0f}s: the export is COMPLETE; everything is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
