"""entries.py: one info file streamed into table entries with their columns (what the Glue catalog reuses)."""

from __future__ import annotations

import json

import pytest

from rds_export_operator.tables.entries import Column, Malformed, TableEntry, iter_entries

REAL = {
    "tableStatistics": {"partitioningInfo": {"numberOfPartitions": 1, "numberOfCompletedPartitions": 1}},
    "schemaMetadata": {
        "originalTypeMappings": [
            {
                "columnName": "id",
                "originalType": "bigint",
                "expectedExportedType": "int64",
                "originalCharMaxLength": 0,
                "originalNumPrecision": 64,
                "originalDateTimePrecision": 0,
            },
            {"columnName": "amount", "originalType": "numeric", "expectedExportedType": "string"},
            {"originalType": "text"},  # no name: not a column
        ]
    },
    "status": "COMPLETE",
    "sizeGB": 0.0001,
    "target": "postgres.public.orders",
}


def chunks(document: object, size: int) -> list[bytes]:
    data = json.dumps(document).encode()
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_entries_with_their_columns_whatever_the_chunking(size: int) -> None:
    document = {"perTableStatus": [REAL, {"target": "postgres", "warningMessage": "w"}, "odd"]}
    assert list(iter_entries(chunks(document, size))) == [
        TableEntry(
            target="postgres.public.orders",
            status="COMPLETE",
            size_gb=0.0001,
            columns=(
                Column("id", "bigint", "int64", 0, 64, 0),
                Column("amount", "numeric", "string"),
            ),
            columns_dropped=1,  # the nameless one: the catalog must not register a partial schema
        ),
        TableEntry(target="postgres", status="", reason="w", database=True),
        None,
    ]


def test_the_report_can_skip_the_columns() -> None:
    [entry] = iter_entries(chunks({"perTableStatus": [REAL]}, 50), columns=False)
    assert entry is not None and entry.columns == () and entry.status == "COMPLETE"


def test_malformed_bytes_raise_malformed_after_the_entries_before_them() -> None:
    good = json.dumps({"perTableStatus": [REAL]}).encode()[:-2]  # the list and object never close
    found = []
    with pytest.raises(Malformed):
        for entry in iter_entries([good, b", {oops"]):
            found.append(entry)
    assert [e.target for e in found if e] == ["postgres.public.orders"]
