"""What N RdsExportTask objects cost the operator: AWS calls, API-server writes, status latency, memory, CPU.

One scenario on the local control plane against the AWS stand-in, shared by ``bench/scale.py`` (the table in
bench/README.md) and ``tests/e2e/test_cost.py`` (its small version, in CI):

1. seed N export tasks (``active`` IN_PROGRESS, the rest COMPLETE), create N objects naming them, start the
   operator (it adopts them all) and wait until every object shows its task and API writes stop (initial sync);
2. idle: ``intervals`` back-to-back poll intervals in which nothing changes in AWS;
3. busy: ``intervals`` back-to-back poll intervals; in each, every running task progresses (``transitions`` of
   them complete), each at a random moment of its own (not locked to the poller's refreshes, nor to each other);
4. restart (optional): SIGKILL the operator, change every running task, start it again and time until every
   object shows the truth and API writes stop.

AWS calls come from the stand-in's call log, API writes from kube-apiserver's ``apiserver_request_total``
(PATCH/UPDATE/APPLY on rdsexporttasks), latency from a watch: from the change in AWS to the first watch event
showing that change or a later one.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import random
import ssl
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.standin.server import ACCOUNT, StandInServer
from localdev.waiting import wait_until

REGION = "us-east-1"
SOURCE = f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:bench"
DESCRIBE = "DescribeExportTasks"
State = tuple[str, int]  # (status.status, status.percentProgress) as an object shows it


@dataclass
class Watch:
    """``kubectl get -w`` over a namespace: every status each object was seen with, and when."""

    cp: ControlPlane
    namespace: str
    history: dict[str, list[tuple[float, State]]] = field(default_factory=dict)
    reports: bool = True  # the operator reads table reports: the sync ends when each finished object has its own
    reported: set[str] = field(default_factory=set)  # objects whose table report is final
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Watch:
        self.stopped = threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        # kubectl ends a watch the server expired (an ERROR event); start it again until told to stop.
        while not self.stopped.is_set():
            self.proc = subprocess.Popen(
                [
                    self.cp.kubectl,
                    f"--kubeconfig={self.cp.kubeconfig}",
                    *("get", "rdsexporttasks", "-n", self.namespace, "-w", "-o", "json", "--output-watch-events"),
                ],
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            self._read(self.proc)
            self.proc.wait()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in proc.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            if event.get("type") not in ("ADDED", "MODIFIED"):
                continue
            now, obj = time.monotonic(), event["object"]
            for item in obj.get("items", [obj]):  # the initial state may come as one List
                name, status = item.get("metadata", {}).get("name"), item.get("status", {})
                if name:
                    state = (status.get("status", ""), int(status.get("percentProgress", -1)))
                    final = not status.get("tablesPendingSince") and any(
                        c.get("type") == "TablesComplete" for c in status.get("conditions") or []
                    )
                    with self.lock:
                        if final:
                            self.reported.add(name)
                        seen = self.history.setdefault(name, [])
                        if not seen or seen[-1][1] != state:
                            seen.append((now, state))

    def stop(self) -> None:
        self.stopped.set()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    def current(self) -> dict[str, State]:
        with self.lock:
            return {name: seen[-1][1] for name, seen in self.history.items()}

    def first_seen(self, name: str, states: set[State], after: float) -> float | None:
        """When the object was first seen in one of ``states`` at or after ``after``."""
        with self.lock:
            return next((t for t, s in self.history.get(name, []) if t >= after and s in states), None)


def apiserver_writes(cp: ControlPlane, resource: str = "rdsexporttasks") -> float:
    """Write requests on ``resource`` so far, from kube-apiserver's metrics: PATCH/UPDATE/APPLY on rdsexporttasks
    (and their status), POST on events (kopf posts a Kubernetes Event for every handler log line)."""
    request = urllib.request.Request(f"{cp.url}/metrics", headers={"Authorization": f"Bearer {cp.token}"})
    context = ssl.create_default_context(cafile=str(cp.ca_file))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and f'resource="{resource}"' in line
            and any(f'verb="{v}"' in line for v in ("PATCH", "UPDATE", "APPLY", "POST"))
            and (resource == "events" or 'verb="POST"' not in line)  # creating our objects is the benchmark's
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def settle_writes(cp: ControlPlane, quiet: float = 2.0, timeout: float = 300) -> float:
    """Wait until the API server has seen no write to our objects for ``quiet`` seconds; return (monotonic) when
    the last write was first noticed."""
    last = [apiserver_writes(cp), time.monotonic()]

    def quiet_enough() -> bool:
        now = apiserver_writes(cp)
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= quiet

    wait_until(quiet_enough, timeout=timeout, what="API-server writes to settle", interval=0.5)
    return last[1]


def settle_cpu(pid: int, since: float, share: float = 0.05, quiet: float = 2.0, timeout: float = 300) -> float:
    """Wait until the process has used less than ``share`` of a core for ``quiet`` seconds; return (monotonic) the
    end of its last busier window of ``quiet`` seconds, or ``since`` if there was none. kopf works through its queue
    of watch events after the API shows every write (at 10,000 objects for a minute more): that is start-up work,
    not the idle intervals' cost. Windows of 2 s: a poll (a few 10 ms) does not count as busy."""
    start = time.monotonic()
    last, busy = [start, process_usage(pid)[1]], [since]

    def quiet_enough() -> bool:
        now, cpu = time.monotonic(), process_usage(pid)[1]
        if now - last[0] >= quiet:
            if cpu - last[1] >= share * (now - last[0]):
                busy[0] = now
            last[:] = [now, cpu]
        return start < last[0] and busy[0] < last[0]  # the last window watched was quiet

    wait_until(quiet_enough, timeout=timeout, what="the operator's CPU to settle", interval=0.5, max_interval=0.5)
    return busy[0]


