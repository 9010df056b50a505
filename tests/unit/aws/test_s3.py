"""s3.py against the AWS stand-in's S3 (moto over HTTP), and the stand-in's info files and bucket denial."""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber

from localdev.controlplane import free_port
from localdev.standin.s3 import DEFAULT_TABLES, exported_tables
from localdev.standin.server import StandInServer
from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.identity import Identity
from rds_export_operator.aws.s3 import CHUNK, S3, ObjectTooLarge
from rds_export_operator.tables import parsing as tables
from rds_export_operator.tables.report import TableReporter, Target


@pytest.fixture
def aws(server: StandInServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInServer]:
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    yield server
    server.standin.reset()


def name(prefix: str = "b") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def raw_s3(server: StandInServer) -> Any:
    return server.session().client("s3", endpoint_url=server.url)


def bucket_with(server: StandInServer, keys: dict[str, bytes]) -> str:
    bucket = name()
    client = raw_s3(server)
    client.create_bucket(Bucket=bucket)
    for key, body in keys.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


def test_list_is_paginated_and_bounded(aws: StandInServer) -> None:
    bucket = bucket_with(aws, {f"p/k{i:03}": b"x" * i for i in range(12)} | {"other/k": b""})
    s3 = S3()
    found, more = s3.list("us-east-1", bucket, "p/", limit=5)
    assert [o.key for o in found] == [f"p/k{i:03}" for i in range(5)] and more
    assert [o.size for o in found] == [0, 1, 2, 3, 4]
    found, more = s3.list("us-east-1", bucket, "p/", limit=100)
    assert len(found) == 12 and not more


def test_the_standin_records_s3_requests_and_their_caller(aws: StandInServer) -> None:
    bucket = bucket_with(aws, {"p/k": b"v"})
    S3().get("us-east-1", bucket, "p/k", max_bytes=9)
    calls = aws.standin.s3_calls(bucket)
    assert [(c.method, c.key, c.caller) for c in calls][-1] == ("GET", "p/k", "default")


def test_get_with_a_cap(aws: StandInServer) -> None:
    bucket = bucket_with(aws, {"small": b"12345", "big": b"x" * 100})
    calls: list[tuple[str, str]] = []
    s3 = S3(observe=lambda op, outcome, seconds: calls.append((op, outcome)))
    assert s3.get("us-east-1", bucket, "small", max_bytes=5) == b"12345"
    with pytest.raises(ObjectTooLarge):
        s3.get("us-east-1", bucket, "big", max_bytes=99)
    assert s3.get("us-east-1", bucket, "missing", max_bytes=10) is None
    assert calls == [("GetObject", "Success"), ("GetObject", "TooLarge"), ("GetObject", "NoSuchKey")]


