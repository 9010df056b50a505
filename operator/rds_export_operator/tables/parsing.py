"""The export's own info files and the task's WarningMessage -> a table report (pure; no I/O, never raises).

RDS writes ``export_info_<identifier>.json`` and ``export_tables_info_<identifier>_from_<n>_to_<m>.json`` next to
the data, and lists skipped tables in the task's ``WarningMessage`` (``shared/rds-export-api.md``). AWS documents
none of them as a schema, so everything here is defensive: unknown keys are ignored, missing keys tolerated, and
counts and string lengths are capped. The entries themselves are streamed (``entries.py``); this module keeps only
aggregates and a capped list of names, so memory does not grow with the export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rds_export_operator.tables.entries import Malformed, TableEntry, iter_entries, reason_of, text

MAX_INFO_BYTES = 1024 * 1024  # export_info: a few hundred bytes in practice
MAX_FILES = 10_000  # table files per export (50,000 tables at 100 per file is 500)
MAX_ENTRIES = 1_000_000  # tables counted per export; beyond that the report says it is incomplete
MAX_PROBLEMS = 20  # failed or skipped tables (and database-level entries) listed by name
MAX_WARNED = 10_000  # skipped tables from WarningMessage kept by name (to merge with the files)
MAX_GENERAL = 10  # general reasons and skipped objectives kept

COMPLETE, FAILED, SKIPPED = "COMPLETE", "FAILED", "SKIPPED"
_RANK = {FAILED: 0, SKIPPED: 1}  # problems listed failed first, then skipped, then any other status


@dataclass(frozen=True)
class Refused:
    """The files cannot be turned into a report. ``reason`` is a condition reason (Malformed, TooLarge)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Incomplete:
    """The files are not (yet) all there: no verdict, look again."""

    message: str


@dataclass(frozen=True)
class Problem:
    target: str
    status: str  # FAILED, SKIPPED, or whatever (capped) status text the file had
    reason: str = ""


@dataclass(frozen=True)
class Report:
    total: int
    complete: int
    failed: int
    skipped: int
    problems: tuple[Problem, ...] = ()  # failed first, then skipped, then other statuses; at most MAX_PROBLEMS
    truncated: bool = False  # more than MAX_ENTRIES tables: the counts cover only a part
    ignored: int = 0  # entries without a usable target
    databases: tuple[Problem, ...] = ()  # database-level entries (not tables), at most MAX_PROBLEMS
    database_count: int = 0
    general: tuple[str, ...] = ()  # WarningMessage's general reasons and skipped objectives
    exported_gb: float | None = None  # export_info's totalExportedDataInGB

    @property
    def all_complete(self) -> bool:
        return self.total > 0 and self.complete == self.total and not self.truncated

    @property
    def summary(self) -> str:
        """For the TABLES printer column: complete/total."""
        return f"{self.complete}/{self.total}{'+' if self.truncated else ''}"


# -- the files' names: ranges that must tile 1..M -----------------------------------------------------------------


@dataclass(frozen=True)
class TableFile:
    name: str  # relative to the export folder
    key: str
    size: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def tables_file_pattern(identifier: str) -> re.Pattern[str]:
    """The name of a table file (without its folder)."""
    return re.compile(rf"export_tables_info_{re.escape(identifier)}_from_(?P<n>\d{{1,12}})_to_(?P<m>\d{{1,12}})\.json")


def table_files(identifier: str, folder: str, listed: Iterable[tuple[str, int]]) -> list[TableFile]:
    """The listed keys (key, size) that name table files of this export, ordered by their ranges."""
    pattern = tables_file_pattern(identifier)
    found = [
        TableFile(key[len(folder) :], key, size, int(m.group("n")), int(m.group("m")))
        for key, size in listed
        if key.startswith(folder) and (m := pattern.fullmatch(key[len(folder) :]))
    ]
    return sorted(found, key=lambda f: (f.first, f.last, f.key))


def gap(files: list[TableFile]) -> str | None:
    """Why the files' ranges do not tile 1..M (a file missing, overlapping or out of order), or None."""
    expected = 1
    for f in files:
        if f.last < f.first:
            return f"{f.name} names an empty range"
        if f.first > expected:
            return f"entries {expected}..{f.first - 1} are missing (the next file is {f.name})"
        if f.first < expected:
            return f"{f.name} overlaps entries before {expected}"
        expected = f.last + 1
    return None if files else "no table files"


