"""The backfill scenario (issue 27 item 3): N exports in one account created at once, AWS's five slots the bottleneck.

On the local control plane against the AWS stand-in (its real limit of 5 running exports per account and region):
N objects, split between two namespaces that compete for the slots (``share``: the first namespace's part, the
big team; the rest is the small team's), are created at once, each naming an export of one snapshot whose
duration the stand-in draws from a seeded spread (log-normal around the middle of ``durations``, cut to it). The
operator starts them as slots free; the scenario ends when every export is COMPLETE.

Measured from the stand-in's own records (when AWS accepted each Start, when each export ended, every call):

- slot utilisation: the share of slot-time used while work waits (from the first accepted Start to the last);
- the idle gap per freed slot: the k-th export to end frees the slot the (5+k)-th Start fills (the limit allows
  no earlier one), so its gap is that Start's time minus that end (p50, p99, max);
- refused Starts: StartExportTask calls that started nothing (ExportTaskLimitReached; no other fault is injected);
- fairness: the small namespace's share of the Starts while both namespaces still wait (50 % is fair; a queue
  oldest-first overall gives it about its share of the objects), and each namespace's wait until its exports start;
- DescribeExportTasks calls per minute of the backfill (the price of watching the slots).
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.scale import percentile
from localdev.stack import OperatorProcess
from localdev.standin.rds_exports import Script
from localdev.standin.rds_snapshots import create_snapshot
from localdev.standin.server import ACCOUNT, StandInServer
from localdev.waiting import wait_until

REGION = "us-east-1"
BUCKET = "bench-backfill"
LIMIT = 5  # AWS: concurrent exports per account and region


@dataclass(frozen=True)
class Backfill:
    exports: int = 60
    durations: tuple[float, float] = (20.0, 60.0)  # seconds: the spread's bounds
    interval: float = 3.0  # the operator's poll interval
    mode: str = "coalesced"  # or "per-object", the baseline
    share: float = 2 / 3  # the big namespace's part of the exports
    starting: float = 1.0  # seconds an export stays STARTING (counted as running by AWS)
    seed: int = 27


def draw_durations(scenario: Backfill, names: Sequence[str]) -> dict[str, float]:
    """Each export's running time: log-normal (sigma 0.5) around the middle of the bounds, cut to them."""
    rng, (low, high) = random.Random(scenario.seed), scenario.durations
    middle = (low + high) / 2
    return {n: min(high, max(low, rng.lognormvariate(math.log(middle), 0.5))) for n in names}


@dataclass
class Measured:
    scenario: Backfill
    starts: list[tuple[float, str]] = field(default_factory=list)  # (accepted at, s since t0; name)
    ends: list[float] = field(default_factory=list)  # s since t0
    runs: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each export
    start_calls: int = 0
    describe_calls: int = 0
    created_at: float = 0.0  # s since t0 when the last object was created
    total_s: float = math.nan


def names_of(scenario: Backfill) -> tuple[list[str], list[str]]:
    big = round(scenario.exports * scenario.share)
    return [f"big-{i:04d}" for i in range(big)], [f"small-{i:04d}" for i in range(scenario.exports - big)]


def _manifest(name: str, source: str) -> dict[str, Any]:
    return {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportTask",
        "metadata": {"name": name},
        "spec": {
            "sourceArn": source,
            "s3BucketName": BUCKET,
            "exportTaskIdentifier": name,
            "iamRoleArn": f"arn:aws:iam::{ACCOUNT}:role/export",
            "kmsKeyId": "alias/bench",
        },
    }


