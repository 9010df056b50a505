"""Decisions for one RdsExportSchedule: due times, missed runs, concurrency, suspend, history, names, trigger mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rds_export_operator.api import status as st
from rds_export_operator.schedules import decisions as sch
from rds_export_operator.schedules.decisions import Child, Phase, Snapshot

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UID = "0b2c7d6e-1111-4a5b-9c8d-000000000001"
ACCOUNT_ARN = "arn:aws:rds:us-east-1:123456789012:snapshot:"


def spec(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"dbInstanceIdentifier": "orders", "region": "us-east-1"},
        "schedule": "0 3 * * *",
        "exportTemplate": {
            "s3BucketName": "exports",
            "iamRoleArn": "arn:aws:iam::123456789012:role/export",
            "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/0b4a2e46-1f86-4b34-9d4f-0fbd5d2c3b7f",
            "s3Prefix": "orders/{snapshotDate}",
            "deletionPolicy": "Retain",
        },
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def parsed(**overrides: Any) -> sch.ScheduleSpec:
    return sch.parse_spec(spec(**overrides), default_region="")


def snap(minutes: float, status: str = "available", name: str | None = None) -> Snapshot:
    created = T0 + timedelta(minutes=minutes)
    ident = name or f"rds:orders-{created:%Y-%m-%d-%H-%M}"
    return Snapshot(ident, ACCOUNT_ARN + ident, created, status)


def child_of(
    s: sch.ScheduleSpec, snapshot: Snapshot, phase: Phase = Phase.ACTIVE, finished: float | None = None
) -> Child:
    name = sch.child_name("nightly", UID, snapshot)
    done = T0 + timedelta(minutes=finished) if finished is not None else None
    return Child(name, f"uid-{name}", snapshot.identifier, snapshot.created, phase, done)


def run(
    s: sch.ScheduleSpec,
    now: datetime,
    *,
    status: dict[str, Any] | None = None,
    children: list[Child] | None = None,
    snapshots: list[Snapshot] | None = None,
    created: datetime = T0,
) -> sch.Plan:
    return sch.plan(
        s,
        name="nightly",
        namespace="team",
        uid=UID,
        created=created,
        status=status or {},
        children=children or [],
        snapshots=snapshots,
        now=now,
    )


def created_snapshots(p: sch.Plan) -> list[str]:
    return [c["metadata"]["annotations"][sch.ANNOTATION_SNAPSHOT] for c in p.create]


# -- spec -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason", "message"),
    [
        ({"timeZone": "Mars/Olympus"}, "UnknownTimeZone", "unknown time zone"),
        ({"schedule": "61 * * * *"}, "InvalidSchedule", "outside 0-59"),
        ({"schedule": None}, "InvalidSpec", "exactly one of schedule and trigger"),
        ({"trigger": "NewSnapshot"}, "InvalidSpec", "exactly one of schedule and trigger"),
        ({"exportTemplate": {"s3BucketName": "b"}}, "InvalidSpec", "requires iamRoleArn, kmsKeyId"),
        ({"source": {"region": "us-east-1"}}, "InvalidSpec", "exactly one of dbInstanceIdentifier"),
    ],
)
def test_spec_errors_name_the_problem(overrides: dict[str, Any], reason: str, message: str) -> None:
    with pytest.raises(sch.ScheduleError, match=message) as info:
        sch.parse_spec(spec(**overrides), default_region="")
    assert info.value.reason == reason


def test_unknown_prefix_placeholder_is_refused() -> None:
    template = {**spec()["exportTemplate"], "s3Prefix": "x/{snapshotDat}"}
    with pytest.raises(sch.ScheduleError, match="snapshotDat"):
        parsed(exportTemplate=template)


def test_defaults() -> None:
    s = parsed()
    assert (s.concurrency, s.suspend, s.keep_succeeded, s.keep_failed, s.snapshot_type) == (
        sch.Concurrency.FORBID,
        False,
        3,
        1,
        "automated",
    )


# -- names and children -----------------------------------------------------------------------------------------


def test_child_name_is_deterministic_valid_and_distinct() -> None:
    a, b = snap(0), snap(60)
    name = sch.child_name("nightly", UID, a)
    assert name == sch.child_name("nightly", UID, a)  # a restart derives the same name
    assert name.startswith("nightly-202601010000-") and len(name) <= 60
    assert name != sch.child_name("nightly", UID, b)
    assert name != sch.child_name("nightly", "another-uid", a)  # a re-created schedule exports anew
    long = sch.child_name("9" * 200, UID, a)
    assert len(long) <= 60 and long[0].isalpha() and "--" not in long


def test_child_object_carries_template_owner_and_rendered_prefix() -> None:
    s = parsed()
    p = run(s, T0 + timedelta(hours=3, minutes=1), snapshots=[snap(5)])
    [child] = p.create
    meta = child["metadata"]
    assert meta["ownerReferences"][0] | {} == {
        "apiVersion": "rdsexport.dev/v1alpha1",
        "kind": "RdsExportSchedule",
        "name": "nightly",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta["labels"] == {sch.LABEL_SCHEDULE_UID: UID, sch.LABEL_SCHEDULE: "nightly"}
    assert child["spec"]["sourceArn"] == snap(5).arn
    assert child["spec"]["s3Prefix"] == "orders/2026-01-01"
    assert child["spec"]["exportTaskIdentifier"] == meta["name"]
    assert child["spec"]["deletionPolicy"] == "Retain"


def test_prefix_placeholders() -> None:
    s = parsed()
    values = sch.placeholder_values("nightly", "team", s, snap(61))
    rendered = sch.render_prefix("{scheduleName}/{sourceIdentifier}/{snapshotIdentifier}/y={snapshotYear}", values)
    assert rendered == "nightly/orders/orders-2026-01-01-01-01/y=2026"


def test_child_from_object_reads_phase_and_finish_time() -> None:
    obj = {
        "metadata": {"name": "c", "uid": "u", "annotations": {sch.ANNOTATION_SNAPSHOT: "rds:x"}},
        "status": {
            "taskEndTime": "2026-01-01T05:00:00Z",
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T05:00:02Z"}],
        },
    }
    child = sch.child_from_object(obj)
    assert child.phase is Phase.SUCCEEDED and child.finished == T0 + timedelta(hours=5)
    obj["status"] = {"conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T06:00:00Z"}]}
    assert sch.child_from_object(obj).phase is Phase.FAILED
    assert sch.child_from_object({"metadata": {"name": "c"}}).phase is Phase.ACTIVE


# -- cron mode --------------------------------------------------------------------------------------------------


def test_not_due_before_the_first_time() -> None:
    p = run(parsed(), T0 + timedelta(hours=2, minutes=59), snapshots=[snap(0)])
    assert not p.create and "lastScheduleTime" not in p.status
    assert p.status["nextScheduleTime"] == "2026-01-01T03:00:00Z"


def test_due_exports_the_newest_available_snapshot_once() -> None:
    s = parsed()
    now = T0 + timedelta(hours=3, seconds=5)
    snaps = [snap(10), snap(20), snap(30, status="creating")]
    p = run(s, now, snapshots=snaps)
    assert created_snapshots(p) == [snaps[1].identifier]
    assert p.status["lastScheduleTime"] == "2026-01-01T03:00:00Z"
    assert p.status["lastExportedSnapshot"] == snaps[1].identifier
    # Crash before the status was written: the child exists, so nothing new is created.
    again = run(s, now, children=[child_of(s, snaps[1])], snapshots=snaps)
    assert again.create == []
    # The next day, with the status written: the only newer available snapshot is exported.
    status = {**p.status, "active": []}
    later = [*snaps[:2], snap(30), snap(24 * 60)]
    nxt = run(s, T0 + timedelta(days=1, hours=3, seconds=1), status=status, snapshots=later)
    assert created_snapshots(nxt) == [later[-1].identifier]


def test_due_without_a_new_snapshot_records_the_run() -> None:
    s = parsed()
    status = {"lastScheduleTime": "2026-01-01T03:00:00Z", "lastHandledSnapshotTime": "2026-01-01T00:20:00Z"}
    p = run(s, T0 + timedelta(days=1, hours=3, seconds=1), status=status, snapshots=[snap(10), snap(20)])
    assert p.create == [] and p.status["lastScheduleTime"] == "2026-01-02T03:00:00Z"
    assert [e.reason for e in p.events] == ["NoNewSnapshot"]


def test_missed_runs_catch_up_once() -> None:
    s = parsed()
    status = {"lastScheduleTime": "2026-01-01T03:00:00Z"}
    now = T0 + timedelta(days=4, hours=5)  # down for four due times (Jan 2-5)
    p = run(s, now, status=status, snapshots=[snap(10), snap(2 * 24 * 60), snap(3 * 24 * 60)])
    assert created_snapshots(p) == [snap(3 * 24 * 60).identifier]
    assert p.status["lastScheduleTime"] == "2026-01-05T03:00:00Z"
    assert [e.reason for e in p.events if e.type == "Warning"] == ["MissedSchedule"]


def test_starting_deadline_skips_a_run_that_is_too_late() -> None:
    s = parsed(startingDeadlineSeconds=600)
    status = {"lastScheduleTime": "2026-01-01T03:00:00Z"}
    late = run(s, T0 + timedelta(days=1, hours=3, minutes=11), status=status, snapshots=[snap(24 * 60)])
    assert late.create == [] and "lastScheduleTime" not in late.status
    on_time = run(s, T0 + timedelta(days=1, hours=3, minutes=9), status=status, snapshots=[snap(24 * 60)])
    assert len(on_time.create) == 1


def test_forbid_holds_while_an_export_runs_and_keeps_the_run_pending() -> None:
    s = parsed()
    running = child_of(s, snap(10))
    now = T0 + timedelta(days=1, hours=3, seconds=1)
    status = {"lastScheduleTime": "2026-01-01T03:00:00Z", "lastHandledSnapshotTime": "2026-01-01T00:10:00Z"}
    p = run(s, now, status=status, children=[running], snapshots=[snap(10), snap(24 * 60)])
    assert p.create == [] and p.delete == []
    assert "lastScheduleTime" not in p.status and p.ready[1] == "WaitingForActiveExport"
    assert [a["name"] for a in p.status["active"]] == [running.name]
    # The export finished a minute later: the pending run goes ahead.
    done = child_of(s, snap(10), Phase.SUCCEEDED, finished=24 * 60 + 3 * 60 + 1)
    after = run(s, now + timedelta(minutes=1), status=status, children=[done], snapshots=[snap(10), snap(24 * 60)])
    assert created_snapshots(after) == [snap(24 * 60).identifier]


def test_allow_runs_alongside() -> None:
    s = parsed(concurrencyPolicy="Allow")
    status = {"lastScheduleTime": "2026-01-01T03:00:00Z", "lastHandledSnapshotTime": "2026-01-01T00:10:00Z"}
    running = child_of(s, snap(10))
    p = run(s, T0 + timedelta(days=1, hours=3, seconds=1), status=status, children=[running], snapshots=[snap(1440)])
    assert len(p.create) == 1 and p.delete == [] and len(p.status["active"]) == 2


def test_replace_deletes_the_running_export() -> None:
    s = parsed(concurrencyPolicy="Replace")
    status = {"lastScheduleTime": "2026-01-01T03:00:00Z", "lastHandledSnapshotTime": "2026-01-01T00:10:00Z"}
    running = child_of(s, snap(10))
    p = run(s, T0 + timedelta(days=1, hours=3, seconds=1), status=status, children=[running], snapshots=[snap(1440)])
    assert p.delete == [running.name] and len(p.create) == 1
    assert [a["name"] for a in p.status["active"]] == [p.create[0]["metadata"]["name"]]


def test_suspend_stops_new_exports_and_resume_catches_up_once() -> None:
    s = parsed(suspend=True)
    status = {"lastScheduleTime": "2026-01-01T03:00:00Z"}
    now = T0 + timedelta(days=3, hours=4)
    p = run(s, now, status=status, snapshots=[snap(1440), snap(2880)])
    assert p.create == [] and p.ready[1] == "Suspended" and p.status["nextScheduleTime"] is None
    resumed = run(parsed(), now, status=status, snapshots=[snap(1440), snap(2880)])
    assert created_snapshots(resumed) == [snap(2880).identifier]


def test_listing_failure_is_not_a_verdict() -> None:
    p = sch.plan(
        parsed(),
        name="nightly",
        namespace="team",
        uid=UID,
        created=T0,
        status={},
        children=[],
        snapshots=None,
        now=T0 + timedelta(hours=3, seconds=1),
        snapshots_error="Throttling",
    )
    assert p.create == [] and "lastScheduleTime" not in p.status
    assert p.ready == ("False", "SnapshotsUnavailable", "Throttling")


# -- trigger mode -----------------------------------------------------------------------------------------------


def trigger(**overrides: Any) -> sch.ScheduleSpec:
    return parsed(schedule=None, trigger="NewSnapshot", **overrides)


def test_trigger_exports_new_snapshots_oldest_first_one_at_a_time() -> None:
    s = trigger()
    old, a, b = snap(-5), snap(1), snap(2)
    p = run(s, T0 + timedelta(minutes=3), snapshots=[b, old, a])
    assert created_snapshots(p) == [a.identifier]  # the one from before the schedule is not new
    assert p.status["lastHandledSnapshotTime"] == "2026-01-01T00:01:00.000000Z"
    # a is running: Forbid waits.
    status = dict(p.status)
    waiting = run(s, T0 + timedelta(minutes=4), status=status, children=[child_of(s, a)], snapshots=[old, a, b])
    assert waiting.create == []
    done = child_of(s, a, Phase.SUCCEEDED, finished=4)
    p2 = run(s, T0 + timedelta(minutes=5), status=status, children=[done], snapshots=[old, a, b])
    assert created_snapshots(p2) == [b.identifier]


def test_trigger_allow_exports_all_new_ones_and_replace_only_the_newest() -> None:
    a, b, c = snap(1), snap(2), snap(3)
    allow = run(trigger(concurrencyPolicy="Allow"), T0 + timedelta(minutes=4), snapshots=[a, b, c])
    assert created_snapshots(allow) == [a.identifier, b.identifier, c.identifier]
    replace = run(trigger(concurrencyPolicy="Replace"), T0 + timedelta(minutes=4), snapshots=[a, b, c])
    assert created_snapshots(replace) == [c.identifier]
    assert replace.status["lastHandledSnapshotTime"] == "2026-01-01T00:03:00.000000Z"


def test_trigger_waits_for_a_snapshot_still_being_created() -> None:
    a, b = snap(1, status="creating"), snap(2)
    p = run(trigger(concurrencyPolicy="Allow"), T0 + timedelta(minutes=4), snapshots=[a, b])
    assert p.create == []
    failed = snap(1, status="failed")
    p = run(trigger(concurrencyPolicy="Allow"), T0 + timedelta(minutes=4), snapshots=[failed, b])
    assert created_snapshots(p) == [b.identifier]


def test_trigger_forbid_does_not_skip_over_a_waiting_snapshot() -> None:
    # a is exported now, b waits for a; the failed one after b must not move the watermark past b.
    a, b, bad = snap(1), snap(2), snap(3, status="failed")
    p = run(trigger(), T0 + timedelta(minutes=4), snapshots=[a, b, bad])
    assert created_snapshots(p) == [a.identifier]
    assert p.status["lastHandledSnapshotTime"] == "2026-01-01T00:01:00.000000Z"


def test_trigger_starting_deadline_skips_snapshots_seen_available_too_long_ago() -> None:
    a, b = snap(1), snap(50)
    seen = {f"{a.identifier}@2026-01-01T00:01:00.000000Z": "2026-01-01T00:02:00Z"}  # first seen at 00:02
    s = trigger(startingDeadlineSeconds=1200, concurrencyPolicy="Allow")
    p = run(s, T0 + timedelta(minutes=60), status={"firstSeenAvailable": seen}, snapshots=[a, b])
    assert created_snapshots(p) == [b.identifier]  # b is first seen now, however old its creation time
    assert [e.reason for e in p.events if e.reason == "SnapshotSkipped"] == ["SnapshotSkipped"]


def test_trigger_never_exports_a_snapshot_twice_across_restarts() -> None:
    s = trigger(concurrencyPolicy="Allow")
    a, b = snap(1), snap(2)
    first = run(s, T0 + timedelta(minutes=3), snapshots=[a, b])
    # Crash after creating the children, before writing the status: the children alone prevent a second export.
    kids = [child_of(s, a), child_of(s, b)]
    again = run(s, T0 + timedelta(minutes=4), children=kids, snapshots=[a, b])
    assert again.create == [] and again.status["lastHandledSnapshotTime"] == first.status["lastHandledSnapshotTime"]
    # After the history was pruned, the written watermark alone prevents it.
    later = run(s, T0 + timedelta(minutes=9), status=first.status, snapshots=[a, b])
    assert later.create == []


# -- history ----------------------------------------------------------------------------------------------------


def test_history_limits_prune_the_oldest_finished_children() -> None:
    s = trigger(successfulExportsHistoryLimit=2, failedExportsHistoryLimit=0)
    kids = [child_of(s, snap(i), Phase.SUCCEEDED, finished=i + 10) for i in range(1, 5)]
    failed = child_of(s, snap(5), Phase.FAILED, finished=20)
    running = child_of(s, snap(6))
    status = {"lastHandledSnapshotTime": "2026-01-01T00:06:00Z"}
    p = run(s, T0 + timedelta(minutes=30), status=status, children=[*kids, failed, running], snapshots=[])
    assert sorted(p.prune) == sorted([kids[0].name, kids[1].name, failed.name])


def test_history_is_not_pruned_beyond_the_written_watermark() -> None:
    s = trigger(successfulExportsHistoryLimit=0)
    kid = child_of(s, snap(5), Phase.SUCCEEDED, finished=6)
    p = run(s, T0 + timedelta(minutes=7), status={"lastHandledSnapshotTime": "2026-01-01T00:01:00Z"}, children=[kid])
    assert p.prune == [] and p.status["lastHandledSnapshotTime"] == "2026-01-01T00:05:00.000000Z"
    p2 = run(s, T0 + timedelta(minutes=8), status=p.status, children=[kid])
    assert p2.prune == [kid.name]


def test_last_successful_time_is_the_newest_success() -> None:
    s = trigger()
    kids = [child_of(s, snap(1), Phase.SUCCEEDED, finished=9), child_of(s, snap(2), Phase.FAILED, finished=12)]
    p = run(s, T0 + timedelta(minutes=20), status={"lastSuccessfulTime": "2026-01-01T00:05:00Z"}, children=kids)
    assert p.status["lastSuccessfulTime"] == "2026-01-01T00:09:00Z"


def test_watermark_keeps_sub_second_precision_across_polls() -> None:
    # Found end to end: a watermark written in whole seconds let a snapshot from the schedule's creation second
    # (taken before the schedule) count as new at the second poll.
    s = trigger()
    created = T0 + timedelta(seconds=2)  # creationTimestamp has whole seconds
    before = Snapshot(
        "rds:orders-a", ACCOUNT_ARN + "rds:orders-a", T0 + timedelta(seconds=2, milliseconds=600), "available"
    )
    first = run(s, T0 + timedelta(seconds=3), created=created, snapshots=[before])
    assert first.create == []
    second = run(s, T0 + timedelta(seconds=4), created=created, status=first.status, snapshots=[before])
    assert second.create == []
    assert st.parse_time(first.status["lastHandledSnapshotTime"]) == T0 + timedelta(seconds=3, microseconds=-1)


def test_missed_schedule_is_told_once_not_at_every_poll_while_forbid_waits() -> None:
    s = parsed()
    running = child_of(s, snap(10))
    status = {"lastScheduleTime": "2026-01-01T03:00:00Z", "lastHandledSnapshotTime": "2026-01-01T00:10:00Z"}
    now = T0 + timedelta(days=2, hours=3, seconds=1)  # two due times since the last one: one missed
    waiting = run(s, now, status=status, children=[running], snapshots=[snap(24 * 60)])
    assert waiting.ready[1] == "WaitingForActiveExport"
    assert [e.reason for e in waiting.events] == ["ForbidHolding"]
    done = child_of(s, snap(10), Phase.SUCCEEDED, finished=30)
    acted = run(s, now, status=status, children=[done], snapshots=[snap(24 * 60)])
    assert [e.reason for e in acted.events] == ["MissedSchedule", "ExportCreated"]


# -- live cluster -----------------------------------------------------------------------------------------------

CLUSTER_ARN = "arn:aws:rds:us-east-1:123456789012:cluster:aurora"


def live(**overrides: Any) -> sch.ScheduleSpec:
    return parsed(
        source={"dbClusterIdentifier": "aurora", "region": "us-east-1", "exportLiveCluster": True}, **overrides
    )


def test_live_cluster_needs_a_cluster_and_a_schedule() -> None:
    with pytest.raises(sch.ScheduleError, match="exportLiveCluster needs"):
        parsed(source={"dbInstanceIdentifier": "db", "exportLiveCluster": True})
    with pytest.raises(sch.ScheduleError, match="exportLiveCluster needs"):
        live(schedule=None, trigger="NewSnapshot")
    assert live().source_kind == "live"


def test_live_cluster_exports_the_cluster_once_per_due_time() -> None:
    s = live()
    cluster = [Snapshot("aurora", CLUSTER_ARN, T0 + timedelta(days=9), "backing-up")]
    first = run(s, T0 + timedelta(hours=3, seconds=2), snapshots=cluster)
    [child] = first.create
    assert child["spec"]["sourceArn"] == CLUSTER_ARN
    assert child["metadata"]["annotations"][sch.ANNOTATION_SNAPSHOT] == "aurora-2026-01-01-03-00"
    assert child["spec"]["s3Prefix"] == "orders/2026-01-01"  # the due time's date
    kid = Child(child["metadata"]["name"], "u1", "aurora-2026-01-01-03-00", T0 + timedelta(hours=3), Phase.ACTIVE, None)
    # The same due time again (crash before the status was written): nothing new.
    assert run(s, T0 + timedelta(hours=3, seconds=9), children=[kid], snapshots=cluster).create == []
    done = Child(kid.name, "u1", kid.snapshot, kid.snapshot_time, Phase.SUCCEEDED, T0 + timedelta(hours=4))
    nxt = run(s, T0 + timedelta(days=1, hours=3, seconds=1), status=first.status, children=[done], snapshots=cluster)
    assert created_snapshots(nxt) == ["aurora-2026-01-02-03-00"]
    assert nxt.create[0]["metadata"]["name"] != kid.name


def test_history_keeps_the_newest_snapshot_when_exports_finish_in_the_same_second() -> None:
    # Found end to end: taskEndTime has whole seconds, and the tie was broken by the (hashed) name.
    s = trigger(successfulExportsHistoryLimit=1)
    done = T0 + timedelta(minutes=10)
    # Names sort against the snapshots' order, as hashed names may.
    kids = [
        Child(f"{c}-child", c, snap(i).identifier, snap(i).created, Phase.SUCCEEDED, done) for i, c in enumerate("zyx")
    ]
    status = {"lastHandledSnapshotTime": "2026-01-01T00:05:00.000000Z"}
    p = run(s, T0 + timedelta(minutes=30), status=status, children=kids, snapshots=[])
    assert sorted(p.prune) == ["y-child", "z-child"]  # x-child exports the newest snapshot


def test_template_passes_ttl_and_export_only_to_children_but_never_source_or_identifier() -> None:
    template = {
        **spec()["exportTemplate"],
        "ttlSecondsAfterFinished": 600,
        "exportOnly": ["orders.public.orders"],
        "sourceArn": "arn:aws:rds:us-east-1:123456789012:snapshot:other",  # not a template field: ignored
    }
    s = parsed(exportTemplate=template, schedule=None, trigger="NewSnapshot")
    [child] = run(s, T0 + timedelta(minutes=5), snapshots=[snap(1)]).create
    assert child["spec"]["ttlSecondsAfterFinished"] == 600
    assert child["spec"]["exportOnly"] == ["orders.public.orders"]
    assert child["spec"]["sourceArn"] == snap(1).arn
