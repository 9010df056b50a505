"""The only module that talks to AWS: StartExportTask, DescribeExportTasks, CancelExportTask.

AWS errors become one of a few domain errors, so that no caller inspects botocore exceptions. The calls block:
callers run them in kopf's thread pool (sync handlers), never on the event loop. Clients are created once per
region and shared (boto3 clients are thread-safe; sessions are not, so creation is locked).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from rds_export_operator.api.spec import ExportSpec
from rds_export_operator.aws.clients import AwsClients
from rds_export_operator.aws.errors import DESCRIBE, AwsError, ErrorKind, ExportTask
from rds_export_operator.aws.identity import Identity

if TYPE_CHECKING:
    from mypy_boto3_rds.client import RDSClient
    from mypy_boto3_rds.type_defs import ExportTaskResponseTypeDef

MAX_PAGES = 100  # 10,000 tasks: far beyond what one account runs; a server that pages for ever is an error
# Identifiers per DescribeExportTasks: AWS documents no limit on filter values; 100 is one full page (MaxRecords).
BATCH = 100


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


class Rds(AwsClients):
    """StartExportTask / DescribeExportTasks / CancelExportTask for any region, with errors as AwsError."""

    service = "rds"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._unfiltered: set[str] = set()  # regions whose endpoint answered a filter by identifier with others

    def filters_honoured(self, region: str) -> bool:
        """False once this region's endpoint ignored the identifier filter (then a describe by identifier is a
        listing of every task, and the poller lists by status instead of sweeping by identifier)."""
        return region not in self._unfiltered

    def client(self, region: str, identity: Identity | None = None) -> RDSClient:
        return cast("RDSClient", super().client(region, identity))

    def start(self, spec: ExportSpec) -> ExportTask:
        client = self.client(spec.region, spec.identity)
        response: ExportTaskResponseTypeDef = self.call(
            "StartExportTask", lambda: client.start_export_task(**start_request(spec))
        )
        return _task(response)

    def describe(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask | None:
        """The task with this identifier, or None (AWS answers an unknown id with NotFound or an empty list)."""
        client = self.client(region, identity)
        try:
            response = self.call(
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
        ones. Endpoints that ignore the filter (moto, LocalStack) list every task instead: only the asked ones are
        kept, and that one listing answers every batch (a listing per batch would be quadratic in tasks)."""
        wanted, found = set(identifiers), dict[str, ExportTask]()
        for start in range(0, len(identifiers), BATCH):
            chunk = identifiers[start : start + BATCH]
            answer = list(self._describe_filtered(region, "export-task-identifier", chunk, BATCH, identity))
            found.update((str(t.get("ExportTaskIdentifier")), t) for t in answer)
            if not {t.get("ExportTaskIdentifier") for t in answer} <= set(chunk):
                self._unfiltered.add(region)
                break  # the filter was ignored: this was a listing of every task
        return [task for identifier, task in found.items() if identifier in wanted]

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
            response = self.call("DescribeExportTasks", lambda kw=kwargs: client.describe_export_tasks(**kw))  # type: ignore[misc]
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
        response = self.call("CancelExportTask", lambda: client.cancel_export_task(ExportTaskIdentifier=identifier))
        return _task(response)


def _task(response: Any) -> ExportTask:
    return {k: v for k, v in dict(response).items() if k != "ResponseMetadata"}
