"""Where the operator's memory goes at N objects: tracemalloc by file and by line, and live objects by type.

    PYTHONPATH=dev:operator .venv/bin/python bench/memory_profile.py --objects 1000 --active 10

Runs the operator under tracemalloc (slower: the sync takes a few times longer), waits until every object shows
its task and API writes settle, then has the operator write its snapshot (SIGUSR1) and prints the top entries.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from localdev import controlplane, scale
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess, install_crd
from localdev.standin.server import StandInServer
from localdev.waiting import wait_until

# Runs inside the operator process: on SIGUSR1, dump what holds memory, then carry on.
PROBE = """
import collections, gc, os, signal, sys, tracemalloc
out = sys.argv.pop(1)
if os.environ.get("PROBE_TRACEMALLOC"):
    tracemalloc.start(12)
PEAK = []  # (traced MiB, snapshot) at the highest traced memory seen so far (PROBE_PEAK)

def watch_peak():
    # Every 0.2 s: a new high of traced memory (5 MiB above the last) takes a snapshot, so that the dump can say
    # what was alive at the peak, not after it.
    import threading, time
    def run():
        best = 0.0
        while True:
            time.sleep(0.2)
            current = tracemalloc.get_traced_memory()[0] / 2**20
            if current > best + 5:
                best = current
                PEAK[:] = [(current, tracemalloc.take_snapshot())]
    threading.Thread(target=run, daemon=True).start()

if os.environ.get("PROBE_PEAK"):
    tracemalloc.start(8)
    watch_peak()

def deep(obj, seen):
    # Bytes reachable from obj through containers and plain objects, each object counted once.
    todo, total = [obj], 0
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, (type, type(sys))) or callable(o) and not hasattr(o, "__dict__"):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            todo.extend(o.keys()); todo.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset, collections.deque)):
            todo.extend(o)
        elif hasattr(o, "__dict__") and not isinstance(o, BaseException):
            todo.append(vars(o))
        for slot in getattr(type(o), "__slots__", ()):
            if hasattr(o, slot):
                todo.append(getattr(o, slot))
    return total

def alloc_stats(f):
    # First, before this probe allocates: RSS, pymalloc's arenas (how much holds live objects; the rest is
    # fragmentation that RSS keeps), and what malloc_trim gives back.
    saved, tmp = os.dup(2), open(out + ".malloc", "w+")
    os.dup2(tmp.fileno(), 2)
    sys._debugmallocstats()
    os.dup2(saved, 2)
    tmp.seek(0)
    for line in tmp:
        if line.startswith(("# arenas allocated current", "# bytes in allocated blocks", "# bytes in available")):
            f.write("pymalloc " + line)
    def rss():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")) / 1024
    before = rss()
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
    f.write(f"RSS {before:.1f} MiB (peak so far {hwm:.1f}); after malloc_trim(0) {rss():.1f} MiB\\n")

