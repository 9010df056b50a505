"""The only module that talks to AWS: StartExportTask, DescribeExportTasks, CancelExportTask.

AWS errors become one of a few domain errors, so that no caller inspects botocore exceptions. The calls block:
callers run them in kopf's thread pool (sync handlers), never on the event loop. Clients are created once per
region and shared (boto3 clients are thread-safe; sessions are not, so creation is locked).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from rds_export_operator.aws_errors import DESCRIBE, AwsError, ErrorKind, ExportTask
from rds_export_operator.identity import Identities, Identity, IdentityUnavailable
from rds_export_operator.spec import ExportSpec

if TYPE_CHECKING:
    from mypy_boto3_rds.client import RDSClient
    from mypy_boto3_rds.type_defs import ExportTaskResponseTypeDef

T = TypeVar("T")
MAX_PAGES = 100  # 10,000 tasks: far beyond what one account runs; a server that pages for ever is an error
# Identifiers per DescribeExportTasks: AWS documents no limit on filter values; 100 is one full page (MaxRecords).
BATCH = 100


def classify(exc: Exception, operation: str) -> AwsError:
    """Map any exception from a botocore call to an AwsError, with the meaning ``aws_errors`` gives its code."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        if status >= 500:
            return AwsError(ErrorKind.RETRYABLE, code, message, operation)
        return AwsError.of(operation, code, message)
    if isinstance(exc, IdentityUnavailable):  # AssumeRole refused or failed: a trust policy may be changing
        role = f" {exc.role_arn}" if exc.role_arn else ""
        return AwsError(ErrorKind.UNAUTHORIZED, exc.code, f"cannot act as the namespace's AWS role{role}", operation)
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return AwsError.of(operation, "NoCredentials", str(exc))
    # Network errors, timeouts, unparseable responses: all worth another try later.
    return AwsError(ErrorKind.RETRYABLE, type(exc).__name__, str(exc), operation)


def start_request(spec: ExportSpec) -> dict[str, Any]:
    """StartExportTask parameters for a spec (pure, unit-tested)."""
    params: dict[str, Any] = {
        "ExportTaskIdentifier": spec.identifier,
        "SourceArn": spec.source_arn,
        "S3BucketName": spec.s3_bucket_name,
        "IamRoleArn": spec.iam_role_arn,
        "KmsKeyId": spec.kms_key_id,
    }
    if spec.s3_prefix:
        params["S3Prefix"] = spec.s3_prefix
    if spec.export_only:
        params["ExportOnly"] = list(spec.export_only)
    return params


class Rds:
    """StartExportTask / DescribeExportTasks / CancelExportTask for any region, with errors as AwsError.

    ``observe`` is called after every call with (operation, outcome, seconds), for metrics.
    """

    def __init__(
        self,
        *,
        session_factory: Callable[[], boto3.session.Session] = boto3.session.Session,
        observe: Callable[[str, str, float], None] | None = None,
        timeout: float = 20.0,
        identities: Identities | None = None,
    ) -> None:
        self._session_factory, self.identities = session_factory, identities
        self._clients: dict[str, RDSClient] = {}
        self._lock = threading.Lock()
        self._observe = observe or (lambda operation, outcome, seconds: None)
        # Retries inside botocore stay short; the reconciler backs off between attempts with jitter.
        self._config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": 2},
            connect_timeout=min(5.0, timeout),
            read_timeout=timeout,
            user_agent_extra="rds-export-operator",
        )

    def client(self, region: str, identity: Identity | None = None) -> RDSClient:
        """The client of ``identity`` (a namespace's assumed role) or, for None, of the operator's own identity."""
        if identity is not None and not identity.is_operator:
            if self.identities is None:
                raise AwsError(ErrorKind.UNAUTHORIZED, "IdentityUnavailable", "no identity mapping", "AssumeRole")
            return self.identities.clients(identity).rds(region)
        with self._lock:
            if region not in self._clients:
                self._clients[region] = self._session_factory().client("rds", region_name=region, config=self._config)
            return self._clients[region]

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            result = fn()
        except Exception as exc:
            error = classify(exc, operation)
            self._observe(operation, error.code, time.monotonic() - started)
            raise error from exc
        self._observe(operation, "Success", time.monotonic() - started)
        return result

    def start(self, spec: ExportSpec) -> ExportTask:
        client = self.client(spec.region, spec.identity)
        response: ExportTaskResponseTypeDef = self._call(
            "StartExportTask", lambda: client.start_export_task(**start_request(spec))
        )
        return _task(response)

    def describe(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask | None:
        """The task with this identifier, or None (AWS answers an unknown id with NotFound or an empty list)."""
        client = self.client(region, identity)
        try:
            response = self._call(
                "DescribeExportTasks", lambda: client.describe_export_tasks(ExportTaskIdentifier=identifier)
            )
        except AwsError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        matches = [t for t in response.get("ExportTasks", []) if t.get("ExportTaskIdentifier") == identifier]
        return dict(matches[0]) if matches else None

    def describe_by_status(
        self, region: str, statuses: list[str], page_size: int = 100, identity: Identity | None = None
    ) -> Iterator[ExportTask]:
        """Every task in one of ``statuses`` (lower case, as the filter wants), one paginated call per page.

        Endpoints that ignore the filter (moto, LocalStack) return other tasks too: callers check each status.
        """
        return self._describe_filtered(region, "status", statuses, page_size, identity)

    def describe_many(self, region: str, identifiers: list[str], identity: Identity | None = None) -> list[ExportTask]:
        """The tasks with these identifiers, BATCH per call (the export-task-identifier filter); AWS omits unknown
        ones. Endpoints that ignore the filter return others too: only the asked identifiers are kept."""
        wanted, found = set(identifiers), list[ExportTask]()
        for start in range(0, len(identifiers), BATCH):
            chunk = identifiers[start : start + BATCH]
            found.extend(self._describe_filtered(region, "export-task-identifier", chunk, BATCH, identity))
        return [t for t in found if t.get("ExportTaskIdentifier") in wanted]

    def _describe_filtered(
        self, region: str, name: str, values: list[str], page_size: int, identity: Identity | None
    ) -> Iterator[ExportTask]:
        """One paginated DescribeExportTasks with one filter. A marker seen twice or more than MAX_PAGES pages is
        a broken endpoint: a retryable error, not a loop."""
        client = self.client(region, identity)
        marker: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {"Filters": [{"Name": name, "Values": values}], "MaxRecords": page_size}
            if marker:
                kwargs["Marker"] = marker
            response = self._call("DescribeExportTasks", lambda kw=kwargs: client.describe_export_tasks(**kw))  # type: ignore[misc]
            yield from (dict(t) for t in response.get("ExportTasks", []))
            marker = response.get("Marker")
            if not marker:
                return
            if marker in seen:
                raise AwsError(ErrorKind.RETRYABLE, "PaginationLoop", f"marker {marker!r} repeated", DESCRIBE)
            seen.add(marker)
        raise AwsError(ErrorKind.RETRYABLE, "PaginationLimit", f"more than {MAX_PAGES} pages", DESCRIBE)

    def cancel(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask:
        client = self.client(region, identity)
        response = self._call("CancelExportTask", lambda: client.cancel_export_task(ExportTaskIdentifier=identifier))
        return _task(response)


def _task(response: Any) -> ExportTask:
    return {k: v for k, v in dict(response).items() if k != "ResponseMetadata"}
