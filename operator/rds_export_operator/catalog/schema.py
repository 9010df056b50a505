"""One table entry of an export's ``export_tables_info_*.json`` -> a Glue ``TableInput``, or why it is left out
(pure; no I/O, never raises).

The entry is the table report's streamed ``tables.entries.TableEntry`` (``shared/rds-export-api.md``): ``target``
(``db.schema.table``, or ``db.table`` for MySQL, whose schema is the database), ``status`` and the columns of
``schemaMetadata.originalTypeMappings``. Columns are typed from ``exported_type`` (``expectedExportedType``:
what RDS wrote into Parquet; Postgres dates, timestamps and numerics arrive as strings, ``int64`` is ``bigint``),
never from the original type, which is kept as the column's comment. Entries without a dot in their target are
database-level entries, not tables: they are ignored.

The type text has been seen as ``int32``, ``int64``, ``double``, ``boolean`` and ``binary (UTF8)`` (code that
reads real exports); the other forms follow Parquet's own notation (a primitive, an optional length, an optional
logical annotation in parentheses) and are unverified. An unknown type leaves the table out rather than guess.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from rds_export_operator.tables.entries import Column, TableEntry

DEFAULT_PATTERN = "<db>_<schema>_<table>"
PLACEHOLDERS = ("<db>", "<schema>", "<table>", "<export>")
MAX_NAME = 255  # Glue's limit for database, table and column names
MAX_COMMENT = 255  # Glue's limit for a column comment
MAX_LEFT_OUT = 20  # tables left out kept by name (the rest are counted)
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
# Table parameters that say which object registered a table and which export it reads: the operator changes or
# deletes only tables whose owner is the object (or schedule) acting.
OWNER, EXPORT, TARGET = "rdsexport.dev/owner", "rdsexport.dev/export", "rdsexport.dev/target"
SNAPSHOT_TIME = "rdsexport.dev/snapshotTime"  # Latest: a table never moves back to an older snapshot

_TYPE = re.compile(r"(?P<primitive>[a-z0-9_]+)\s*(\(\s*(?P<length>\d{1,6})\s*\))?\s*(\((?P<logical>.*)\))?")
_DECIMAL = re.compile(r"decimal\s*\(\s*(?P<p>\d{1,3})\s*,\s*(?P<s>\d{1,3})\s*\)")
_PRIMITIVES = {
    "boolean": "boolean",
    "int32": "int",
    "int64": "bigint",
    "int96": "timestamp",  # Parquet's legacy timestamp
    "float": "float",
    "double": "double",
    "binary": "binary",
    "byte_array": "binary",
    "fixed_len_byte_array": "binary",
}
_BYTES = frozenset({"binary", "byte_array", "fixed_len_byte_array"})
_STRING_ANNOTATIONS = frozenset({"utf8", "string", "enum", "json"})
_INT_ANNOTATIONS = {"int_8": "tinyint", "int_16": "smallint", "int_32": "int", "int_64": "bigint"}
_INT_ANNOTATIONS |= {"uint_8": "smallint", "uint_16": "int", "uint_32": "bigint"}
_NAME_CHARS = re.compile(r"[^a-z0-9_]+")


@functools.lru_cache(maxsize=1024)  # a pass maps every column of the export: a few dozen distinct type texts
def glue_type(exported: object) -> str | None:
    """The Hive type Glue and Athena read a column of this Parquet type as, or None if it is not known."""
    if not isinstance(exported, str):
        return None
    match = _TYPE.fullmatch(exported.strip().lower())
    if not match:
        return None
    primitive, logical = match["primitive"], (match["logical"] or "").strip()
    if primitive not in _PRIMITIVES:
        return None
    if not logical:
        return _PRIMITIVES[primitive]
    if decimal := _DECIMAL.fullmatch(logical):
        precision, scale = int(decimal["p"]), int(decimal["s"])
        ok = primitive in _BYTES | {"int32", "int64"} and 1 <= precision <= 38 and scale <= precision
        return f"decimal({precision},{scale})" if ok else None  # above 38 digits RDS writes strings
    if logical in _STRING_ANNOTATIONS:
        return "string" if primitive in _BYTES else None
    if logical == "date":
        return "date" if primitive == "int32" else None
    if logical.startswith("timestamp"):
        return "timestamp" if primitive in ("int64", "int96") else None
    if logical in _INT_ANNOTATIONS:
        return _INT_ANNOTATIONS[logical] if primitive in ("int32", "int64") else None
    if logical in ("bson", "uuid"):
        return "binary" if primitive in _BYTES else None
    return None  # time, intervals, unsigned 64-bit, annotations not seen: leave the table out, do not guess


@dataclass(frozen=True)
class Naming:
    """How tables are named and where they are registered. ``pattern`` holds the placeholders; ``export`` is
    appended (``_<export>``) when ``per_export`` and the pattern does not place it."""

    database: str
    pattern: str = DEFAULT_PATTERN
    per_export: bool = True


@dataclass(frozen=True)
class Export:
    """The export being registered: its identifier, its folder (``s3://bucket/folder``, folder ending in
    ``<identifier>/``) and the owner written into each table's parameters."""

    identifier: str
    bucket: str
    folder: str
    owner: str
    snapshot_time: str = ""  # the exported snapshot's creation time (RFC 3339), "" if unknown


