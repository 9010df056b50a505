"""A 20,000-table export through catalog/register.py: a pass holds its window and the names, never the schemas."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from localdev.standin.rds_exports import Task
from localdev.standin.s3 import Shape, TableFiles
from rds_export_operator.aws.identity import Identity
from rds_export_operator.aws.s3 import CHUNK, S3Object
from rds_export_operator.catalog.register import CatalogSpec, Registrar, Where

TABLES, COLUMNS = 20_000, 30
FOLDER = "rds/exp-big/"
WHERE = Where("eu-west-1", "exports", FOLDER, "exp-big", "RdsExportTask/team-a/big")


class Files:
    """The stand-in's files for the export, held as bytes and streamed in S3.stream's chunks."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        task = Task(
            "exp-big", "arn", "SNAPSHOT", "exports", "role", "key", "rds", (), "1", "eu-west-1", now, now, "COMPLETE"
        )
        shape = Shape(count=TABLES, columns=COLUMNS, per_file=500)  # about 6 KB per table, as RDS writes them
        generated = TableFiles(shapes=[("exp-big", shape)]).files_of(task)
        self.data = {FOLDER + name: body for name, body in generated}

    def list(
        self, region: str, bucket: str, prefix: str, *, limit: int, identity: Identity | None = None
    ) -> tuple[list[S3Object], bool]:
        return [S3Object(k, len(v)) for k, v in sorted(self.data.items()) if k.startswith(prefix)], False

    def stream(
        self, region: str, bucket: str, key: str, *, max_bytes: int, identity: Identity | None = None
    ) -> Iterator[bytes] | None:
        body = self.data.get(key)
        return None if body is None else (body[i : i + CHUNK] for i in range(0, len(body), CHUNK))


class Glue:
    def __init__(self) -> None:
        self.created: list[str] = []
        self.columns = 0

    def ensure_database(self, region: str, name: str, **_: Any) -> bool:
        return True

    def create_table(self, region: str, database: str, table_input: dict[str, Any], **_: Any) -> None:
        self.created.append(table_input["Name"])
        self.columns += len(table_input["StorageDescriptor"]["Columns"])


def test_a_pass_over_20000_tables_stays_small_and_the_passes_register_them_all() -> None:
    files, glue = Files(), Glue()
    sizes = [len(v) for k, v in files.data.items() if "export_tables_info" in k]
    spec = CatalogSpec("analytics")
    tracemalloc.start()
    try:
        first = Registrar(glue, files).register(spec, WHERE, {})  # the default 500 a pass, the files all read
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first.status["catalog"]["next"] == 500 and first.retry_after is not None
    # Well below one file's share of the export: each 500-table file is about 2.9 MB, the export 114 MB.
    assert sum(sizes) > 100 * 1024 * 1024 and max(sizes) > 2 * 1024 * 1024
    assert peak < 16 * 1024 * 1024, peak
    # The rest in one more (untraced) pass from the cursor: the stream skips what the first pass registered.
    status = dict(first.status)
    last = Registrar(glue, files, batch=TABLES).register(spec, WHERE, status)
    status.update(last.status)
    assert status["conditions"][0].reason == "Registered" and last.retry_after is None
    assert status["catalog"]["tablesRegistered"] == TABLES == len(set(glue.created)) == len(glue.created)
    assert glue.columns == TABLES * COLUMNS
