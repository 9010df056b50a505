"""catalog/register.py with the real Glue and S3 gateways against moto's Glue and S3 (in process)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.glue import Glue, Pacer
from rds_export_operator.aws.s3 import S3
from rds_export_operator.catalog import schema
from rds_export_operator.catalog.register import CATALOGED, LATEST, CatalogSpec, Registrar, Where

REGION, BUCKET = "eu-west-1", "exports"
COLUMNS = [
    {"columnName": "id", "originalType": "bigint", "expectedExportedType": "int64"},
    {"columnName": "placed_at", "originalType": "date", "expectedExportedType": "binary (UTF8)"},
]


def where(identifier: str, owner: str = "team-a/nightly", snapshot_time: str = "") -> Where:
    return Where(REGION, BUCKET, f"rds/{identifier}/", identifier, owner, snapshot_time=snapshot_time)


def seed(identifier: str, tables: int, *, failed: int = 0) -> None:
    entries: list[dict[str, Any]] = [{"target": "postgres", "warningMessage": "database-level"}]
    for i in range(tables):
        status = "FAILED" if i < failed else "COMPLETE"
        meta = {"originalTypeMappings": COLUMNS}
        entries.append({"target": f"postgres.public.t{i:04d}", "status": status, "schemaMetadata": meta})
    name = f"rds/{identifier}/export_tables_info_{identifier}_from_1_to_{len(entries)}.json"
    put(name, json.dumps({"perTableStatus": entries}).encode())
    put(f"rds/{identifier}/export_info_{identifier}.json", b'{"status": "COMPLETE"}')


def put(key: str, body: bytes) -> None:
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=body)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield Counter()


def registrar(calls: Counter[str], batch: int = 500) -> Registrar:
    glue = Glue(calls_per_second=0, observe=lambda op, outcome, seconds: calls.update([op]))
    return Registrar(glue, S3(), batch=batch)


def run(reg: Registrar, spec: CatalogSpec, at: Where, status: dict[str, Any] | None = None) -> dict[str, Any]:
    """Passes until the condition is final, each fed the status the last one wrote (as kopf's patches do)."""
    status = dict(status or {})
    for _ in range(100):
        result = reg.register(spec, at, status)
        status.update(result.status)
        if result.status["conditions"][0].status != "Unknown":
            return status
    raise AssertionError(f"not final: {status}")


def glue_tables(database: str) -> dict[str, dict[str, Any]]:
    pages = boto3.client("glue", region_name=REGION).get_paginator("get_tables").paginate(DatabaseName=database)
    return {t["Name"]: t for page in pages for t in page["TableList"]}


def test_per_export_registers_each_complete_table_with_one_call_each(aws: Counter[str]) -> None:
    seed("exp-1", 12, failed=2)
    status = run(registrar(aws), CatalogSpec("analytics"), where("exp-1"))
    catalog = status["catalog"]
    assert (catalog["tablesRegistered"], catalog["tablesLeftOut"]) == (10, 2)
    assert [x["reason"] for x in catalog["leftOut"]] == ["NotComplete", "NotComplete"]
    assert status["conditions"][0].reason == "TablesLeftOut"
    tables = glue_tables("analytics")
    assert len(tables) == 10
    t = tables["postgres_public_t0005_exp_1"]
    assert t["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/rds/exp-1/postgres/public.t0005/"
    assert [(c["Name"], c["Type"], c["Comment"]) for c in t["StorageDescriptor"]["Columns"]] == [
        ("id", "bigint", "bigint"),
        ("placed_at", "string", "date"),
    ]
    assert aws["CreateTable"] == 10 and aws["GetTable"] == 0 and aws["CreateDatabase"] == 1


def test_small_passes_resume_and_a_repeated_pass_adopts_without_duplicates(aws: Counter[str]) -> None:
    seed("exp-1", 7)
    reg = registrar(aws, batch=3)
    first = reg.register(CatalogSpec("analytics"), where("exp-1"), {})
    assert first.status["catalog"]["next"] == 3 and first.retry_after is not None
    # A crash before the status was written: the same pass runs again from the old status.
    status = run(reg, CatalogSpec("analytics"), where("exp-1"))
    assert status["catalog"]["tablesRegistered"] == 7 and status["catalog"]["tablesLeftOut"] == 0
    assert status["conditions"][0].type == CATALOGED and status["conditions"][0].status == "True"
    assert len(glue_tables("analytics")) == 7
    assert aws["CreateTable"] == 10 and aws["GetTable"] == 3  # the 3 repeated ones: AlreadyExists, then adopted


def test_latest_repoints_the_same_names_and_keeps_the_old_location_as_a_version(aws: Counter[str]) -> None:
    spec = CatalogSpec("analytics", mode=LATEST)
    seed("exp-1", 3)
    run(registrar(aws), spec, where("exp-1"))
    seed("exp-2", 3)
    status = run(registrar(aws), spec, where("exp-2"))
    assert status["catalog"]["tablesRegistered"] == 3
    tables = glue_tables("analytics")
    assert sorted(tables) == ["postgres_public_t0000", "postgres_public_t0001", "postgres_public_t0002"]
    assert tables["postgres_public_t0001"]["StorageDescriptor"]["Location"].endswith(
        "/rds/exp-2/postgres/public.t0001/"
    )
    assert tables["postgres_public_t0001"]["Parameters"][schema.EXPORT] == "exp-2"
    versions = boto3.client("glue", region_name=REGION).get_table_versions(
        DatabaseName="analytics", TableName="postgres_public_t0001"
    )["TableVersions"]
    locations = {v["Table"]["StorageDescriptor"]["Location"] for v in versions}
    assert any("/exp-1/" in loc for loc in locations)
    assert aws["UpdateTable"] == 3


def test_a_late_pass_of_an_older_export_never_moves_a_latest_table_back(aws: Counter[str]) -> None:
    # Bug (review of the merge): Latest repointed whenever the export differed, so an older child's late pass
    # (a report waiting on IAM, a backoff) moved every table back to the older snapshot's data.
    spec = CatalogSpec("analytics", mode=LATEST)
    seed("exp-2", 2)
    run(registrar(aws), spec, where("exp-2", snapshot_time="2026-12-02T03:00:00Z"))
    seed("exp-1", 2)
    status = run(registrar(aws), spec, where("exp-1", snapshot_time="2026-12-01T03:00:00Z"))
    assert [x["reason"] for x in status["catalog"]["leftOut"]] == ["NewerExport", "NewerExport"]
    assert {t["Parameters"][schema.EXPORT] for t in glue_tables("analytics").values()} == {"exp-2"}
    seed("exp-3", 2)
    run(registrar(aws), spec, where("exp-3", snapshot_time="2026-12-03T03:00:00Z"))  # a newer one still moves it
    assert {t["Parameters"][schema.EXPORT] for t in glue_tables("analytics").values()} == {"exp-3"}


def test_a_table_this_owner_did_not_register_is_left_unchanged(aws: Counter[str]) -> None:
    seed("exp-1", 2)
    glue = boto3.client("glue", region_name=REGION)
    glue.create_database(DatabaseInput={"Name": "analytics"})
    glue.create_table(DatabaseName="analytics", TableInput={"Name": "postgres_public_t0000", "Parameters": {}})
    status = run(registrar(aws), CatalogSpec("analytics", mode=LATEST), where("exp-1"))
    assert status["catalog"]["tablesRegistered"] == 1 and status["catalog"]["tablesLeftOut"] == 1
    assert status["catalog"]["leftOut"][0]["reason"] == "NameTaken"
    assert schema.OWNER not in glue_tables("analytics")["postgres_public_t0000"].get("Parameters", {})


def test_remove_deletes_only_this_exports_tables(aws: Counter[str]) -> None:
    seed("exp-1", 3)
    seed("exp-2", 2)
    reg = registrar(aws)
    run(reg, CatalogSpec("analytics"), where("exp-1"))
    run(reg, CatalogSpec("analytics"), where("exp-2"))
    run(reg, CatalogSpec("analytics"), where("exp-2", owner="team-b/other"))  # NameTaken: same names, other owner
    assert reg.remove(CatalogSpec("analytics"), where("exp-1")) == []
    assert sorted(glue_tables("analytics")) == ["postgres_public_t0000_exp_2", "postgres_public_t0001_exp_2"]


class Throttled:
    """Glue that throttles every table call; the database call succeeds."""

    def ensure_database(self, region: str, name: str, **_: Any) -> bool:
        return True

    def create_table(self, *args: Any, **kwargs: Any) -> None:
        raise AwsError(ErrorKind.RETRYABLE, "ThrottlingException", "Rate exceeded", "CreateTable")

    def get_table(self, *args: Any, **kwargs: Any) -> None:
        raise AwsError(ErrorKind.UNAUTHORIZED, "AccessDeniedException", "not yet", "GetTable")


@pytest.mark.parametrize(("mode", "reason"), [("PerExport", "GlueUnavailable"), (LATEST, "AccessDenied")])
def test_throttling_and_access_denied_retry_and_keep_the_cursor(aws: Counter[str], mode: str, reason: str) -> None:
    seed("exp-1", 2)
    reg = Registrar(Throttled(), S3())  # type: ignore[arg-type]
    result = reg.register(CatalogSpec("analytics", mode=mode), where("exp-1"), {}, attempt=3)
    cond = result.status["conditions"][0]
    assert (cond.status, cond.reason) == ("Unknown", reason)
    assert result.retry_after is not None and result.retry_after > 0
    assert result.status["catalog"]["next"] == 0 and not result.events


def test_no_table_files_yet_is_retried(aws: Counter[str]) -> None:
    result = registrar(aws).register(CatalogSpec("analytics"), where("exp-9"), {})
    assert result.status["conditions"][0].reason == "NotFound" and result.retry_after


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"export_tables_info_exp-1_from_1_to_2.json": b'{"perTableStatus": []}'}, "Incomplete"),  # range unmet
        ({"export_tables_info_exp-1_from_2_to_3.json": b'{"perTableStatus": []}'}, "Incomplete"),  # 1 missing
        ({"export_info_exp-1.json": b'{"status": "IN_PROGRESS"}'}, "Incomplete"),  # written at the start
    ],
)
def test_table_files_not_yet_complete_are_retried_before_any_glue_call(
    aws: Counter[str], files: dict[str, bytes], reason: str
) -> None:
    seed("exp-1", 2)
    for name, body in files.items():
        put(f"rds/exp-1/{name}", body)
    result = registrar(aws).register(CatalogSpec("analytics"), where("exp-1"), {})
    cond = result.status["conditions"][0]
    assert (cond.status, cond.reason) == ("Unknown", reason) and result.retry_after
    assert not aws and "catalog" not in result.status


