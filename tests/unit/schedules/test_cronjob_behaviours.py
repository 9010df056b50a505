"""CronJob's remaining behaviours (issue 24, "What to build" 4): children named per due time in cron mode,
Replace that deletes only once the replacement was accepted, success that needs the table report, Events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import kopf
import pytest
from tests.unit.schedules.test_decisions import T0, UID, child_of, parsed, run, snap, spec

from rds_export_operator.runtime.kubeapi import ApiError
from rds_export_operator.runtime.settings import Settings
from rds_export_operator.schedules import decisions as sch
from rds_export_operator.schedules import handlers
from rds_export_operator.schedules.decisions import Phase


def test_cron_mode_names_children_per_due_time_and_exports_at_most_one_per_due_time() -> None:
    s = parsed(schedule="0 3 * * *", concurrencyPolicy="Replace")
    a, b = snap(60), snap(170)
    due = T0 + timedelta(hours=3)
    first = run(s, due + timedelta(seconds=5), snapshots=[a])
    [obj] = first.create
    assert obj["metadata"]["annotations"][sch.ANNOTATION_SCHEDULED_TIME] == "2026-01-01T03:00:00Z"
    kid = sch.child_from_object({**obj, "metadata": {**obj["metadata"], "uid": "u1"}})
    # The status lagged (lastScheduleTime not written) and a newer snapshot appeared: same due time, nothing new,
    # and Replace does not cancel what this due time started.
    again = run(s, due + timedelta(seconds=65), children=[kid], snapshots=[a, b])
    assert again.create == [] and again.delete == []
    assert again.status["lastScheduleTime"] == "2026-01-01T03:00:00Z"
    # Another snapshot at the same due time would get the same name: creating it is a no-op.
    other = sch.child_object(s, b, name="nightly", namespace="team", uid=UID, scheduled=due)
    assert other["metadata"]["name"] == obj["metadata"]["name"]


def test_complete_with_failed_tables_is_a_failure() -> None:
    def task(tables: str) -> dict[str, Any]:
        conditions = [
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:10:00Z"},
            {"type": "TablesComplete", "status": tables},
        ]
        return {"metadata": {"name": "x", "uid": "u"}, "status": {"conditions": conditions}}

    assert sch.child_from_object(task("False")).phase is Phase.FAILED
    assert sch.child_from_object(task("Unknown")).phase is Phase.SUCCEEDED
    assert sch.child_from_object(task("True")).phase is Phase.SUCCEEDED


def test_pruning_is_announced() -> None:
    s = parsed(schedule=None, trigger="NewSnapshot", successfulExportsHistoryLimit=0)
    kid = child_of(s, snap(1), Phase.SUCCEEDED, finished=2)
    p = run(s, T0 + timedelta(minutes=5), status={"lastHandledSnapshotTime": "2026-01-01T00:01:00Z"}, children=[kid])
    assert p.prune == [kid.name]
    assert [(e.reason, kid.name in e.message) for e in p.events] == [("ExportsPruned", True)]


# -- Replace: the running export is deleted only once the replacement was accepted ----------------------------


class FakeTasks:
    def __init__(self, objects: list[dict[str, Any]], refuse: bool) -> None:
        self.objects, self.refuse, self.calls = objects, refuse, []  # type: list[tuple[str, str]]

    def list_tasks(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return list(self.objects)

    def create_task(self, obj: Mapping[str, Any], dry_run: bool = False) -> bool:
        self.calls.append(("dry-run" if dry_run else "create", obj["metadata"]["name"]))
        if self.refuse:
            raise ApiError("", 422, "RdsExportTask is invalid: spec.s3BucketName", None, None)  # type: ignore[arg-type]
        return True

    def delete_task(self, namespace: str, name: str, uid: str | None = None) -> bool:
        self.calls.append(("delete", name))
        return True


class FakeCache:
    def __init__(self, snapshots: list[sch.Snapshot]) -> None:
        self.snapshots = snapshots

    def get(self, *args: Any) -> list[sch.Snapshot]:
        return self.snapshots


def schedule_body(schedule_spec: dict[str, Any], status: dict[str, Any]) -> kopf.Body:
    meta = {"name": "nightly", "namespace": "team", "uid": UID, "creationTimestamp": "2026-01-01T00:00:00Z"}
    return kopf.Body({"metadata": meta, "spec": schedule_spec, "status": status})


@pytest.mark.parametrize("refuse", [True, False])
def test_replace_deletes_the_running_export_only_after_the_replacement_was_accepted(
    refuse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    posted: list[str] = []
    monkeypatch.setattr(kopf, "event", lambda *a, **k: posted.append(k["reason"]))
    overrides = {"schedule": None, "trigger": "NewSnapshot", "concurrencyPolicy": "Replace"}
    s = parsed(**overrides)
    running = sch.child_object(s, snap(1), name="nightly", namespace="team", uid=UID, scheduled=None)
    running["metadata"]["uid"] = "running-uid"
    tasks = FakeTasks([running], refuse)
    body = schedule_body(spec(**overrides), {"lastHandledSnapshotTime": "2026-01-01T00:01:00.000000Z"})
    config = replace(Settings(), default_region="us-east-1")
    h = handlers.ScheduleHandlers(
        config, rds=None, api=tasks, cache=FakeCache([snap(1), snap(2)]), clock=lambda: T0 + timedelta(minutes=3)
    )  # type: ignore[arg-type]
    patch = kopf.Patch()
    h.tick(body=body, spec=body.spec, status=body.status, patch=patch)
    name = running["metadata"]["name"]
    if refuse:
        assert [c[0] for c in tasks.calls] == ["dry-run"]  # refused: the running export keeps running
        assert "ExportRefused" in posted
    else:
        assert [c[0] for c in tasks.calls] == ["dry-run", "delete", "create"] and tasks.calls[1][1] == name


# -- "export this snapshot now" (the rdsexport.dev/export-snapshot annotation) --------------------------------


def test_export_now_creates_that_snapshots_child_at_once_and_clears_the_request() -> None:
    s = parsed(schedule="0 3 * * *")
    old, newest = snap(10), snap(20)
    p = sch.plan(
        s, name="nightly", namespace="team", uid=UID, created=T0, status={}, children=[],
        snapshots=[old, newest], now=T0 + timedelta(minutes=30), requested=old.identifier.upper(),
    )  # fmt: skip
    assert [c["spec"]["sourceArn"] for c in p.create] == [old.arn] and p.clear_request
    # A child that exists already is not doubled (deleting a failed child first re-runs it: the case above).
    failed = child_of(s, old, Phase.FAILED, finished=40)
    again = sch.plan(
        s, name="nightly", namespace="team", uid=UID, created=T0, status={}, children=[failed],
        snapshots=[old, newest], now=T0 + timedelta(minutes=50), requested=old.identifier,
    )  # fmt: skip
    assert again.create == [] and again.clear_request
    assert any(e.reason == "ExportNowDone" for e in again.events)


def test_export_now_waits_for_a_running_export_under_forbid_and_refuses_an_unknown_snapshot() -> None:
    s = parsed(schedule="0 3 * * *")
    a, b = snap(10), snap(20)
    running = child_of(s, a)
    wait = sch.plan(
        s, name="nightly", namespace="team", uid=UID, created=T0, status={}, children=[running],
        snapshots=[a, b], now=T0 + timedelta(minutes=30), requested=b.identifier,
    )  # fmt: skip
    assert wait.create == [] and not wait.clear_request
    unknown = sch.plan(
        s, name="nightly", namespace="team", uid=UID, created=T0, status={}, children=[],
        snapshots=[a, b], now=T0 + timedelta(minutes=30), requested="no-such-snapshot",
    )  # fmt: skip
    assert unknown.create == [] and unknown.clear_request
    assert [e.reason for e in unknown.events] == ["ExportNowRefused"]


# -- the timer meets a due time itself ------------------------------------------------------------------------


def test_a_due_time_is_met_within_a_tick_not_a_poll_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)
    tasks = FakeTasks([], refuse=False)
    now = [T0 + timedelta(minutes=3, seconds=10)]
    config = replace(Settings(), default_region="us-east-1", poll_interval=60.0, tick_interval=1.0)
    h = handlers.ScheduleHandlers(config, rds=None, api=tasks, cache=FakeCache([snap(1)]), clock=lambda: now[0])  # type: ignore[arg-type]
    registry = kopf.OperatorRegistry()
    h.register(registry)
    assert {getattr(t, "interval", None) for t in registry._spawning.get_all_handlers()} == {1.0}
    body = schedule_body(
        spec(schedule="*/5 * * * *", startingDeadlineSeconds=5), {"lastScheduleTime": "2026-01-01T00:00:00Z"}
    )
    listed: list[str] = []
    monkeypatch.setattr(tasks, "list_tasks", lambda *a: listed.append("list") or [])

    def tick(at: timedelta) -> kopf.Patch:
        now[0] = T0 + at
        patch = kopf.Patch()
        h.tick(body=body, spec=body.spec, status=body.status, patch=patch)
        return patch

    tick(timedelta(minutes=3, seconds=10))  # not due: the work once
    tick(timedelta(minutes=3, seconds=11))  # a tick between polls: only the clock
    assert listed == ["list"]
    patch = tick(timedelta(minutes=5, seconds=1))  # due at 00:05, 51 s after the last look: acted on at once
    assert listed == ["list", "list"] and patch["status"]["lastScheduleTime"] == "2026-01-01T00:05:00Z"


def test_what_ticks_saw_of_deleted_schedules_is_dropped_after_a_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bug: ScheduleHandlers._looked kept an entry per schedule ever ticked, deleted ones included.
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)
    tasks = FakeTasks([], refuse=False)
    monkeypatch.setattr(tasks, "list_tasks", lambda *a: [])
    now = [T0 + timedelta(minutes=3)]
    config = replace(Settings(), default_region="us-east-1", poll_interval=60.0, tick_interval=1.0)
    h = handlers.ScheduleHandlers(config, rds=None, api=tasks, cache=FakeCache([snap(1)]), clock=lambda: now[0])  # type: ignore[arg-type]

    def tick(uid: str) -> None:
        body = schedule_body(spec(schedule="*/5 * * * *"), {"lastScheduleTime": "2026-01-01T00:00:00Z"})
        body = kopf.Body({**body, "metadata": {**body["metadata"], "uid": uid}})  # type: ignore[typeddict-item]
        h.tick(body=body, spec=body.spec, status=body.status, patch=kopf.Patch())

    for i in range(50):  # schedules ticked once, then deleted
        tick(f"gone-{i}")
    assert len(h._looked) == 50
    now[0] += timedelta(seconds=61)  # a poll later their entries say nothing (a tick would work again)
    tick("live")
    assert set(h._looked) == {"live"}


def test_an_export_running_past_active_deadline_seconds_is_deleted_and_forbid_moves_on() -> None:
    s = parsed(
        schedule=None, trigger="NewSnapshot", exportTemplate={**spec()["exportTemplate"], "activeDeadlineSeconds": 600}
    )
    a, b = snap(1), snap(2)
    stuck = replace(child_of(s, a), started=T0 + timedelta(minutes=1))
    p = run(
        s,
        T0 + timedelta(minutes=12),
        status={"lastHandledSnapshotTime": "2026-01-01T00:01:00Z"},
        children=[stuck],
        snapshots=[a, b],
    )
    assert p.delete == [stuck.name] and [c["spec"]["sourceArn"] for c in p.create] == [b.arn]
    assert "DeadlineExceeded" in [e.reason for e in p.events]
    assert "activeDeadlineSeconds" not in p.create[0]["spec"]  # the schedule's rule, not an RdsExportTask field
    young = replace(stuck, started=T0 + timedelta(minutes=5))
    assert (
        run(
            s,
            T0 + timedelta(minutes=12),
            status={"lastHandledSnapshotTime": "2026-01-01T00:01:00Z"},
            children=[young],
            snapshots=[a, b],
        ).delete
        == []
    )


def test_export_now_works_while_suspended() -> None:
    s = parsed(schedule="0 3 * * *", suspend=True)
    a = snap(10)
    p = sch.plan(
        s, name="nightly", namespace="team", uid=UID, created=T0, status={}, children=[],
        snapshots=[a], now=T0 + timedelta(minutes=30), requested=a.identifier,
    )  # fmt: skip
    assert [c["spec"]["sourceArn"] for c in p.create] == [a.arn] and p.ready[1] == "Suspended"


def test_replace_says_why_older_snapshots_are_passed_over() -> None:
    a, b = snap(1), snap(2)
    p = run(
        parsed(schedule=None, trigger="NewSnapshot", concurrencyPolicy="Replace"),
        T0 + timedelta(minutes=3),
        snapshots=[a, b],
    )
    [skipped] = [e.message for e in p.events if e.reason == "SnapshotSkipped"]
    assert a.identifier in skipped and "Replace" in skipped
