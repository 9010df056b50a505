"""The only module that reads S3: the export's info files, listed and fetched with caps, errors as AwsError.

Calls block: callers run them in kopf's thread pool (sync handlers). Objects are read whole (``get``, small ones)
or streamed in chunks (``stream``: the table files of an export can be hundreds of MB). One client per region and
identity (the operator's own, or a namespace's assumed role from ``identity.Identities``), created once under a
lock (boto3 clients are thread-safe; sessions are not). The listing is paginated and bounded; an object larger
than the cap is refused from its Content-Length before its body is read, and never more than the cap plus one
byte is read even if the length was wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from rds_export_operator.aws.clients import AwsClients, classify
from rds_export_operator.aws.errors import GET_OBJECT, LIST_OBJECTS, AwsError, ErrorKind
from rds_export_operator.aws.identity import Identity

T = TypeVar("T")
MAX_PAGES = 20  # a listing that pages for ever is a broken endpoint, not a bigger export
CHUNK = 256 * 1024  # bytes per read of a streamed object


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
        chunks = self.stream(region, bucket, key, max_bytes=max_bytes, identity=identity)
        return None if chunks is None else b"".join(chunks)

    def stream(
        self, region: str, bucket: str, key: str, *, max_bytes: int, identity: Identity | None = None
    ) -> Generator[bytes] | None:
        """The object's content in chunks of at most CHUNK bytes, None if it does not exist. ``ObjectTooLarge``
        past ``max_bytes`` (at once from its Content-Length, else while reading); a read that breaks off is an
        AwsError like the call's own. Close the iterator (or read it to the end) to release the connection."""

        def open_body() -> Any:
            response = self.client(region, identity).get_object(Bucket=bucket, Key=key)
            length = response.get("ContentLength")
            if isinstance(length, int) and length > max_bytes:
                response["Body"].close()
                raise ObjectTooLarge(key, length, max_bytes)
            return response["Body"]

        try:
            body = self.call(GET_OBJECT, open_body)
        except AwsError as error:
            if error.kind is ErrorKind.NOT_FOUND and error.code == "NoSuchKey":
                return None
            raise
        return _chunks(body, key, max_bytes)


def _chunks(body: Any, key: str, max_bytes: int) -> Generator[bytes]:
    read = 0
    try:
        while True:
            try:
                data = bytes(body.read(min(CHUNK, max_bytes + 1 - read)))
            except Exception as exc:  # the connection broke off mid-body: as retryable as a failed call
                raise classify(exc, GET_OBJECT) from exc
            if not data:
                return
            read += len(data)
            if read > max_bytes:
                raise ObjectTooLarge(key, None, max_bytes)
            yield data
    finally:
        body.close()
