"""Recurring exports, end to end, on the embedded local default (``make demo-schedule``).

Starts the local control plane, the AWS stand-in (timed export lifecycle) and the operator; applies
``examples/schedule.yaml`` switched to ``trigger: NewSnapshot``; lets the stand-in take an automated snapshot of
``orders`` every few seconds, twice; shows ``kubectl get rdsexporttasks -w`` until both
exports are COMPLETE, then the schedule's status and events; then queries the Glue table the operator registered
(``catalog: mode Latest``) with DuckDB over the stand-in's Parquet files, and stops everything.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from localdev import controlplane
from localdev.demo import arguments, local_stack, say, watching
from localdev.kube import Kubectl
from localdev.standin import parquet
from localdev.standin.server import Script, StandInServer
from localdev.waiting import wait_until

EXAMPLE = controlplane.REPO / "examples" / "schedule.yaml"
SNAPSHOTS = 2


def demo_schedule() -> dict[str, Any]:
    """The example, exporting each new snapshot instead of waiting for 04:30 in Berlin."""
    obj: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    spec = obj["spec"]
    spec.pop("schedule", None)
    spec.pop("timeZone", None)
    spec.pop("startingDeadlineSeconds", None)
    spec["trigger"] = "NewSnapshot"
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = arguments("localdev.demo_schedule", __doc__, export_seconds=10, poll_interval=2)
    parser.add_argument("--snapshot-every", type=float, default=8, help="seconds between the stand-in's snapshots")
    args = parser.parse_args(argv)
    started = time.monotonic()
    script = Script(starting=2, running=args.export_seconds, size_gb=3)
    with local_stack("rds-export-demo-schedule-", script, args.poll_interval) as stack:
        kubectl = stack.kubectl
        say(f"kubectl apply -f {EXAMPLE.relative_to(controlplane.REPO)}   (with trigger: NewSnapshot)")
        print(kubectl.apply(demo_schedule(), "-n", "default").strip())
        stack.aws.standin.write_parquet("*")  # real Parquet data, so the catalog's table can be queried
        say(f"the stand-in takes an automated snapshot of orders every {args.snapshot_every:.0f}s, twice")
        stack.aws.standin.snapshot_every("orders", args.snapshot_every, count=SNAPSHOTS)
        say("kubectl get rdsexporttasks -w   (until both exports are COMPLETE)")
        with watching(stack.cp, "rdsexporttasks", "-n", "default"):
            wait_until(
                lambda: _complete(kubectl) >= SNAPSHOTS and not _active(kubectl),
                timeout=SNAPSHOTS * (args.snapshot_every + args.export_seconds) + 120,
                what=f"{SNAPSHOTS} exports COMPLETE",
            )
        say("kubectl get rdsexportsched")
        print(kubectl.run("get", "rdsexportsched", "-n", "default").rstrip())
        say("kubectl get rdsexportsched orders-nightly -o jsonpath='{.status}'")
        status = kubectl.get("rdsexportschedules", "orders-nightly", "default")["status"]
        print(json.dumps(status, indent=2))
        say("kubectl describe rdsexportsched orders-nightly (events)")
        describe = kubectl.run("describe", "rdsexportschedule", "orders-nightly", "-n", "default")
        print(describe[describe.find("Events:") :].rstrip())
        _query_catalog(stack.aws, kubectl)
    say(f"done in {time.monotonic() - started:.0f}s: two snapshots exported in a row; everything is stopped")
    return 0


def _query_catalog(aws: StandInServer, kubectl: Kubectl) -> None:
    """Wait for both exports to be Cataloged, then read the Latest table as an engine reading Glue would."""
    wait_until(lambda: _cataloged(kubectl) >= SNAPSHOTS, timeout=120, what=f"{SNAPSHOTS} exports Cataloged")
    session = aws.session()
    table = session.client("glue", endpoint_url=aws.url).get_table(
        DatabaseName="analytics", Name="orders_public_orders"
    )["Table"]
    say("aws glue get-table --database-name analytics --name orders_public_orders")
    print(f"Location: {table['StorageDescriptor']['Location']}")
    for column in table["StorageDescriptor"]["Columns"]:
        print(f"  {column['Name']:<12} {column['Type']:<8} -- {column.get('Comment', '')}")
    sql = "SELECT count(*) AS orders, sum(customer_id), sum(CAST(total AS DECIMAL(12,2))), max(placed_on) FROM t"
    say(f"DuckDB over that location, with only the catalog's columns and types: {sql}")
    with tempfile.TemporaryDirectory() as tmp:
        row = parquet.query(session.client("s3", endpoint_url=aws.url), table, sql, Path(tmp))
    print(row)


def _cataloged(kubectl: Kubectl) -> int:
    items = kubectl.get("rdsexporttasks", namespace="default")["items"]
    return sum(
        1
        for o in items
        for c in o.get("status", {}).get("conditions", [])
        if c.get("type") == "Cataloged" and c.get("status") == "True"
    )


def _active(kubectl: Kubectl) -> bool:
    status = kubectl.get("rdsexportschedules", "orders-nightly", "default").get("status", {})
    return bool(status.get("active", True))


def _complete(kubectl: Kubectl) -> int:
    items = kubectl.get("rdsexporttasks", namespace="default")["items"]
    return sum(1 for o in items if o.get("status", {}).get("status") == "COMPLETE")


if __name__ == "__main__":
    sys.exit(main())