def test_a_body_longer_than_announced_is_cut_at_the_cap() -> None:
    class Body:
        def __init__(self) -> None:
            self.asked: list[int] = []

        def read(self, amount: int) -> bytes:
            self.asked.append(amount)
            return b"x" * amount

        def close(self) -> None:
            pass

    body = Body()
    s3 = S3(session_factory=lambda: boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t"))
    client = s3.client("us-east-1")
    with Stubber(client) as stub:
        stub.add_response("get_object", {"Body": body, "ContentLength": 3}, {"Bucket": "b", "Key": "k"})  # type: ignore[dict-item]
        with pytest.raises(ObjectTooLarge):
            s3.get("us-east-1", "b", "k", max_bytes=10)
    assert body.asked == [11]


def test_a_large_object_is_streamed_in_bounded_chunks(aws: StandInServer) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    bucket = bucket_with(aws, {"big": data})
    chunks = S3().stream("us-east-1", bucket, "big", max_bytes=len(data))
    assert chunks is not None
    parts = list(chunks)
    assert b"".join(parts) == data and len(parts) >= 4 and max(map(len, parts)) <= CHUNK


def test_a_stream_that_breaks_off_is_a_retryable_error() -> None:
    class Body:
        closed = False

        def __init__(self) -> None:
            self.reads = 0

        def read(self, amount: int) -> bytes:
            self.reads += 1
            if self.reads > 1:
                raise botocore.exceptions.ReadTimeoutError(endpoint_url="http://s3")
            return b"x" * amount

        def close(self) -> None:
            Body.closed = True

    s3 = S3(session_factory=lambda: boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t"))
    client = s3.client("us-east-1")
    with Stubber(client) as stub:
        stub.add_response("get_object", {"Body": Body(), "ContentLength": 10**7}, {"Bucket": "b", "Key": "k"})  # type: ignore[dict-item]
        chunks = s3.stream("us-east-1", "b", "k", max_bytes=10**8)
        assert chunks is not None
        assert len(next(chunks)) == CHUNK
        with pytest.raises(AwsError) as caught:
            next(chunks)
    assert caught.value.kind is ErrorKind.RETRYABLE and caught.value.code == "ReadTimeoutError"
    assert Body.closed


def test_missing_bucket_is_not_found(aws: StandInServer) -> None:
    with pytest.raises(AwsError) as caught:
        S3().list("us-east-1", name("missing"), "p/", limit=10)
    assert (caught.value.kind, caught.value.code) == (ErrorKind.NOT_FOUND, "NoSuchBucket")


def test_denied_bucket_is_unauthorized(aws: StandInServer) -> None:
    bucket = bucket_with(aws, {"k": b"v"})
    aws.standin.deny_bucket(bucket)
    for call in (
        lambda s3: s3.list("us-east-1", bucket, "", limit=10),
        lambda s3: s3.get("us-east-1", bucket, "k", max_bytes=9),
    ):
        with pytest.raises(AwsError) as caught:
            call(S3())
        assert (caught.value.kind, caught.value.code) == (ErrorKind.UNAUTHORIZED, "AccessDenied")
    other = bucket_with(aws, {"k": b"v"})  # other buckets still answer
    assert S3().get("us-east-1", other, "k", max_bytes=9) == b"v"
    aws.standin.reset()
    assert S3().get("us-east-1", bucket, "k", max_bytes=9) == b"v"


@pytest.mark.parametrize(("code", "status"), [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503)])
def test_throttling_and_5xx_are_retryable(code: str, status: int) -> None:
    s3 = S3(session_factory=lambda: boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t"))
    client = s3.client("us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("list_objects_v2", code, "busy", status)
        with pytest.raises(AwsError) as caught:
            s3.list("us-east-1", "b", "p/", limit=10)
    assert caught.value.kind is ErrorKind.RETRYABLE


def test_network_errors_are_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    s3 = S3(session_factory=lambda: boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t"), timeout=2)
    with pytest.raises(AwsError) as caught:
        s3.get("us-east-1", "b", "k", max_bytes=10)
    assert caught.value.kind is ErrorKind.RETRYABLE and caught.value.code == "EndpointConnectionError"


# -- the stand-in's info files -----------------------------------------------------------------------------------


def completed(aws: StandInServer, identifier: str, bucket: str, prefix: str | None = "exports") -> None:
    aws.standin.seed(identifier, bucket=bucket, prefix=prefix)
    aws.standin.set_task(identifier, status="COMPLETE")


def test_completion_writes_the_info_files_the_reporter_reads(aws: StandInServer) -> None:
    identifier, bucket = name("exp"), name()
    aws.standin.table_outcomes(identifier, {"postgres.public.orders": "FAILED", "postgres.public.extra": "SKIPPED"})
    completed(aws, identifier, bucket)
    keys = sorted(o["Key"] for o in raw_s3(aws).list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [
        f"exports/{identifier}/export_info_{identifier}.json",
        f"exports/{identifier}/export_tables_info_{identifier}_from_1_to_4.json",  # a database entry, 3 tables
    ]
    info = json.loads(raw_s3(aws).get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    assert (info["exportTaskIdentifier"], info["status"], info["s3Bucket"]) == (identifier, "COMPLETE", bucket)
    assert isinstance(info["totalExportedDataInGB"], float)
    entries = json.loads(raw_s3(aws).get_object(Bucket=bucket, Key=keys[1])["Body"].read())["perTableStatus"]
    assert entries[0] == {"target": "postgres", "warningMessage": entries[0]["warningMessage"]}  # database-level
    table = entries[1]
    assert set(table) == {"tableStatistics", "schemaMetadata", "status", "sizeGB", "target"}
    assert table["tableStatistics"]["partitioningInfo"] == {"numberOfPartitions": 1, "numberOfCompletedPartitions": 1}
    assert table["schemaMetadata"]["originalTypeMappings"][0] == {
        "columnName": "id",
        "originalType": "bigint",
        "expectedExportedType": "int64",
        "originalCharMaxLength": 0,
        "originalNumPrecision": 64,
        "originalDateTimePrecision": 0,
    }
    # Skipped tables are not in the files but in the task's WarningMessage.
    warning = aws.standin.task(identifier).warning
    assert warning is not None and json.loads(warning) == {
        "skippedTables": [{"target": "postgres.public.extra", "reason": "PERMISSIONS_DO_NOT_EXIST"}],
        "skippedObjectives": [],
        "general": [],
    }

    result = TableReporter(S3()).report(
        Target("us-east-1", bucket, f"exports/{identifier}/", identifier, "COMPLETE"), {"warningMessage": warning}
    )
    assert {k: result.status["tables"][k] for k in ("total", "complete", "failed", "skipped")} == {
        "total": 4,
        "complete": 2,
        "failed": 1,
        "skipped": 1,
    }
    assert [t["target"] for t in result.status["failedTables"]] == ["postgres.public.orders", "postgres.public.extra"]
    assert [d["target"] for d in result.status["tables"]["databases"]] == ["postgres"]


def test_export_info_is_written_at_the_start_and_again_at_the_end(aws: StandInServer) -> None:
    identifier, bucket = name("exp"), name()
    aws.standin.seed(identifier, bucket=bucket, prefix=None)
    aws.standin.set_task(identifier, status="IN_PROGRESS", percent=40)
    keys = [o["Key"] for o in raw_s3(aws).list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"{identifier}/export_info_{identifier}.json"]
    info = json.loads(raw_s3(aws).get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    assert (info["status"], info["percentProgress"]) == ("IN_PROGRESS", 40)
    aws.standin.set_task(identifier, status="COMPLETE")
    info = json.loads(raw_s3(aws).get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    assert info["status"] == "COMPLETE"


def test_many_tables_span_several_files(aws: StandInServer) -> None:
    identifier, bucket = name("exp"), name()
    aws.standin.table_outcomes(identifier, {f"db.s.t{i:03}": "COMPLETE" for i in range(250)})
    completed(aws, identifier, bucket, prefix=None)
    files = aws.standin.table_files(identifier)
    assert sorted(n for n in files if n.startswith("export_tables")) == [
        f"export_tables_info_{identifier}_from_101_to_200.json",
        f"export_tables_info_{identifier}_from_1_to_100.json",
        f"export_tables_info_{identifier}_from_201_to_254.json",
    ]
    assert len(exported_tables(files)) == 253
    result = TableReporter(S3()).report(Target("us-east-1", bucket, f"{identifier}/", identifier, "COMPLETE"), {})
    assert result.status["tablesSummary"] == "253/253"


def test_a_generated_export_has_the_shape_asked_for(aws: StandInServer) -> None:
    identifier = name("exp")
    aws.standin.table_shape(identifier, count=1200, columns=30, per_file=500, databases=(), general=("X",))
    aws.standin.seed(identifier, bucket=name())
    files = aws.standin.table_files(identifier)
    assert sorted(len(json.loads(c)["perTableStatus"]) for n, c in files.items() if "tables_info" in n) == [
        200,
        500,
        500,
    ]
    first = json.loads(files[f"export_tables_info_{identifier}_from_1_to_500.json"])["perTableStatus"][0]
    columns = first["schemaMetadata"]["originalTypeMappings"]
    assert len(columns) == 30 and len({c["columnName"] for c in columns}) == 30
    assert 4000 < len(json.dumps(first)) < 8000  # about 6 KB for a 30-column table (shared/rds-export-api.md)
    aws.standin.set_task(identifier, status="COMPLETE")
    warning = aws.standin.task(identifier).warning
    assert warning is not None and json.loads(warning)["general"] == [{"reason": "X"}]


def test_held_files_appear_only_when_written(aws: StandInServer) -> None:
    identifier, bucket = name("exp"), name()
    aws.standin.hold_table_files("exp-*")
    completed(aws, identifier, bucket)
    assert not _exists(aws, bucket)  # nothing written, not even the bucket
    keys = aws.standin.write_table_files(identifier)
    assert len(keys) == 2
    assert exported_tables(aws.standin.table_files(identifier)) == list(DEFAULT_TABLES)


def test_raw_files_and_failed_tasks_write_nothing_by_default(aws: StandInServer) -> None:
    identifier, bucket = name("exp"), name()
    aws.standin.seed(identifier, bucket=bucket, prefix="p")
    aws.standin.set_task(identifier, status="FAILED", failure_cause="x")
    assert not _exists(aws, bucket)
    aws.standin.write_table_files(
        identifier,
        {
            f"export_tables_info_{identifier}_from_1_to_1.json": b"{oops",
            f"export_info_{identifier}.json": b'{"status": "FAILED"}',
        },
    )
    result = TableReporter(S3()).report(Target("us-east-1", bucket, f"p/{identifier}/", identifier, "FAILED"), {})
    assert result.status["conditions"][0].reason == "Malformed"


def test_table_outcomes_are_checked() -> None:
    from localdev.standin.server import RdsExportStandIn

    standin = RdsExportStandIn(lambda environ, start_response: [])
    with pytest.raises(ValueError, match="COMPLETE, FAILED, SKIPPED"):
        standin.table_outcomes("*", {"a.b.c": "BROKEN"})


def test_the_caps_are_what_the_gateway_is_asked_for(aws: StandInServer) -> None:
    identifier, bucket = name("exp"), name()
    completed(aws, identifier, bucket)
    asked: list[int] = []

    class Spy(S3):
        def stream(
            self, region: str, bucket: str, key: str, *, max_bytes: int, identity: Identity | None = None
        ) -> Generator[bytes] | None:
            asked.append(max_bytes)
            return super().stream(region, bucket, key, max_bytes=max_bytes, identity=identity)

    reporter = TableReporter(Spy())
    reporter.report(Target("us-east-1", bucket, f"exports/{identifier}/", identifier, "COMPLETE"), {})
    assert asked == [tables.MAX_INFO_BYTES, reporter.policy.max_file_bytes]


def _exists(aws: StandInServer, bucket: str) -> bool:
    try:
        raw_s3(aws).head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError:
        return False
    return True