def test_the_pacer_spaces_calls_without_holding_its_lock_while_waiting() -> None:
    now = [0.0]
    slept: list[float] = []
    pacer = Pacer(4.0, clock=lambda: now[0])
    pacer.sleep = slept.append  # type: ignore[method-assign]
    for _ in range(5):
        pacer.wait()
    assert slept == [0.25, 0.5, 0.75, 1.0]
    assert not pacer._lock.locked()


def test_malformed_table_files_are_final_not_retried(aws: Counter[str]) -> None:
    seed("exp-1", 2)
    put("rds/exp-1/export_tables_info_exp-1_from_1_to_3.json", b"{not json")
    result = registrar(aws).register(CatalogSpec("analytics"), where("exp-1"), {})
    cond = result.status["conditions"][0]
    assert (cond.status, cond.reason, result.retry_after) == ("False", "Malformed", None)
    assert aws["CreateTable"] == 0


class RefusingDatabase(Throttled):
    def ensure_database(self, region: str, name: str, **_: Any) -> bool:
        raise AwsError(ErrorKind.TERMINAL, "InvalidInputException", "bad name", "CreateDatabase")


def test_a_database_glue_refuses_is_final(aws: Counter[str]) -> None:
    seed("exp-1", 1)
    result = Registrar(RefusingDatabase(), S3()).register(CatalogSpec("analytics"), where("exp-1"), {})  # type: ignore[arg-type]
    cond = result.status["conditions"][0]
    assert (cond.status, cond.reason, result.retry_after) == ("False", "GlueRefused", None)