@dataclass(frozen=True)
class Registration:
    target: str
    name: str
    table_input: dict[str, Any]


@dataclass(frozen=True)
class LeftOut:
    target: str
    reason: str  # NotComplete, NoSchema, UnknownType, BadColumn, BadTarget
    message: str


@dataclass
class Plan:
    """One pass's share of an export: its registrations from ``start`` on (at most ``limit``), how many the
    export has in all, and the tables left out (the first MAX_LEFT_OUT by name, all counted)."""

    registrations: list[Registration] = field(default_factory=list)
    total: int = 0
    left_out: list[LeftOut] = field(default_factory=list)
    left_out_count: int = 0
    ignored: int = 0  # database-level entries and entries without a target


def split_target(target: str) -> tuple[str, str, str] | None:
    """(db, schema, table) of ``db.schema.table`` or ``db.table`` (MySQL: the schema is the database)."""
    parts = target.split(".")
    if len(parts) == 2:
        parts = [parts[0], parts[0], parts[1]]
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def sanitize(name: str) -> str:
    """A part of a Glue name: lower case, runs of anything but letters, digits and ``_`` become one ``_``."""
    return _NAME_CHARS.sub("_", name.lower())


def table_name(target: str, naming: Naming, export: str) -> str | None:
    """The Glue table name for ``target``; a part that had to change (beyond lower case) or a name too long gets
    a hash of the target, so two targets never share a name by sanitising."""
    parts = split_target(target)
    if parts is None:
        return None
    values = dict(zip(("<db>", "<schema>", "<table>"), parts, strict=True))
    lossy = any(sanitize(v) != v.lower() for v in values.values())
    values = {k: sanitize(v) for k, v in values.items()} | {"<export>": sanitize(export)}
    pattern = naming.pattern
    if naming.per_export and "<export>" not in pattern:
        pattern += "_<export>"
    name = re.sub("|".join(map(re.escape, PLACEHOLDERS)), lambda m: values[m.group(0)], pattern)
    if lossy or len(name) > MAX_NAME:
        name = with_hash(name, target)
    return name


def with_hash(name: str, target: str) -> str:
    digest = hashlib.sha256(target.encode("utf-8", "replace")).hexdigest()[:8]
    return f"{name[: MAX_NAME - len(digest) - 1]}_{digest}"


