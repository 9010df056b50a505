"""The only module that reads S3: the export's info files, listed and fetched with caps, errors as AwsError.

Calls block: callers run them in kopf's thread pool (sync handlers). One client per region and identity (the
operator's own, or a namespace's assumed role from ``identity.Identities``), created once under a lock (boto3
clients are thread-safe; sessions are not). The listing is paginated and bounded; an object larger
than the cap is refused from its Content-Length before its body is read, and never more than the cap plus one
byte is read even if the length was wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rds_export_operator.aws.clients import AwsClients
from rds_export_operator.aws.errors import GET_OBJECT, LIST_OBJECTS, AwsError, ErrorKind
from rds_export_operator.aws.identity import Identity

T = TypeVar("T")
MAX_PAGES = 20  # a listing that pages for ever is a broken endpoint, not a bigger export


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int


class ObjectTooLarge(Exception):
    outcome = "TooLarge"  # as the metrics count it

    def __init__(self, key: str, size: int | None, limit: int) -> None:
        super().__init__(f"s3 object {key} is larger than {limit} bytes" + (f" ({size})" if size is not None else ""))
        self.key, self.size, self.limit = key, size, limit


class S3(AwsClients):
    """ListObjectsV2 and GetObject for any region; ``observe(operation, outcome, seconds)`` after each call."""

    service = "s3"

    def call(self, operation: str, fn: Callable[[], T], *, passthrough: tuple[type[Exception], ...] = ()) -> T:
        return super().call(operation, fn, passthrough=(ObjectTooLarge, *passthrough))

    def list(
        self, region: str, bucket: str, prefix: str, *, limit: int, identity: Identity | None = None
    ) -> tuple[list[S3Object], bool]:
        """Objects under ``prefix`` in key order, at most ``limit``; the flag says whether there were more."""
        client = self.client(region, identity)
        found: list[S3Object] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": min(1000, limit + 1)}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.call(LIST_OBJECTS, lambda kw=kwargs: client.list_objects_v2(**kw))  # type: ignore[misc]
            for item in page.get("Contents") or []:
                if len(found) >= limit:
                    return found, True
                found.append(S3Object(str(item.get("Key", "")), int(item.get("Size") or 0)))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return found, False
        raise AwsError(ErrorKind.RETRYABLE, "PaginationLimit", f"more than {MAX_PAGES} pages", LIST_OBJECTS)

    def get(
        self, region: str, bucket: str, key: str, *, max_bytes: int, identity: Identity | None = None
    ) -> bytes | None:
        """The object's content, None if it does not exist; ``ObjectTooLarge`` past ``max_bytes``."""

        def fetch() -> bytes:
            client = self.client(region, identity)
            response = client.get_object(Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                length = response.get("ContentLength")
                if isinstance(length, int) and length > max_bytes:
                    raise ObjectTooLarge(key, length, max_bytes)
                data = bytes(body.read(max_bytes + 1))
            finally:
                body.close()
            if len(data) > max_bytes:
                raise ObjectTooLarge(key, None, max_bytes)
            return data

        try:
            return self.call(GET_OBJECT, fetch)
        except AwsError as error:
            if error.kind is ErrorKind.NOT_FOUND and error.code == "NoSuchKey":
                return None
            raise
