"""Regions and the client cache: what a flood of made-up regions can cost (issue 23, attack 4)."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from rds_export_operator.aws import regions
from rds_export_operator.aws.client_cache import ClientCache
from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.rds import Rds


def test_botocore_knows_the_regions_of_every_partition() -> None:
    assert {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"} <= regions.known_regions()
    assert regions.refusal("eu-west-1") is None
    assert "us-east-99" in (regions.refusal("us-east-99") or "") and regions.refusal("xx-fake-1")


def test_no_client_is_made_for_a_region_aws_does_not_have() -> None:
    made: list[str] = []

    class Session:
        def client(self, service: str, region_name: str, config: Any) -> Any:
            made.append(region_name)
            return object()

    rds = Rds(session_factory=Session)  # type: ignore[arg-type]
    with pytest.raises(AwsError) as refused:
        rds.client("xx-fake-1")
    assert (refused.value.kind, refused.value.code) == (ErrorKind.TERMINAL, "UnknownRegion")
    rds.client("eu-west-1")
    assert made == ["eu-west-1"]


class Client:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_client_cache_keeps_the_most_recently_used_and_closes_the_evicted() -> None:
    cache = ClientCache(size=2)
    a, b, c = Client(), Client(), Client()
    assert cache.get("a", lambda: a) is a and cache.get("b", lambda: b) is b
    assert cache.get("a", lambda: Client()) is a  # a is now the most recently used
    assert cache.get("c", lambda: c) is c
    assert b.closed and not a.closed and len(cache) == 2


@pytest.mark.parametrize("crd", ["rdsexporttasks.rdsexport.dev.yaml", "rdsexportschedules.rdsexport.dev.yaml"])
def test_admission_refuses_regions_outside_every_partition_and_admits_all_botocore_knows(crd: str) -> None:
    """The CRD's region pattern holds the partitions' region prefixes (botocore's regionRegex): a made-up prefix
    is refused by the API server, a made-up region with a real prefix by the operator (UnknownRegion)."""
    text = (Path(__file__).parents[3] / "crds" / crd).read_text()
    (pattern,) = {p for p in re.findall(r"pattern: '(\^\(us[^']*)'", text)}
    assert all(re.fullmatch(pattern, region) for region in regions.known_regions())
    assert not re.fullmatch(pattern, "zz-fake-1") and re.fullmatch(pattern, "us-fake-1")


def test_the_first_looks_of_a_burst_read_the_endpoint_data_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27 item 1: the burst's peak memory. Parsed, botocore's endpoint data is about 40 MiB of Python objects
    (tracemalloc at the peak of 200 new objects, bench/memory_profile.py --peak); ``functools.cache`` let every
    thread of the first looks that came before the first answer parse it too, at once, and RSS kept that peak."""
    real = boto3.session.Session
    made: list[int] = []
    together = threading.Barrier(8, timeout=0.5)  # without a lock, all 8 threads meet here

    def session() -> boto3.session.Session:
        made.append(1)
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()
        return real()

    monkeypatch.setattr(boto3.session, "Session", session)
    regions._read.cache_clear()
    try:
        threads = [threading.Thread(target=regions.refusal, args=("us-east-1",)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        regions._read.cache_clear()
    assert len(made) == 1