def run(
    cp: ControlPlane, kubectl: Kubectl, scenario: Backfill, workdir: Path, extra_args: Sequence[str] = ()
) -> Measured:
    big, small = names_of(scenario)
    stamp = int(time.time())
    spaces = {f"bf-big-{stamp}": big, f"bf-small-{stamp}": small}
    for namespace in spaces:
        kubectl.run("create", "namespace", namespace)
    script = Script(starting=scenario.starting, durations=draw_durations(scenario, big + small))
    result = Measured(scenario)
    with StandInServer(auto=True, script=script, limit=LIMIT) as aws:
        rds = aws.session().client("rds", endpoint_url=aws.url)
        source = create_snapshot(rds, f"bench-backfill-{scenario.mode}-{stamp}")  # moto: one backend per process
        aws.session().client("s3", endpoint_url=aws.url).create_bucket(Bucket=BUCKET)
        op_args = [
            f"--poll-interval={scenario.interval}",
            f"--polling={scenario.mode}",
            f"--max-concurrent-exports={LIMIT}",
            *(f"--namespace={ns}" for ns in spaces),
            "--log-level=WARNING",
            "--no-table-report",
            *extra_args,
        ]
        log = workdir / f"backfill-{scenario.mode}-{stamp}.log"
        operator = OperatorProcess(cp.kubeconfig, aws.env(), log, args=op_args).start()
        try:
            t0 = time.monotonic()
            wall0 = aws.standin.now()
            # Both namespaces at once: interleaved in one apply each, the small one second (its objects are younger).
            for namespace, names in spaces.items():
                items = [_manifest(n, source) for n in names]
                batch = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
                kubectl.run("apply", "-n", namespace, "-f", "-", input=batch)
            result.created_at = time.monotonic() - t0
            everything = big + small
            mean = statistics.mean(script.durations.values())
            wait_until(
                lambda: _all_complete(aws, everything),
                timeout=len(everything) / LIMIT * mean * 3 + 300,
                what="every export to complete",
                interval=1.0,
            )
            result.total_s = time.monotonic() - t0
        finally:
            operator.stop()
        tasks = [aws.standin.task(n) for n in big + small]
        for t in tasks:
            start = (t.created - wall0).total_seconds()
            assert t.end_time is not None
            end = (t.end_time - wall0).total_seconds()
            result.starts.append((start, t.identifier))
            result.ends.append(end)
            result.runs.append((start, end))
        calls = aws.standin.calls_by_action()
        result.start_calls, result.describe_calls = calls["StartExportTask"], calls["DescribeExportTasks"]
    for namespace in spaces:
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)
    return result


def _all_complete(aws: StandInServer, names: Sequence[str]) -> bool:
    known = {t.identifier: t.status for t in aws.standin.tasks()}
    return all(known.get(n) == "COMPLETE" for n in names)


def busy_share(runs: Sequence[tuple[float, float]], begin: float, end: float) -> float:
    """Used slot-time over the slot-time of [begin, end]."""
    if end <= begin:
        return math.nan
    used = sum(max(0.0, min(e, end) - max(s, begin)) for s, e in runs)
    return used / (LIMIT * (end - begin))


def gaps(starts: Sequence[float], ends: Sequence[float]) -> list[float]:
    """The idle gap of each freed slot that work was waiting for: the (LIMIT+k)-th Start minus the k-th end."""
    starts, ends = sorted(starts), sorted(ends)
    return [starts[LIMIT + k] - ends[k] for k in range(len(starts) - LIMIT)]


def fairness(starts: Sequence[tuple[float, str]]) -> float:
    """The small namespace's share of the Starts while both namespaces still had exports waiting."""
    ordered = [name for _, name in sorted(starts)]
    last_small = max((i for i, n in enumerate(ordered) if n.startswith("small")), default=-1)
    last_big = max((i for i, n in enumerate(ordered) if n.startswith("big")), default=-1)
    both = ordered[: min(last_small, last_big) + 1]
    return sum(n.startswith("small") for n in both) / len(both) if both else math.nan


def rows(m: Measured) -> dict[str, float]:
    s = m.scenario
    begins = [t for t, _ in m.starts]
    first, last = min(begins), max(begins)
    slot_gaps = gaps(begins, m.ends)
    waits = {team: [t for t, n in m.starts if n.startswith(team)] for team in ("big", "small")}  # since created
    minutes = m.total_s / 60
    return {
        "exports": float(s.exports),
        "poll interval (s)": s.interval,
        "export duration, mean (s)": statistics.mean(e - b for b, e in m.runs),
        "backfill, first Start to last end (s)": max(m.ends) - first,
        "  ideal (sum of durations / 5) (s)": sum(e - b for b, e in m.runs) / LIMIT,
        "slot utilisation while work waits (%)": 100 * busy_share(m.runs, first, last),
        "idle gap per freed slot, p50 (s)": percentile(slot_gaps, 0.5),
        "idle gap per freed slot, p99 (s)": percentile(slot_gaps, 0.99),
        "idle gap per freed slot, max (s)": max(slot_gaps, default=math.nan),
        "  p99 in poll intervals": percentile(slot_gaps, 0.99) / s.interval,
        "StartExportTask calls": float(m.start_calls),
        "  refused (ExportTaskLimitReached)": float(m.start_calls - len(m.starts)),
        "DescribeExportTasks calls per minute": m.describe_calls / minutes if minutes else math.nan,
        "small namespace's share of Starts while both wait (%)": 100 * fairness(m.starts),
        "  its part of the exports (%)": 100 * (1 - round(s.exports * s.share) / s.exports),
        "wait until Start, big namespace, p50 (s)": percentile(waits["big"], 0.5),
        "wait until Start, small namespace, p50 (s)": percentile(waits["small"], 0.5),
        "wait until Start, small namespace, max (s)": max(waits["small"], default=math.nan),
    }