def process_usage(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds, user + system) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> float:
    """The process's peak RSS so far in MiB (VmHWM): what a memory limit must hold, the burst included. RSS after the
    fact can be lower (what the allocator gave back), never higher."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def target_calls(unfinished: int) -> int:
    """Issue 13's bound on AWS calls per poll interval: one page per 100 unfinished tasks, plus one."""
    return math.ceil(unfinished / 100) + 1


@dataclass(frozen=True)
class Scenario:
    objects: int
    active: int  # tasks IN_PROGRESS at the start (the objects not finished)
    interval: float  # the operator's poll interval (seconds)
    mode: str = "coalesced"  # or "per-object", the baseline
    intervals: int = 4  # measured per phase
    transitions: int = 1  # running tasks that complete per busy interval
    restart: bool = True
    seed: int = 7


@dataclass
class Measured:
    scenario: Scenario
    sync_s: float = math.nan  # initial sync: operator start until every object shows its task
    settle_s: float = math.nan  # ... and until API writes (table reports too) and the operator's CPU settled
    counted_s: float = math.nan  # ... and until the sync's calls were counted (after watching it settle)
    sync_cpu_s: float = math.nan
    sync_calls: int = 0  # AWS calls of the initial sync
    sync_starts: int = 0  # StartExportTask calls of the initial sync (every task exists: 0 expected)
    sync_s3_calls: int = 0  # S3 calls of the initial sync: the table reports of the finished exports
    sync_lookup_sizes: list[int] = field(default_factory=list)  # identifiers per describe by identifier
    sync_writes: float = math.nan  # API writes to the objects (status, finalizers) until settled
    rss_synced: float = math.nan  # MiB, after the initial sync
    peak_synced: float = math.nan  # MiB, the peak RSS (VmHWM) until the initial sync settled
    idle_s: float = math.nan
    idle_cpu_s: float = math.nan
    busy_s: float = math.nan
    busy_cpu_s: float = math.nan  # the operator's CPU from the busy intervals' start until all changes showed
    idle_calls: list[int] = field(default_factory=list)  # per interval: every AWS call
    idle_describes: list[int] = field(default_factory=list)  # per interval: DescribeExportTasks
    listings: int = 0  # listings by status (first pages) over the idle and busy intervals; a sweep has none
    idle_writes: list[float] = field(default_factory=list)
    idle_events: list[float] = field(default_factory=list)  # Kubernetes Events posted (by anyone), per interval
    rss_idle: float = math.nan  # after the idle phase
    busy_calls: list[int] = field(default_factory=list)
    busy_describes: list[int] = field(default_factory=list)
    busy_writes: list[float] = field(default_factory=list)
    busy_events: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, one per change made in AWS
    # The latency in two parts: from the change until the next call that could show it began (a listing, or a
    # sweep's describe by identifier: the poll interval's share), and from then until the watch showed it (the
    # operator's look and write, the API server, the watch).
    page_waits: list[float] = field(default_factory=list)
    after_page: list[float] = field(default_factory=list)
    unfinished_busy: float = math.nan  # unfinished tasks, mean over the busy intervals
    rss_end: float = math.nan  # after the busy phase
    peak_end: float = math.nan  # MiB, the peak RSS over the whole run (VmHWM), before the restart
    cpu_end: float = math.nan
    restart_s: float = math.nan
    restart_calls: float = math.nan
    rss_restart: float = math.nan  # MiB, once the restarted operator settled: what N existing objects cost it
    peak_restart: float = math.nan  # MiB, the restarted operator's peak RSS (VmHWM) until it settled
    unfinished_end: int = 0

    @property
    def sync_lookups(self) -> int:
        """DescribeExportTasks by identifier (the rest are the pages, one per interval)."""
        return len(self.sync_lookup_sizes)

    def per_interval(self, values: Sequence[float]) -> float:
        # Back-to-back intervals: the mean is the rate, whatever the phase of the poller's refreshes.
        return statistics.mean(values) if values else math.nan


