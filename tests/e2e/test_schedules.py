"""RdsExportSchedule end to end: the operator as a process, the real control plane, snapshots taken over time by
the stand-in. Exactly once across a SIGKILL, Forbid, suspend, history limits, cron due times, garbage collection,
an unknown time zone, and ttlSecondsAfterFinished."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from e2e.conftest import (
    KEY,
    MAPPING,
    RELEASE_NAMESPACE,
    ROLE,
    ROLE_A,
    OperatorFactory,
    condition,
    export_task,
    identity_mapping,
    wait_condition,
)
from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.standin.server import TERMINAL, StandInServer, create_db_instance
from localdev.waiting import DeadlineExceeded, wait_until

SCHEDULES, TASKS = "rdsexportschedules", "rdsexporttasks"
LABEL_UID = "rdsexport.dev/schedule-uid"


def schedule(name: str, db: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"dbInstanceIdentifier": db, "region": "us-east-1"},
        "trigger": "NewSnapshot",
        "exportTemplate": {
            "s3BucketName": "exports-bucket",
            "iamRoleArn": ROLE,
            "kmsKeyId": KEY,
            "s3Prefix": "{sourceIdentifier}/{snapshotDate}",
            "deletionPolicy": "Retain",
        },
    }
    body.update(spec)
    return {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportSchedule",
        "metadata": {"name": name},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def new_db(rds_client: Any) -> str:
    db = f"db-{uuid.uuid4().hex[:8]}"
    create_db_instance(rds_client, db)
    return db


def children(kubectl: Kubectl, namespace: str, uid: str) -> list[dict[str, Any]]:
    items = kubectl.get(TASKS, namespace=namespace)["items"]
    return [o for o in items if (o["metadata"].get("labels") or {}).get(LABEL_UID) == uid]


def uid_of(kubectl: Kubectl, namespace: str, name: str) -> str:
    """The schedule's UID, once its creation second is over: only snapshots after it count as new."""
    meta = kubectl.get(SCHEDULES, name, namespace)["metadata"]
    created = datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
    wait_until(lambda: datetime.now(UTC) >= created + timedelta(seconds=1), timeout=5, what="the next second")
    return str(meta["uid"])


def starts_by_source(aws: StandInServer, prefix: str) -> Counter[str]:
    """StartExportTask calls that succeeded far enough to be recorded, per snapshot ARN, for one DB."""
    return Counter(
        c.params.get("SourceArn", "")
        for c in aws.standin.calls("StartExportTask")
        if f":snapshot:rds:{prefix}-" in c.params.get("SourceArn", "") and c.fault is None
    )


def complete_tasks(aws: StandInServer, prefix: str, status: str = "COMPLETE") -> None:
    for task in aws.standin.tasks():
        if f"rds:{prefix}-" in task.source_arn and task.status not in TERMINAL:
            aws.standin.set_task(task.identifier, status=status)


