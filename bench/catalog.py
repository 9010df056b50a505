"""Glue catalog registration at scale: time and Glue calls per table for one export of N tables.

Runs the catalog's ``Registrar`` (the code the operator's catalog timer runs, pass after pass, each pass fed
the status the last one wrote) against the AWS stand-in over HTTP (moto's Glue and S3), unpaced, so the time is
the operator's and moto's own work; the time at a pace is calls / pace. Scenarios: a PerExport export, the same
export registered again (a crash before any status was written: everything exists, every table adopted), a
Latest export and the next one repointing the same names.

    python bench/catalog.py [--tables 5000] [--columns 10]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from typing import Any

from localdev.standin.server import StandInServer
from rds_export_operator.aws.glue import Glue
from rds_export_operator.aws.s3 import S3
from rds_export_operator.catalog.register import LATEST, CatalogSpec, Registrar, Where

BUCKET, REGION, PER_FILE = "bench-exports", "us-east-1", 1000


def seed(s3: Any, identifier: str, tables: int, columns: int) -> None:
    """The export's table files as RDS writes them: 1,000 tables a file, ``columns`` columns a table."""
    mappings = [
        {"columnName": f"c{i}", "originalType": "bigint", "expectedExportedType": "int64", "originalNumPrecision": 64}
        for i in range(columns)
    ]
    for start in range(0, tables, PER_FILE):
        chunk = range(start, min(tables, start + PER_FILE))
        entries = [
            {
                "target": f"postgres.public.t{i:05d}",
                "status": "COMPLETE",
                "schemaMetadata": {"originalTypeMappings": mappings},
            }
            for i in chunk
        ]
        name = f"{identifier}/export_tables_info_{identifier}_from_{start + 1}_to_{chunk[-1] + 1}.json"
        s3.put_object(Bucket=BUCKET, Key=name, Body=json.dumps({"perTableStatus": entries}).encode())
    # the catalog reads the files as the table report does: only once export_info is final
    s3.put_object(Bucket=BUCKET, Key=f"{identifier}/export_info_{identifier}.json", Body=b'{"status": "COMPLETE"}')


def run(registrar: Registrar, spec: CatalogSpec, where: Where) -> tuple[float, int, dict[str, Any]]:
    status: dict[str, Any] = {}
    started, passes = time.monotonic(), 0
    while True:
        passes += 1
        result = registrar.register(spec, where, status)
        status.update(result.status)
        if result.status["conditions"][0].status != "Unknown":
            return time.monotonic() - started, passes, status["catalog"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=5000)
    parser.add_argument("--columns", type=int, default=10)
    parser.add_argument("--pace", type=float, default=10.0, help="calls per second to compute paced times for")
    args = parser.parse_args()
    with StandInServer(auto=False) as aws:
        os.environ.update(aws.env())
        s3 = aws.session().client("s3", endpoint_url=aws.url)
        s3.create_bucket(Bucket=BUCKET)
        calls: Counter[str] = Counter()
        glue = Glue(calls_per_second=0, observe=lambda op, outcome, seconds: calls.update([op]))
        registrar = Registrar(glue, S3())
        rows = []
        scenarios = [
            ("PerExport, new", CatalogSpec("bench_per_export"), "exp-1"),
            ("PerExport, again (crash before any status)", CatalogSpec("bench_per_export"), "exp-1"),
            ("Latest, first export", CatalogSpec("bench_latest", mode=LATEST), "exp-1"),
            ("Latest, next export (repoint)", CatalogSpec("bench_latest", mode=LATEST), "exp-2"),
        ]
        for identifier in ("exp-1", "exp-2"):
            seed(s3, identifier, args.tables, args.columns)
        for title, spec, identifier in scenarios:
            calls.clear()
            seconds, passes, catalog = run(
                registrar, spec, Where(REGION, BUCKET, f"{identifier}/", identifier, "bench")
            )
            assert catalog["tablesRegistered"] == args.tables, catalog
            glue_calls = sum(calls.values())
            detail = ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
            rows.append((title, seconds, passes, glue_calls / args.tables, glue_calls / args.pace, detail))
    print(
        f"| {args.tables} tables, {args.columns} columns | seconds (unpaced) | passes | Glue calls per table |"
        f" seconds at {args.pace:g} calls/s | calls |"
    )
    print("|---|---|---|---|---|---|")
    for title, seconds, passes, per_table, paced, detail in rows:
        print(f"| {title} | {seconds:.1f} | {passes} | {per_table:.3f} | {paced:.0f} | {detail} |")


if __name__ == "__main__":
    main()
