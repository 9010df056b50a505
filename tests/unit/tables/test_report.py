"""table_report.py: the decisions for one finished export's table report, against a fake S3."""

from __future__ import annotations

import contextvars
import copy
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from kopf._core.engines import posting
from kopf._core.intents.handlers import TimerHandler

from rds_export_operator.aws.errors import GET_OBJECT, LIST_OBJECTS, AwsError
from rds_export_operator.aws.identity import Identity, IdentityUnavailable, Refusal
from rds_export_operator.aws.s3 import ObjectTooLarge, S3Object
from rds_export_operator.exports.reconcile import Result
from rds_export_operator.runtime import settings
from rds_export_operator.tables import parsing as tables
from rds_export_operator.tables.handlers import TableReportHandlers
from rds_export_operator.tables.report import (
    TABLES_COMPLETE,
    ReportPolicy,
    TableReporter,
    Target,
    target_of,
    wants_report,
)
from unit.fakes import Clock

ID = "team-nightly-0123456789"
FOLDER = f"exports/{ID}/"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.sizes: dict[str, int] = {}  # listed size, when it should differ from the content
        self.error: AwsError | None = None
        self.too_large: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.identities: list[Identity | None] = []

    def list(
        self, region: str, bucket: str, prefix: str, *, limit: int, identity: Identity | None = None
    ) -> tuple[list[S3Object], bool]:
        self.calls.append(("list", prefix))
        self.identities.append(identity)
        if self.error:
            raise self.error
        keys = sorted(k for k in self.objects if k.startswith(prefix))
        return [S3Object(k, self.sizes.get(k, len(self.objects[k]))) for k in keys[:limit]], len(keys) > limit

    def stream(
        self, region: str, bucket: str, key: str, *, max_bytes: int, identity: Identity | None = None
    ) -> Iterator[bytes] | None:
        self.calls.append(("get", key))
        self.identities.append(identity)
        if key in self.too_large:
            raise ObjectTooLarge(key, max_bytes + 1, max_bytes)
        data = self.objects.get(key)
        return None if data is None else iter([data[:10], data[10:]])

    def put_report(
        self, outcomes: dict[str, str], *, info: str | None = "COMPLETE", databases: tuple[str, ...] = ()
    ) -> None:
        entries = [{"target": d, "warningMessage": f"why {d}"} for d in databases]
        entries += [{"target": t, "status": s, "warningMessage": f"why {t}"} for t, s in outcomes.items()]
        self.objects[f"{FOLDER}export_tables_info_{ID}_from_1_to_{len(entries)}.json"] = json.dumps(
            {"perTableStatus": entries}
        ).encode()
        if info:
            document = {"exportTaskIdentifier": ID, "status": info, "totalExportedDataInGB": 0.0042}
            self.objects[f"{FOLDER}export_info_{ID}.json"] = json.dumps(document).encode()


@pytest.fixture
def s3() -> FakeS3:
    return FakeS3()


@pytest.fixture
def clock() -> Clock[datetime]:
    return Clock(NOW)


@pytest.fixture
def reporter(s3: FakeS3, clock: Clock) -> TableReporter:
    return TableReporter(s3, ReportPolicy(wait=60, base_delay=1, max_delay=4), random.Random(0), clock=clock)


def target(export_status: str = "COMPLETE") -> Target:
    return Target("us-east-1", "bucket", FOLDER, ID, export_status)


def cond(result: Result) -> Any:
    conds = result.status["conditions"]
    assert [c.type for c in conds] == [TABLES_COMPLETE]  # never Complete, Failed or Synced
    return conds[0]


