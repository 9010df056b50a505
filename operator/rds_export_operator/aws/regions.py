"""Which regions exist: botocore's endpoint data lists each partition's regions of RDS (no AWS call).

A region outside it is a spec error, refused before any client, poller scope or slot scope is made for it: a
few hundred objects naming made-up regions would otherwise each keep a client (~0.4 MiB) and two scopes.
A region newer than the installed botocore is refused too; the message says to upgrade the operator.
"""

from __future__ import annotations

import functools

import boto3


@functools.cache
def known_regions() -> frozenset[str]:
    session = boto3.session.Session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("rds", partition_name=partition)
    )


def refusal(region: str) -> str | None:
    """Why ``region`` cannot be used, or None."""
    if region in known_regions():
        return None
    return (
        f"region {region!r} is not an AWS region this operator knows (botocore's endpoint data for RDS); "
        "a region newer than the operator needs a newer operator image"
    )