def range_mismatch(file: TableFile, entries: int, tables: int) -> str | None:
    """Whether a file's entries match its name's range. Unknown whether RDS numbers database-level entries
    (shared/rds-export-api.md): either count is accepted."""
    if file.count in (entries, tables):
        return None
    return f"{file.name} names {file.count} entries but holds {entries}"


class Mismatch(Exception):
    """A file's entries do not match its name's range (cut short, or being replaced): no verdict, look again."""


def file_entries(file: TableFile, chunks: Iterable[bytes], *, columns: bool = True) -> Iterator[TableEntry | None]:
    """One table file's entries, streamed (``entries.iter_entries``); ``Mismatch`` once the file has been read
    to its end if they do not match its range, ``Malformed`` for bytes that are not JSON. The chunks are closed
    however the iteration ends (a stream read only in part releases its connection)."""
    entries = tables = 0
    try:
        for entry in iter_entries(chunks, columns=columns):
            entries += 1
            tables += entry is not None and not entry.database
            yield entry
    finally:
        getattr(chunks, "close", lambda: None)()
    if (mismatch := range_mismatch(file, entries, tables)) is not None:
        raise Mismatch(mismatch)


# -- export_info ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportInfo:
    status: str  # upper case; "" when missing
    exported_gb: float | None


def parse_export_info(name: str, data: bytes) -> ExportInfo | Refused:
    """The export_info file: its status and totalExportedDataInGB (only a JSON object is accepted)."""
    if len(data) > MAX_INFO_BYTES:
        return Refused("TooLarge", f"{text(name)} is larger than {MAX_INFO_BYTES} bytes; not read")
    try:
        loaded = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit, nesting
        return Refused("Malformed", f"{text(name)} is not valid JSON: {text(str(exc), 120)}")
    if not isinstance(loaded, dict):
        return Refused("Malformed", f"{text(name)} is not a JSON object")
    gb = loaded.get("totalExportedDataInGB")
    exported = float(gb) if isinstance(gb, int | float) and not isinstance(gb, bool) and gb >= 0 else None
    return ExportInfo(text(loaded.get("status"), 32).upper()[:32], exported)


def not_final(info: ExportInfo, export_status: str) -> str | None:
    """Why export_info is not yet the one written at the end of the task (RDS writes it at the start too), or
    None. A FAILED task's report may come from a FAILED export_info."""
    accepted = ("COMPLETE",) if export_status == "COMPLETE" else ("COMPLETE", "FAILED")
    if info.status in accepted:
        return None
    return f"export_info says {info.status or 'no status'}, the task {export_status}: its final version is not written"


# -- WarningMessage ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Warnings:
    skipped: Mapping[str, str] = field(default_factory=dict)  # target -> reason; at most MAX_WARNED
    skipped_count: int = 0  # all skipped tables listed, also beyond MAX_WARNED
    general: tuple[str, ...] = ()


def parse_warning(value: object) -> Warnings:
    """The task's WarningMessage: ``{"skippedTables": [...], "skippedObjectives": [...], "general": [{"reason":
    ...}]}`` (shared/rds-export-api.md). The shape of one skipped element is not public: a string is the target;
    an object's target is its first of target/table/tableName/name, its reason the first reason-like key.
    Text that is not that JSON is kept as one general note."""
    if not isinstance(value, str) or not value.strip():
        return Warnings()
    try:
        loaded = json.loads(value)
    except (ValueError, RecursionError):
        return Warnings(general=(text(value),))
    if not isinstance(loaded, Mapping):
        return Warnings(general=(text(value),))
    skipped: dict[str, str] = {}
    listed = loaded.get("skippedTables")
    count = 0
    for item in listed if isinstance(listed, list) else []:
        target, reason = _skipped(item)
        if not target:
            continue
        count += 1
        if len(skipped) < MAX_WARNED:
            skipped.setdefault(target, reason)
    general = [r for r in (_note(g) for g in _list(loaded.get("general"))) if r]
    general += [f"skipped objective {o}" for o in (_note(g) for g in _list(loaded.get("skippedObjectives"))) if o]
    return Warnings(skipped, max(count, len(skipped)), tuple(general[:MAX_GENERAL]))


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _skipped(item: object) -> tuple[str, str]:
    if isinstance(item, str):
        return text(item), ""
    if not isinstance(item, Mapping):
        return "", ""
    target = next((text(item[k]) for k in ("target", "table", "tableName", "name") if text(item.get(k))), "")
    reasons = item.get("reasons")
    reason = reason_of(item) or (
        "; ".join(_note(r) for r in reasons[:5] if _note(r)) if isinstance(reasons, list) else ""
    )
    return target, text(reason)


