"""parsing.py: the export's info files and WarningMessage -> a table report; defensive against anything the bytes
may hold, complete only when the files' ranges say so, bounded in memory whatever the export's size."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from rds_export_operator.tables import parsing as tables
from rds_export_operator.tables.entries import MAX_TEXT
from rds_export_operator.tables.parsing import (
    ExportInfo,
    Incomplete,
    Refused,
    Report,
    TableFile,
    Warnings,
    build_report,
    gap,
    not_final,
    parse_export_info,
    parse_warning,
    table_files,
    tables_file_pattern,
)

ID = "nightly-0123456789"
DATABASE = {"target": "postgres", "warningMessage": "no tables"}  # a database-level entry, not a table


def file_of(first: int, last: int, size: int = 1) -> TableFile:
    name = f"export_tables_info_{ID}_from_{first}_to_{last}.json"
    return TableFile(name, f"p/{ID}/{name}", size, first, last)


def tables_file(entries: list[Any], first: int = 1, last: int | None = None) -> tuple[TableFile, list[bytes]]:
    """A file named for its entries (or ``last``), its content in small chunks (as a stream arrives)."""
    data = json.dumps({"perTableStatus": entries}).encode()
    return file_of(first, last if last is not None else first + len(entries) - 1), [
        data[i : i + 7] for i in range(0, len(data), 7)
    ]


def entry(target: str, status: str = "COMPLETE", **extra: Any) -> dict[str, Any]:
    return {"target": target, "status": status, **extra}


def report(*files: tuple[TableFile, list[bytes]], warning: str | None = None) -> Report:
    result = build_report(files, parse_warning(warning))
    assert isinstance(result, Report), result
    return result


def test_all_complete() -> None:
    r = report(tables_file([entry("db.public.a"), entry("db.public.b"), entry("db.public.c")]))
    assert (r.total, r.complete, r.failed, r.skipped) == (3, 3, 0, 0)
    assert r.all_complete and r.summary == "3/3" and r.problems == ()


def test_a_database_level_entry_is_reported_apart_never_as_a_table() -> None:
    # Fails on the base code: the entry counted as a fourth table, not complete ("3/4", TablesIncomplete).
    r = report(tables_file([DATABASE, entry("postgres.public.a"), entry("postgres.public.b"), entry("p.public.c")]))
    assert (r.total, r.complete, r.database_count) == (3, 3, 1)
    assert r.all_complete and r.summary == "3/3"
    assert [(d.target, d.reason) for d in r.databases] == [("postgres", "no tables")]


def test_real_shape_with_statistics_schema_and_unknown_keys() -> None:
    real = {
        "tableStatistics": {"partitioningInfo": {"numberOfPartitions": 1, "numberOfCompletedPartitions": 1}},
        "schemaMetadata": {"originalTypeMappings": [{"columnName": "id", "originalType": "bigint"}]},
        "status": "COMPLETE",
        "sizeGB": 0.25,
        "target": "postgres.public.orders",
        "somethingNew": [1, 2, {"x": None}],
    }
    data = json.dumps({"perTableStatus": [real], "newKey": 1}).encode()
    r = report((file_of(1, 1), [data]))
    assert (r.total, r.complete) == (1, 1)


def test_failed_and_other_statuses_with_their_reasons_failed_first() -> None:
    r = report(
        tables_file(
            [
                entry("db.public.ok"),
                entry("db.public.skip", "SKIPPED", warningMessage="unsupported type"),
                entry("db.public.bad", "FAILED", reason="permission denied for table bad"),
                entry("db.public.odd", "in_progress"),
            ]
        )
    )
    assert (r.total, r.complete, r.failed, r.skipped) == (4, 1, 1, 1)
    assert not r.all_complete and r.summary == "1/4"
    assert [(p.target, p.status, p.reason) for p in r.problems] == [
        ("db.public.bad", "FAILED", "permission denied for table bad"),
        ("db.public.skip", "SKIPPED", "unsupported type"),
        ("db.public.odd", "IN_PROGRESS", ""),
    ]


def test_skipped_tables_come_from_the_warning_message_merged_with_the_files() -> None:
    # Fails on the base code: WarningMessage was never read, the report said "all 2 tables exported".
    warning = json.dumps(
        {
            "skippedTables": [
                {"target": "db.public.secret", "reason": "PERMISSIONS_DO_NOT_EXIST"},
                "db.public.weird",  # the element's shape is not public: a plain name is accepted too
                {"table": "db.public.listed", "reasons": [{"reason": "COLUMN_WITH_UNSUPPORTED_CHARACTER_IN_NAME"}]},
            ],
            "skippedObjectives": [],
            "general": [{"reason": "FAILED_TO_EXTRACT_TABLES_LIST_FOR_DATABASE"}],
        }
    )
    r = report(tables_file([entry("db.public.a"), entry("db.public.listed")]), warning=warning)
    assert (r.total, r.complete, r.skipped, r.failed) == (4, 1, 3, 0)  # "listed" counted once, as skipped
    assert {(p.target, p.reason) for p in r.problems} == {
        ("db.public.secret", "PERMISSIONS_DO_NOT_EXIST"),
        ("db.public.weird", ""),
        ("db.public.listed", "COLUMN_WITH_UNSUPPORTED_CHARACTER_IN_NAME"),
    }
    assert r.general == ("FAILED_TO_EXTRACT_TABLES_LIST_FOR_DATABASE",)
    assert not r.all_complete


@pytest.mark.parametrize(
    ("value", "general"),
    [
        (None, ()),
        ("", ()),
        ("plain text from an older API", ("plain text from an older API",)),
        ("[1, 2]", ("[1, 2]",)),
        ('{"skippedObjectives": [{"target": "db.s"}], "general": ["X", 3]}', ("X", "skipped objective db.s")),
    ],
)
def test_warning_message_shapes(value: str | None, general: tuple[str, ...]) -> None:
    parsed = parse_warning(value)
    assert parsed.general == general and parsed.skipped_count == 0


def test_warning_skipped_tables_are_capped_but_all_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "MAX_WARNED", 3)
    warning = json.dumps({"skippedTables": [f"db.s.t{i}" for i in range(10)]})
    r = report(tables_file([entry("db.s.ok")]), warning=warning)
    assert (r.total, r.skipped, len(r.problems)) == (11, 10, 3)


def test_missing_keys_are_tolerated() -> None:
    r = report(tables_file([entry("db.public.a"), {"status": "FAILED"}, {"target": "db.public.x", "sizeGB": 1}, 7]))
    assert (r.total, r.complete, r.failed, r.ignored) == (2, 1, 0, 2)
    assert [(p.target, p.status) for p in r.problems] == [("db.public.x", "UNKNOWN")]


def test_several_files_are_summed() -> None:
    r = report(
        tables_file([entry(f"db.s.t{i}") for i in range(100)]),
        tables_file([entry("db.s.t100", "FAILED")], first=101),
    )
    assert (r.total, r.complete, r.failed) == (101, 100, 1)


def test_a_file_that_does_not_hold_what_its_name_says_is_incomplete() -> None:
    result = build_report([tables_file([entry("db.s.a"), entry("db.s.b")], last=3)])
    assert isinstance(result, Incomplete) and "names 3 entries but holds 2" in result.message


def test_database_entries_may_or_may_not_be_numbered() -> None:
    # Unknown whether RDS numbers database-level entries in the names' ranges: either count matches.
    assert isinstance(build_report([tables_file([DATABASE, entry("a.b.c")], last=2)]), Report)
    assert isinstance(build_report([tables_file([DATABASE, entry("a.b.c")], last=1)]), Report)


@pytest.mark.parametrize(
    ("ranges", "problem"),
    [
        ([(1, 100), (101, 200), (201, 230)], None),
        ([(1, 100), (201, 230)], "entries 101..200 are missing"),  # Fails on the base code: a middle file gone
        ([(2, 100)], "entries 1..1 are missing"),
        ([(1, 100), (50, 120)], "overlaps entries before 101"),
        ([(1, 100), (1, 100)], "overlaps"),
        ([(5, 4)], "empty range"),
        ([], "no table files"),
    ],
)
def test_the_ranges_must_tile_from_one(ranges: list[tuple[int, int]], problem: str | None) -> None:
    found = gap([file_of(a, b) for a, b in ranges])
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_table_files_are_ordered_by_range_and_other_keys_ignored() -> None:
    folder = f"p/{ID}/"
    listed = [
        (folder + f"export_tables_info_{ID}_from_101_to_150.json", 5),
        (folder + f"export_tables_info_{ID}_from_1_to_100.json", 9),
        (folder + f"export_tables_info_{ID}_from_1_to_100.json.tmp", 1),
        (f"other/{ID}/export_tables_info_{ID}_from_1_to_100.json", 1),
    ]
    assert [(f.first, f.last, f.size) for f in table_files(ID, folder, listed)] == [(1, 100, 9), (101, 150, 5)]


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"", b"\xff\xfe\x00garbage", b'{"perTableStatus": [', b'{"perTableStatus": [{"target": "a.b.c"'],
    ids=["syntax", "empty", "binary", "truncated", "truncated-entry"],
)
def test_malformed_json_is_refused_not_raised(data: bytes) -> None:
    result = build_report([(file_of(1, 1), [data])])
    assert isinstance(result, Refused) and result.reason == "Malformed"
    assert f"export_tables_info_{ID}_from_1_to_1.json" in result.message


@pytest.mark.parametrize("document", [[], "text", {"perTableStatus": {"a": 1}}, {"perTableStatus": "x"}, {}])
def test_wrong_shapes_list_nothing_so_their_range_is_not_met(document: Any) -> None:
    assert isinstance(build_report([(file_of(1, 1), [json.dumps(document).encode()])]), Incomplete)


def test_one_malformed_file_refuses_the_whole_report() -> None:
    result = build_report([tables_file([entry("db.s.a")]), (file_of(2, 2), [b"{oops"])])
    assert isinstance(result, Refused) and file_of(2, 2).name in result.message


def test_a_stream_read_in_part_is_closed() -> None:
    closed: list[bool] = []

    def stream() -> Iterator[bytes]:
        try:
            yield b"{oops"
            yield b"never read"
        finally:
            closed.append(True)

    assert isinstance(build_report([(file_of(1, 1), stream())]), Refused)
    assert closed == [True]


def test_too_many_entries_are_capped_and_reported_as_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "MAX_ENTRIES", 10)
    r = report(tables_file([entry(f"db.s.t{i}") for i in range(25)]))
    assert (r.total, r.complete, r.truncated) == (10, 10, True)
    assert not r.all_complete and r.summary == "10/10+"


def test_problems_are_capped_and_strings_are_shortened() -> None:
    long = "x" * 10_000
    r = report(tables_file([entry(f"db.s.{long}{i}", "FAILED", warningMessage=long + "\n" + long) for i in range(50)]))
    assert r.failed == 50 and len(r.problems) == tables.MAX_PROBLEMS
    assert all(len(p.target) <= MAX_TEXT and len(p.reason) <= MAX_TEXT for p in r.problems)
    assert all("\n" not in p.reason for p in r.problems)


def test_a_long_status_is_capped() -> None:
    r = report(tables_file([entry("a.b.c", "ß" * 40)]))
    assert len(r.problems[0].status) <= 32


def test_no_tables_is_not_all_complete() -> None:
    r = report((file_of(1, 1), [json.dumps({"perTableStatus": [DATABASE]}).encode()]))
    assert r.total == 0 and not r.all_complete and r.database_count == 1


def test_export_info_status_and_fractional_size() -> None:
    info = parse_export_info(
        "export_info_x.json", json.dumps({"status": "complete", "totalExportedDataInGB": 0.0123, "new": 1}).encode()
    )
    assert info == ExportInfo("COMPLETE", 0.0123)
    assert parse_export_info("x", b'{"totalExportedDataInGB": true}') == ExportInfo("", None)
    assert parse_export_info("x", b'{"totalExportedDataInGB": -1}') == ExportInfo("", None)
    for bad in (b"[1]", b"\x00", b"{", b" " * (tables.MAX_INFO_BYTES + 1)):
        assert isinstance(parse_export_info("export_info_x.json", bad), Refused)


@pytest.mark.parametrize(
    ("info", "task", "final"),
    [
        ("COMPLETE", "COMPLETE", True),
        ("IN_PROGRESS", "COMPLETE", False),  # the version written at the start of the task
        ("STARTING", "COMPLETE", False),
        ("", "COMPLETE", False),
        ("FAILED", "COMPLETE", False),
        ("FAILED", "FAILED", True),
        ("COMPLETE", "FAILED", True),
        ("IN_PROGRESS", "FAILED", False),
    ],
)
def test_export_info_must_be_its_final_version(info: str, task: str, final: bool) -> None:
    assert (not_final(ExportInfo(info, None), task) is None) is final


def test_file_pattern() -> None:
    pattern = tables_file_pattern("a.b")
    assert pattern.fullmatch("export_tables_info_a.b_from_1_to_96.json")
    assert not pattern.fullmatch("export_tables_info_aXb_from_1_to_96.json")  # the dot is not a wildcard
    assert not pattern.fullmatch("export_tables_info_a.b_from_1_to_96.json.tmp")


def test_memory_stays_flat_while_a_large_export_streams() -> None:
    """Two files of 400 tables of 30 columns (about 2.4 MB of JSON each), generated as they are read: the
    parser's own allocations stay far below the size of one file (the e2e test takes 50,000 tables)."""
    column = {
        "columnName": "amount",
        "originalType": "numeric",
        "expectedExportedType": "string",
        "originalCharMaxLength": 0,
        "originalNumPrecision": 12,
        "originalDateTimePrecision": 0,
    }
    one = json.dumps(
        {"schemaMetadata": {"originalTypeMappings": [column] * 30}, "status": "COMPLETE", "sizeGB": 0.1, "target": ""}
    )

    def stream(first: int, count: int) -> Iterator[bytes]:
        yield b'{"perTableStatus": ['
        for i in range(first, first + count):
            yield (("," if i > first else "") + one.replace('"target": ""', f'"target": "db.s.t{i}"')).encode()
        yield b"]}"

    files = ((file_of(n, n + 399), stream(n, 400)) for n in (1, 401))
    tracemalloc.start()
    try:
        result = build_report(files, Warnings())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(result, Report) and result.all_complete and result.total == 800
    assert peak < 1024 * 1024, peak


_json = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.floats() | hs.text(max_size=20),
    lambda children: hs.lists(children, max_size=5) | hs.dictionaries(hs.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
_entries = hs.lists(
    hs.dictionaries(
        hs.sampled_from(["target", "status", "warningMessage", "reason", "schemaMetadata", "sizeGB", "x"]),
        _json,
        max_size=5,
    )
    | _json,
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(
    hs.lists(hs.binary(max_size=200) | _entries.map(lambda e: json.dumps({"perTableStatus": e}).encode()), max_size=4),
    hs.none() | hs.text(max_size=50) | _json.map(json.dumps),
)
def test_the_parser_never_raises(contents: list[bytes], warning: str | None) -> None:
    files = [(file_of(i + 1, i + 1), [c[: len(c) // 2], c[len(c) // 2 :]]) for i, c in enumerate(contents)]
    result = build_report(files, parse_warning(warning))
    assert isinstance(result, Report | Refused | Incomplete)
    if isinstance(result, Report):
        assert result.complete + result.failed + result.skipped <= result.total
        assert len(result.problems) <= tables.MAX_PROBLEMS
    info = parse_export_info("export_info.json", contents[0] if contents else b"")
    assert isinstance(info, ExportInfo | Refused)
