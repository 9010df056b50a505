"""tables.py: the export's info files -> a table report; defensive against anything the bytes may hold."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from rds_export_operator.tables import parsing as tables
from rds_export_operator.tables.parsing import Refused, Report, build_report, parse_export_info, tables_file_pattern

ID = "nightly-0123456789"


def tables_file(entries: list[Any], name: str = f"export_tables_info_{ID}_from_1_to_3.json") -> tuple[str, bytes]:
    return name, json.dumps({"perTableStatus": entries}).encode()


def entry(target: str, status: str = "COMPLETE", **extra: Any) -> dict[str, Any]:
    return {"target": target, "status": status, **extra}


def report(*files: tuple[str, bytes], more_files: bool = False) -> Report:
    result = build_report(files, more_files=more_files)
    assert isinstance(result, Report), result
    return result


def test_all_complete() -> None:
    r = report(tables_file([entry("db.public.a"), entry("db.public.b"), entry("db.public.c")]))
    assert (r.total, r.complete, r.failed, r.skipped) == (3, 3, 0, 0)
    assert r.all_complete and r.summary == "3/3" and r.problems == ()


def test_real_shape_with_statistics_and_unknown_keys() -> None:
    # The shape observed in real exports: statistics and schema metadata next to target and status.
    real = {
        "tableStatistics": {
            "extractionStartTime": "2024-01-01T00:00:00Z",
            "partitioningInfo": {"numberOfPartitions": 1},
        },
        "schemaMetadata": {"originalTypeMappings": [{"columnName": "id", "originalType": "bigint"}]},
        "status": "COMPLETE",
        "sizeGB": 0.25,
        "target": "postgres.public.orders",
        "somethingNew": [1, 2, {"x": None}],
    }
    name, data = f"export_tables_info_{ID}_from_1_to_1.json", json.dumps({"perTableStatus": [real], "newKey": 1})
    r = report((name, data.encode()))
    assert (r.total, r.complete) == (1, 1)


def test_failed_and_skipped_tables_with_their_reasons_failed_first() -> None:
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


def test_missing_keys_are_tolerated() -> None:
    r = report(
        tables_file([entry("db.public.a"), {"status": "FAILED"}, {"target": "db.public.nostatus"}, "not an object"]),
        ("export_tables_info_x_from_4_to_4.json", b"{}"),  # no perTableStatus: lists nothing
    )
    assert (r.total, r.complete, r.failed, r.ignored) == (2, 1, 0, 2)
    assert [(p.target, p.status) for p in r.problems] == [("db.public.nostatus", "UNKNOWN")]


def test_a_target_listed_twice_counts_once_with_its_worst_outcome() -> None:
    r = report(tables_file([entry("db.s.t"), entry("db.s.t", "FAILED"), entry("db.s.t")]))
    assert (r.total, r.complete, r.failed) == (1, 0, 1)


def test_several_files_are_summed() -> None:
    r = report(
        tables_file([entry(f"db.s.t{i}") for i in range(100)], f"export_tables_info_{ID}_from_1_to_100.json"),
        tables_file([entry("db.s.t100", "SKIPPED")], f"export_tables_info_{ID}_from_101_to_101.json"),
    )
    assert (r.total, r.complete, r.skipped) == (101, 100, 1)


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"", b"\xff\xfe\x00garbage", b'{"perTableStatus": [', b"[" * 100_000, b"1" * 5000],
    ids=["syntax", "empty", "binary", "truncated", "deeply-nested", "huge-integer"],
)
def test_malformed_json_is_refused_not_raised(data: bytes) -> None:
    result = build_report([(f"export_tables_info_{ID}_from_1_to_1.json", data)])
    assert isinstance(result, Refused)
    assert result.reason == "Malformed"
    assert f"export_tables_info_{ID}_from_1_to_1.json" in result.message


@pytest.mark.parametrize("document", [[], "text", {"perTableStatus": {"a": 1}}, {"perTableStatus": "x"}])
def test_wrong_shapes_are_malformed(document: Any) -> None:
    result = build_report([("f.json", json.dumps(document).encode())])
    assert isinstance(result, Refused) and result.reason == "Malformed"


def test_one_malformed_file_refuses_the_whole_report() -> None:
    result = build_report([tables_file([entry("db.s.a")]), ("second.json", b"{oops")])
    assert isinstance(result, Refused) and "second.json" in result.message


def test_huge_file_is_refused_before_parsing() -> None:
    big = b'{"perTableStatus": [' + b" " * tables.MAX_FILE_BYTES + b"]}"
    result = build_report([("big.json", big)])
    assert isinstance(result, Refused) and result.reason == "TooLarge"
    info = parse_export_info("export_info_x.json", big)
    assert isinstance(info, Refused) and info.reason == "TooLarge"


def test_total_size_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "MAX_TOTAL_BYTES", 100)
    files = [tables_file([entry(f"db.s.t{i}")], f"f{i}.json") for i in range(5)]
    result = build_report(files)
    assert isinstance(result, Refused) and result.reason == "TooLarge"


def test_too_many_entries_are_capped_and_reported_as_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "MAX_ENTRIES", 10)
    r = report(tables_file([entry(f"db.s.t{i}") for i in range(25)]))
    assert (r.total, r.complete, r.truncated) == (10, 10, True)
    assert not r.all_complete and r.summary == "10/10+"


def test_too_many_files_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "MAX_FILES", 2)
    r = report(*[tables_file([entry(f"db.s.t{i}")], f"f{i}.json") for i in range(4)])
    assert (r.total, r.truncated) == (2, True)
    assert report(tables_file([entry("a.b.c")]), more_files=True).truncated


def test_problems_are_capped_and_strings_are_shortened() -> None:
    long = "x" * 10_000
    r = report(tables_file([entry(f"db.s.{long}{i}", "FAILED", warningMessage=long + "\n" + long) for i in range(50)]))
    assert r.failed == 50 and len(r.problems) == tables.MAX_PROBLEMS
    assert all(len(p.target) <= tables.MAX_TEXT and len(p.reason) <= tables.MAX_TEXT for p in r.problems)
    assert all("\n" not in p.reason for p in r.problems)


def test_a_long_status_is_capped() -> None:
    r = report(tables_file([entry("a.b.c", "ß" * 40)]))
    assert len(r.problems[0].status) <= 32


def test_no_tables_is_not_all_complete() -> None:
    r = report(tables_file([]))
    assert r.total == 0 and not r.all_complete


def test_export_info() -> None:
    info = parse_export_info("export_info_x.json", json.dumps({"status": "COMPLETE", "new": 1}).encode())
    assert info == {"status": "COMPLETE", "new": 1}
    assert isinstance(parse_export_info("export_info_x.json", b"[1]"), Refused)
    assert isinstance(parse_export_info("export_info_x.json", b"\x00"), Refused)


def test_file_pattern() -> None:
    pattern = tables_file_pattern("a.b")
    assert pattern.fullmatch("export_tables_info_a.b_from_1_to_96.json")
    assert not pattern.fullmatch("export_tables_info_aXb_from_1_to_96.json")  # the dot is not a wildcard
    assert not pattern.fullmatch("export_tables_info_a.b_from_1_to_96.json.tmp")


_json = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.floats() | hs.text(max_size=20),
    lambda children: hs.lists(children, max_size=5) | hs.dictionaries(hs.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
_entries = hs.lists(
    hs.dictionaries(hs.sampled_from(["target", "status", "warningMessage", "reason", "x"]), _json, max_size=5) | _json,
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(
    hs.lists(hs.binary(max_size=200) | _entries.map(lambda e: json.dumps({"perTableStatus": e}).encode()), max_size=4)
)
def test_the_parser_never_raises(contents: list[bytes]) -> None:
    result = build_report([(f"f{i}.json", c) for i, c in enumerate(contents)])
    assert isinstance(result, Report | Refused)
    if isinstance(result, Report):
        assert result.complete + result.failed + result.skipped <= result.total
        assert len(result.problems) <= tables.MAX_PROBLEMS
    info = parse_export_info("export_info.json", contents[0] if contents else b"")
    assert isinstance(info, dict | Refused)
