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

from rds_export_operator.rds import THROTTLING_CODES, AwsError, ErrorKind, Rds, classify, start_request
from rds_export_operator.spec import parse_spec


def client_error(code: str, message: str = "msg", http_status: int | None = 400) -> botocore.exceptions.ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": message}}
    if http_status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": http_status}
    return botocore.exceptions.ClientError(response, "StartExportTask")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("Throttling", ErrorKind.RETRYABLE),
        ("ThrottlingException", ErrorKind.RETRYABLE),
        ("RequestLimitExceeded", ErrorKind.RETRYABLE),
        ("TooManyRequestsException", ErrorKind.RETRYABLE),
        ("ServiceUnavailable", ErrorKind.RETRYABLE),
        ("InternalFailure", ErrorKind.RETRYABLE),
        ("RequestTimeout", ErrorKind.RETRYABLE),
        ("ExportTaskNotFound", ErrorKind.NOT_FOUND),
        ("ExportTaskNotFoundFault", ErrorKind.NOT_FOUND),
        ("ExportTaskLimitReachedFault", ErrorKind.LIMIT_REACHED),
        ("ExportTaskAlreadyExists", ErrorKind.ALREADY_EXISTS),
        ("ExportTaskAlreadyExistsFault", ErrorKind.ALREADY_EXISTS),
        ("InvalidExportTaskStateFault", ErrorKind.INVALID_STATE),
        ("AccessDenied", ErrorKind.TERMINAL),
        ("IamRoleNotFound", ErrorKind.TERMINAL),
        ("KMSKeyNotAccessibleFault", ErrorKind.TERMINAL),
        ("DBSnapshotNotFound", ErrorKind.TERMINAL),
    ],
)
def test_classify_known_codes(code: str, kind: ErrorKind) -> None:
    error = classify(client_error(code, "details"), "StartExportTask")
    assert error.kind is kind
    assert (error.code, error.message, error.operation) == (code, "details", "StartExportTask")
    assert error.throttled is (code in THROTTLING_CODES)


@pytest.mark.parametrize("code", ["Throttling", "ExportTaskNotFound", "ExportTaskAlreadyExists"])
def test_classify_known_codes_ignore_http_status(code: str) -> None:
    assert classify(client_error(code, http_status=500), "x").kind == classify(client_error(code), "x").kind


@pytest.mark.parametrize(
    ("http_status", "kind"),
    [
        (400, ErrorKind.TERMINAL),
        (403, ErrorKind.TERMINAL),
        (404, ErrorKind.TERMINAL),
        (499, ErrorKind.TERMINAL),
        (None, ErrorKind.TERMINAL),  # no status at all: treated as a 400
        (500, ErrorKind.RETRYABLE),
        (502, ErrorKind.RETRYABLE),
        (503, ErrorKind.RETRYABLE),
    ],
)
def test_classify_unknown_codes_by_http_status(http_status: int | None, kind: ErrorKind) -> None:
    assert classify(client_error("SomethingNew", http_status=http_status), "op").kind is kind


def test_classify_client_error_without_error_body() -> None:
    exc = botocore.exceptions.ClientError({"ResponseMetadata": {"HTTPStatusCode": 503}}, "DescribeExportTasks")  # type: ignore[arg-type]
    error = classify(exc, "DescribeExportTasks")
    assert (error.kind, error.code, error.message) == (ErrorKind.RETRYABLE, "Unknown", "")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (botocore.exceptions.NoCredentialsError(), "NoCredentials"),
        (
            botocore.exceptions.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
            "NoCredentials",
        ),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="https://rds"), "EndpointConnectionError"),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="https://rds"), "ReadTimeoutError"),
        (ConnectionResetError("reset"), "ConnectionResetError"),
        (ValueError("bad xml"), "ValueError"),
    ],
)
def test_classify_non_client_errors_are_retryable(exc: Exception, code: str) -> None:
    error = classify(exc, "CancelExportTask")
    assert error.kind is ErrorKind.RETRYABLE
    assert error.code == code
    assert error.operation == "CancelExportTask"
    assert error.message == str(exc)
    assert not error.throttled


def test_aws_error_text() -> None:
    error = AwsError(ErrorKind.TERMINAL, "AccessDenied", "no", "StartExportTask")
    assert str(error) == "StartExportTask: AccessDenied: no"
    assert isinstance(error, Exception)


def test_classify_covers_the_modeled_export_errors() -> None:
    # Every error the RDS service model declares for the three operations maps to a deliberate kind.
    model = botocore.session.get_session().get_service_model("rds")
    expected = {
        "ExportTaskAlreadyExists": ErrorKind.ALREADY_EXISTS,
        "ExportTaskNotFound": ErrorKind.NOT_FOUND,
        "InvalidExportTaskStateFault": ErrorKind.INVALID_STATE,
    }
    seen = set()
    for operation in ("StartExportTask", "DescribeExportTasks", "CancelExportTask"):
        for shape in model.operation_model(operation).error_shapes:
            code = shape.metadata.get("error", {}).get("code", shape.name)
            status = shape.metadata.get("error", {}).get("httpStatusCode", 400)
            seen.add(code)
            assert classify(client_error(code, http_status=status), operation).kind is expected.get(
                code, ErrorKind.TERMINAL
            ), code
    assert set(expected) <= seen


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


def test_describe_other_errors_raise(gateway: tuple[Rds, Stubber, list[tuple[str, str]]]) -> None:
    rds, stubber, _ = gateway
    stubber.add_client_error("describe_export_tasks", "AccessDenied", "no", 403)
    with pytest.raises(AwsError) as info:
        rds.describe("eu-west-1", "exp-1")
    assert info.value.kind is ErrorKind.TERMINAL


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
