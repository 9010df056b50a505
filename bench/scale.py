"""Scale benchmark: what N RdsExportTask objects cost in AWS calls, API-server writes, latency, memory and CPU.

Runs one scenario per polling mode (coalesced, the default, and the per-object baseline) on the local control
plane against the AWS stand-in, and prints one table with both side by side and their ratios:

    make bench-scale                                   # N=1000, 100 active, 10 s poll interval
    PYTHONPATH=dev:operator .venv/bin/python bench/scale.py --objects 5000 --active 100

Scenario per mode: seed N export tasks in the stand-in (N - active COMPLETE, active IN_PROGRESS), create N objects
naming them, start the operator (it adopts them all) and wait until every object shows its task; then idle
intervals (nothing changes in AWS) and busy intervals (every active task progresses, some complete); then kill
the operator, change every active task, restart it, and time until every object shows the truth again.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localdev import controlplane
from localdev.aws_standin import ACCOUNT, StandInServer
from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess, install_crd
from localdev.waiting import wait_until

REGION = "us-east-1"
SOURCE = f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:bench"


@dataclass
class Watch:
    """``kubectl get -w`` over all objects: when each object's status was last seen to change, and to what."""

    cp: ControlPlane
    namespace: str
    seen: dict[str, tuple[str, int, float]] = field(default_factory=dict)  # name -> (status, percent, time)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Watch:
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        # kubectl ends a watch the server expired (an ERROR event); start it again until told to stop.
        while not self.stopped.is_set():
            self.proc = subprocess.Popen(
                [
                    self.cp.kubectl,
                    f"--kubeconfig={self.cp.kubeconfig}",
                    "get",
                    "rdsexporttasks",
                    "-n",
                    self.namespace,
                    "-w",
                    "-o",
                    "json",
                    "--output-watch-events",
                ],
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            self._read()
            self.proc.wait()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            if event.get("type") not in ("ADDED", "MODIFIED"):
                continue
            obj = event["object"]
            for item in obj.get("items", [obj]):  # the initial state may come as one List
                name, status = item.get("metadata", {}).get("name"), item.get("status", {})
                if name:
                    with self.lock:
                        self.seen[name] = (
                            status.get("status", ""),
                            int(status.get("percentProgress", -1)),
                            time.monotonic(),
                        )

    def stop(self) -> None:
        self.stopped.set()
        self.proc.terminate()
        self.proc.wait()

    def snapshot(self) -> dict[str, tuple[str, int, float]]:
        with self.lock:
            return dict(self.seen)


def apiserver_writes(cp: ControlPlane) -> float:
    """PATCH/PUT/POST requests on rdsexporttasks (and their status) so far, from kube-apiserver's metrics."""
    request = urllib.request.Request(f"{cp.url}/metrics", headers={"Authorization": f"Bearer {cp.token}"})
    import ssl

    context = ssl.create_default_context(cafile=str(cp.ca_file))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and 'resource="rdsexporttasks"' in line
            and any(f'verb="{v}"' in line for v in ("PATCH", "UPDATE", "APPLY"))
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def settle_writes(cp: ControlPlane, quiet: float = 2.0) -> None:
    """Wait until the API server has seen no write to our objects for ``quiet`` seconds."""
    last = [apiserver_writes(cp), time.monotonic()]

    def quiet_enough() -> bool:
        now = apiserver_writes(cp)
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= quiet

    wait_until(quiet_enough, timeout=300, what="API-server writes to settle", interval=0.5)


def process_usage(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    import os

    return rss_kb / 1024, ticks / os.sysconf("SC_CLK_TCK")


def seed(aws: StandInServer, names: list[str], active: int) -> None:
    for i, name in enumerate(names):
        running = i < active
        aws.standin.seed(
            name,
            source=SOURCE,
            bucket="bench-exports",
            role=f"arn:aws:iam::{ACCOUNT}:role/export",
            key="alias/bench",
            status="IN_PROGRESS" if running else "COMPLETE",
            percent=1 if running else 100,
            gb=0 if running else 3,
            account=ACCOUNT,
            region=REGION,
        )


def objects(names: list[str]) -> Iterator[dict[str, Any]]:
    for name in names:
        yield {
            "apiVersion": "rdsexport.dev/v1alpha1",
            "kind": "RdsExportTask",
            "metadata": {"name": name},
            "spec": {
                "sourceArn": SOURCE,
                "s3BucketName": "bench-exports",
                "exportTaskIdentifier": name,
                "iamRoleArn": f"arn:aws:iam::{ACCOUNT}:role/export",
                "kmsKeyId": "alias/bench",
            },
        }


def in_sync(watch: Watch, aws: StandInServer, names: list[str]) -> bool:
    return not out_of_sync(watch, aws, names)


def out_of_sync(watch: Watch, aws: StandInServer, names: list[str]) -> list[tuple[str, Any, Any]]:
    """(name, seen, truth) for every object whose status does not show its task yet."""
    seen = watch.snapshot()
    tasks = {t.identifier: t for t in aws.standin.tasks()}
    truth = {n: (tasks[n].status, tasks[n].percent) for n in names}
    return [(n, seen.get(n, ("", -2, 0))[:2], truth[n]) for n in names if seen.get(n, ("", -2, 0))[:2] != truth[n]]


def run_mode(cp: ControlPlane, kubectl: Kubectl, mode: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    namespace = f"bench-{mode}-{int(time.time())}"
    kubectl.run("create", "namespace", namespace)
    names = [f"{mode[:3]}-{i:05d}" for i in range(args.objects)]
    active = names[: args.active]
    result: dict[str, Any] = {}
    with StandInServer(auto=False, limit=args.objects) as aws:
        seed(aws, names, args.active)
        items = list(objects(names))
        for i in range(0, len(items), 500):
            kubectl.run(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                timeout=300,
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items[i : i + 500]}),
            )
        watch = Watch(cp, namespace).start()
        op_args = [
            f"--poll-interval={args.interval}",
            f"--polling={mode}",
            f"--max-concurrent-exports={args.objects}",
            f"--namespace={namespace}",
            "--log-level=WARNING",
        ]
        operator = OperatorProcess(cp.kubeconfig, aws.env(), tmp / f"{mode}.log", args=op_args).start()
        assert operator.proc is not None
        t0 = time.monotonic()
        wait_until(
            lambda: in_sync(watch, aws, names), timeout=args.objects * 0.5 + 120, what="initial sync", interval=0.5
        )
        settle_writes(cp)  # finalizers of finished objects go, kopf's annotations land
        result["initial sync (s)"] = time.monotonic() - t0

        pause, rng = threading.Event(), random.Random(7)

        def measure(busy: bool) -> tuple[list[float], list[float], list[float], int]:
            calls, writes, latencies, transitions = [], [], [], 0
            running = [n for n in active if aws.standin.task(n).status == "IN_PROGRESS"]
            for _ in range(args.intervals):
                c0, w0 = sum(aws.standin.calls_by_action().values()), apiserver_writes(cp)
                start = time.monotonic()
                changed: dict[str, float] = {}
                if busy:
                    # A random phase, so that changes are not locked to the operator's ticks.
                    pause.wait(rng.uniform(0, args.interval))
                    start = time.monotonic()
                    finishing = set(running[: args.transitions])
                    transitions += len(finishing)
                    for n in running:
                        percent = min(99, (aws.standin.task(n).percent or 0) + 7)
                        aws.standin.set_task(n, status="COMPLETE") if n in finishing else aws.standin.set_task(
                            n, percent=percent
                        )
                        changed[n] = time.monotonic()
                    running = [n for n in running if n not in finishing]
                # Wait one interval (the unit of the measurement), then until every change is seen.
                pause.wait(max(0.0, start + args.interval - time.monotonic()))
                if busy:
                    wait_until(
                        lambda: in_sync(watch, aws, names),
                        timeout=args.interval * 3 + 30,
                        what="busy changes",
                        interval=0.2,
                    )
                    seen = watch.snapshot()
                    latencies += [seen[n][2] - t for n, t in changed.items()]
                calls.append(sum(aws.standin.calls_by_action().values()) - c0)
                writes.append(apiserver_writes(cp) - w0)
            return calls, writes, latencies, transitions

        idle_calls, idle_writes, _, _ = measure(busy=False)
        busy_calls, busy_writes, latencies, transitions = measure(busy=True)
        rss1, cpu1 = process_usage(operator.proc.pid)
        active_now = sum(t.status == "IN_PROGRESS" for t in aws.standin.tasks())
        result.update(
            {
                "AWS calls / interval, idle": statistics.mean(idle_calls),
                "AWS calls / interval, busy": statistics.mean(busy_calls),
                "expected busy (ceil(active/100)+transitions)": math.ceil(args.active / 100)
                + transitions / args.intervals,
                "API writes / interval, idle": statistics.mean(idle_writes),
                "API writes / interval, busy": statistics.mean(busy_writes),
                "status latency p50 (s)": statistics.median(latencies),
                "status latency p99 (s)": sorted(latencies)[max(0, math.ceil(len(latencies) * 0.99) - 1)],
                "operator RSS after sync (MiB)": rss1,
                "operator CPU total (s)": cpu1,
            }
        )
        # Restart: crash the operator, change every running task, start again, time until all is true again.
        operator.kill()
        for n in names:
            task = aws.standin.task(n)
            if task.status == "IN_PROGRESS":
                aws.standin.set_task(n, percent=min(99, (task.percent or 0) + 11))
        c0 = sum(aws.standin.calls_by_action().values())
        t0 = time.monotonic()
        operator = OperatorProcess(cp.kubeconfig, aws.env(), tmp / f"{mode}-2.log", args=op_args).start()
        wait_until(lambda: in_sync(watch, aws, names), timeout=args.objects * 0.5 + 120, what="resync", interval=0.2)
        settle_writes(cp)
        result["settle after restart (s)"] = time.monotonic() - t0
        result["AWS calls to settle after restart"] = sum(aws.standin.calls_by_action().values()) - c0
        result["active tasks at end"] = active_now
        operator.stop()
        watch.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--active", type=int, default=100)
    parser.add_argument("--interval", type=float, default=10.0, help="the operator's poll interval (seconds)")
    parser.add_argument("--intervals", type=int, default=4, help="intervals measured per phase")
    parser.add_argument("--transitions", type=int, default=5, help="tasks completing per busy interval")
    parser.add_argument("--modes", default="coalesced,per-object")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rds-export-bench-"))
    results: dict[str, dict[str, Any]] = {}
    with controlplane.running(tmp / "cp") as cp:
        kubectl = Kubectl(cp.kubectl, cp.kubeconfig)
        install_crd(kubectl)
        for mode in args.modes.split(","):
            print(f"running mode {mode} ...", flush=True)
            results[mode] = run_mode(cp, kubectl, mode, args, tmp)
    modes = list(results)
    print(
        f"\nN={args.objects} objects, {args.active} active, poll interval {args.interval:.0f} s, "
        f"{args.intervals} intervals per phase, {args.transitions} completions per busy interval"
    )
    header = f"| {'metric':<46} | " + " | ".join(f"{m:>12}" for m in modes)
    header += " | ratio |" if len(modes) == 2 else " |"
    print(header)
    print("|" + "-" * 48 + "|" + "|".join("-" * 14 for _ in modes) + ("|-------|" if len(modes) == 2 else "|"))
    for metric in results[modes[0]]:
        values = [results[m][metric] for m in modes]
        row = f"| {metric:<46} | " + " | ".join(f"{v:>12.2f}" for v in values)
        if len(modes) == 2:
            ratio = values[1] / values[0] if values[0] else math.inf if values[1] else 1.0
            row += f" | {ratio:>5.1f} |"
        else:
            row += " |"
        print(row)


if __name__ == "__main__":
    main()