def test_all_tables_complete(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE", "db.public.b": "COMPLETE"})
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("True", "AllTablesComplete")
    assert cond(result).message == "all 2 tables exported, 0.0042 GB"
    assert result.status["tables"] == {
        "total": 2,
        "complete": 2,
        "failed": 0,
        "skipped": 0,
        "exportedDataInGB": 0.0042,
        "databases": None,
    }
    assert result.status["tablesSummary"] == "2/2"
    assert result.status["failedTables"] is None and result.status["tablesPendingSince"] is None
    assert [(e.type, e.reason) for e in result.events] == [("Normal", "TablesComplete")]
    assert result.retry_after is None


def test_a_failed_table_is_named_in_status_and_event(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE", "db.public.bad": "FAILED", "db.public.skip": "SKIPPED"})
    result = reporter.report(target(), {})
    c = cond(result)
    assert (c.status, c.reason) == ("False", "TablesFailed")
    assert "db.public.bad" in c.message
    assert result.status["tables"] == {
        "total": 3,
        "complete": 1,
        "failed": 1,
        "skipped": 1,
        "exportedDataInGB": 0.0042,
        "databases": None,
    }
    assert result.status["failedTables"] == [
        {"target": "db.public.bad", "status": "FAILED", "reason": "why db.public.bad"},
        {"target": "db.public.skip", "status": "SKIPPED", "reason": "why db.public.skip"},
    ]
    assert result.status["tablesSummary"] == "1/3"
    [event] = result.events
    assert event.type == "Warning" and event.reason == "TablesFailed"
    assert "db.public.bad (FAILED: why db.public.bad)" in event.message


def test_event_names_the_first_failed_tables_only(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({f"db.s.t{i:02}": "FAILED" for i in range(30)})
    result = reporter.report(target(), {})
    assert "db.s.t04" in result.events[0].message and "db.s.t05" not in result.events[0].message
    assert result.events[0].message.endswith("and 25 more")
    assert len(result.status["failedTables"]) == 20


def test_only_skipped_tables(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "SKIPPED"})
    assert (cond(reporter.report(target(), {})).status, cond(reporter.report(target(), {})).reason) == (
        "False",
        "TablesSkipped",
    )


def test_a_database_level_entry_is_not_a_table(reporter: TableReporter, s3: FakeS3) -> None:
    # Fails on the base code: "1/2", TablesComplete=False TablesIncomplete, for every healthy Postgres export.
    s3.put_report({"postgres.public.a": "COMPLETE"}, databases=("postgres",))
    result = reporter.report(target(), {})
    c = cond(result)
    assert (c.status, c.reason) == ("True", "AllTablesComplete")
    assert c.message.startswith("all 1 tables exported") and "1 database-level entries, not tables" in c.message
    assert result.status["tables"]["total"] == 1 and result.status["tablesSummary"] == "1/1"
    assert result.status["tables"]["databases"] == [
        {"target": "postgres", "status": "SKIPPED", "reason": "why postgres"}
    ]


def test_skipped_tables_in_the_warning_message_are_named(reporter: TableReporter, s3: FakeS3) -> None:
    # Fails on the base code: WarningMessage was never read ("all 2 tables exported").
    s3.put_report({"db.public.a": "COMPLETE", "db.public.b": "COMPLETE"})
    warning = json.dumps(
        {
            "skippedTables": [{"target": "db.public.secret", "reason": "PERMISSIONS_DO_NOT_EXIST"}],
            "skippedObjectives": [],
            "general": [{"reason": "FAILED_TO_EXTRACT_TABLES_LIST_FOR_DATABASE"}],
        }
    )
    result = reporter.report(target(), {"warningMessage": warning})
    c = cond(result)
    assert (c.status, c.reason) == ("False", "TablesSkipped")
    assert "db.public.secret (SKIPPED: PERMISSIONS_DO_NOT_EXIST)" in c.message
    assert "AWS warns: FAILED_TO_EXTRACT_TABLES_LIST_FOR_DATABASE" in c.message
    assert result.status["tables"]["skipped"] == 1 and result.status["tablesSummary"] == "2/3"
    assert result.status["failedTables"] == [
        {"target": "db.public.secret", "status": "SKIPPED", "reason": "PERMISSIONS_DO_NOT_EXIST"}
    ]


def test_general_warnings_alone_are_shown_beside_a_complete_report(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE"})
    result = reporter.report(target(), {"warningMessage": '{"skippedTables": [], "general": [{"reason": "X_Y"}]}'})
    assert cond(result).status == "True" and cond(result).message.endswith("; AWS warns: X_Y")


def test_missing_export_info_is_waited_for(reporter: TableReporter, s3: FakeS3) -> None:
    # Fails on the base code: tolerated, the report was final without knowing the export had written everything.
    s3.put_report({"db.public.a": "COMPLETE"}, info=None)
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "NotFound")
    assert result.retry_after is not None and "export_info" in cond(result).message


@pytest.mark.parametrize("info", ["IN_PROGRESS", "STARTING", "CANCELED"])
def test_export_info_written_at_the_start_is_not_a_verdict(reporter: TableReporter, s3: FakeS3, info: str) -> None:
    s3.put_report({"db.public.a": "COMPLETE"}, info=info)
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "Incomplete")
    assert result.retry_after is not None and f"export_info says {info}" in cond(result).message


def test_a_missing_middle_file_is_unknown_never_complete(reporter: TableReporter, s3: FakeS3, clock: Clock) -> None:
    # Fails on the base code: "all 2 tables exported" from the first and last file.
    s3.put_report({"db.public.a": "COMPLETE"})
    s3.objects[f"{FOLDER}export_tables_info_{ID}_from_3_to_3.json"] = json.dumps(
        {"perTableStatus": [{"target": "db.public.c", "status": "COMPLETE"}]}
    ).encode()
    first = reporter.report(target(), {})
    assert (cond(first).status, cond(first).reason) == ("Unknown", "Incomplete")
    assert "entries 2..2 are missing" in cond(first).message and first.retry_after is not None
    assert "tables" not in first.status
    clock.now = NOW + timedelta(seconds=61)
    last = reporter.report(target(), first.status)
    assert (cond(last).status, cond(last).reason) == ("Unknown", "Incomplete") and "gave up" in cond(last).message
    assert last.retry_after is None


def test_a_file_that_holds_fewer_entries_than_its_name_is_incomplete(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE"})
    s3.objects[f"{FOLDER}export_tables_info_{ID}_from_2_to_5.json"] = b'{"perTableStatus": []}'
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "Incomplete")
    assert "names 4 entries but holds 0" in cond(result).message


def test_files_of_other_exports_are_ignored(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE"})
    s3.objects[f"{FOLDER}export_tables_info_{ID}_from_1_to_1.json.tmp"] = b"{broken"
    assert cond(reporter.report(target(), {})).status == "True"


def test_files_not_there_yet_are_retried_then_unknown(reporter: TableReporter, s3: FakeS3, clock: Clock) -> None:
    first = reporter.report(target(), {}, attempt=0)
    c = cond(first)
    assert (c.status, c.reason) == ("Unknown", "NotFound")
    assert "retrying until 2026-01-01T12:01:00Z" in c.message
    assert first.status["tablesPendingSince"] == "2026-01-01T12:00:00Z"
    assert first.retry_after is not None and 0.5 <= first.retry_after <= 1
    assert first.events == [] and "tables" not in first.status

    clock.now = NOW + timedelta(seconds=30)
    second = reporter.report(target(), first.status, attempt=3)
    assert second.status["tablesPendingSince"] == "2026-01-01T12:00:00Z"  # the deadline does not move
    assert second.retry_after is not None and 2 <= second.retry_after <= 4

    clock.now = NOW + timedelta(seconds=61)
    last = reporter.report(target(), second.status, attempt=4)
    c = cond(last)
    assert (c.status, c.reason) == ("Unknown", "NotFound") and "gave up" in c.message
    assert last.status["tablesPendingSince"] is None and last.retry_after is None
    assert [(e.type, e.reason) for e in last.events] == [("Warning", "TableReportNotFound")]


def test_files_appearing_late_end_the_wait(reporter: TableReporter, s3: FakeS3, clock: Clock) -> None:
    pending = reporter.report(target(), {})
    clock.now = NOW + timedelta(seconds=20)
    s3.put_report({"db.public.a": "COMPLETE"})
    done = reporter.report(target(), pending.status, attempt=1)
    assert cond(done).status == "True" and done.status["tablesPendingSince"] is None


def test_access_denied_is_retried_slowly_for_a_day(reporter: TableReporter, s3: FakeS3, clock: Clock) -> None:
    # Fails on the base code: final after ``wait`` (60 s), read again only on a spec edit.
    s3.error = AwsError.of(LIST_OBJECTS, "AccessDenied", "Access Denied")
    first = reporter.report(target(), {})
    assert (cond(first).status, cond(first).reason) == ("Unknown", "AccessDenied")
    assert first.retry_after is not None and first.retry_after <= 1
    assert "retrying until 2026-01-02T12:00:00Z" in cond(first).message
    clock.now = NOW + timedelta(hours=5)
    later = reporter.report(target(), first.status, attempt=1)
    assert (cond(later).status, later.retry_after) == ("Unknown", 4)  # past ``wait``: every max_delay
    assert later.status["tablesPendingSince"] == first.status["tablesPendingSince"] and later.events == []
    s3.error = None  # the IAM fix took effect
    s3.put_report({"db.public.a": "COMPLETE"})
    assert cond(reporter.report(target(), later.status, attempt=2)).status == "True"

    s3.error = AwsError.of(LIST_OBJECTS, "AccessDenied", "Access Denied")
    clock.now = NOW + timedelta(days=1, seconds=1)
    last = reporter.report(target(), later.status, attempt=3)
    assert (cond(last).status, cond(last).reason) == ("Unknown", "AccessDenied")
    assert last.retry_after is None and last.events[0].reason == "TableReportAccessDenied"


def test_archived_files_have_their_own_final_reason(reporter: TableReporter, s3: FakeS3) -> None:
    # Fails on the base code: "S3Unavailable", retried for nothing until the wait ran out.
    s3.error = AwsError.of(
        GET_OBJECT, "InvalidObjectState", "The operation is not valid for the object's storage class"
    )
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "Archived")
    assert result.retry_after is None and "restore" in cond(result).message
    assert result.events[0].reason == "TableReportArchived"


@pytest.mark.parametrize(
    ("code", "reason"),
    [("NoSuchBucket", "NotFound"), ("SlowDown", "S3Unavailable"), ("InternalError", "S3Unavailable")],
)
def test_s3_errors_become_reasons(reporter: TableReporter, s3: FakeS3, code: str, reason: str) -> None:
    s3.error = AwsError.of(GET_OBJECT, code, "x")
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", reason)
    assert result.retry_after is not None


def test_a_failed_export_without_files_says_so_at_once(reporter: TableReporter) -> None:
    result = reporter.report(target("FAILED"), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "NotFound")
    assert result.retry_after is None and result.status["tablesPendingSince"] is None
    assert result.events == []  # the export's own Failed event says enough


def test_an_export_that_ended_long_ago_is_not_waited_for(reporter: TableReporter) -> None:
    ended = Target("us-east-1", "bucket", FOLDER, ID, "COMPLETE", NOW - timedelta(days=30))
    result = reporter.report(ended, {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "NotFound")
    assert result.retry_after is None and result.status["tablesPendingSince"] is None
    recent = Target("us-east-1", "bucket", FOLDER, ID, "COMPLETE", NOW - timedelta(seconds=10))
    assert reporter.report(recent, {}).retry_after is not None


def test_a_failed_export_with_files_is_reported(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE", "db.public.b": "FAILED"})
    assert cond(reporter.report(target("FAILED"), {})).reason == "TablesFailed"


def test_malformed_files_are_final_at_once(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE"})
    s3.objects[f"{FOLDER}export_tables_info_{ID}_from_1_to_1.json"] = b'{"perTableStatus": [{"tar'
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "Malformed")
    assert result.retry_after is None and result.status["tablesPendingSince"] is None
    assert result.events[0].reason == "TableReportMalformed" and "tables" not in result.status


def test_malformed_export_info_is_refused(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE"})
    s3.objects[f"{FOLDER}export_info_{ID}.json"] = b"<html>"
    assert cond(reporter.report(target(), {})).reason == "Malformed"


def test_a_huge_listed_file_is_never_fetched(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE"})
    key = f"{FOLDER}export_tables_info_{ID}_from_1_to_1.json"
    s3.sizes[key] = reporter.policy.max_file_bytes + 1
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "TooLarge")
    assert ("get", key) not in s3.calls


def test_too_many_bytes_together_are_never_fetched(s3: FakeS3, clock: Clock) -> None:
    reporter = TableReporter(s3, ReportPolicy(max_total_bytes=150), clock=clock)
    for n in (1, 2, 3):  # each file is under the per-file cap, together they are over the total
        s3.objects[f"{FOLDER}export_tables_info_{ID}_from_{n}_to_{n}.json"] = json.dumps(
            {"perTableStatus": [{"target": f"db.s.t{n}", "status": "COMPLETE", "pad": "x" * 40}]}
        ).encode()
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "TooLarge")
    assert not [c for c in s3.calls if c[0] == "get"]


def test_overlapping_ranges_are_incomplete_not_summed(reporter: TableReporter, s3: FakeS3) -> None:
    for m in (1, 2):
        s3.objects[f"{FOLDER}export_tables_info_{ID}_from_1_to_{m}.json"] = json.dumps(
            {"perTableStatus": [{"target": f"db.s.t{i}", "status": "COMPLETE"} for i in range(m)]}
        ).encode()
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "Incomplete") and "overlaps" in cond(
        result
    ).message
    assert not [c for c in s3.calls if c[0] == "get"]  # refused from the listing


def test_more_table_files_than_the_cap_are_refused(
    reporter: TableReporter, s3: FakeS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "MAX_FILES", 5)
    s3.put_report({"db.public.a": "COMPLETE"})
    s3.objects.update({f"{FOLDER}export_tables_info_{ID}_from_{n}_to_{n}.json": b"{}" for n in range(2, 12)})
    result = reporter.report(target(), {})
    assert (cond(result).status, cond(result).reason) == ("Unknown", "TooLarge")


def test_a_file_larger_than_announced_is_refused(reporter: TableReporter, s3: FakeS3) -> None:
    s3.put_report({"db.public.a": "COMPLETE"})
    s3.too_large.add(f"{FOLDER}export_info_{ID}.json")
    assert cond(reporter.report(target(), {})).reason == "TooLarge"


def test_the_files_are_read_as_the_namespace_identity(s3: FakeS3, clock: Clock) -> None:
    team = Identity(role_arn="arn:aws:iam::111111111111:role/team-a", namespace="team-a")
    asked: list[str] = []

    def resolve(namespace: str) -> Identity | Refusal:
        asked.append(namespace)
        return team

    s3.put_report({"db.public.a": "COMPLETE"})
    reporter = TableReporter(s3, ReportPolicy(wait=60), identity=resolve, clock=clock)
    result = reporter.report(Target("us-east-1", "bucket", FOLDER, ID, "COMPLETE", namespace="team-a"), {})
    assert cond(result).status == "True"
    assert asked == ["team-a"] and s3.identities == [team, team, team]  # list, export_info, one table file


def test_no_identity_for_the_namespace_is_access_denied_and_retried(s3: FakeS3, clock: Clock) -> None:
    def refused(namespace: str) -> Identity | Refusal:
        return Refusal(namespace, f"namespace {namespace} has no AWS identity")

    def unavailable(namespace: str) -> Identity | Refusal:
        raise IdentityUnavailable("MappingNotLoaded", "the identity mapping is not loaded yet")

    for resolve in (refused, unavailable):
        reporter = TableReporter(s3, ReportPolicy(wait=60), identity=resolve, clock=clock)
        result = reporter.report(Target("us-east-1", "bucket", FOLDER, ID, "COMPLETE", namespace="team-x"), {})
        assert (cond(result).status, cond(result).reason) == ("Unknown", "AccessDenied")
        assert result.retry_after is not None
    assert s3.calls == []  # no S3 call without the namespace's identity


def test_target_of_prefers_what_aws_reported() -> None:
    spec = {"s3BucketName": "spec-bucket", "s3Prefix": "spec prefix"}
    t = target_of(
        spec,
        {"s3Bucket": "aws-bucket", "s3Prefix": "aws/prefix/", "exportTaskIdentifier": ID},
        region="r",
        identifier="x",
    )
    assert t == Target("r", "aws-bucket", f"aws/prefix/{ID}/", ID, "None")
    t = target_of({"s3BucketName": "b"}, {"taskEndTime": "2026-01-01T11:00:00Z"}, region="r", identifier=ID)
    assert t is not None and t.ended == NOW - timedelta(hours=1)
    t = target_of(spec, {"status": "COMPLETE"}, region="r", identifier=ID)
    assert t is not None and (t.bucket, t.folder) == ("spec-bucket", f"spec_prefix/{ID}/")
    t = target_of({"s3BucketName": "b"}, {}, region="r", identifier=ID)
    assert t is not None and t.folder == f"{ID}/" and t.url == f"s3://b/{ID}/"
    assert target_of({}, {}, region="r", identifier=ID) is None


def _status(export: str = "COMPLETE", **cond: Any) -> dict[str, Any]:
    conds = [{"type": TABLES_COMPLETE, **cond}] if cond else []
    return {"status": export, "conditions": [{"type": "Complete", "status": "True"}, *conds]}


@pytest.mark.parametrize(
    ("spec", "status", "generation", "wanted"),
    [
        ({}, _status(), 1, True),
        ({"tableReport": "Enabled"}, _status("FAILED"), 1, True),
        ({"tableReport": "Disabled"}, _status(), 1, False),
        ({}, _status("IN_PROGRESS"), 1, False),
        ({}, _status("CANCELED"), 1, False),
        ({}, _status("REFUSED"), 1, False),
        ({}, _status(status="True", observedGeneration=1), 1, False),
        ({}, _status(status="Unknown", observedGeneration=1), 1, False),
        (
            {},
            {**_status(status="Unknown", observedGeneration=1), "tablesPendingSince": "2026-01-01T00:00:00Z"},
            1,
            True,
        ),
        ({}, _status(status="Unknown", observedGeneration=1), 2, True),  # spec edited: read again
    ],
)
def test_wants_report(spec: dict[str, Any], status: dict[str, Any], generation: int, wanted: bool) -> None:
    assert wants_report(spec, status, generation) is wanted


def _without_posting(fn: Any, *args: Any) -> None:
    """Run a handler test in a context where kopf posts no Events (there is no event loop to post them to)."""

    def run() -> None:
        quiet = kopf.OperatorSettings()
        quiet.posting.enabled = False
        posting.settings_var.set(quiet)
        fn(*args)

    contextvars.copy_context().run(run)


def test_a_tick_after_a_final_report_reads_nothing_more(s3: FakeS3) -> None:
    """kopf stops the timer only once the watch event of the final write is processed; under load (thousands of
    objects adopted at once) a tick can come first, on the old body: it must not read S3 again."""
    _without_posting(_ticks_after_a_final_report, s3)


def _ticks_after_a_final_report(s3: FakeS3) -> None:
    handlers = TableReportHandlers(settings.parse([], environ={}), s3)
    s3.put_report({"db.t1": "COMPLETE"})
    raw = _nightly()
    patch = kopf.Patch()
    handlers.report(body=kopf.Body(raw), status=kopf.Body(raw).status, patch=patch)
    assert patch.status["conditions"][0]["status"] == "True"
    reads = len(s3.calls)
    assert reads >= 2
    handlers.report(body=kopf.Body(raw), status=kopf.Body(raw).status, patch=kopf.Patch())
    assert len(s3.calls) == reads
    # Bug: the memory of the final write was pruned after 10 intervals (100 s), and at 10,000 objects adopted at
    # once kopf's queue is longer than that: each report was read and written twice (6.7 S3 calls per export).
    now = handlers.clock()
    handlers.clock = lambda: now + 20 * 60  # type: ignore[method-assign]
    handlers._prune_above = 0  # prune at the next write
    other = copy.deepcopy(raw)
    other["metadata"]["uid"] = "u2"
    handlers.report(body=kopf.Body(other), status=kopf.Body(other).status, patch=kopf.Patch())
    reads = len(s3.calls)
    handlers.report(body=kopf.Body(raw), status=kopf.Body(raw).status, patch=kopf.Patch())
    assert len(s3.calls) == reads
    raw["metadata"]["generation"] = 2  # the spec was edited: its report is read again
    handlers.report(body=kopf.Body(raw), status=kopf.Body(raw).status, patch=kopf.Patch())
    assert len(s3.calls) > reads


def test_an_edit_during_the_reads_is_read_again() -> None:
    """kopf replaces a timer's body in place when a watch event arrives. Bug: the report read the generation after
    its S3 reads, so an edit that came during them stamped the old spec's report as the new generation's (and
    remembered it so): the edited spec was never read."""
    _without_posting(_an_edit_during_the_reads)


class _EditingS3(FakeS3):
    """Edits the object (a new generation of its spec) while its files are listed."""

    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__()
        self.raw = raw

    def list(
        self, region: str, bucket: str, prefix: str, *, limit: int, identity: Identity | None = None
    ) -> tuple[list[S3Object], bool]:
        self.raw["metadata"]["generation"] = 2
        return super().list(region, bucket, prefix, limit=limit, identity=identity)


def _an_edit_during_the_reads() -> None:
    raw = _nightly()
    s3 = _EditingS3(raw)
    s3.put_report({"db.t1": "COMPLETE"})
    handlers = TableReportHandlers(settings.parse([], environ={}), s3)
    patch = kopf.Patch()
    body = kopf.Body(raw)
    handlers.report(body=body, status=body.status, patch=patch)
    assert patch.status["conditions"][0]["observedGeneration"] == 1  # the report is of the spec it read
    reads = len(s3.calls)
    handlers.report(body=body, status=body.status, patch=kopf.Patch())  # the next tick, at generation 2
    assert len(s3.calls) > reads


def _nightly(**spec: Any) -> dict[str, Any]:
    base = {
        "sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:nightly",
        "s3BucketName": "bucket",
        "s3Prefix": "exports",
        "exportTaskIdentifier": ID,
        "iamRoleArn": "arn:aws:iam::123456789012:role/export",
        "kmsKeyId": "alias/key",
    }
    return {
        "metadata": {"uid": "u1", "generation": 1, "name": "nightly", "namespace": "team"},
        "spec": {k: v for k, v in {**base, **spec}.items() if v is not None},
        "status": {"status": "COMPLETE", "exportTaskIdentifier": ID},
    }


def _complete(s3: FakeS3) -> None:
    s3.put_report({"db.t1": "COMPLETE"})


def _failed_table(s3: FakeS3) -> None:
    s3.put_report({"db.t1": "COMPLETE", "db.t2": "FAILED"})


def _missing(s3: FakeS3) -> None:
    pass


def _denied(s3: FakeS3) -> None:
    s3.error = AwsError.of(LIST_OBJECTS, "AccessDenied", "Access Denied")


def _throttled(s3: FakeS3) -> None:
    s3.error = AwsError.of(LIST_OBJECTS, "SlowDown", "Please reduce your request rate")


def _too_large(s3: FakeS3) -> None:
    _complete(s3)
    s3.too_large.add(f"{FOLDER}export_info_{ID}.json")


def _malformed(s3: FakeS3) -> None:
    _complete(s3)
    s3.objects[f"{FOLDER}export_tables_info_{ID}_from_1_to_1.json"] = b"{not json"


@pytest.mark.parametrize(
    ("files", "spec"),
    [
        (_complete, {}),
        (_failed_table, {}),
        (_missing, {}),
        (_denied, {}),
        (_throttled, {}),
        (_too_large, {}),
        (_malformed, {}),
        (_complete, {"sourceArn": "not-an-arn"}),  # InvalidSpec
    ],
)
def test_each_outcome_retries_on_its_own_delay_or_is_final(files: Any, spec: dict[str, Any]) -> None:
    """The timer's interval paces only the ticks after a final report (10 poll intervals): an outcome that is not
    final must retry on its own delay (a TemporaryError), never wait for the next tick."""
    _without_posting(_final_or_retried, files, spec)


def _final_or_retried(files: Any, spec: dict[str, Any]) -> None:
    s3 = FakeS3()
    files(s3)
    raw = _nightly(**spec)
    handlers = TableReportHandlers(settings.parse([], environ={}), s3)
    patch = kopf.Patch()
    try:
        handlers.report(body=kopf.Body(raw), status=kopf.Body(raw).status, patch=patch)
    except kopf.TemporaryError as error:
        assert error.delay is not None and error.delay > 0
        return
    status = {**raw["status"], **patch.status}
    assert not wants_report(raw["spec"], status, 1), status


def test_the_timer_ticks_after_a_final_report_only_every_ten_poll_intervals() -> None:
    # Reads that are not final retry after their own delays; the interval paces only the ticks after a final
    # report, while kopf has not yet processed its watch event (minutes at 10,000 objects adopted at once). Each of
    # them costs kopf an invocation: ticking every poll interval made the timers 31x dearer at 10,000 than at 1,000.
    config = settings.parse(["--poll-interval", "7"], environ={})
    registry = kopf.OperatorRegistry()
    TableReportHandlers(config, FakeS3()).register(registry)
    (timer,) = [h for h in registry._spawning.get_all_handlers() if h.id == "tables"]
    assert isinstance(timer, TimerHandler) and timer.interval == 70


def test_an_export_adopted_finished_gets_its_report_in_the_first_looks_write(s3: FakeS3) -> None:
    """Issue 27 item 1: 1,000s of finished exports adopted at once each had a second status write, and a second
    watch event of the whole body, for the report: about a third of the burst's peak memory."""
    _without_posting(_adopted_finished, s3)


def _adopted_finished(s3: FakeS3) -> None:
    handlers = TableReportHandlers(settings.parse([], environ={}), s3)
    raw = _nightly()
    raw["status"] = {}  # a new object: its first look adopts the finished export
    look = {
        "status": "COMPLETE",
        "ownership": "Adopted",
        "exportTaskIdentifier": ID,
        "conditions": [{"type": "Complete", "status": "True", "reason": "Exported"}],
    }
    s3.error = AwsError.of(LIST_OBJECTS, "NoSuchKey", "not yet")  # the files are not there yet
    assert handlers.with_first_look(kopf.Body(raw), look) is None  # left to the report's own timer
    s3.error = None
    s3.put_report({"db.t1": "COMPLETE"})
    answer = handlers.with_first_look(kopf.Body(raw), look)
    assert answer is not None
    fields, posted, stored = answer
    conditions = {c["type"]: c for c in fields["conditions"]}
    assert conditions["Complete"]["status"] == "True"  # the look's own, kept in the merged list
    assert conditions["TablesComplete"]["status"] == "True"
    assert fields["tables"]["total"] == 1
    assert posted  # the report's Events, for after the write
    reads = len(s3.calls)
    stored()  # the write is stored: the report's timer, if kopf started one from an older body, reads nothing
    handlers.report(body=kopf.Body(raw), status=kopf.Body(raw).status, patch=kopf.Patch())
    assert len(s3.calls) == reads
    # A report too large to read at once (the look would wait on it) is left to its timer.
    other = copy.deepcopy(raw)
    other["metadata"]["uid"] = "u-big"
    s3.sizes[f"{FOLDER}export_tables_info_{ID}_from_1_to_1.json"] = 2 * 1024**2  # listed at 2 MiB
    assert handlers.with_first_look(kopf.Body(other), look) is None
    patch = kopf.Patch()
    handlers.report(body=kopf.Body(other), status=kopf.Body(other).status, patch=patch)  # the timer reads it
    assert patch.status["conditions"][0]["status"] == "True"
