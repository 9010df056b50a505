"""Scale benchmark: what N RdsExportTask objects cost in AWS calls, API-server writes, latency, memory and CPU.

Runs the scenario of ``dev/localdev/scale.py`` for each N and each polling mode (coalesced, the default, and the
per-object baseline) on the local control plane against the AWS stand-in, and prints one table: a column per N
and mode, and per N the ratio per-object / coalesced:

    make bench-scale                         # N=1000, 1 % unfinished, 10 s poll interval, both modes
    PYTHONPATH=dev:operator .venv/bin/python bench/scale.py --objects 1000,5000,10000 --per-object-up-to 1000

``--scenario backfill`` (issue 27): N exports in one account created at once, two namespaces competing for AWS's
five export slots (``dev/localdev/backfill.py``), a column per mode:

    PYTHONPATH=dev:operator .venv/bin/python bench/scale.py --scenario backfill --exports 60 --durations 20,60 \
        --interval 3

``--scenario all`` (``make bench-scale``): the three peaks of issue 27 in one run, coalesced only (about 20
minutes): 1,000 objects created at once (1 % unfinished: the peak RSS), the same with half of them unfinished
(heavy load: the status latency) and the scaled-down backfill; then one table of each target and its measure.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

from localdev import backfill, controlplane, scale
from localdev.kube import Kubectl
from localdev.stack import install_crd

MODES = ("coalesced", "per-object")


def unfinished(active: float, objects: int) -> int:
    """``--active``: a fraction of the objects (below 1) or a count."""
    return max(1, round(active * objects)) if active < 1 else int(active)


def table(columns: list[tuple[str, dict[str, float]]]) -> str:
    metrics = list(columns[0][1])
    width = max(len(m) for m in metrics)
    cells = [max(12, len(title)) for title, _ in columns]
    lines = [
        f"| {'metric':<{width}} | " + " | ".join(f"{t:>{w}}" for (t, _), w in zip(columns, cells, strict=True)) + " |",
        f"|{'-' * (width + 2)}|" + "|".join("-" * (w + 2) for w in cells) + "|",
    ]
    for metric in metrics:
        values = [
            f"{v:>{w}.2f}" if not math.isnan(v := col.get(metric, math.nan)) else f"{'-':>{w}}"
            for (_, col), w in zip(columns, cells, strict=True)
        ]
        lines.append(f"| {metric:<{width}} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def ratios(coalesced: dict[str, float], per_object: dict[str, float]) -> dict[str, float]:
    return {
        k: (per_object[k] / v if v else (math.inf if per_object[k] else 1.0)) if k in per_object else math.nan
        for k, v in coalesced.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", default="1000", help="comma-separated N, e.g. 1000,5000,10000")
    parser.add_argument("--active", type=float, default=0.01, help="unfinished objects: a fraction (<1) or a count")
    parser.add_argument("--interval", type=float, default=10.0, help="the operator's poll interval (seconds)")
    parser.add_argument("--intervals", type=int, default=4, help="intervals measured per phase")
    parser.add_argument(
        "--transitions", type=int, default=0, help="tasks completing per busy interval (0: a tenth of the unfinished)"
    )
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--per-object-up-to", type=int, default=10**9, help="run the baseline only up to this N")
    parser.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        help="passed to the operator, e.g. --operator-arg=--no-table-report",
    )
    parser.add_argument("--scenario", choices=("cost", "backfill", "all"), default="cost")
    parser.add_argument("--exports", type=int, default=300, help="backfill: exports created at once")
    parser.add_argument("--durations", default="300,900", help="backfill: export durations' bounds (s), low,high")
    parser.add_argument("--share", type=float, default=2 / 3, help="backfill: the big namespace's part")
    args = parser.parse_args()
    if args.scenario == "backfill":
        run_backfill(args)
    elif args.scenario == "all":
        run_peaks(args)
    else:
        run_cost(args, [int(n) for n in args.objects.split(",")], args.active, args.modes.split(","))


def run_cost(
    args: argparse.Namespace, sizes: list[int], active_share: float, modes: list[str]
) -> list[tuple[str, dict[str, float]]]:
    tmp = Path(tempfile.mkdtemp(prefix="rds-export-bench-"))
    print(f"{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M')}")
    columns: list[tuple[str, dict[str, float]]] = []
    with controlplane.running(tmp / "cp") as cp:
        kubectl = Kubectl(cp.kubectl, cp.kubeconfig)
        install_crd(kubectl)
        floors: dict[str, float] = {}
        for n in sizes:
            active = unfinished(active_share, n)
            results: dict[str, dict[str, float]] = {}
            for mode in modes:
                if mode == "per-object" and n > args.per_object_up_to:
                    continue
                if mode not in floors:
                    floors[mode] = scale.floor_rss(cp, kubectl, mode, tmp, args.interval)
                scenario = scale.Scenario(
                    n,
                    active,
                    args.interval,
                    mode=mode,
                    intervals=args.intervals,
                    transitions=args.transitions or max(1, active // 10),
                )
                print(f"N={n} {mode}: {scenario} ...", flush=True)
                began = time.monotonic()
                measured = scale.run(cp, kubectl, scenario, tmp, extra_args=args.operator_arg)
                results[mode] = scale.rows(measured, floors[mode])
                print(f"  done in {time.monotonic() - began:.0f} s, load {os.getloadavg()}", flush=True)
                columns.append((f"{mode} N={n}", results[mode]))
                if len(results) == 2:
                    columns.append(("ratio", ratios(results["coalesced"], results["per-object"])))
                # The table so far after every run: a long run that is stopped still leaves the earlier ones.
                print("\nRSS floor (one object): " + ", ".join(f"{m} {v:.1f} MiB" for m, v in floors.items()))
                print(f"poll interval {args.interval:g} s, {args.intervals} intervals per phase\n")
                print(table(columns), flush=True)
    return columns


def run_backfill(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    low, high = (float(v) for v in args.durations.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="rds-export-backfill-"))
    print(f"{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M')}")
    columns: list[tuple[str, dict[str, float]]] = []
    with controlplane.running(tmp / "cp") as cp:
        kubectl = Kubectl(cp.kubectl, cp.kubeconfig)
        install_crd(kubectl)
        for mode in args.modes.split(","):
            scenario = backfill.Backfill(args.exports, (low, high), args.interval, mode, args.share)
            print(f"backfill {mode}: {scenario} ...", flush=True)
            began = time.monotonic()
            measured = backfill.run(cp, kubectl, scenario, tmp, extra_args=args.operator_arg)
            print(f"  done in {time.monotonic() - began:.0f} s, load {os.getloadavg()}", flush=True)
            slot_gaps = backfill.gaps([t for t, _ in measured.starts], measured.ends)
            print("  idle gaps per freed slot (s), sorted: " + " ".join(f"{g:.2f}" for g in sorted(slot_gaps)))
            columns.append((mode, backfill.rows(measured)))
            print(table(columns), flush=True)
    return columns


# (what, the row it reads, the bound, whether the bound is an upper one)
TARGETS = (
    ("peak RSS growth per 1,000 objects at once, MiB", "burst", "peak RSS growth, MiB per 1,000 objects", 30.0, True),
    ("status latency p99 at 50 % unfinished, s (interval + 1)", "heavy", "status latency p99 (s)", math.nan, True),
    ("  of which AWS call to watch event, p99 (s)", "heavy", "  that call to the watch event, p99 (s)", math.nan, True),
    ("backfill: slot utilisation while work waits, %", "backfill", "slot utilisation while work waits (%)", 98, False),
    ("backfill: idle gap per freed slot, p99, intervals", "backfill", "  p99 in poll intervals", 1.0, True),
    ("backfill: refused StartExportTask calls", "backfill", "  refused (ExportTaskLimitReached)", 0.0, True),
)


def run_peaks(args: argparse.Namespace) -> None:
    """Issue 27's three peaks, coalesced, and one table of targets."""
    measured = {
        "burst": run_cost(args, [1000], 0.01, ["coalesced"])[0][1],
        "heavy": run_cost(args, [1000], 0.5, ["coalesced"])[0][1],
    }
    heavy_interval = args.interval
    args.exports, args.durations, args.interval, args.modes = 40, "20,60", 3.0, "coalesced"
    measured["backfill"] = run_backfill(args)[0][1]
    print("\n| target | bound | measured | met |\n|---|---|---|---|")
    for what, scenario, row, bound, upper in TARGETS:
        value = measured[scenario].get(row, math.nan)
        if what.startswith("status latency"):
            bound = heavy_interval + 1
        met = "-" if math.isnan(bound) else ("yes" if (value <= bound if upper else value >= bound) else "no")
        print(f"| {what} | {'' if math.isnan(bound) else f'{bound:g}'} | {value:.2f} | {met} |")


if __name__ == "__main__":
    main()
