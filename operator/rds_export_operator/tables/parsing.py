"""The export's own info files -> a table report (pure; no I/O, never raises).

RDS writes ``export_info_<identifier>.json`` and ``export_tables_info_<identifier>_from_<n>_to_<m>.json`` next to
the data (``shared/rds-export-api.md``). AWS documents neither as a schema, so everything here is defensive:
unknown keys are ignored, missing keys tolerated, and sizes, counts and string lengths are capped. Input that
cannot be read is a :class:`Refused` outcome with a reason, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_FILE_BYTES = 8 * 1024 * 1024  # one info file; real ones are a few hundred bytes per table
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # all table files of one export together
MAX_FILES = 500  # table files per export
MAX_ENTRIES = 200_000  # tables counted per export; beyond that the report says it is incomplete
MAX_TEXT = 256  # characters kept of a target or a warning
MAX_PROBLEMS = 20  # failed or skipped tables listed by name

COMPLETE, FAILED, SKIPPED = "COMPLETE", "FAILED", "SKIPPED"
OUTCOMES = (COMPLETE, FAILED, SKIPPED)
# Per-table keys that have been seen to carry the reason a table was not exported (first string found wins).
_REASON_KEYS = ("warningMessage", "warning", "reason", "failureReason", "failureCause", "errorMessage", "message")
_RANK = {FAILED: 3, SKIPPED: 2, COMPLETE: 0}  # a target listed twice keeps its worst outcome; others rank 1


@dataclass(frozen=True)
class Refused:
    """The files cannot be turned into a report. ``reason`` is a condition reason (Malformed, TooLarge)."""

    reason: str
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
    truncated: bool = False  # more than MAX_ENTRIES tables or MAX_FILES files: the counts cover only a part
    ignored: int = 0  # entries without a usable target

    @property
    def all_complete(self) -> bool:
        return self.total > 0 and self.complete == self.total and not self.truncated

    @property
    def summary(self) -> str:
        """For the TABLES printer column: complete/total."""
        return f"{self.complete}/{self.total}{'+' if self.truncated else ''}"


def text(value: object, limit: int = MAX_TEXT) -> str:
    """A string from JSON, capped, one line; anything that is not a string is ''."""
    if not isinstance(value, str):
        return ""
    flat = " ".join(value[: limit * 2].split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def tables_file_pattern(identifier: str) -> re.Pattern[str]:
    """The name of a table file (without its folder); group ``n`` orders the files."""
    return re.compile(rf"export_tables_info_{re.escape(identifier)}_from_(?P<n>\d{{1,12}})_to_(?P<m>\d{{1,12}})\.json")


def load_json(name: str, data: bytes) -> Any | Refused:
    if len(data) > MAX_FILE_BYTES:
        return Refused("TooLarge", f"{text(name)} is larger than {MAX_FILE_BYTES} bytes; not read")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit, nesting
        return Refused("Malformed", f"{text(name)} is not valid JSON: {text(str(exc), 120)}")


def parse_export_info(name: str, data: bytes) -> dict[str, Any] | Refused:
    """The export_info file as a dict (only a JSON object is accepted; its keys are not interpreted further)."""
    try:
        loaded = load_json(name, data)
    except Exception as exc:  # the module's promise: never an exception, whatever the bytes
        return Refused("Malformed", f"{text(name)} could not be read: {type(exc).__name__}")
    if isinstance(loaded, Refused):
        return loaded
    if not isinstance(loaded, dict):
        return Refused("Malformed", f"{text(name)} is not a JSON object")
    return loaded


@dataclass
class _Tally:
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (shown target, status)
    reasons: dict[str, str] = field(default_factory=dict)  # key -> reason, for problems only
    truncated: bool = False
    ignored: int = 0

    def add(self, entry: object) -> None:
        if not isinstance(entry, Mapping):
            self.ignored += 1
            return
        raw = entry.get("target")
        target = text(raw)
        if not target or not isinstance(raw, str):
            self.ignored += 1
            return
        # Keyed by the whole name (two long names may share their shortened form), bounded in memory.
        key = raw if len(raw) <= 1024 else raw[:512] + hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()
        status = text(entry.get("status"), 32).upper()[:32] or "UNKNOWN"
        old = self.outcomes.get(key)
        if old is None and len(self.outcomes) >= MAX_ENTRIES:
            self.truncated = True
            return
        if old is not None and _RANK.get(old[1], 1) >= _RANK.get(status, 1):
            return
        self.outcomes[key] = (target, status)
        if status != COMPLETE:
            self.reasons[key] = _reason(entry)

    def report(self) -> Report:
        counts = dict.fromkeys(OUTCOMES, 0)
        for _, status in self.outcomes.values():
            if status in counts:
                counts[status] += 1
        problems = sorted(
            (Problem(t, s, self.reasons.get(k, "")) for k, (t, s) in self.outcomes.items() if s != COMPLETE),
            key=lambda p: -_RANK.get(p.status, 1),  # stable: file order within each outcome
        )
        return Report(
            total=len(self.outcomes),
            complete=counts[COMPLETE],
            failed=counts[FAILED],
            skipped=counts[SKIPPED],
            problems=tuple(problems[:MAX_PROBLEMS]),
            truncated=self.truncated,
            ignored=self.ignored,
        )


def _reason(entry: Mapping[str, Any]) -> str:
    for key in _REASON_KEYS:
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return text(value)
        if isinstance(value, list):  # e.g. a list of warning strings
            joined = "; ".join(v for v in value[:5] if isinstance(v, str))
            if joined.strip():
                return text(joined)
    return ""


def build_report(files: Iterable[tuple[str, bytes]], *, more_files: bool = False) -> Report | Refused:
    """A report from the table files (name, content) in order. ``more_files``: the listing was capped.

    One malformed or oversized file refuses the whole report: counts from part of the files would look complete.
    """
    try:
        tally = _Tally(truncated=more_files)
        total_bytes = 0
        for index, (name, data) in enumerate(files):
            if index >= MAX_FILES:
                tally.truncated = True
                break
            total_bytes += len(data)
            if total_bytes > MAX_TOTAL_BYTES:
                return Refused("TooLarge", f"the table files are larger than {MAX_TOTAL_BYTES} bytes together")
            loaded = load_json(name, data)
            if isinstance(loaded, Refused):
                return loaded
            if not isinstance(loaded, dict):
                return Refused("Malformed", f"{text(name)} is not a JSON object")
            entries = loaded.get("perTableStatus")
            if entries is None:
                continue  # tolerated: a file without the key lists no tables
            if not isinstance(entries, list):
                return Refused("Malformed", f"{text(name)}: perTableStatus is not a list")
            for entry in entries:
                tally.add(entry)
        return tally.report()
    except Exception as exc:  # the module's promise: never an exception, whatever the bytes
        return Refused("Malformed", f"the table files could not be read: {type(exc).__name__}")
