"""Real Parquet data for the stand-in's exported tables, with the column types RDS writes, and the matching
``schemaMetadata.originalTypeMappings`` of each table entry.

RDS writes ``<db>/<schema>.<table>/<batch>/part-<n>-<uuid>.gz.parquet`` (gzip-compressed Parquet) and a
``_SUCCESS`` marker per folder (``shared/rds-export-api.md``, "Data"). PostgreSQL ``bigint`` becomes INT64,
``integer`` INT32, ``double precision`` DOUBLE, ``boolean`` BOOLEAN; ``numeric``, ``date``, ``timestamp`` and
``varchar`` become UTF-8 strings (the AWS RDS User Guide, "Data conversion when exporting to an Amazon S3 bucket",
PostgreSQL table). The ``expectedExportedType`` spelling (``int64``, ``binary (UTF8)``) is the one code that reads
real exports matches on. Values are a function of the row number, so a test can compute what any query returns.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STRING = "binary (UTF8)"


@dataclass(frozen=True)
class Column:
    name: str
    original: str  # the PostgreSQL type, as originalType
    exported: str  # the Parquet type RDS writes, as expectedExportedType
    sql_type: str  # the DuckDB type that writes that Parquet type
    value: Callable[[int], Any]  # the value of row i, in Python (tests compute expectations from it)
    sql: str  # the same value in DuckDB SQL over the row number ``i``
    char_length: int = 0
    precision: int = 0


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: int
    batches: int = 1  # one folder per batch, as a partitioned table's export has

    def total(self, column: str) -> Any:
        col = next(c for c in self.columns if c.name == column)
        return sum(col.value(i) for i in range(self.rows))


_ID = Column("id", "bigint", "int64", "BIGINT", lambda i: i + 1, "i + 1", precision=64)
TABLES = {
    "customers": Table(
        (
            _ID,
            Column("name", "character varying", STRING, "VARCHAR", lambda i: f"customer {i}", "'customer ' || i", 100),
            Column("active", "boolean", "boolean", "BOOLEAN", lambda i: i % 3 != 0, "i % 3 <> 0"),
        ),
        rows=40,
    ),
    "orders": Table(
        (
            _ID,
            Column("customer_id", "integer", "int32", "INTEGER", lambda i: i % 40 + 1, "i % 40 + 1", precision=32),
            Column(
                "total",
                "numeric",
                STRING,
                "VARCHAR",
                lambda i: f"{i % 100}.{i % 7}5",
                "CAST(i % 100 AS VARCHAR) || '.' || CAST(i % 7 AS VARCHAR) || '5'",
                precision=12,
            ),
            Column(
                "placed_on",
                "date",
                STRING,
                "VARCHAR",
                lambda i: f"2026-11-{i % 28 + 1:02d}",
                "printf('2026-11-%02d', i % 28 + 1)",
            ),
            Column("weight", "double precision", "double", "DOUBLE", lambda i: i * 0.5, "i * 0.5", precision=53),
        ),
        rows=250,
        batches=2,
    ),
    "order_items": Table(
        (
            Column("order_id", "bigint", "int64", "BIGINT", lambda i: i // 3 + 1, "i // 3 + 1", precision=64),
            Column("quantity", "integer", "int32", "INTEGER", lambda i: i % 5 + 1, "i % 5 + 1", precision=32),
        ),
        rows=600,
    ),
}
GENERIC = Table((_ID, Column("label", "text", STRING, "VARCHAR", lambda i: f"row {i}", "'row ' || i")), rows=10)


def table_of(target: str) -> Table:
    """The stand-in's data of a table (by its last name part); any other table holds ``GENERIC``."""
    return TABLES.get(target.rsplit(".", 1)[-1], GENERIC)


def type_mappings(target: str) -> list[dict[str, Any]]:
    """``schemaMetadata.originalTypeMappings`` of the table's entry, as RDS writes it."""
    return [
        {
            "columnName": c.name,
            "originalType": c.original,
            "expectedExportedType": c.exported,
            "originalCharMaxLength": c.char_length,
            "originalNumPrecision": c.precision,
            "originalDateTimePrecision": 6 if "timestamp" in c.original else 0,
        }
        for c in table_of(target).columns
    ]


def folder_of(target: str) -> str:
    """The table's folder relative to the export's: ``db/schema.table/`` (MySQL ``db.table``: ``db/db.table/``)."""
    parts = target.split(".")
    db, schema, table = (parts[0], parts[0], parts[1]) if len(parts) == 2 else parts
    return f"{db}/{schema}.{table}/"


def data_files(target: str) -> dict[str, bytes]:
    """The table's Parquet files and markers, names relative to the export folder."""
    import duckdb  # dev-only: imported when data is written, so the stand-in runs without it otherwise

    table = table_of(target)
    select = ", ".join(f'CAST({c.sql} AS {c.sql_type}) AS "{c.name}"' for c in table.columns)
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp, duckdb.connect() as con:
        for batch in range(table.batches):
            path = Path(tmp) / f"{batch}.parquet"
            con.execute(
                f"COPY (SELECT {select} FROM range({table.rows}) AS r(i) WHERE i % {table.batches} = {batch}"
                f" ORDER BY i) TO '{path}' (FORMAT parquet, COMPRESSION gzip)"
            )
            base = f"{folder_of(target)}{batch + 1}/"
            files[f"{base}part-00000-{uuid.uuid4()}.gz.parquet"] = path.read_bytes()
            files[f"{base}_SUCCESS"] = b""
    return files


# The Hive types the catalog writes, as DuckDB names the Parquet columns it reads.
DUCKDB_TYPES = {"bigint": "BIGINT", "int": "INTEGER", "string": "VARCHAR", "double": "DOUBLE", "boolean": "BOOLEAN"}


class CatalogMismatch(AssertionError):
    """A Glue column that the Parquet files do not hold with that type."""


def query(s3: Any, table: dict[str, Any], sql: str, workdir: Path) -> tuple[Any, ...]:
    """Run ``sql`` over a view ``t`` of a Glue table, as an engine reading the catalog would: the Parquet files
    under its Location (every batch folder; ``_``/``.`` files skipped, as Hive and Athena do), read with only the
    catalog's columns, each checked to be of the catalog's type. ``s3``: a boto3 S3 client."""
    import duckdb

    location = table["StorageDescriptor"]["Location"]
    bucket, prefix = location.removeprefix("s3://").split("/", 1)
    paths = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].rsplit("/", 1)[-1].startswith(("_", ".")):
                continue
            path = workdir / item["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            paths.append(str(path))
    if not paths:
        raise CatalogMismatch(f"no data under {location}")
    columns = table["StorageDescriptor"]["Columns"]
    with duckdb.connect() as con:
        listed = ", ".join(f"'{p}'" for p in paths)
        con.execute(f"CREATE VIEW files AS SELECT * FROM read_parquet([{listed}])")
        written = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE files)").fetchall())
        for column in columns:
            if written.get(column["Name"]) != DUCKDB_TYPES.get(column["Type"]):
                raise CatalogMismatch(f"catalog column {column} but the files hold {written.get(column['Name'])}")
        selected = ", ".join(f'"{c["Name"]}"' for c in columns)
        con.execute(f"CREATE VIEW t AS SELECT {selected} FROM files")
        row = con.execute(sql).fetchone()
    return tuple(row or ())