def bucket_of(i: int) -> str:
    """1,000 exports per bucket. Real S3 lists a prefix without reading the rest of the bucket; moto scans every key
    (17.5 ms a list at 10,000 exports in one bucket, 5.5 ms at 1,000): the table reports of N exports in one bucket
    would cost the stand-in O(N^2), on the cores the operator runs on."""
    return f"bench-exports-{i // 1000}"


def seed_tasks(aws: StandInServer, names: Sequence[str], active: int) -> None:
    for i, name in enumerate(names):
        running = i < active
        aws.standin.seed(
            name,
            source=SOURCE,
            bucket=bucket_of(i),
            role=f"arn:aws:iam::{ACCOUNT}:role/export",
            key="alias/bench",
            status="IN_PROGRESS" if running else "COMPLETE",
            percent=1 if running else 100,
            gb=0 if running else 3,
            account=ACCOUNT,
            region=REGION,
        )


def manifests(names: Sequence[str]) -> Iterator[dict[str, Any]]:
    for i, name in enumerate(names):
        yield {
            "apiVersion": "rdsexport.dev/v1alpha1",
            "kind": "RdsExportTask",
            "metadata": {"name": name},
            "spec": {
                "sourceArn": SOURCE,
                "s3BucketName": bucket_of(i),
                "exportTaskIdentifier": name,
                "iamRoleArn": f"arn:aws:iam::{ACCOUNT}:role/export",
                "kmsKeyId": "alias/bench",
            },
        }


def truth(aws: StandInServer, names: Sequence[str]) -> dict[str, State]:
    tasks = {t.identifier: t for t in aws.standin.tasks()}
    return {n: (tasks[n].status, tasks[n].percent or 0) for n in names}


def out_of_sync(watch: Watch, aws: StandInServer, names: Sequence[str]) -> list[tuple[str, State | None, State]]:
    """(name, seen, truth) for every object whose status does not show its task yet."""
    seen, true = watch.current(), truth(aws, names)
    return [(n, seen.get(n), true[n]) for n in names if seen.get(n) != true[n]]


def unreported(watch: Watch, aws: StandInServer, names: Sequence[str]) -> list[str]:
    """The objects of finished exports whose table report is not final yet."""
    finished = [n for n, (status, _) in truth(aws, names).items() if status == "COMPLETE"]
    with watch.lock:
        return [n for n in finished if n not in watch.reported]


def listing_times(aws: StandInServer) -> list[float]:
    """When each listing of the active tasks began (its first page), on this process's monotonic clock."""
    offset = time.time() - time.monotonic()
    return sorted(
        c.at.timestamp() - offset
        for c in aws.standin.calls(DESCRIBE)
        if c.params.get("Filters.Filter.1.Name") == "status" and "Marker" not in c.params
    )


def look_times(aws: StandInServer) -> Callable[[str], list[float]]:
    """When each call that could show a task began, per task, on this process's monotonic clock: each listing of
    the active tasks (its first page), and each describe by identifier naming it (a lookup or a sweep's step)."""
    offset, listings = time.time() - time.monotonic(), listing_times(aws)
    named: dict[str, list[float]] = {}
    for c in aws.standin.calls(DESCRIBE):
        if c.params.get("Filters.Filter.1.Name") == "export-task-identifier":
            at = c.at.timestamp() - offset
            for key, value in c.params.items():
                if key.startswith("Filters.Filter.1.Values."):
                    named.setdefault(value, []).append(at)
    return lambda name: sorted(listings + named.get(name, []))


