"""The API server's share of status latency: how long a burst of status writes takes to show in a watch.

With no operator at all: N RdsExportTask objects, then bursts of B status merge-patches sent at once (32
connections, as the operator's default ``--api-connections``), timed until a watch shows each one. A poll that
finds B tasks changed writes B statuses at once, so this is the floor under the status latency's part after the
listing (bench/scale.py's "listing to the watch event" rows) on this machine:

    PYTHONPATH=dev:operator .venv/bin/python bench/api_writes.py --objects 1000 --bursts 450,90

``--rates`` sends writes at a steady rate instead (each object written once), as a sweep spreads an interval's
changes: the latency of each write from when it was due, and the CPU the API server and etcd spent per write. At
N=5,000 with half unfinished the operator must write about 212 changes a second; this shows what the API server
alone needs for that on this machine:

    PYTHONPATH=dev:operator .venv/bin/python bench/api_writes.py --objects 5000 --bursts '' --rates 100,212 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from localdev import controlplane
from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.scale import percentile, process_usage
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


async def write_status(session: aiohttp.ClientSession, base: str, name: str, progress: int) -> None:
    status = {"status": {"status": "IN_PROGRESS", "percentProgress": progress}}
    headers = {"Content-Type": "application/merge-patch+json"}
    async with session.patch(f"{base}/{name}/status", data=json.dumps(status), headers=headers) as response:
        assert response.status == 200, await response.text()


@contextlib.asynccontextmanager
async def watching(
    session: aiohttp.ClientSession, base: str, count: int
) -> AsyncIterator[tuple[dict[str, float], asyncio.Event]]:
    """A watch from now on: (object name -> when a watch event first showed it, set once ``count`` were shown)."""
    async with session.get(base + "?limit=1") as response:
        version = (await response.json())["metadata"]["resourceVersion"]
    seen: dict[str, float] = {}
    started, all_seen = asyncio.Event(), asyncio.Event()

    async def watch() -> None:
        url = f"{base}?watch=1&resourceVersion={version}"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            started.set()
            async for line in response.content:
                seen.setdefault(json.loads(line)["object"]["metadata"]["name"], time.monotonic())
                if len(seen) >= count:
                    all_seen.set()

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(started.wait(), 30)
        yield seen, all_seen
    finally:
        watcher.cancel()


async def burst_once(session: aiohttp.ClientSession, base: str, burst: int, progress: int) -> list[float]:
    """Seconds from sending ``burst`` status writes at once until a watch showed each."""
    async with watching(session, base, burst) as (seen, all_seen):
        began = time.monotonic()
        await asyncio.gather(*(write_status(session, base, f"w-{i:05d}", progress) for i in range(burst)))
        await asyncio.wait_for(all_seen.wait(), 60)
    return [t - began for t in seen.values()]


@dataclass
class Steady:
    rate: float  # writes due per second
    latencies: list[float]  # from when each write was due until a watch showed it
    seconds: float  # from the first write due until the last shown
    server_cpu: float  # CPU seconds of kube-apiserver and etcd over the run
    client_cpu: float  # this process's (the writer's and the watch's)


async def steady_once(
    session: aiohttp.ClientSession, base: str, names: list[str], rate: float, server_cpu: Callable[[], float]
) -> Steady:
    """Write each of ``names`` once, the k-th due at k/rate seconds; latency counts from when it was due, so a
    server that falls behind shows it as the queue grows (32 connections at most, as the operator)."""
    async with watching(session, base, len(names)) as (seen, all_seen):
        cpu0, client0 = server_cpu(), time.process_time()
        began = time.monotonic()
        due = {name: began + k / rate for k, name in enumerate(names)}
        writes = []
        for name in names:
            await asyncio.sleep(max(0.0, due[name] - time.monotonic()))  # pacing the writes, not synchronisation
            writes.append(asyncio.create_task(write_status(session, base, name, 50)))
        await asyncio.gather(*writes)
        await asyncio.wait_for(all_seen.wait(), 300)
        ended = time.monotonic()
        cpu, client = server_cpu() - cpu0, time.process_time() - client0
    return Steady(rate, [seen[name] - due[name] for name in names], ended - began, cpu, client)


@contextlib.asynccontextmanager
async def with_objects(cp: ControlPlane, objects: int) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """A session of 32 connections (the operator's default ``--api-connections``) and the collection's URL, after
    creating ``objects`` RdsExportTask objects w-00000..."""
    context = ssl.create_default_context(cafile=str(cp.ca_file))
    base = f"{cp.url}/apis/rdsexport.dev/v1alpha1/namespaces/{NAMESPACE}/rdsexporttasks"
    connector = aiohttp.TCPConnector(limit=32, ssl=context)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {cp.token}"}) as session:
        for i in range(objects):
            async with session.post(base, json=manifest(i)) as response:
                assert response.status == 201, await response.text()
        yield session, base


async def measure(
    cp: ControlPlane, objects: int, bursts: list[int], rounds: int, rates: list[float], seconds: float
) -> tuple[list[tuple[int, list[float]]], list[Steady]]:
    """The bursts, then one steady run per rate, each over objects of its own (a write that changes nothing shows no
    watch event): the bursts write the first objects again and again, the steady runs the ones after them."""
    pids = [proc.pid for name, proc in cp.processes if name in ("kube-apiserver", "etcd")]

    def server_cpu() -> float:
        return sum(process_usage(pid)[1] for pid in pids)

    sizes = [math.ceil(rate * seconds) for rate in rates]
    first = max(bursts, default=0)
    if first + sum(sizes) > objects:
        raise SystemExit(f"--bursts, --rates and --seconds need {first + sum(sizes)} objects, --objects is {objects}")
    names = [f"w-{i:05d}" for i in range(first, objects)]
    rows: list[tuple[int, list[float]]] = []
    runs: list[Steady] = []
    async with with_objects(cp, objects) as (session, base):
        for burst in bursts:
            for _ in range(rounds):
                rows.append((burst, await burst_once(session, base, burst, progress=2 + len(rows))))
        for rate, size in zip(rates, sizes, strict=True):
            mine, names = names[:size], names[size:]
            runs.append(await steady_once(session, base, mine, rate, server_cpu))
    return rows, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--bursts", default="450,90", help="writes sent at once, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rates", default="", help="steady writes per second, comma-separated (each its own run)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each steady run")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M')}")
    with controlplane.running(Path(tempfile.mkdtemp(prefix="rds-export-api-writes-")) / "cp") as cp:
        kubectl = Kubectl(cp.kubectl, cp.kubeconfig)
        install_crd(kubectl)
        kubectl.run("create", "namespace", NAMESPACE)
        bursts = [int(b) for b in args.bursts.split(",") if b]
        rates = [float(r) for r in args.rates.split(",") if r]
        rows, runs = asyncio.run(measure(cp, args.objects, bursts, args.rounds, rates, args.seconds))
        if rows:
            print(f"\n{args.objects} objects; seconds from sending the burst until the watch showed each write\n")
            print("| burst | round | p50 | p99 | last | writes per second |")
            print("|---|---|---|---|---|---|")
            for n, (burst, times) in enumerate(rows):
                last = max(times)
                print(
                    f"| {burst} | {n % args.rounds + 1} | {percentile(times, 0.5):.2f} "
                    f"| {percentile(times, 0.99):.2f} | {last:.2f} | {burst / last:.0f} |"
                )
        if runs:
            print(f"\n{args.objects} objects; steady writes, seconds from when each was due until a watch showed it\n")
            print(
                "| writes due per s | writes | p50 | p99 | last | writes shown per s "
                "| API server + etcd, cores | their CPU ms per write | this writer and watch, cores |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            for run in runs:
                n, times = len(run.latencies), run.latencies
                print(
                    f"| {run.rate:g} | {n} | {percentile(times, 0.5):.2f} | {percentile(times, 0.99):.2f} "
                    f"| {max(times):.2f} | {n / run.seconds:.0f} | {run.server_cpu / run.seconds:.2f} "
                    f"| {1000 * run.server_cpu / n:.2f} | {run.client_cpu / run.seconds:.2f} |"
                )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
