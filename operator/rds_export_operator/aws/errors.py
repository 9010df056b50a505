"""The error taxonomy: what an AWS answer means for an object, per operation, in one place (no boto3 here).

Only a StartExportTask answer that says the spec (or the world it names) is wrong is a verdict. A Describe error
is never one: it says nothing about the export. See the table in README.md ("Which AWS answer means what").
"""

from __future__ import annotations

from enum import Enum
from typing import Any

ExportTask = dict[str, Any]  # one ExportTask as the API returns it (PascalCase keys)

START, DESCRIBE, CANCEL = "StartExportTask", "DescribeExportTasks", "CancelExportTask"
LIST_OBJECTS, GET_OBJECT = "ListObjectsV2", "GetObject"  # the table report (s3.py)
# The catalog (glue.py)
CREATE_DATABASE, CREATE_TABLE, GET_TABLE, UPDATE_TABLE = "CreateDatabase", "CreateTable", "GetTable", "UpdateTable"
GET_TABLES, DELETE_TABLES = "GetTables", "BatchDeleteTable"


class ErrorKind(Enum):
    RETRYABLE = "Retryable"  # throttling, 5xx, network, unknown answers: try again with backoff
    UNAUTHORIZED = "Unauthorized"  # AccessDenied, credentials: an IAM change may be under way; retry, warn later
    NOT_YET = "NotYet"  # source busy or not available, IAM role not usable yet: wait up to a deadline
    TERMINAL = "Terminal"  # the spec or the world it names is wrong (StartExportTask only)
    NOT_FOUND = "NotFound"
    LIMIT_REACHED = "LimitReached"  # 5 concurrent exports per account
    ALREADY_EXISTS = "AlreadyExists"
    INVALID_STATE = "InvalidState"  # cancel of a finished task, or a cancel under way


THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "SlowDown"}
)
UNAUTHORIZED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "SignatureDoesNotMatch",
        "NoCredentials",
        "IdentityUnavailable",
    }
)
# StartExportTask answers that mean "not now": the source is busy or not available yet, IAM still propagating.
SOURCE_NOT_READY_CODES = frozenset({"InvalidExportSourceState"})
IAM_NOT_READY_CODES = frozenset(
    {"IamRoleMissingPermissions", "IamRoleMissingPermissionsFault", "IamRoleNotFound", "IamRoleNotFoundFault"}
)
# StartExportTask answers that say the spec (or what it names) is wrong.
SPEC_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "MissingParameter",
        "ValidationError",
        "InvalidExportOnly",
        "InvalidExportOnlyFault",
        "InvalidS3BucketFault",
        "InvalidS3Bucket",
        "DBSnapshotNotFound",
        "DBSnapshotNotFoundFault",
        "DBClusterSnapshotNotFoundFault",
        "DBClusterNotFoundFault",
        "KMSKeyNotAccessibleFault",
        "KMSKeyNotAccessible",
    }
)
_COMMON = {
    "ExportTaskNotFound": ErrorKind.NOT_FOUND,
    "ExportTaskNotFoundFault": ErrorKind.NOT_FOUND,
}
_S3_COMMON = {
    "NoSuchBucket": ErrorKind.NOT_FOUND,
    "NotFound": ErrorKind.NOT_FOUND,
    "404": ErrorKind.NOT_FOUND,
    "AllAccessDisabled": ErrorKind.UNAUTHORIZED,
    "403": ErrorKind.UNAUTHORIZED,
    "NoSuchKey": ErrorKind.NOT_FOUND,
}
# Glue: an existing table or database is adoption (the caller checks whose it is), a bad name or type is the
# table's own problem, a full catalog (ResourceNumberLimitExceeded) waits for room; the rest is retried.
_GLUE = {
    "AlreadyExistsException": ErrorKind.ALREADY_EXISTS,
    "EntityNotFoundException": ErrorKind.NOT_FOUND,
    "InvalidInputException": ErrorKind.TERMINAL,
    "ResourceNumberLimitExceededException": ErrorKind.LIMIT_REACHED,
}
_BY_OPERATION: dict[str, dict[str, ErrorKind]] = {
    START: {
        **{code: ErrorKind.TERMINAL for code in SPEC_CODES},
        **{code: ErrorKind.NOT_YET for code in SOURCE_NOT_READY_CODES | IAM_NOT_READY_CODES},
        "ExportTaskLimitReachedFault": ErrorKind.LIMIT_REACHED,
        "ExportTaskAlreadyExists": ErrorKind.ALREADY_EXISTS,
        "ExportTaskAlreadyExistsFault": ErrorKind.ALREADY_EXISTS,
    },
    DESCRIBE: dict(_COMMON),
    CANCEL: {**_COMMON, "InvalidExportTaskStateFault": ErrorKind.INVALID_STATE},
    # S3 (the export's info files): a missing object or bucket is "not there (yet)"; a disabled account is denied.
    LIST_OBJECTS: dict(_S3_COMMON),
    GET_OBJECT: dict(_S3_COMMON),
    **{op: dict(_GLUE) for op in (CREATE_DATABASE, CREATE_TABLE, GET_TABLE, UPDATE_TABLE, GET_TABLES, DELETE_TABLES)},
}


def kind_of(operation: str, code: str) -> ErrorKind:
    """The meaning of an error code for one operation; anything unknown is retryable, never a verdict."""
    if code in THROTTLING_CODES:
        return ErrorKind.RETRYABLE
    if code in UNAUTHORIZED_CODES:
        return ErrorKind.UNAUTHORIZED
    return _BY_OPERATION.get(operation, {}).get(code, ErrorKind.RETRYABLE)


class AwsError(Exception):
    def __init__(self, kind: ErrorKind, code: str, message: str, operation: str) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.kind, self.code, self.message, self.operation = kind, code, message, operation

    @classmethod
    def of(cls, operation: str, code: str, message: str = "") -> AwsError:
        return cls(kind_of(operation, code), code, message, operation)