def _total_calls(aws: StandInServer) -> tuple[int, int]:
    calls = aws.standin.calls_by_action()
    return sum(calls.values()), calls[DESCRIBE]


def run(
    cp: ControlPlane,
    kubectl: Kubectl,
    scenario: Scenario,
    workdir: Path,
    *,
    namespace: str | None = None,
    extra_args: Sequence[str] = (),
) -> Measured:
    """Run the scenario in a fresh namespace (``namespace`` if given, created by the caller) and measure it."""
    if namespace is None:
        namespace = f"bench-{scenario.mode}-{scenario.objects}-{int(time.time())}"
        kubectl.run("create", "namespace", namespace)
    names = [f"{scenario.mode[:3]}-{i:05d}" for i in range(scenario.objects)]
    result = Measured(scenario)
    with StandInServer(auto=False, limit=max(5, scenario.objects)) as aws:
        seed_tasks(aws, names, scenario.active)
        items = list(manifests(names))
        for i in range(0, len(items), 500):
            batch = {"apiVersion": "v1", "kind": "List", "items": items[i : i + 500]}
            kubectl.run("apply", "-n", namespace, "-f", "-", timeout=300, input=json.dumps(batch))
        watch = Watch(cp, namespace, reports="--no-table-report" not in extra_args).start()
        op_args = [
            f"--poll-interval={scenario.interval}",
            f"--polling={scenario.mode}",
            f"--max-concurrent-exports={max(5, scenario.objects)}",
            f"--namespace={namespace}",
            "--log-level=WARNING",
            *extra_args,
        ]
        log = workdir / f"{namespace}.log"
        operator = OperatorProcess(cp.kubeconfig, aws.env(), log, args=op_args).start()
        try:
            _measure(cp, aws, watch, operator, names, scenario, result)
            if scenario.restart:
                operator.kill()
                operator = OperatorProcess(cp.kubeconfig, aws.env(), log, args=op_args)
                _restart(cp, aws, watch, operator, names, result)
        finally:
            operator.stop()
            watch.stop()
    return result


def _synced(
    cp: ControlPlane, aws: StandInServer, watch: Watch, names: Sequence[str], timeout: float, pid: int
) -> tuple[float, float]:
    """Wait until every object shows its task, then (``watch.reports``) every finished one its final table report,
    API writes settle and the operator goes quiet; return (monotonic) when the first and the last were so. Without
    waiting for the reports, a pause of 2 s in their writes (under load, at 10,000 objects) passed for the end of
    the sync; without the quiet CPU, the end of kopf's queue of watch events ran in the idle intervals."""
    in_sync = wait_until(
        lambda: not out_of_sync(watch, aws, names) and time.monotonic(),
        timeout=timeout,
        what="every object to show its task",
        interval=0.2,
    )
    if watch.reports:
        wait_until(lambda: not unreported(watch, aws, names), timeout=timeout, what="every table report", interval=1)
    written = settle_writes(cp, timeout=timeout)
    return in_sync, max(in_sync, settle_cpu(pid, since=written, timeout=timeout))


