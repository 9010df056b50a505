"""aws_errors.py + aws_clients.classify: which AWS answer means what, per operation (the README's taxonomy table)."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import botocore.session
import pytest

from rds_export_operator.aws.clients import classify
from rds_export_operator.aws.errors import CANCEL, DESCRIBE, START, AwsError, ErrorKind, kind_of

R, U, Y, T = ErrorKind.RETRYABLE, ErrorKind.UNAUTHORIZED, ErrorKind.NOT_YET, ErrorKind.TERMINAL
TABLE = {
    # code: (Start, Describe, Cancel)
    "Throttling": (R, R, R),
    "ThrottlingException": (R, R, R),
    "RequestLimitExceeded": (R, R, R),
    "AccessDenied": (U, U, U),
    "UnauthorizedOperation": (U, U, U),
    "ExpiredToken": (U, U, U),
    "InvalidClientTokenId": (U, U, U),
    "InvalidExportSourceState": (Y, R, R),
    "IamRoleMissingPermissions": (Y, R, R),
    "IamRoleNotFound": (Y, R, R),
    "InvalidParameterValue": (T, R, R),
    "InvalidExportOnly": (T, R, R),
    "InvalidS3BucketFault": (T, R, R),
    "DBSnapshotNotFound": (T, R, R),
    "DBClusterSnapshotNotFoundFault": (T, R, R),
    "DBClusterNotFoundFault": (T, R, R),
    "KMSKeyNotAccessibleFault": (T, R, R),
    "ExportTaskAlreadyExists": (ErrorKind.ALREADY_EXISTS, R, R),
    "ExportTaskLimitReachedFault": (ErrorKind.LIMIT_REACHED, R, R),
    "ExportTaskNotFound": (R, ErrorKind.NOT_FOUND, ErrorKind.NOT_FOUND),
    "InvalidExportTaskStateFault": (R, R, ErrorKind.INVALID_STATE),
    "SomethingNobodyKnows": (R, R, R),  # unknown: never a verdict
}


def client_error(code: str, http_status: int | None = 400, message: str = "details") -> Exception:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": message}}
    if http_status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": http_status}
    return botocore.exceptions.ClientError(response, "op")  # type: ignore[arg-type]


@pytest.mark.parametrize("code", sorted(TABLE))
@pytest.mark.parametrize(("index", "operation"), [(0, START), (1, DESCRIBE), (2, CANCEL)])
def test_taxonomy(code: str, index: int, operation: str) -> None:
    expected = TABLE[code][index]
    assert kind_of(operation, code) is expected
    error = classify(client_error(code, 403 if code == "AccessDenied" else 400), operation)
    assert (error.kind, error.code, error.message, error.operation) == (expected, code, "details", operation)


@pytest.mark.parametrize("operation", [START, DESCRIBE, CANCEL])
@pytest.mark.parametrize("code", ["DBSnapshotNotFound", "SomethingNew", "InvalidParameterValue"])
def test_5xx_is_always_retryable(operation: str, code: str) -> None:
    assert classify(client_error(code, 503), operation).kind is R


@pytest.mark.parametrize("code", sorted(TABLE))
def test_describe_errors_are_never_a_verdict(code: str) -> None:
    assert kind_of(DESCRIBE, code) not in (T, Y, ErrorKind.LIMIT_REACHED, ErrorKind.ALREADY_EXISTS)


def test_client_error_without_body() -> None:
    exc = botocore.exceptions.ClientError({"ResponseMetadata": {"HTTPStatusCode": 503}}, DESCRIBE)  # type: ignore[arg-type]
    assert (classify(exc, DESCRIBE).kind, classify(exc, DESCRIBE).code) == (R, "Unknown")


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (botocore.exceptions.NoCredentialsError(), U, "NoCredentials"),
        (
            botocore.exceptions.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
            U,
            "NoCredentials",
        ),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="https://rds"), R, "EndpointConnectionError"),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="https://rds"), R, "ReadTimeoutError"),
        (botocore.exceptions.ConnectionClosedError(endpoint_url="https://rds"), R, "ConnectionClosedError"),
        (ConnectionResetError("reset"), R, "ConnectionResetError"),
        (ValueError("bad xml"), R, "ValueError"),
    ],
)
def test_non_client_errors(exc: Exception, kind: ErrorKind, code: str) -> None:
    error = classify(exc, START)
    assert (error.kind, error.code, error.message) == (kind, code, str(exc))


def test_aws_error_text() -> None:
    assert str(AwsError.of(START, "AccessDenied", "no")) == "StartExportTask: AccessDenied: no"


def test_every_modeled_export_error_has_a_deliberate_kind() -> None:
    # Every error the RDS service model declares for the three operations is in the table above.
    model = botocore.session.get_session().get_service_model("rds")
    for operation in (START, DESCRIBE, CANCEL):
        for shape in model.operation_model(operation).error_shapes:
            code = shape.metadata.get("error", {}).get("code", shape.name)
            assert code in TABLE or code.removesuffix("Fault") in TABLE, (operation, code)
