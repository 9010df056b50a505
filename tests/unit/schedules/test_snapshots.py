"""snapshots.py against the stand-in's moto (paginated, filtered listing) and the shared cache (single flight, TTL,
errors are never a verdict); the stand-in's snapshot controls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from localdev.standin.server import StandInServer, create_db_instance
from localdev.waiting import wait_until
from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.identity import Identity
from rds_export_operator.aws.rds import Rds
from rds_export_operator.schedules.decisions import Snapshot
from rds_export_operator.schedules.snapshots import SnapshotCache, describe


@pytest.fixture(scope="module")
def server() -> Iterator[StandInServer]:
    with StandInServer() as s:
        yield s


@pytest.fixture(scope="module")
def rds(server: StandInServer) -> Rds:
    def session() -> boto3.session.Session:
        return boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1")

    gateway = Rds(session_factory=session)
    # Point the gateway's client at the stand-in.
    with gateway._lock:
        gateway._clients.get(
            "us-east-1", lambda: session().client("rds", endpoint_url=server.url, region_name="us-east-1")
        )
    return gateway


def test_automated_snapshots_over_time_are_listed_by_type_and_source(server: StandInServer, rds: Rds) -> None:
    client = rds.client("us-east-1")
    create_db_instance(client, "orders")
    create_db_instance(client, "other")
    standin = server.standin
    arns = [standin.create_db_snapshot("orders") for _ in range(3)]
    manual = standin.create_db_snapshot("orders", "manual")
    standin.create_db_snapshot("other")
    creating = standin.create_db_snapshot("orders", status="creating")
    assert len(set(arns)) == 3 and all(":snapshot:rds:orders-" in a for a in arns)

    automated = describe(rds, "us-east-1", "instance", "orders", "automated")
    by_arn = {s.arn: s for s in automated}
    assert set(arns) | {creating} <= set(by_arn)  # plus the one moto takes when the instance is created
    assert manual not in by_arn and not any("other" in s.identifier for s in automated)
    assert by_arn[creating].status == "creating" and by_arn[arns[0]].status == "available"
    assert [s.arn for s in describe(rds, "us-east-1", "instance", "orders", "manual")] == [manual]
    assert {s.arn for s in describe(rds, "us-east-1", "instance", "orders", "any")} >= {manual, *arns}


def test_listing_follows_pages(server: StandInServer, rds: Rds) -> None:
    create_db_instance(rds.client("us-east-1"), "paged")
    made = {server.standin.create_db_snapshot("paged", "manual") for _ in range(25)}
    assert {s.arn for s in describe(rds, "us-east-1", "instance", "paged", "manual", page_size=20)} == made


def test_snapshot_every_takes_snapshots_until_stopped(server: StandInServer, rds: Rds) -> None:
    create_db_instance(rds.client("us-east-1"), "ticking")
    before = len(describe(rds, "us-east-1", "instance", "ticking", "automated"))
    stop = server.standin.snapshot_every("ticking", 0.05, count=3)
    wait_until(
        lambda: len(describe(rds, "us-east-1", "instance", "ticking", "automated")) == before + 3,
        timeout=10,
        what="three snapshots",
    )
    stop.set()


def test_errors_keep_the_taxonomy(rds: Rds) -> None:
    gateway = Rds(session_factory=lambda: boto3.session.Session(region_name="eu-west-1"))
    client = gateway.client("eu-west-1")
    with Stubber(client) as stub:
        stub.add_client_error("describe_db_snapshots", "Throttling", http_status_code=400)
        stub.add_client_error("describe_db_cluster_snapshots", "AccessDenied", http_status_code=403)
        with pytest.raises(AwsError) as throttled:
            describe(gateway, "eu-west-1", "instance", "db", "automated")
        with pytest.raises(AwsError) as denied:
            describe(gateway, "eu-west-1", "cluster", "db", "automated")
    assert throttled.value.kind is ErrorKind.RETRYABLE and throttled.value.operation == "DescribeDBSnapshots"
    assert denied.value.kind is ErrorKind.UNAUTHORIZED


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_cache_shares_one_listing_per_interval_and_caches_errors() -> None:
    clock = FakeClock()
    answers: list[Any] = [[], AwsError(ErrorKind.RETRYABLE, "Throttling", "slow down", "DescribeDBSnapshots"), []]
    calls: list[tuple[str, ...]] = []

    def lister(
        rds: Rds, region: str, kind: str, source: str, snapshot_type: str, who: Identity | None
    ) -> list[Snapshot]:
        calls.append((region, kind, source, snapshot_type, (who.role_arn or "") if who else ""))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    cache = SnapshotCache(Rds(), ttl=30, clock=clock, lister=lister)
    cache.get("us-east-1", "instance", "db", "automated")
    cache.get("us-east-1", "instance", "db", "automated")
    assert len(calls) == 1
    clock.t = 31
    for _ in range(2):  # the error is shared for the interval too: a throttled endpoint is not asked again
        with pytest.raises(AwsError, match="Throttling"):
            cache.get("us-east-1", "instance", "db", "automated")
    assert len(calls) == 2
    clock.t = 62
    assert cache.get("us-east-1", "instance", "db", "automated") == []
    assert len(calls) == 3


def test_cache_single_flight_across_threads() -> None:
    release = threading.Event()
    calls: list[str] = []

    def lister(
        rds: Rds, region: str, kind: str, source: str, snapshot_type: str, who: Identity | None
    ) -> list[Snapshot]:
        calls.append(source)
        release.wait(5)
        return []

    cache = SnapshotCache(Rds(), ttl=30, lister=lister)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("r", "instance", "db", "automated"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    wait_until(lambda: len(calls) == 1, timeout=5, what="the first listing")
    release.set()
    for t in threads:
        t.join(5)
    assert calls == ["db"] and results == [[], [], [], []]


def test_cluster_snapshots_and_the_live_cluster(rds: Rds) -> None:
    client = rds.client("us-east-1")
    client.create_db_cluster(
        DBClusterIdentifier="aurora",
        Engine="aurora-postgresql",
        MasterUsername="admin",
        MasterUserPassword="password123",
    )
    made = client.create_db_cluster_snapshot(DBClusterSnapshotIdentifier="aurora-1", DBClusterIdentifier="aurora")
    arn = made["DBClusterSnapshot"]["DBClusterSnapshotArn"]
    listed = describe(rds, "us-east-1", "cluster", "aurora", "manual")
    assert [(s.identifier, s.arn) for s in listed] == [("aurora-1", arn)]
    [cluster] = describe(rds, "us-east-1", "live", "aurora", "automated")
    assert cluster.arn.endswith(":cluster:aurora") and cluster.identifier == "aurora"
    with pytest.raises(AwsError) as missing:  # an unknown cluster is not a verdict either
        describe(rds, "us-east-1", "live", "no-such-cluster", "automated")
    assert missing.value.kind is ErrorKind.RETRYABLE and missing.value.operation == "DescribeDBClusters"


def test_cache_is_not_shared_between_identities() -> None:
    seen: list[str | None] = []

    def lister(
        rds: Rds, region: str, kind: str, source: str, snapshot_type: str, who: Identity | None
    ) -> list[Snapshot]:
        seen.append(who.role_arn if who else None)
        return []

    cache = SnapshotCache(Rds(), ttl=30, lister=lister)
    team_a = Identity("arn:aws:iam::111111111111:role/a", namespace="a")
    team_b = Identity("arn:aws:iam::222222222222:role/b", namespace="b")
    for who in (team_a, team_b, team_a, None, None):
        cache.get("us-east-1", "instance", "db", "automated", who)
    assert seen == [team_a.role_arn, team_b.role_arn, None]


# -- listings as RDS gives them (issue 24) ---------------------------------------------------------------------


def test_a_snapshot_being_taken_is_listed_without_a_time(server: StandInServer, rds: Rds) -> None:
    create_db_instance(rds.client("us-east-1"), "taking")
    arn = server.standin.create_db_snapshot("taking", "manual", status="creating")
    raw = rds.client("us-east-1").describe_db_snapshots(DBInstanceIdentifier="taking", SnapshotType="manual")
    assert "SnapshotCreateTime" not in raw["DBSnapshots"][0]
    [listed] = describe(rds, "us-east-1", "instance", "taking", "manual")
    assert (listed.arn, listed.created, listed.status) == (arn, None, "creating")
    server.standin.set_snapshot_status(arn, "available")
    [done] = describe(rds, "us-east-1", "instance", "taking", "manual")
    assert done.created is not None


def test_an_upper_case_source_lists_the_lower_case_snapshots(server: StandInServer, rds: Rds) -> None:
    create_db_instance(rds.client("us-east-1"), "Mixed-Case")  # RDS (and moto) store it as mixed-case
    arn = server.standin.create_db_snapshot("mixed-case", "manual")
    assert [s.arn for s in describe(rds, "us-east-1", "instance", "Mixed-Case", "manual")] == [arn]


def test_a_missing_source_is_not_found(rds: Rds) -> None:
    with pytest.raises(AwsError) as instance:
        describe(rds, "us-east-1", "instance", "no-such-db", "automated")
    with pytest.raises(AwsError) as cluster:
        describe(rds, "us-east-1", "cluster", "no-such-cluster", "automated")
    assert (instance.value.code, cluster.value.code) == ("DBInstanceNotFound", "DBClusterNotFoundFault")


def test_equal_times_and_a_reused_identifier(server: StandInServer, rds: Rds) -> None:
    create_db_instance(rds.client("us-east-1"), "reused")
    when = datetime(2026, 1, 1, 3, tzinfo=UTC)
    first = server.standin.create_db_snapshot("reused", "manual", name="reused-latest", created=when)
    server.standin.create_db_snapshot("reused", "manual", name="reused-twin", created=when)
    listed = describe(rds, "us-east-1", "instance", "reused", "manual")
    assert {s.created for s in listed} == {when} and len(listed) == 2
    server.standin.delete_snapshot(first)
    again = server.standin.create_db_snapshot("reused", "manual", name="reused-latest", created=when + timedelta(1))
    assert again == first  # the same identifier and ARN, another snapshot
    times = {s.identifier: s.created for s in describe(rds, "us-east-1", "instance", "reused", "manual")}
    assert times == {"reused-latest": when + timedelta(1), "reused-twin": when}
