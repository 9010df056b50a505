"""The AWS query protocol as the stand-in speaks it: form parameters in, XML out, errors as ErrorResponse."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

NS = "http://rds.amazonaws.com/doc/2014-10-31/"
FILTER_NAMES = ("export-task-identifier", "s3-bucket", "source-arn", "status")


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def error_xml(error: ApiError, request_id: str) -> bytes:
    kind = "Receiver" if error.status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>{kind}</Type><Code>{escape(error.code)}</Code>'
        f"<Message>{escape(error.message)}</Message></Error><RequestId>{request_id}</RequestId>"
        "</ErrorResponse>"
    ).encode()


def result_xml(action: str, result: str, request_id: str) -> bytes:
    return (
        f'<{action}Response xmlns="{NS}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    ).encode()


def members(p: dict[str, str], prefix: str) -> list[str]:
    """The values of a query-protocol list (``<prefix>.member.1``, ``.2``, ...) in order."""
    keyed = [(k, v) for k, v in p.items() if k.startswith(f"{prefix}.member.")]
    return [v for _, v in sorted(keyed, key=lambda kv: _member_index(kv[0]))]


def _member_index(key: str) -> int:
    tail = key.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def s3_prefix(prefix: str | None) -> str | None:
    # RDS User Guide, "Exporting DB snapshot data to Amazon S3": these characters become underscores
    if prefix is None:
        return None
    return re.sub(r'[\\`" ]', "_", prefix)


MAX_FILTER_VALUES = 100


def filters(p: dict[str, str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for key, name in p.items():
        m = re.fullmatch(r"Filters\.(?:Filter|member)\.(\d+)\.Name", key)
        if not m:
            continue
        prefix = key[: -len("Name")]
        values = {v for k, v in p.items() if k.startswith(f"{prefix}Values.")}
        if name not in FILTER_NAMES:  # botocore's RDS model, DescribeExportTasks Filters (moto ignores Filters)
            raise ApiError("InvalidParameterValue", f"Unrecognized filter name: {name}")
        if len(values) > MAX_FILTER_VALUES:  # AWS documents no limit; the operator batches at most this many
            raise ApiError("InvalidParameterValue", f"Filter {name} has more than {MAX_FILTER_VALUES} values")
        found[name] = values
    return found


def task_xml(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            if value:
                parts.append(f"<{key}>{''.join(f'<member>{escape(v)}</member>' for v in value)}</{key}>")
            continue
        if isinstance(value, datetime):
            value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parts.append(f"<{key}>{escape(str(value))}</{key}>")
    return "".join(parts)
