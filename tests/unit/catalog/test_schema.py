"""catalog/schema.py: one table entry of the export's info file -> a Glue TableInput, or why it is left out."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from rds_export_operator.catalog import schema
from rds_export_operator.catalog.schema import Export, LeftOut, Naming, Plan, Registration, glue_type
from rds_export_operator.tables.entries import entry_of

EXPORT = Export("nightly-2026-12-04", "exports-bucket", "rds/nightly-2026-12-04/", "team-a/nightly")
LATEST = Naming("analytics", per_export=False)
GLUE_NAME = re.compile(r"[a-z0-9_]{1,255}")


def column(name: str, original: str, exported: str, **extra: Any) -> dict[str, Any]:
    return {"columnName": name, "originalType": original, "expectedExportedType": exported, **extra}


ORDERS = [
    column("id", "bigint", "int64", originalNumPrecision=64),
    column("customer_id", "integer", "int32", originalNumPrecision=32),
    column("total", "numeric", "binary (UTF8)", originalNumPrecision=12),
    column("placed_at", "timestamp without time zone", "binary (UTF8)"),
    column("note", "character varying", "binary (UTF8)", originalCharMaxLength=200),
    column("paid", "boolean", "boolean"),
    column("weight", "double precision", "double"),
]


def entry(target: str = "postgres.public.orders", status: str = "COMPLETE", columns: Any = None) -> dict[str, Any]:
    """An entry in the shape RDS writes (shared/rds-export-api.md)."""
    return {
        "tableStatistics": {"partitioningInfo": {"numberOfPartitions": 2, "numberOfCompletedPartitions": 2}},
        "schemaMetadata": {"originalTypeMappings": ORDERS if columns is None else columns},
        "status": status,
        "sizeGB": 0.0001,
        "target": target,
    }


# The tests write entries as RDS does; the catalog gets them as the table report's parser builds them.
def table_entry(item: Any, naming: Naming, export: Export) -> Registration | LeftOut | None:
    parsed = entry_of(item)
    return None if parsed is None else schema.table_entry(parsed, naming, export)


def plan(items: Iterable[Any], naming: Naming, export: Export, **window: int) -> Plan:
    return schema.plan((entry_of(i) for i in items), naming, export, **window)


def registered(item: Any, naming: Naming = LATEST) -> Registration:
    outcome = table_entry(item, naming, EXPORT)
    assert isinstance(outcome, Registration), outcome
    return outcome


def test_a_postgres_table_becomes_an_external_parquet_table_at_its_folder() -> None:
    r = registered(entry())
    t = r.table_input
    assert r.name == t["Name"] == "postgres_public_orders"
    assert t["TableType"] == "EXTERNAL_TABLE" and t["PartitionKeys"] == []
    sd = t["StorageDescriptor"]
    assert sd["Location"] == "s3://exports-bucket/rds/nightly-2026-12-04/postgres/public.orders/"
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert sd["InputFormat"].endswith("MapredParquetInputFormat")
    assert sd["OutputFormat"].endswith("MapredParquetOutputFormat")
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        ("id", "bigint"),
        ("customer_id", "int"),
        ("total", "string"),  # Postgres numeric arrives as a string
        ("placed_at", "string"),
        ("note", "string"),
        ("paid", "boolean"),
        ("weight", "double"),
    ]
    assert [c["Comment"] for c in sd["Columns"]][:5] == [
        "bigint",
        "integer",
        "numeric(12)",
        "timestamp without time zone",
        "character varying(200)",
    ]
    assert t["Parameters"][schema.OWNER] == "team-a/nightly"
    assert t["Parameters"][schema.EXPORT] == EXPORT.identifier
    assert t["Parameters"]["classification"] == "parquet"


def test_mysql_target_has_the_database_as_its_schema() -> None:
    r = registered(entry("shop.Orders", columns=[column("ID", "bigint", "int64")]))
    assert r.name.startswith("shop_shop_orders")
    assert r.table_input["StorageDescriptor"]["Location"].endswith("/rds/nightly-2026-12-04/shop/shop.Orders/")
    assert r.table_input["StorageDescriptor"]["Columns"][0]["Name"] == "id"


@pytest.mark.parametrize(
    ("exported", "hive"),
    [
        ("int32", "int"),
        ("INT64", "bigint"),
        ("int96", "timestamp"),
        ("float", "float"),
        ("double", "double"),
        ("boolean", "boolean"),
        ("binary", "binary"),
        ("binary (UTF8)", "string"),
        ("BYTE_ARRAY (STRING)", "string"),
        ("int32 (DECIMAL(9,2))", "decimal(9,2)"),
        ("int64 (DECIMAL(18,4))", "decimal(18,4)"),
        ("fixed_len_byte_array(9) (DECIMAL(20,0))", "decimal(20,0)"),
        ("int32 (DATE)", "date"),
        ("int64 (TIMESTAMP_MICROS)", "timestamp"),
        ("int32 (INT_16)", "smallint"),
        ("fixed_len_byte_array(16) (UUID)", "binary"),
        # Not known or not consistent: None, and the table is left out.
        ("fixed_len_byte_array(20) (DECIMAL(45,0))", None),
        ("int32 (UTF8)", None),
        ("int64 (TIME_MICROS)", None),
        ("varchar", None),
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_exported_types_map_to_hive_types(exported: object, hive: str | None) -> None:
    assert glue_type(exported) == hive


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (entry(status="FAILED"), "NotComplete"),
        (entry(status="SKIPPED"), "NotComplete"),
        (entry(columns=[]), "NoSchema"),
        ({"target": "postgres.public.orders", "status": "COMPLETE"}, "NoSchema"),
        (entry(columns=["id"]), "NoSchema"),
        (entry(columns=[column("span", "interval", "int64 (TIME_MICROS)")]), "UnknownType"),
        (entry(columns=[column("Id", "bigint", "int64"), column("ID", "bigint", "int64")]), "BadColumn"),
        (entry(columns=[column("", "bigint", "int64")]), "NoSchema"),  # a nameless column: not a partial schema
        (entry("a.b.c.d"), "BadTarget"),
        (entry("a..c"), "BadTarget"),
    ],
)
def test_tables_left_out_say_why(item: dict[str, Any], reason: str) -> None:
    outcome = table_entry(item, LATEST, EXPORT)
    assert isinstance(outcome, LeftOut) and outcome.reason == reason
    assert outcome.target == item["target"]


def test_database_level_entries_are_not_tables() -> None:
    assert table_entry({"target": "postgres", "warningMessage": "FAILED_TO_EXTRACT"}, LATEST, EXPORT) is None
    p = plan([{"target": "postgres"}, "junk", entry()], LATEST, EXPORT)
    assert (len(p.registrations), len(p.left_out), p.ignored) == (1, 0, 2)


def test_per_export_names_carry_the_export_and_patterns_place_parts() -> None:
    assert registered(entry(), Naming("analytics")).name == "postgres_public_orders_nightly_2026_12_04"
    custom = Naming("analytics", pattern="raw_<table>_<export>_<schema>", per_export=True)
    assert registered(entry(), custom).name == "raw_orders_nightly_2026_12_04_public"
    assert registered(entry(), Naming("analytics", pattern="<table>", per_export=False)).name == "orders"


def test_names_that_had_to_change_carry_a_hash_of_the_target() -> None:
    a, b = registered(entry("db.public.order-items")), registered(entry("db.public.order items"))
    assert a.name != b.name and a.name.startswith("db_public_order_items_") and GLUE_NAME.fullmatch(a.name)
    long = registered(entry("db.public." + "t" * 300))
    assert len(long.name) == 255 and GLUE_NAME.fullmatch(long.name)


def test_targets_differing_in_case_get_distinct_names() -> None:
    p = plan([entry("db.public.Orders"), entry("db.public.orders")], LATEST, EXPORT)
    names = [r.name for r in p.registrations]
    assert len(set(names)) == 2 and all(n.startswith("db_public_orders_") for n in names)
    assert all(r.table_input["Name"] == r.name for r in p.registrations)


def test_a_pass_plans_its_window_and_counts_the_rest() -> None:
    items = [entry(f"db.public.t{i}") for i in range(7)] + [entry("db.public.T3"), entry("db.public.x", "FAILED")]
    whole = plan(items, LATEST, EXPORT)
    window = plan(items, LATEST, EXPORT, start=2, limit=3)
    assert [r.name for r in window.registrations] == [r.name for r in whole.registrations[2:5]]
    assert window.registrations[1].name.startswith("db_public_t3_")  # its twin comes after the window
    assert (window.total, window.left_out_count, [x.target for x in window.left_out]) == (8, 1, ["db.public.x"])
    assert plan(items, LATEST, EXPORT, start=8, limit=3).registrations == []


# No whitespace or control characters: tables.entries folds their runs into one space (for display), so such a
# target is not kept exactly (Postgres and MySQL names rarely hold them).
_PART = hs.text(
    hs.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="."),
    min_size=1,
    max_size=80,
)


@settings(deadline=None)  # a shared, loaded machine: time is not what is tested
@given(hs.lists(hs.tuples(_PART, _PART, _PART), min_size=1, max_size=8, unique=True), hs.booleans())
def test_any_targets_get_distinct_valid_glue_names(parts: list[tuple[str, str, str]], per_export: bool) -> None:
    naming = Naming("analytics", per_export=per_export)
    p = plan([entry(".".join(t)) for t in parts], naming, EXPORT)
    names = [r.name for r in p.registrations]
    assert len(names) == len(parts) and len(set(names)) == len(names)
    assert all(GLUE_NAME.fullmatch(n) for n in names)
    assert names == [r.name for r in plan([entry(".".join(t)) for t in parts], naming, EXPORT).registrations]


_JSON = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.text(max_size=20),
    lambda inner: hs.lists(inner, max_size=4) | hs.dictionaries(hs.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@settings(deadline=None)
@given(_JSON, hs.text(max_size=40))
def test_any_entry_is_registered_left_out_or_ignored_never_an_exception(item: Any, exported: str) -> None:
    outcomes = [
        table_entry({"target": "db.s.t", "status": "COMPLETE", "schemaMetadata": item}, LATEST, EXPORT),
        table_entry({"target": "db.s.t", "status": "COMPLETE", **entry(columns=[item])}, LATEST, EXPORT),
        table_entry(entry(columns=[column("c", "x", exported)]), LATEST, EXPORT),
    ]
    assert all(o is None or isinstance(o, LeftOut | Registration) for o in outcomes)
    hive = glue_type(exported)
    assert hive is None or re.fullmatch(r"[a-z]+|decimal\(\d+,\d+\)", hive)
