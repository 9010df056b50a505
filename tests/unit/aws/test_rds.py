"""rds.py: botocore errors -> ErrorKind, StartExportTask parameters, and the gateway against a stubbed client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.exceptions
import botocore.session
import pytest
from botocore.stub import Stubber

from rds_export_operator.api.spec import parse_spec
from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.rds import Rds, start_request


def client_error(code: str, message: str = "msg", http_status: int | None = 400) -> botocore.exceptions.ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": message}}
    if http_status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": http_status}
    return botocore.exceptions.ClientError(response, "StartExportTask")  # type: ignore[arg-type]


# One botocore session for the module: its loader caches the RDS service model, so each client is cheap.
# Clients copy the session's event hooks, so a Stubber on one client never affects another.
_BOTOCORE = botocore.session.get_session()
_BOTOCORE.set_credentials("testing", "testing")


def session() -> boto3.session.Session:
    return boto3.session.Session(botocore_session=_BOTOCORE)


# -- start_request --------------------------------------------------------------------------------------------------

BASE = {
    "sourceArn": "arn:aws:rds:eu-west-1:123456789012:snapshot:s",
    "s3BucketName": "bucket",
    "iamRoleArn": "arn:aws:iam::123456789012:role/r",
    "kmsKeyId": "alias/k",
    "exportTaskIdentifier": "exp-1",
}


def spec(**overrides: Any) -> Any:
    return parse_spec({**BASE, **overrides}, namespace="n", name="m", uid="u", default_region="")


def test_start_request_minimal() -> None:
    assert start_request(spec()) == {
        "ExportTaskIdentifier": "exp-1",
        "SourceArn": BASE["sourceArn"],
        "S3BucketName": "bucket",
        "IamRoleArn": BASE["iamRoleArn"],
        "KmsKeyId": "alias/k",
    }


def test_start_request_optional_fields() -> None:
    params = start_request(spec(s3Prefix="exports/daily", exportOnly=["db.t1", "db.t2"]))
    assert params["S3Prefix"] == "exports/daily"
    assert params["ExportOnly"] == ["db.t1", "db.t2"]
    assert isinstance(params["ExportOnly"], list)


def test_start_request_omits_empty_optional_fields() -> None:
    params = start_request(spec(s3Prefix="", exportOnly=[]))
    assert "S3Prefix" not in params and "ExportOnly" not in params


def test_start_request_is_valid_for_botocore() -> None:
    client = session().client("rds", region_name="eu-west-1")
    with Stubber(client) as stubber:
        params = start_request(spec(s3Prefix="p", exportOnly=["db"]))
        stubber.add_response("start_export_task", {"ExportTaskIdentifier": "exp-1"}, params)
        client.start_export_task(**params)  # the stubber validates names and types against the model
        stubber.assert_no_pending_responses()


# -- the gateway, with a stubbed client (no network) -----------------------------------------------------------------


@pytest.fixture
def gateway() -> Iterator[tuple[Rds, Stubber, list[tuple[str, str]]]]:
    observed: list[tuple[str, str]] = []
    rds = Rds(
        session_factory=session,
        observe=lambda op, outcome, seconds: observed.append((op, outcome)),
    )
    with Stubber(rds.client("eu-west-1")) as stubber:
        yield rds, stubber, observed
        stubber.assert_no_pending_responses()


def test_client_is_cached_per_region(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    rds, _, _ = gateway
    assert rds.client("eu-west-1") is rds.client("eu-west-1")
    assert rds.client("us-east-1") is not rds.client("eu-west-1")
    assert rds.client("us-east-1").meta.region_name == "us-east-1"


def test_start_returns_the_task_without_metadata(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    rds, stubber, observed = gateway
    stubber.add_response(
        "start_export_task",
        {"ExportTaskIdentifier": "exp-1", "Status": "STARTING", "ResponseMetadata": {"HTTPStatusCode": 200}},
    )
    task = rds.start(spec())
    assert task == {"ExportTaskIdentifier": "exp-1", "Status": "STARTING"}
    assert observed == [("StartExportTask", "Success")]


def test_start_error_is_classified(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    rds, stubber, observed = gateway
    stubber.add_client_error("start_export_task", "ExportTaskAlreadyExists", "exists", 400)
    with pytest.raises(AwsError) as info:
        rds.start(spec())
    assert info.value.kind is ErrorKind.ALREADY_EXISTS
    assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)
    assert observed == [("StartExportTask", "ExportTaskAlreadyExists")]


def test_describe_finds_the_exact_identifier(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    rds, stubber, _ = gateway
    when = datetime(2026, 1, 1, tzinfo=UTC)
    tasks = [
        {"ExportTaskIdentifier": "exp-10", "Status": "COMPLETE"},
        {"ExportTaskIdentifier": "exp-1", "Status": "IN_PROGRESS", "TaskStartTime": when},
    ]
    stubber.add_response("describe_export_tasks", {"ExportTasks": tasks}, {"ExportTaskIdentifier": "exp-1"})
    assert rds.describe("eu-west-1", "exp-1") == tasks[1]


def test_describe_unknown_is_none(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    rds, stubber, observed = gateway
    stubber.add_response("describe_export_tasks", {"ExportTasks": []})
    stubber.add_client_error("describe_export_tasks", "ExportTaskNotFound", "none", 404)
    assert rds.describe("eu-west-1", "exp-1") is None
    assert rds.describe("eu-west-1", "exp-1") is None
    assert observed == [("DescribeExportTasks", "Success"), ("DescribeExportTasks", "ExportTaskNotFound")]


def test_describe_access_denied_is_never_a_verdict(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    # Bug (issue 9): one AccessDenied on DescribeExportTasks (a policy being rotated) was TERMINAL.
    rds, stubber, _ = gateway
    stubber.add_client_error("describe_export_tasks", "AccessDenied", "no", 403)
    stubber.add_client_error("describe_export_tasks", "SomethingNew", "?", 400)
    for _ in range(2):
        with pytest.raises(AwsError) as info:
            rds.describe("eu-west-1", "exp-1")
        assert info.value.kind in (ErrorKind.UNAUTHORIZED, ErrorKind.RETRYABLE)


def test_cancel_error_kinds(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    rds, stubber, _ = gateway
    stubber.add_client_error("cancel_export_task", "InvalidExportTaskStateFault", "finished", 400)
    stubber.add_response("cancel_export_task", {"ExportTaskIdentifier": "exp-1", "Status": "CANCELING"})
    with pytest.raises(AwsError) as info:
        rds.cancel("eu-west-1", "exp-1")
    assert info.value.kind is ErrorKind.INVALID_STATE
    assert rds.cancel("eu-west-1", "exp-1")["Status"] == "CANCELING"


def test_describe_by_status_pages(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    rds, stubber, _ = gateway
    filters = [{"Name": "status", "Values": ["in_progress"]}]
    stubber.add_response(
        "describe_export_tasks",
        {"ExportTasks": [{"ExportTaskIdentifier": "a"}], "Marker": "m1"},
        {"Filters": filters, "MaxRecords": 20},
    )
    stubber.add_response(
        "describe_export_tasks",
        {"ExportTasks": [{"ExportTaskIdentifier": "b"}]},
        {"Filters": filters, "MaxRecords": 20, "Marker": "m1"},
    )
    ids = [t["ExportTaskIdentifier"] for t in rds.describe_by_status("eu-west-1", ["in_progress"], page_size=20)]
    assert ids == ["a", "b"]


def test_describe_by_status_stops_on_a_repeated_marker(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    rds, stubber, _ = gateway
    page = {"ExportTasks": [{"ExportTaskIdentifier": "a", "Status": "STARTING"}], "Marker": "same"}
    stubber.add_response("describe_export_tasks", page)
    stubber.add_response("describe_export_tasks", page)
    with pytest.raises(AwsError) as info:
        list(rds.describe_by_status("eu-west-1", ["starting"]))
    assert (info.value.kind, info.value.code) == (ErrorKind.RETRYABLE, "PaginationLoop")


def test_describe_many_batches_by_100(
    gateway: tuple[Rds, Stubber, list[tuple[str, str]]],
) -> None:
    rds, stubber, _ = gateway
    wanted = [f"t{i}" for i in range(150)]
    for chunk in (wanted[:100], wanted[100:]):
        expected = {"Filters": [{"Name": "export-task-identifier", "Values": chunk}], "MaxRecords": 100}
        answer = [{"ExportTaskIdentifier": i, "Status": "COMPLETE"} for i in chunk[:3]]
        stubber.add_response("describe_export_tasks", {"ExportTasks": answer}, expected)
    found = rds.describe_many("eu-west-1", wanted)
    assert [t["ExportTaskIdentifier"] for t in found] == ["t0", "t1", "t2", "t100", "t101", "t102"]
    stubber.assert_no_pending_responses()


def test_describe_many_on_an_endpoint_that_ignores_the_filter_scans_once(
    gateway: tuple[Rds, Stubber, list[tuple[str, str]]],
) -> None:
    """moto and LocalStack ignore the filter and list every task: one scan answers every identifier asked, so 250
    identifiers among 300 tasks cost the 3 pages of one listing, not 3 listings (one per batch of 100)."""
    rds, stubber, _ = gateway
    every = [{"ExportTaskIdentifier": f"t{i}", "Status": "COMPLETE"} for i in range(300)]
    for page in range(3):
        answer: dict[str, Any] = {"ExportTasks": every[page * 100 : (page + 1) * 100]}
        if page < 2:
            answer["Marker"] = f"m{page + 1}"
        stubber.add_response("describe_export_tasks", answer)
    wanted = [f"t{i}" for i in range(50, 300)]
    found = rds.describe_many("eu-west-1", wanted)
    assert [t["ExportTaskIdentifier"] for t in found] == wanted
    stubber.assert_no_pending_responses()
