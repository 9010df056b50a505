"""One ``export_tables_info`` file, streamed: its ``perTableStatus`` entries one at a time, with their columns (pure).

RDS's files carry each table's schema (about 6 KB for 30 columns, ``shared/rds-export-api.md``), so an export of
50,000 tables is hundreds of MB: the file is fed to ijson chunk by chunk and each entry is built, handed out and
dropped; nothing holds a whole file. The table report counts the entries; the Glue catalog (issue 26) reads the
columns of the same iterator. Unknown keys are ignored, missing ones tolerated, strings capped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import ijson
from ijson.common import JSONError
from ijson.utils import sendable_list

MAX_TEXT = 256  # characters kept of a target, a type or a warning
MAX_COLUMNS = 4096  # columns kept per table (Postgres allows 1,600, MySQL 4,096); beyond, the entry says so
ENTRY_PATH = "perTableStatus.item"
# Keys seen (or plausible) to carry why an entry was not exported; the first string found wins.
_REASON_KEYS = ("warningMessage", "warning", "reason", "failureReason", "failureCause", "errorMessage", "message")


class Malformed(Exception):
    """The bytes are not the JSON they claim to be (not a verdict about the export: the file is unreadable)."""


def text(value: object, limit: int = MAX_TEXT) -> str:
    """A string from JSON, capped, one line; anything that is not a string is ''."""
    if not isinstance(value, str):
        return ""
    flat = " ".join(value[: limit * 2].split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Column:
    """One ``schemaMetadata.originalTypeMappings`` element: the source column and the Parquet type it became."""

    name: str
    original_type: str
    exported_type: str
    char_max_length: int | None = None
    num_precision: int | None = None
    datetime_precision: int | None = None


@dataclass(frozen=True)
class TableEntry:
    """One ``perTableStatus`` element. ``database``: a database-level entry (``{"target": "postgres",
    "warningMessage": ...}``: no status, statistics or schema), which is not a table."""

    target: str
    status: str  # upper case; "" when the entry has none
    reason: str = ""  # the entry's warning text, if any
    size_gb: float | None = None
    columns: tuple[Column, ...] = ()
    database: bool = False
    # originalTypeMappings elements not kept (not an object, no name, beyond MAX_COLUMNS): the columns are partial
    columns_dropped: int = 0


def iter_entries(chunks: Iterable[bytes], *, columns: bool = True) -> Iterator[TableEntry | None]:
    """The entries of one file, in order; None for an element that is not an entry (no usable target).
    ``columns=False`` skips building the columns (the report only counts).

    Raises :class:`Malformed` for bytes that are not JSON; exceptions from ``chunks`` (I/O) pass through."""
    found: list[Any] = sendable_list()
    coro = ijson.items_coro(found, ENTRY_PATH, use_float=True)
    for chunk in chunks:
        try:
            coro.send(chunk)
        except (JSONError, ValueError, RecursionError) as exc:
            raise Malformed(text(str(exc), 120)) from None
        yield from (entry_of(item, columns=columns) for item in found)
        del found[:]
    try:
        coro.close()
    except (JSONError, ValueError, RecursionError) as exc:
        raise Malformed(text(str(exc), 120)) from None
    yield from (entry_of(item, columns=columns) for item in found)


def entry_of(item: object, *, columns: bool = True) -> TableEntry | None:
    if not isinstance(item, Mapping):
        return None
    raw = item.get("target")
    target = text(raw)
    if not target or not isinstance(raw, str):
        return None
    status = item.get("status")
    # shared/rds-export-api.md: database-level entries have a target and a warning, nothing of a table
    database = status is None and not any(k in item for k in ("tableStatistics", "schemaMetadata", "sizeGB"))
    size = item.get("sizeGB")
    kept, dropped = _columns(item.get("schemaMetadata")) if columns else ((), 0)
    return TableEntry(
        target=target,
        status=text(status, 32).upper()[:32],
        reason=reason_of(item),
        size_gb=float(size) if isinstance(size, int | float) and not isinstance(size, bool) else None,
        columns=kept,
        database=database,
        columns_dropped=dropped,
    )


def reason_of(item: Mapping[str, Any]) -> str:
    for key in _REASON_KEYS:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return text(value)
        if isinstance(value, list):  # e.g. a list of warning strings
            joined = "; ".join(v for v in value[:5] if isinstance(v, str))
            if joined.strip():
                return text(joined)
    return ""


def _columns(schema: object) -> tuple[tuple[Column, ...], int]:
    mappings = schema.get("originalTypeMappings") if isinstance(schema, Mapping) else None
    if not isinstance(mappings, list):
        return (), 0
    kept = tuple(
        Column(
            name=text(m.get("columnName")),
            original_type=text(m.get("originalType"), 64),
            exported_type=text(m.get("expectedExportedType"), 64),
            char_max_length=_int(m.get("originalCharMaxLength")),
            num_precision=_int(m.get("originalNumPrecision")),
            datetime_precision=_int(m.get("originalDateTimePrecision")),
        )
        for m in mappings[:MAX_COLUMNS]
        if isinstance(m, Mapping) and text(m.get("columnName"))
    )
    return kept, len(mappings) - len(kept)


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