def ready_reason(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: condition(o, "Ready").get("reason") == reason


def test_trigger_exports_each_new_snapshot_exactly_once_across_a_sigkill(
    kubectl: Kubectl, namespace: str, aws: StandInServer, rds_client: Any, operator_factory: OperatorFactory
) -> None:
    db = new_db(rds_client)  # moto takes a first automated snapshot now: before the schedule, so not "new"
    kubectl.apply(schedule("every", db, concurrencyPolicy="Allow", successfulExportsHistoryLimit=50), "-n", namespace)
    uid = uid_of(kubectl, namespace, "every")
    first = operator_factory()
    taker = aws.standin.snapshot_every(db, 1.5)
    wait_until(lambda: len(children(kubectl, namespace, uid)) >= 2, timeout=60, what="two exports")
    first.kill()
    wait_until(lambda: _snapshots(rds_client, db) >= 5, timeout=30, what="snapshots while the operator is down")
    operator_factory()
    wait_until(lambda: _snapshots(rds_client, db) >= 7, timeout=30, what="more snapshots")
    taker.set()
    expected = _new_snapshot_arns(rds_client, db, kubectl.get(SCHEDULES, "every", namespace))

    def all_exported() -> bool:
        complete_tasks(aws, db)  # free the stand-in's 5 export slots as exports start
        return set(starts_by_source(aws, db)) == expected

    wait_until(all_exported, timeout=90, what="every new snapshot exported")
    kids = children(kubectl, namespace, uid)
    sources = Counter(k["spec"]["sourceArn"] for k in kids)
    assert set(sources) == expected and max(sources.values()) == 1  # one child per snapshot
    assert max(starts_by_source(aws, db).values()) == 1  # and one StartExportTask per snapshot
    for kid in kids:
        owner = kid["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("RdsExportSchedule", uid, True)
        assert kid["spec"]["s3Prefix"].startswith(f"{db}/20")
    status = kubectl.get(SCHEDULES, "every", namespace)["status"]
    assert status["source"] == db and status["when"] == "NewSnapshot"
    assert condition(kubectl.get(SCHEDULES, "every", namespace), "Ready")["status"] == "True"


def _snapshots(rds_client: Any, db: str) -> int:
    return len(rds_client.describe_db_snapshots(DBInstanceIdentifier=db, SnapshotType="automated")["DBSnapshots"])


def _new_snapshot_arns(rds_client: Any, db: str, sched: dict[str, Any]) -> set[str]:
    created = datetime.fromisoformat(sched["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    snaps = rds_client.describe_db_snapshots(DBInstanceIdentifier=db, SnapshotType="automated")["DBSnapshots"]
    return {s["DBSnapshotArn"] for s in snaps if s["SnapshotCreateTime"] >= created + timedelta(seconds=1)}


def test_forbid_holds_while_an_export_runs(
    kubectl: Kubectl, namespace: str, aws: StandInServer, rds_client: Any, operator: OperatorProcess
) -> None:
    db = new_db(rds_client)
    kubectl.apply(schedule("forbid", db), "-n", namespace)
    uid = uid_of(kubectl, namespace, "forbid")
    a = aws.standin.create_db_snapshot(db)
    b = aws.standin.create_db_snapshot(db)
    kubectl.wait_for(SCHEDULES, "forbid", namespace, ready_reason("WaitingForActiveExport"), timeout=60, what="Forbid")
    kids = children(kubectl, namespace, uid)
    assert [k["spec"]["sourceArn"] for k in kids] == [a]  # the oldest first, and only it
    sched = kubectl.get(SCHEDULES, "forbid", namespace)
    assert [r["name"] for r in sched["status"]["active"]] == [kids[0]["metadata"]["name"]]
    wait_until(lambda: starts_by_source(aws, db)[a] == 1, timeout=30, what="the first export started")
    complete_tasks(aws, db)
    wait_until(
        lambda: {k["spec"]["sourceArn"] for k in children(kubectl, namespace, uid)} == {a, b},
        timeout=60,
        what="the second export after the first finished",
    )


def test_suspend_stops_new_exports(
    kubectl: Kubectl, namespace: str, aws: StandInServer, rds_client: Any, operator: OperatorProcess
) -> None:
    db = new_db(rds_client)
    kubectl.apply(schedule("paused", db, suspend=True), "-n", namespace)
    uid = uid_of(kubectl, namespace, "paused")
    arn = aws.standin.create_db_snapshot(db)
    kubectl.wait_for(SCHEDULES, "paused", namespace, ready_reason("Suspended"), timeout=60, what="Suspended")
    # Ready=Suspended is written by a poll that saw suspend=true, and a suspended schedule creates nothing.
    sched = kubectl.get(SCHEDULES, "paused", namespace)
    assert children(kubectl, namespace, uid) == [] and "lastExportedSnapshot" not in sched["status"]
    kubectl.run("patch", SCHEDULES, "paused", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_until(
        lambda: [k["spec"]["sourceArn"] for k in children(kubectl, namespace, uid)] == [arn],
        timeout=60,
        what="the export after resuming",
    )


def test_history_limits_prune_finished_exports(
    kubectl: Kubectl, namespace: str, aws: StandInServer, rds_client: Any, operator: OperatorProcess
) -> None:
    db = new_db(rds_client)
    spec = {"concurrencyPolicy": "Allow", "successfulExportsHistoryLimit": 1, "failedExportsHistoryLimit": 0}
    kubectl.apply(schedule("history", db, **spec), "-n", namespace)
    uid = uid_of(kubectl, namespace, "history")
    arns = [aws.standin.create_db_snapshot(db) for _ in range(3)]
    wait_until(lambda: sum(starts_by_source(aws, db).values()) == 3, timeout=60, what="three exports started")
    ids = {t.source_arn: t.identifier for t in aws.standin.tasks() if t.source_arn in arns}
    aws.standin.set_task(ids[arns[0]], status="COMPLETE")
    aws.standin.set_task(ids[arns[1]], status="FAILED", failure_cause="test")
    aws.standin.set_task(ids[arns[2]], status="COMPLETE")
    wait_until(
        lambda: [k["spec"]["sourceArn"] for k in children(kubectl, namespace, uid)] == [arns[2]],
        timeout=60,
        what="only the newest completed export kept",
    )
    sched = kubectl.wait_for(
        SCHEDULES, "history", namespace, lambda o: o["status"].get("lastSuccessfulTime"), timeout=30, what="success"
    )
    assert sched["status"]["active"] == []
    assert starts_by_source(aws, db) == Counter(dict.fromkeys(arns, 1))  # pruning exported nothing again


def test_cron_schedule_exports_the_newest_snapshot_when_due(
    kubectl: Kubectl, namespace: str, aws: StandInServer, rds_client: Any, operator: OperatorProcess
) -> None:
    db = new_db(rds_client)
    older = aws.standin.create_db_snapshot(db)
    newest = aws.standin.create_db_snapshot(db)
    kubectl.apply(schedule("cron", db, trigger=None, schedule="* * * * *", timeZone="Europe/Berlin"), "-n", namespace)
    uid = uid_of(kubectl, namespace, "cron")
    sched = kubectl.wait_for(
        SCHEDULES, "cron", namespace, lambda o: o.get("status", {}).get("lastScheduleTime"), timeout=90, what="due"
    )
    assert sched["status"]["lastScheduleTime"].endswith(":00Z")  # a due time, not the time of the poll
    kids = children(kubectl, namespace, uid)
    assert [k["spec"]["sourceArn"] for k in kids] == [newest] and older != newest
    assert kids[0]["metadata"]["annotations"]["rdsexport.dev/scheduled-time"] == sched["status"]["lastScheduleTime"]
    assert sched["status"]["when"] == "* * * * * (Europe/Berlin)"


def test_unknown_time_zone_is_reported(
    kubectl: Kubectl, namespace: str, rds_client: Any, operator: OperatorProcess
) -> None:
    kubectl.apply(schedule("tz", "nodb", trigger=None, schedule="0 3 * * *", timeZone="Mars/Olympus"), "-n", namespace)
    sched = kubectl.wait_for(SCHEDULES, "tz", namespace, ready_reason("UnknownTimeZone"), timeout=60, what="refused")
    ready = condition(sched, "Ready")
    assert ready["status"] == "False" and "Mars/Olympus" in ready["message"]
    wait_until(
        lambda: any(e["reason"] == "UnknownTimeZone" for e in kubectl.events(namespace, "tz")),
        timeout=30,
        what="a Warning Event",
    )


def test_ttl_seconds_after_finished_deletes_a_finished_export(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    kubectl.apply(export_task("short", snapshot_arn, ttlSecondsAfterFinished=2), "-n", namespace)
    kubectl.apply(
        export_task("kept", snapshot_arn, exportTaskIdentifier=f"kept-{uuid.uuid4().hex[:8]}"), "-n", namespace
    )
    ident = kubectl.wait_for(
        TASKS,
        "short",
        namespace,
        lambda o: o.get("status", {}).get("exportTaskIdentifier") and o["status"].get("status") == "STARTING",
        timeout=30,
        what="started",
    )["status"]["exportTaskIdentifier"]
    kept = kubectl.wait_for(
        TASKS, "kept", namespace, lambda o: o.get("status", {}).get("status") == "STARTING", timeout=30, what="started"
    )["status"]["exportTaskIdentifier"]
    aws.standin.set_task(ident, status="COMPLETE")
    aws.standin.set_task(kept, status="COMPLETE")
    wait_condition(kubectl, TASKS, "short", namespace, "Complete", status="True")
    kubectl.wait_gone(TASKS, "short", namespace, timeout=30)
    assert condition(kubectl.get(TASKS, "kept", namespace), "Complete")["status"] == "True"  # no TTL: kept


def garbage_collector_runs(kubectl: Kubectl, namespace: str, timeout: float) -> bool:
    """Probe kube-controller-manager's garbage collector directly: a ConfigMap owned by a deleted one goes."""
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gc-probe-owner", "namespace": namespace}}
    kubectl.create(owner)
    uid = kubectl.get("configmap", "gc-probe-owner", namespace)["metadata"]["uid"]
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gc-probe-owner", "uid": uid}
    kubectl.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "gc-probe-dependent", "namespace": namespace, "ownerReferences": [ref]},
        }
    )
    kubectl.run("delete", "configmap", "gc-probe-owner", "-n", namespace)
    try:
        kubectl.wait_gone("configmap", "gc-probe-dependent", namespace, timeout=timeout)
    except DeadlineExceeded:
        return False
    return True


def test_deleting_the_schedule_deletes_its_exports(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    rds_client: Any,
    operator: OperatorProcess,
) -> None:
    # Our control plane runs kube-controller-manager: its garbage collector must work here (once, it took longer
    # than 20 s after an earlier test restarted it, and a skip then hid this test); elsewhere, skip.
    if not control_plane.controller_manager_url:
        pytest.skip("kube-controller-manager does not run on this control plane: no ownerReference garbage collection")
    assert garbage_collector_runs(kubectl, namespace, timeout=90), "the garbage collector deleted no dependent"
    db = new_db(rds_client)
    kubectl.apply(schedule("owner", db, concurrencyPolicy="Allow"), "-n", namespace)
    uid = uid_of(kubectl, namespace, "owner")
    aws.standin.create_db_snapshot(db)
    aws.standin.create_db_snapshot(db)
    wait_until(lambda: len(children(kubectl, namespace, uid)) == 2, timeout=60, what="two exports")
    kubectl.run("delete", SCHEDULES, "owner", "-n", namespace, "--wait=false")
    wait_until(lambda: children(kubectl, namespace, uid) == [], timeout=60, what="exports garbage-collected")


def test_live_cluster_is_exported_at_a_due_time(
    kubectl: Kubectl, namespace: str, aws: StandInServer, rds_client: Any, operator: OperatorProcess
) -> None:
    cluster = f"aurora-{uuid.uuid4().hex[:8]}"
    arn = rds_client.create_db_cluster(
        DBClusterIdentifier=cluster, Engine="aurora-postgresql", MasterUsername="admin", MasterUserPassword="pw123456"
    )["DBCluster"]["DBClusterArn"]
    source = {"dbClusterIdentifier": cluster, "region": "us-east-1", "exportLiveCluster": True}
    kubectl.apply(schedule("live", cluster, source=source, trigger=None, schedule="* * * * *"), "-n", namespace)
    uid = uid_of(kubectl, namespace, "live")
    sched = kubectl.wait_for(
        SCHEDULES, "live", namespace, lambda o: o.get("status", {}).get("lastScheduleTime"), timeout=90, what="due"
    )
    [kid] = children(kubectl, namespace, uid)
    assert kid["spec"]["sourceArn"] == arn
    stamp = sched["status"]["lastScheduleTime"][:16].replace("T", "-").replace(":", "-")
    assert kid["metadata"]["annotations"]["rdsexport.dev/snapshot"] == f"{cluster}-{stamp}"
    wait_until(
        lambda: aws.standin.call_count("StartExportTask", kid["spec"]["exportTaskIdentifier"]) == 1,
        timeout=30,
        what="started",
    )
    assert sched["status"]["source"] == f"cluster/{cluster} (live)"


def test_an_export_the_api_server_refuses_is_reported_on_the_schedule(
    kubectl: Kubectl, namespace: str, aws: StandInServer, rds_client: Any, operator: OperatorProcess
) -> None:
    # No source.region (the operator's default, us-east-1): the schedule's admission cannot compare the key's
    # region, the child's can, and refuses it.
    db = new_db(rds_client)
    template = {
        "s3BucketName": "exports-bucket",
        "iamRoleArn": ROLE,
        "kmsKeyId": KEY.replace("us-east-1", "eu-west-1"),
    }
    kubectl.apply(
        schedule("refused", db, source={"dbInstanceIdentifier": db}, exportTemplate=template), "-n", namespace
    )
    uid = uid_of(kubectl, namespace, "refused")
    aws.standin.create_db_snapshot(db)
    sched = kubectl.wait_for(SCHEDULES, "refused", namespace, ready_reason("ExportRefused"), timeout=60, what="refused")
    assert "kmsKeyId must be a key in the region of sourceArn" in condition(sched, "Ready")["message"]
    assert children(kubectl, namespace, uid) == []
    wait_until(
        lambda: [e for e in kubectl.events(namespace, "refused") if e["reason"] == "ExportRefused"],
        timeout=30,
        what="a Warning Event",
    )


@pytest.fixture
def team_a_mapping(kubectl: Kubectl, namespace: str) -> Iterator[None]:
    """The test's namespace acts as ROLE_A (account 111111111111) through the chart's identity mapping."""
    with identity_mapping(kubectl, {namespace: ROLE_A}):
        yield


def test_snapshots_are_listed_as_the_namespace_identity(
    kubectl: Kubectl, namespace: str, team_a_mapping: None, aws: StandInServer, operator_factory: OperatorFactory
) -> None:
    # The DB lives in team A's account only: the operator's own identity (123456789012) would list nothing.
    operator_factory(f"--identities-configmap={RELEASE_NAMESPACE}/{MAPPING}")
    rds_a: Any = aws.session(ROLE_A).client("rds", endpoint_url=aws.url, region_name="us-east-1")
    db = new_db(rds_a)
    kubectl.apply(schedule("team", db), "-n", namespace)
    uid = uid_of(kubectl, namespace, "team")
    arn = aws.standin.create_db_snapshot(db, account="111111111111")
    assert ":111111111111:" in arn
    wait_until(
        lambda: [k["spec"]["sourceArn"] for k in children(kubectl, namespace, uid)] == [arn],
        timeout=60,
        what="team A's snapshot exported",
    )
    ident = children(kubectl, namespace, uid)[0]["spec"]["exportTaskIdentifier"]
    wait_until(
        lambda: (
            {c.caller for c in aws.standin.calls("StartExportTask") if c.params.get("ExportTaskIdentifier") == ident}
            == {ROLE_A}
        ),
        timeout=60,
        what="the export started as team A",
    )
