"""Which regions exist: botocore's endpoint data lists each partition's regions of RDS (no AWS call).

A region outside it is a spec error, refused before any client, poller scope or slot scope is made for it: a
few hundred objects naming made-up regions would otherwise each keep a client (~0.4 MiB) and two scopes.
A region newer than the installed botocore is refused too; the message says to upgrade the operator.
"""

from __future__ import annotations

import functools
import threading

import boto3

_reading = threading.Lock()


@functools.cache
def _read() -> frozenset[str]:
    session = boto3.session.Session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("rds", partition_name=partition)
    )


def known_regions() -> frozenset[str]:
    """Read once, by one thread. Parsed, the endpoint data is about 40 MiB of Python objects for a moment; with
    ``functools.cache`` alone every thread that asked before the first answer parsed it too, at once: the first
    looks of a burst of new objects did, and RSS kept that peak (issue 27 item 1, bench/README.md)."""
    with _reading:
        return _read()


def refusal(region: str) -> str | None:
    """Why ``region`` cannot be used, or None."""
    if region in known_regions():
        return None
    return (
        f"region {region!r} is not an AWS region this operator knows (botocore's endpoint data for RDS); "
        "a region newer than the operator needs a newer operator image"
    )