def table_entry(entry: TableEntry, naming: Naming, export: Export) -> Registration | LeftOut | None:
    """One entry of ``perTableStatus`` -> what to register; None for a database-level entry."""
    target = entry.target
    if "." not in target:
        return None
    shown = target[:256]
    parts = split_target(target)
    name = table_name(target, naming, export.identifier)
    if parts is None or name is None:
        return LeftOut(shown, "BadTarget", f"{shown}: not database.schema.table or database.table")
    if entry.status != "COMPLETE":
        return LeftOut(shown, "NotComplete", f"{shown}: {entry.status or 'no status'}, not COMPLETE")
    if entry.columns_dropped:  # a nameless or surplus column: a partial schema would misread the Parquet files
        return LeftOut(shown, "NoSchema", f"{shown}: {entry.columns_dropped} column entries cannot be read")
    if not entry.columns:
        return LeftOut(shown, "NoSchema", f"{shown}: the export lists no columns for it")
    columns = []
    for mapping in entry.columns:
        column = _column(mapping, shown)
        if isinstance(column, LeftOut):
            return column
        columns.append(column)
    duplicates = [n for n, count in Counter(c["Name"] for c in columns).items() if count > 1]
    if duplicates:
        return LeftOut(shown, "BadColumn", f"{shown}: columns differ only in case: {duplicates[0]}")
    db, schema, table = parts
    location = f"s3://{export.bucket}/{export.folder}{db}/{schema}.{table}/"
    return Registration(
        target,
        name,
        {
            "Name": name,
            "Description": f"{target[:1024]} from RDS export {export.identifier}",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {
                "classification": "parquet",
                "EXTERNAL": "TRUE",
                OWNER: export.owner,
                EXPORT: export.identifier,
                TARGET: target[:1024],
                **({SNAPSHOT_TIME: export.snapshot_time} if export.snapshot_time else {}),
            },
            "PartitionKeys": [],  # RDS's partitioningInfo is extraction parallelism, not Hive partitions
            "StorageDescriptor": {
                "Columns": columns,
                "Location": location,  # the table's folder: every batch folder under it
                "InputFormat": PARQUET_INPUT,
                "OutputFormat": PARQUET_OUTPUT,
                "Compressed": True,  # part-*.gz.parquet
                "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
            },
        },
    )


def _column(column: Column, target: str) -> dict[str, str] | LeftOut:
    name = column.name
    if not 0 < len(name) <= MAX_NAME or not name.isprintable():
        return LeftOut(target, "BadColumn", f"{target}: a column name Glue cannot hold: {name[:64]!r}")
    hive = glue_type(column.exported_type)
    if hive is None:
        shown = column.exported_type[:64]
        return LeftOut(target, "UnknownType", f"{target}: column {name[:64]} has exported type {shown!r}")
    return {"Name": name.lower(), "Type": hive, "Comment": _comment(column)}


def _comment(column: Column) -> str:
    """The original type, with its length or precision when the export gives one (e.g. varchar(64))."""
    original, length, precision = column.original_type, column.char_max_length, column.num_precision
    if length is not None and length > 0:
        original += f"({length})"
    elif precision is not None and precision > 0 and "int" not in original and "double" not in original:
        original += f"({precision})"
    return original[:MAX_COMMENT]


def plan(
    entries: Iterable[TableEntry | None], naming: Naming, export: Export, *, start: int = 0, limit: int | None = None
) -> Plan:
    """An export's entries (streamed) -> its registrations ``start`` .. ``start + limit`` (in entry order, the
    same for the same files), how many there are, and what is left out (with why). Two targets that still share
    a name (they differ only in case, or the pattern drops a part) both get a hash of their target: known only
    once every entry is seen, so every name is counted (names, not schemas: a few MB for 50,000 tables)."""
    result = Plan()
    taken: Counter[str] = Counter()
    for entry in entries:
        outcome = table_entry(entry, naming, export) if entry is not None else None
        if outcome is None:
            result.ignored += 1
        elif isinstance(outcome, LeftOut):
            result.left_out_count += 1
            if len(result.left_out) < MAX_LEFT_OUT:
                result.left_out.append(outcome)
        else:
            taken[outcome.name] += 1
            if result.total >= start and (limit is None or result.total < start + limit):
                result.registrations.append(outcome)
            result.total += 1
    for index, registration in enumerate(result.registrations):
        if taken[registration.name] > 1:
            name = with_hash(registration.name, registration.target)
            table_input = registration.table_input | {"Name": name}
            result.registrations[index] = replace(registration, name=name, table_input=table_input)
    return result
