"""The API server's share of status latency: how long a burst of status writes takes to show in a watch.

With no operator at all: N RdsExportTask objects, then bursts of B status merge-patches sent at once (32
connections, as the operator's default ``--api-connections``), timed until a watch shows each one. A poll that
finds B tasks changed writes B statuses at once, so this is the floor under the status latency's part after the
listing (bench/scale.py's "listing to the watch event" rows) on this machine:

    PYTHONPATH=dev:operator .venv/bin/python bench/api_writes.py --objects 1000 --bursts 450,90
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from localdev import controlplane
from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.scale import percentile
from localdev.stack import install_crd

NAMESPACE = "api-writes"


def manifest(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportTask",
        "metadata": {"name": f"w-{i:05d}"},
        "spec": {
            "sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:bench",
            "s3BucketName": "bench-exports",
            "exportTaskIdentifier": f"w-{i:05d}",
            "iamRoleArn": "arn:aws:iam::123456789012:role/export",
            "kmsKeyId": "alias/bench",
        },
    }


async def burst_once(session: aiohttp.ClientSession, base: str, burst: int, progress: int) -> list[float]:
    """Seconds from sending ``burst`` status writes at once until a watch showed each."""
    async with session.get(base + "?limit=1") as response:
        version = (await response.json())["metadata"]["resourceVersion"]
    seen: dict[str, float] = {}
    watching, all_seen = asyncio.Event(), asyncio.Event()

    async def watch() -> None:
        url = f"{base}?watch=1&resourceVersion={version}"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            watching.set()
            async for line in response.content:
                seen.setdefault(json.loads(line)["object"]["metadata"]["name"], time.monotonic())
                if len(seen) >= burst:
                    all_seen.set()

    async def write(i: int) -> None:
        status = {"status": {"status": "IN_PROGRESS", "percentProgress": progress}}
        headers = {"Content-Type": "application/merge-patch+json"}
        async with session.patch(f"{base}/w-{i:05d}/status", data=json.dumps(status), headers=headers) as response:
            assert response.status == 200, await response.text()

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(watching.wait(), 30)
        began = time.monotonic()
        await asyncio.gather(*(write(i) for i in range(burst)))
        await asyncio.wait_for(all_seen.wait(), 60)
    finally:
        watcher.cancel()
    return [t - began for t in seen.values()]


async def measure(cp: ControlPlane, objects: int, bursts: list[int], rounds: int) -> list[tuple[int, list[float]]]:
    context = ssl.create_default_context(cafile=str(cp.ca_file))
    base = f"{cp.url}/apis/rdsexport.dev/v1alpha1/namespaces/{NAMESPACE}/rdsexporttasks"
    rows: list[tuple[int, list[float]]] = []
    connector = aiohttp.TCPConnector(limit=32, ssl=context)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {cp.token}"}) as session:
        for i in range(objects):
            async with session.post(base, json=manifest(i)) as response:
                assert response.status == 201, await response.text()
        for burst in bursts:
            for _ in range(rounds):
                rows.append((burst, await burst_once(session, base, burst, progress=2 + len(rows))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--bursts", default="450,90", help="writes sent at once, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M')}")
    with controlplane.running(Path(tempfile.mkdtemp(prefix="rds-export-api-writes-")) / "cp") as cp:
        kubectl = Kubectl(cp.kubectl, cp.kubeconfig)
        install_crd(kubectl)
        kubectl.run("create", "namespace", NAMESPACE)
        bursts = [int(b) for b in args.bursts.split(",")]
        rows = asyncio.run(measure(cp, args.objects, bursts, args.rounds))
    print(f"\n{args.objects} objects; seconds from sending the burst until the watch showed each write\n")
    print("| burst | round | p50 | p99 | last | writes per second |")
    print("|---|---|---|---|---|---|")
    for n, (burst, times) in enumerate(rows):
        last = max(times)
        print(
            f"| {burst} | {n % args.rounds + 1} | {percentile(times, 0.5):.2f} | {percentile(times, 0.99):.2f} "
            f"| {last:.2f} | {burst / last:.0f} |"
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
