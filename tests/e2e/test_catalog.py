"""Exports land queryable (issue 26): after an export with ``spec.catalog`` completes, the operator registers one
Glue table per complete table from the export's own schema, and a real engine (DuckDB over the Parquet files the
stand-in wrote) reading the table's location with only the catalog's columns and types returns the stand-in's rows.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from constants import BUCKET
from e2e.conftest import OperatorFactory, condition, condition_is, export_task, status_is
from e2e.test_schedules import children, new_db, schedule, uid_of
from localdev.kube import Kubectl
from localdev.standin import parquet
from localdev.standin.server import StandInServer
from localdev.waiting import wait_until

KIND = "rdsexporttasks"


def client(aws: StandInServer, service: str) -> Any:
    return aws.session().client(service, endpoint_url=aws.url)  # type: ignore[call-overload]


def started(kubectl: Kubectl, namespace: str, name: str) -> str:
    obj = kubectl.wait_for(KIND, name, namespace, status_is("STARTING"), timeout=30, what="STARTING")
    return str(obj["status"]["exportTaskIdentifier"])


def glue_tables(aws: StandInServer, database: str) -> dict[str, dict[str, Any]]:
    pages = client(aws, "glue").get_paginator("get_tables").paginate(DatabaseName=database)
    return {t["Name"]: t for page in pages for t in page["TableList"]}


def test_an_export_registers_each_complete_table_and_its_location_answers_queries(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
    tmp_path: Path,
) -> None:
    operator_factory()
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    catalog = {"database": database}
    kubectl.apply(export_task("sales", snapshot_arn, s3Prefix="exports/sales", catalog=catalog), "-n", namespace)
    ident = started(kubectl, namespace, "sales")
    aws.standin.write_parquet(ident)
    aws.standin.table_outcomes(ident, {"postgres.public.blobs": "FAILED"})
    aws.standin.set_task(ident, status="COMPLETE")

    obj = kubectl.wait_for(
        KIND, "sales", namespace, condition_is("Cataloged", status="True"), timeout=60, what="Cataloged"
    )
    assert condition(obj, "Cataloged")["reason"] == "TablesLeftOut"
    assert obj["status"]["catalog"] == {
        "database": database,
        "mode": "PerExport",
        "tablesRegistered": 3,
        "tablesLeftOut": 1,
        "leftOut": [
            {
                "target": "postgres.public.blobs",
                "reason": "NotComplete",
                "message": "postgres.public.blobs: FAILED, not COMPLETE",
            }
        ],
    }
    assert "Cataloged" in {e["reason"] for e in kubectl.events(namespace, "sales")}

    suffix = ident.lower().replace("-", "_")
    tables = glue_tables(aws, database)
    assert sorted(tables) == sorted(f"postgres_public_{t}_{suffix}" for t in ("customers", "orders", "order_items"))
    orders = tables[f"postgres_public_orders_{suffix}"]
    assert orders["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/exports/sales/{ident}/postgres/public.orders/"
    assert [(c["Name"], c["Type"], c.get("Comment")) for c in orders["StorageDescriptor"]["Columns"]] == [
        ("id", "bigint", "bigint"),
        ("customer_id", "int", "integer"),
        ("total", "string", "numeric(12)"),
        ("placed_on", "string", "date"),
        ("weight", "double", "double precision"),
    ]
    assert orders["PartitionKeys"] == [] and orders["TableType"] == "EXTERNAL_TABLE"

    # The engine reads every batch folder with the catalog's columns and types: the stand-in's rows come back.
    spec = parquet.TABLES["orders"]
    count, customers, total = parquet.query(
        client(aws, "s3"),
        orders,
        "SELECT count(*), sum(customer_id), sum(CAST(total AS DECIMAL(12,2))) FROM t",
        tmp_path,
    )
    assert count == spec.rows and spec.batches == 2
    assert customers == spec.total("customer_id")
    assert total == sum(Decimal(spec.columns[2].value(i)) for i in range(spec.rows))
    items = parquet.TABLES["order_items"]
    assert parquet.query(
        client(aws, "s3"),
        tables[f"postgres_public_order_items_{suffix}"],
        "SELECT count(*), sum(quantity) FROM t",
        tmp_path,
    ) == (
        items.rows,
        items.total("quantity"),
    )


def test_delete_policy_removes_only_this_exports_tables(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    operator_factory()
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    kubectl.apply(export_task("kept", snapshot_arn, catalog={"database": database}), "-n", namespace)
    deleting = {"database": database, "catalogDeletionPolicy": "Delete"}
    kubectl.apply(export_task("dropped", snapshot_arn, catalog=deleting), "-n", namespace)
    kept, dropped = started(kubectl, namespace, "kept"), started(kubectl, namespace, "dropped")
    for ident in (kept, dropped):
        aws.standin.set_task(ident, status="COMPLETE")
    for name in ("kept", "dropped"):
        kubectl.wait_for(KIND, name, namespace, condition_is("Cataloged", status="True"), timeout=60, what="Cataloged")
    assert len(glue_tables(aws, database)) == 6

    kubectl.run("delete", KIND, "dropped", "-n", namespace, "--wait=false")
    kubectl.wait_gone(KIND, "dropped", namespace, timeout=60)
    remaining = glue_tables(aws, database)
    assert len(remaining) == 3
    assert {t["Parameters"]["rdsexport.dev/export"] for t in remaining.values()} == {kept}


@pytest.mark.parametrize(
    ("catalog", "refused"),
    [
        ({"database": "Bad-Name"}, "spec.catalog.database"),
        ({"database": "x" * 256}, "spec.catalog.database"),
        ({"database": "ok", "tablePattern": "<db>_<schema>"}, "tablePattern must contain <table>"),
        ({"database": "ok", "tablePattern": "<table>-<db>"}, "spec.catalog.tablePattern"),
        ({"database": "ok", "mode": "Latest", "tablePattern": "<table>_<export>"}, "tablePattern cannot hold <export>"),
        ({"database": "ok", "mode": "Newest"}, "spec.catalog.mode"),
    ],
)
def test_admission_refuses_a_catalog_glue_cannot_hold(
    kubectl: Kubectl, namespace: str, snapshot_arn: str, crd: None, catalog: dict[str, Any], refused: str
) -> None:
    body = export_task("bad", snapshot_arn, catalog=catalog)
    body["metadata"]["namespace"] = namespace
    accepted, output = kubectl.try_create(body)
    assert not accepted and refused in output, output


def test_a_latest_schedule_repoints_the_same_names_to_its_newest_export(
    kubectl: Kubectl, namespace: str, aws: StandInServer, rds_client: Any, operator_factory: OperatorFactory
) -> None:
    db = new_db(rds_client)
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    body = schedule("nightly", db)
    body["spec"]["exportTemplate"]["catalog"] = {"database": database, "mode": "Latest"}
    kubectl.apply(body, "-n", namespace)
    uid = uid_of(kubectl, namespace, "nightly")
    operator_factory()
    aws.standin.write_parquet("nightly-*")

    exports: list[str] = []
    seen: set[str] = set()
    for n in (1, 2):
        aws.standin.create_db_snapshot(db)
        wait_until(lambda n=n: len(children(kubectl, namespace, uid)) == n, timeout=60, what=f"export {n}")
        (name,) = {k["metadata"]["name"] for k in children(kubectl, namespace, uid)} - seen
        seen.add(name)
        aws.standin.set_task(started(kubectl, namespace, name), status="COMPLETE")
        obj = kubectl.wait_for(
            KIND, name, namespace, condition_is("Cataloged", status="True"), timeout=60, what="Cataloged"
        )
        exports.append(obj["status"]["exportTaskIdentifier"])
        tables = glue_tables(aws, database)
        assert sorted(tables) == ["postgres_public_customers", "postgres_public_order_items", "postgres_public_orders"]
        location = tables["postgres_public_orders"]["StorageDescriptor"]["Location"]
        assert f"/{exports[-1]}/postgres/public.orders/" in location
        assert (
            tables["postgres_public_orders"]["Parameters"]["rdsexport.dev/owner"]
            == f"RdsExportSchedule/{namespace}/nightly"
        )

    versions = client(aws, "glue").get_table_versions(DatabaseName=database, TableName="postgres_public_orders")
    locations = {v["Table"]["StorageDescriptor"]["Location"] for v in versions["TableVersions"]}
    assert any(f"/{exports[0]}/" in loc for loc in locations)  # the previous export stays as a table version


def test_a_crash_between_glue_calls_leaves_no_gap_and_no_second_registration(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    tables = 1100  # three passes of at most 500
    first = operator_factory("--glue-calls-per-second=40")
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    kubectl.apply(export_task("big", snapshot_arn, catalog={"database": database}), "-n", namespace)
    ident = started(kubectl, namespace, "big")
    aws.standin.table_outcomes(ident, {f"postgres.public.t{i:04}": "COMPLETE" for i in range(tables - 3)})
    aws.standin.set_task(ident, status="COMPLETE")

    # SIGKILL in the middle of the second pass: its progress was never written.
    kubectl.wait_for(
        KIND,
        "big",
        namespace,
        lambda o: o.get("status", {}).get("catalog", {}).get("next") == 500,
        timeout=120,
        what="a pass",
    )
    wait_until(lambda: len(glue_tables(aws, database)) > 650, timeout=60, what="the second pass under way")
    first.kill()
    registered_before = len(glue_tables(aws, database))
    assert 500 < registered_before < tables

    operator_factory("--glue-calls-per-second=40")
    obj = kubectl.wait_for(
        KIND, "big", namespace, condition_is("Cataloged", status="True"), timeout=180, what="Cataloged"
    )
    assert obj["status"]["catalog"]["tablesRegistered"] == tables and obj["status"]["catalog"]["tablesLeftOut"] == 0
    registered = glue_tables(aws, database)
    assert len(registered) == tables  # no gap; a name is registered once, and each for this export
    assert {t["Parameters"]["rdsexport.dev/export"] for t in registered.values()} == {ident}