def _measure(
    cp: ControlPlane,
    aws: StandInServer,
    watch: Watch,
    operator: OperatorProcess,
    names: Sequence[str],
    scenario: Scenario,
    result: Measured,
) -> None:
    assert operator.proc is not None
    pid, started, writes = operator.proc.pid, time.monotonic(), apiserver_writes(cp)
    shown, settled = _synced(cp, aws, watch, names, timeout=len(names) * 1.5 + 300, pid=pid)
    result.sync_writes = apiserver_writes(cp) - writes
    result.sync_s, result.settle_s, result.counted_s = shown - started, settled - started, time.monotonic() - started
    result.rss_synced, result.sync_cpu_s = process_usage(pid)
    result.peak_synced = peak_rss(pid)
    result.sync_calls, result.sync_starts = _total_calls(aws)[0], aws.standin.calls_by_action()["StartExportTask"]
    result.sync_s3_calls = len(aws.standin.s3_calls())
    result.sync_lookup_sizes = [
        sum(1 for key in c.params if key.startswith("Filters.Filter.1.Values."))
        for c in aws.standin.calls(DESCRIBE)
        if c.params.get("Filters.Filter.1.Name") == "export-task-identifier"
    ]
    if not scenario.intervals:
        return
    pause, rng = threading.Event(), random.Random(scenario.seed)

    def window(
        calls: list[int],
        describes: list[int],
        writes: list[float],
        events: list[float],
        moments: Sequence[tuple[float, Callable[[], None]]] = (),
    ) -> None:
        start = time.monotonic()
        c0, d0 = _total_calls(aws)
        w0, e0 = apiserver_writes(cp), apiserver_writes(cp, "events")
        for at, change in sorted(moments, key=lambda moment: moment[0]):
            pause.wait(max(0.0, start + at - time.monotonic()))
            change()
        pause.wait(max(0.0, start + scenario.interval - time.monotonic()))  # the window is one interval long
        c1, d1 = _total_calls(aws)
        calls.append(c1 - c0)
        describes.append(d1 - d0)
        writes.append(apiserver_writes(cp) - w0)
        events.append(apiserver_writes(cp, "events") - e0)

    # Idle: nothing changes in AWS.
    t0, cpu0, listings0 = time.monotonic(), process_usage(pid)[1], len(listing_times(aws))
    for _ in range(scenario.intervals):
        window(result.idle_calls, result.idle_describes, result.idle_writes, result.idle_events)
    result.idle_s, result.idle_cpu_s = time.monotonic() - t0, process_usage(pid)[1] - cpu0
    result.rss_idle = process_usage(pid)[0]

    # Busy: every running task changes once per interval, at a random moment; some complete.
    running = [n for n in names if aws.standin.task(n).status == "IN_PROGRESS"]
    changes: list[tuple[str, float, int]] = []  # (name, when, index of the state in ``states[name]``)
    states: dict[str, list[State]] = {n: [] for n in running}
    unfinished: list[int] = []

    def change(name: str, finish: bool) -> Callable[[], None]:
        def apply() -> None:
            percent = min(99, (aws.standin.task(name).percent or 0) + 7)
            task = (
                aws.standin.set_task(name, status="COMPLETE") if finish else aws.standin.set_task(name, percent=percent)
            )
            states[name].append((task.status, task.percent or 0))
            changes.append((name, time.monotonic(), len(states[name]) - 1))

        return apply

    t0, cpu0 = time.monotonic(), process_usage(pid)[1]
    for _ in range(scenario.intervals):
        unfinished.append(len(running))
        finishing = set(running[: scenario.transitions])
        # Each running task changes once, at a moment of its own: not locked to the poller's pages nor to each
        # other, so that every latency is a sample of its own.
        moments = [(rng.uniform(0, scenario.interval), change(n, n in finishing)) for n in running]
        window(result.busy_calls, result.busy_describes, result.busy_writes, result.busy_events, moments)
        running = [n for n in running if n not in finishing]
    result.unfinished_busy = statistics.mean(unfinished)
    result.listings = len(listing_times(aws)) - listings0
    _synced(cp, aws, watch, names, timeout=scenario.interval * 3 + 60, pid=pid)
    result.busy_s, result.busy_cpu_s = time.monotonic() - t0, process_usage(pid)[1] - cpu0  # until all shown
    looks = look_times(aws)
    for name, when, index in changes:
        # The change, or a later one that overtook it before the object showed it: the status was stale until then.
        seen = watch.first_seen(name, set(states[name][index:]), when)
        assert seen is not None, f"{name} never showed {states[name][index]}"
        result.latencies.append(seen - when)
        times = looks(name)
        listed = next((t for t in times[bisect.bisect_left(times, when) :] if t <= seen), None)
        if listed is not None:
            result.page_waits.append(listed - when)
            result.after_page.append(seen - listed)
    result.rss_end, result.cpu_end = process_usage(pid)
    result.peak_end = peak_rss(pid)
    result.unfinished_end = len(running)


def _restart(
    cp: ControlPlane,
    aws: StandInServer,
    watch: Watch,
    operator: OperatorProcess,
    names: Sequence[str],
    result: Measured,
) -> None:
    """After a SIGKILL: change every running task while the operator is down, start it, time the resync."""
    for n in names:
        task = aws.standin.task(n)
        if task.status == "IN_PROGRESS":
            aws.standin.set_task(n, percent=min(99, (task.percent or 0) + 11))
    c0, _ = _total_calls(aws)
    started = time.monotonic()
    operator.start()
    assert operator.proc is not None
    result.restart_s = (
        _synced(cp, aws, watch, names, timeout=len(names) * 1.5 + 300, pid=operator.proc.pid)[1] - started
    )
    result.restart_calls = _total_calls(aws)[0] - c0
    result.rss_restart = process_usage(operator.proc.pid)[0]
    result.peak_restart = peak_rss(operator.proc.pid)


