"""localdev/standin/parquet.py: the stand-in's Parquet data matches its own originalTypeMappings, read through the
table the catalog builds from them; a catalog type the files do not hold is caught."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from localdev.standin import parquet
from rds_export_operator.catalog.schema import Export, Naming, Registration, table_entry
from rds_export_operator.tables.entries import entry_of

BUCKET = "exports"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def catalog_table(s3: Any, target: str) -> dict[str, Any]:
    """Write the target's data under exp/ and return the Glue table the catalog builds from its table entry."""
    for name, data in parquet.data_files(target).items():
        s3.put_object(Bucket=BUCKET, Key=f"exp/{name}", Body=data)
    entry = {
        "target": target,
        "status": "COMPLETE",
        "schemaMetadata": {"originalTypeMappings": parquet.type_mappings(target)},
    }
    parsed = entry_of(entry)  # as the catalog gets it: parsed by the table report's streaming parser
    assert parsed is not None
    outcome = table_entry(parsed, Naming("db", per_export=False), Export("exp", BUCKET, "exp/", "owner"))
    assert isinstance(outcome, Registration)
    return outcome.table_input


@pytest.mark.parametrize("target", ["postgres.public.customers", "postgres.public.orders", "shop.widgets"])
def test_every_table_reads_back_through_its_catalog_definition(s3: Any, target: str, tmp_path: Path) -> None:
    table = parquet.table_of(target)
    first = table.columns[0].name
    count, total = parquet.query(s3, catalog_table(s3, target), f"SELECT count(*), sum({first}) FROM t", tmp_path)
    assert (count, total) == (table.rows, table.total(first))


def test_a_catalog_type_the_files_do_not_hold_is_caught(s3: Any, tmp_path: Path) -> None:
    table = catalog_table(s3, "postgres.public.orders")
    table["StorageDescriptor"]["Columns"][1]["Type"] = "bigint"  # the files hold INT32
    with pytest.raises(parquet.CatalogMismatch, match="customer_id"):
        parquet.query(s3, table, "SELECT count(*) FROM t", tmp_path)