def _note(item: object) -> str:
    if isinstance(item, Mapping):
        return text(item.get("reason")) or reason_of(item) or text(item.get("target"))
    return text(item)


# -- the tally --------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Aggregates over the streamed entries of all files, merged with WarningMessage's skipped tables."""

    warnings: Warnings = field(default_factory=Warnings)
    tables: int = 0
    complete: int = 0
    failed: int = 0
    skipped: int = 0
    ignored: int = 0
    truncated: bool = False
    database_count: int = 0
    databases: list[Problem] = field(default_factory=list)
    problems: list[list[Problem]] = field(default_factory=lambda: [[], [], []])  # failed, skipped, other
    warned_seen: set[str] = field(default_factory=set)  # WarningMessage's skipped tables also in the files

    def add(self, entry: TableEntry | None) -> None:
        if entry is None:
            self.ignored += 1
            return
        if entry.database:
            self.database_count += 1
            if len(self.databases) < MAX_PROBLEMS:
                self.databases.append(Problem(entry.target, "SKIPPED", entry.reason))
            return
        if self.tables >= MAX_ENTRIES:
            self.truncated = True
            return
        self.tables += 1
        status, reason = entry.status or "UNKNOWN", entry.reason
        if entry.target in self.warnings.skipped:  # AWS says it was skipped, whatever the file says
            self.warned_seen.add(entry.target)
            if status != FAILED:
                status, reason = SKIPPED, self.warnings.skipped[entry.target] or reason
        if status == COMPLETE:
            self.complete += 1
            return
        self.failed += status == FAILED
        self.skipped += status == SKIPPED
        self._problem(Problem(entry.target, status, reason))

    def _problem(self, problem: Problem) -> None:
        bucket = self.problems[_RANK.get(problem.status, 2)]
        if len(bucket) < MAX_PROBLEMS:
            bucket.append(problem)

    def report(self, exported_gb: float | None = None) -> Report:
        unseen = [t for t in self.warnings.skipped if t not in self.warned_seen]
        for target in unseen:
            self._problem(Problem(target, SKIPPED, self.warnings.skipped[target]))
        extra = len(unseen) + self.warnings.skipped_count - len(self.warnings.skipped)
        problems = [p for bucket in self.problems for p in bucket][:MAX_PROBLEMS]
        return Report(
            total=self.tables + extra,
            complete=self.complete,
            failed=self.failed,
            skipped=self.skipped + extra,
            problems=tuple(problems),
            truncated=self.truncated,
            ignored=self.ignored,
            databases=tuple(self.databases),
            database_count=self.database_count,
            general=self.warnings.general,
            exported_gb=exported_gb,
        )


def build_report(
    files: Iterable[tuple[TableFile, Iterable[bytes]]],
    warnings: Warnings | None = None,
    exported_gb: float | None = None,
) -> Report | Refused | Incomplete:
    """A report from the table files (in range order, each as chunks of bytes, read one file at a time) and the
    task's warnings. A file whose entries do not match its name's range is Incomplete; one malformed file
    refuses the whole report (counts from part of the files would look complete). Exceptions from the chunks
    (I/O) pass through; nothing else raises."""
    tally = Tally(warnings or Warnings())
    for file, chunks in files:
        try:
            for entry in file_entries(file, chunks, columns=False):
                tally.add(entry)
        except Malformed as exc:
            return Refused("Malformed", f"{file.name} is not valid JSON: {exc}")
        except Mismatch as exc:
            return Incomplete(str(exc))
    return tally.report(exported_gb)