def rows(m: Measured, floor_rss: float | None = None) -> dict[str, float]:
    """The table's rows for one run (``floor_rss``: the operator's RSS with one object, for the growth row)."""
    s, per_k = m.scenario, 1000 / max(1, m.scenario.objects)
    out = {
        "objects": float(s.objects),
        "unfinished at start": float(s.active),
        "initial sync: every object shows its task (s)": m.sync_s,
        "  the same, s per 1,000 objects": m.sync_s * per_k,
        "  and writes and CPU settled (table reports too), s per 1,000": m.settle_s * per_k,
        "  CPU until settled, s per 1,000 objects": m.sync_cpu_s * per_k,
        "  RDS calls per 100 objects": m.sync_calls * per_k / 10,
        "  of which describes by identifier": m.sync_lookups * per_k / 10,
        "    identifiers per describe by identifier (mean)": statistics.mean(m.sync_lookup_sizes or [math.nan]),
        "  StartExportTask calls": float(m.sync_starts),
        "  API writes per object": m.sync_writes / max(1, s.objects),
        "  S3 calls per finished object (table report)": m.sync_s3_calls / max(1, s.objects - s.active),
        "AWS calls / interval, idle": m.per_interval(m.idle_calls),
        "AWS calls / interval, busy": m.per_interval(m.busy_calls),
        "AWS calls, most in one busy interval": float(max(m.busy_calls, default=0)),
        "  listings by status / interval (a sweep: 0)": m.listings / (2 * s.intervals) if s.intervals else math.nan,
        "target: ceil(unfinished/100)+1": float(target_calls(s.active)),
        "API writes / interval, idle": m.per_interval(m.idle_writes),
        "API writes / interval, busy": m.per_interval(m.busy_writes),
        "Events posted / interval, idle": m.per_interval(m.idle_events),
        "Events posted / interval, busy": m.per_interval(m.busy_events),
        "changes / busy interval": len(m.latencies) / max(1, len(m.busy_calls)),
        "status latency p50 (s)": percentile(m.latencies, 0.5),
        "status latency p99 (s)": percentile(m.latencies, 0.99),
        "  change to the call that shows it, p99 (s)": percentile(m.page_waits, 0.99),
        "  that call to the watch event, p50 (s)": percentile(m.after_page, 0.5),
        "  that call to the watch event, p99 (s)": percentile(m.after_page, 0.99),
        "RSS after sync (MiB)": m.rss_synced,
        "RSS after busy (MiB)": m.rss_end,
        "peak RSS (MiB)": max(m.peak_synced, m.peak_end) if not math.isnan(m.peak_end) else m.peak_synced,
    }
    if floor_rss is not None:
        out["RSS growth, MiB per 1,000 objects"] = (max(m.rss_synced, m.rss_end) - floor_rss) * per_k
        out["  after a restart (the same objects)"] = (m.rss_restart - floor_rss) * per_k
        out["peak RSS growth, MiB per 1,000 objects"] = (out["peak RSS (MiB)"] - floor_rss) * per_k
        out["  after a restart (the same objects), peak"] = (m.peak_restart - floor_rss) * per_k
    out["CPU s per idle minute"] = m.idle_cpu_s / m.idle_s * 60 if m.idle_s else math.nan
    # From the first change until every object showed the last and the operator went quiet; per change: above
    # the idle rate (what showing the changes cost).
    out["CPU s per busy minute"] = m.busy_cpu_s / m.busy_s * 60 if m.busy_s else math.nan
    out["  operator CPU ms per change"] = (
        (m.busy_cpu_s - m.idle_cpu_s / m.idle_s * m.busy_s) * 1000 / len(m.latencies) if m.latencies else math.nan
    )
    out["settle after restart (s)"] = m.restart_s
    out["AWS calls to settle after restart"] = m.restart_calls
    return out


def floor_rss(
    cp: ControlPlane, kubectl: Kubectl, mode: str, workdir: Path, interval: float, *, namespace: str | None = None
) -> float:
    """The operator's RSS once it has synced a single finished object: the fixed cost growth is measured from."""
    scenario = Scenario(1, 0, interval, mode=mode, intervals=0, restart=False)
    return run(cp, kubectl, scenario, workdir, namespace=namespace).rss_synced