def dump(*_):
    gc.collect()
    with open(out + ".alloc", "w") as f:
        alloc_stats(f)
    objs = gc.get_objects()
    with open(out, "w") as f:
        f.write("-- deep sizes of what the operator keeps (MiB, shared objects counted once, in this order) --\\n")
        seen = set()
        memories = [o for o in objs if type(o).__name__ == "ResourceMemories"]
        for m in memories:
            items = m._items
            bodies = [r.daemons_memory.live_fresh_body for r in items.values()]
            raw = [b._src if hasattr(b, "_src") else b for b in bodies if b is not None]
            f.write(f"kopf ResourceMemories: {len(items)} objects\\n")
            managed = [b.get("metadata", {}).get("managedFields") for b in raw]
            f.write(f"  of which metadata.managedFields      {deep(managed, set()) / 2**20:8.2f}\\n")
            f.write(f"  live_fresh_body (the full last body) {deep(raw, seen) / 2**20:8.2f}\\n")
            f.write(f"  the rest of ResourceMemory          {deep(items, seen) / 2**20:8.2f}\\n")
        ours = [o for o in objs if type(o).__module__ == "rds_export_operator.exports.handlers"]
        for h in [o for o in ours if type(o).__name__ == "Handlers"]:
            g = h.gateway
            seen.update({id(g.rds), id(h.config), id(h.metrics.registry)})  # clients and settings: not per object
            parts = {
                "Handlers._looks": h._looks,
                "FirstLooks (new objects' first looks)": getattr(h, "first_looks", None),
                "Wakeups._events": h.wakeups._events,
                "Poller._scopes (pages, watched)": getattr(g, "_scopes", None),
                "Poller._watching": getattr(g, "_watching", None),
                "ExportSlots": g.slots,
                "metrics tracker and tables": (h.metrics.tracker, h.metrics.tables),
                "Reconciler (the rest)": h.reconciler,
            }
            for label, part in parts.items():
                f.write(f"{label:<36} {deep(part, seen) / 2**20:8.2f}\\n")
        # Objects' bodies (parsed JSON) still alive, by what holds them (two levels up).
        bodies = [o for o in objs if isinstance(o, dict) and "metadata" in o and "spec" in o]
        holders = collections.Counter()
        for b in bodies:
            for r in gc.get_referrers(b):
                if r is objs or r is bodies:
                    continue
                up = [type(u).__qualname__ for u in gc.get_referrers(r) if u is not objs and u is not bodies][:2]
                holders[f"{type(r).__qualname__} <- {','.join(up)}"] += 1
        f.write(f"bodies alive: {len(bodies)}\\n")
        for name, n in holders.most_common(12):
            f.write(f"{n:9d} {name}\\n")
        tasks = [o for o in objs if type(o).__name__ == "Task" and type(o).__module__ == "_asyncio"]
        f.write(f"asyncio tasks: {len(tasks)}\\n")
        f.write("\\n-- live objects by type --\\n")
        types = collections.Counter(type(o).__qualname__ for o in objs)
        for name, n in types.most_common(20):
            f.write(f"{n:9d} {name}\\n")
        f.write("\\n-- RSS by mapping (MiB) --\\n")
        rss, name = collections.Counter(), "?"
        for line in open("/proc/self/smaps"):
            head = line.split()
            if len(head) >= 5 and "-" in head[0]:
                name = head[5] if len(head) > 5 else "[anon]"
                name = "file" if name.startswith("/") else name
            elif head and head[0] == "Rss:":
                rss[name] += int(head[1]) / 1024
        for name, mib in rss.most_common(6):
            f.write(f"{mib:8.2f} {name}\\n")
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            f.write(f"traced now {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB\\n")
            snap = tracemalloc.take_snapshot()
            f.write("\\n-- tracemalloc by line --\\n")
            for s in snap.statistics("lineno")[:30]:
                f.write(f"{s.size / 2**20:8.2f} MiB {s.count:8d} {s.traceback[0]}\\n")
        for traced, snap in PEAK:
            f.write(f"\\n-- at the peak: {traced:.1f} MiB traced; by file, then by traceback --\\n")
            for s in snap.statistics("filename")[:15]:
                f.write(f"{s.size / 2**20:8.2f} MiB {s.count:8d} {s.traceback[0]}\\n")
            for s in snap.statistics("traceback")[:12]:
                f.write(f"{s.size / 2**20:8.2f} MiB {s.count:8d}\\n")
                for frame in s.traceback.format()[-16:]:
                    f.write(f"      {frame}\\n")
        f.write(open(out + ".alloc").read())
        f.write("@@done\\n")

signal.signal(signal.SIGUSR1, dump)
sys.argv[0] = "rds_export_operator"
from rds_export_operator.__main__ import main
sys.exit(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--active", type=int, default=10)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds to wait after the sync before the dump")
    parser.add_argument("--peak", action="store_true", help="trace allocations; report what was alive at the peak")
    parser.add_argument(
        "--during", type=float, default=1.0, help="dump when this fraction shows its task (0.5: mid-burst)"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rds-export-memory-"))
    names = [f"mem-{i:05d}" for i in range(args.objects)]
    with controlplane.running(tmp / "cp") as cp, StandInServer(auto=False, limit=args.objects) as aws:
        kubectl = Kubectl(cp.kubectl, cp.kubeconfig)
        install_crd(kubectl)
        kubectl.run("create", "namespace", "mem")
        scale.seed_tasks(aws, names, args.active)
        items = list(scale.manifests(names))
        for i in range(0, len(items), 500):
            batch = {"apiVersion": "v1", "kind": "List", "items": items[i : i + 500]}
            kubectl.run("apply", "-n", "mem", "-f", "-", timeout=300, input=json.dumps(batch))
        watch = scale.Watch(cp, "mem").start()
        report = tmp / "memory.txt"
        op = OperatorProcess(
            cp.kubeconfig,
            aws.env(),
            tmp / "operator.log",
            args=[
                f"--poll-interval={args.interval}",
                "--namespace=mem",
                f"--max-concurrent-exports={args.objects}",  # as bench/scale.py: no object waits for a slot
                "--log-level=WARNING",
                # Short retries: adoption meets RegionBusy, and the default backoff only delays the snapshot.
                "--retry-base-delay=0.5",
                "--retry-max-delay=2",
            ],
        )
        op.cmd = [sys.executable, "-c", PROBE, str(report), *op.cmd[3:]]  # the same arguments, under the probe
        if args.peak:
            op.env["PROBE_PEAK"] = "1"
        op.start()
        assert op.proc is not None
        started = time.monotonic()
        left = int(len(names) * (1 - args.during))
        wait_until(
            lambda: len(scale.out_of_sync(watch, aws, names)) <= left,
            timeout=args.objects * 2 + 120,
            what="sync",
            interval=0.2,
        )
        if not left:
            scale.settle_writes(cp)
        rss, cpu = scale.process_usage(op.proc.pid)
        print(f"synced in {time.monotonic() - started:.0f} s; RSS {rss:.1f} MiB, CPU {cpu:.0f} s")
        time.sleep(args.settle)  # a measured pause, not synchronisation: what is still held after it
        op.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: report.exists() and "@@done" in report.read_text(), timeout=300, what="the dump")
        print(report.read_text())
        op.stop()
        watch.stop()


if __name__ == "__main__":
    main()
