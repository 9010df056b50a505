"""DescribeDBSnapshots / DescribeDBClusterSnapshots as real RDS answers them, on top of moto's answers.

moto lists every snapshot with a creation time and an empty list for a source that does not exist. RDS differs
(shared/rds-export-api.md, "Snapshots"): a snapshot still being taken has no ``SnapshotCreateTime``, and a
missing source is an error. Identifiers are already lower case in moto, as RDS stores them.
"""

from __future__ import annotations

import re
from typing import Any

from localdev.standin.wire import ApiError

ACTIONS = ("DescribeDBSnapshots", "DescribeDBClusterSnapshots")
# RDS API reference (DBSnapshot.SnapshotCreateTime, "not present until the snapshot is available") and other tools'
# bug trackers: a snapshot being taken or copied is listed without a time. Unverified for "pending"/"backing-up".
WITHOUT_TIME = ("creating", "copying")
_ITEM = re.compile(rb"<(DBSnapshot|DBClusterSnapshot)>(.*?)</\1>", re.DOTALL)
_STATUS = re.compile(rb"<Status>([^<]*)</Status>")
_TIME = re.compile(rb"<SnapshotCreateTime>[^<]*</SnapshotCreateTime>")


def missing_source(action: str, params: dict[str, str], backend: Any) -> ApiError | None:
    """The error RDS answers for a source that does not exist (identifiers compared as RDS stores them: lower
    case). shared/rds-export-api.md: DBInstanceNotFound / DBClusterNotFoundFault, both 404. A listing by
    snapshot identifier (no source named) is left to moto."""
    cluster = action == "DescribeDBClusterSnapshots"
    source = params.get("DBClusterIdentifier" if cluster else "DBInstanceIdentifier")
    if source and source.lower() not in (backend.clusters if cluster else backend.databases):
        if cluster:
            return ApiError("DBClusterNotFoundFault", f"DBCluster {source} not found.", 404)
        return ApiError("DBInstanceNotFound", f"DBInstance {source} not found.", 404)
    return None


def without_times_in_progress(body: bytes) -> bytes:
    """moto's answer with SnapshotCreateTime removed from the snapshots that are still being taken or copied."""

    def item(match: re.Match[bytes]) -> bytes:
        status = _STATUS.search(match.group(2))
        if status is None or status.group(1).decode().lower() not in WITHOUT_TIME:
            return match.group(0)
        return _TIME.sub(b"", match.group(0))

    return _ITEM.sub(item, body)
