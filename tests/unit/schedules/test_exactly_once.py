"""Exactly once per snapshot against listings as real RDS gives them (issue 24, "Why" 1-5): snapshots without a
creation time while being taken, equal creation times, a re-used identifier, case and a missing source, and the
starting deadline measured from when a snapshot was first seen available."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.unit.schedules.test_decisions import ACCOUNT_ARN, T0, child_of, created_snapshots, parsed, run, snap

from rds_export_operator.api import status as st
from rds_export_operator.schedules import decisions as sch
from rds_export_operator.schedules.decisions import Phase, Snapshot


def trigger(**overrides: Any) -> sch.ScheduleSpec:
    return parsed(schedule=None, trigger="NewSnapshot", **overrides)


def untimed(name: str, status: str) -> Snapshot:
    return Snapshot(name, ACCOUNT_ARN + name, None, status)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- 1: no SnapshotCreateTime while a snapshot is being taken -------------------------------------------------


def test_a_snapshot_being_taken_holds_back_later_ones_and_is_exported_first() -> None:
    s = trigger()
    first, later = snap(1), snap(2)  # first started first, finishes after later
    creating = untimed(first.identifier, "creating")
    p = run(s, at(3), snapshots=[creating, later])
    assert p.create == []  # later waits: the one being taken may be older
    status = dict(p.status)
    p2 = run(s, at(4), status=status, snapshots=[first, later])
    assert created_snapshots(p2) == [first.identifier]
    p3 = run(s, at(5), status=p2.status, children=[child_of(s, first, Phase.SUCCEEDED, 5)], snapshots=[first, later])
    assert created_snapshots(p3) == [later.identifier]


def test_a_failed_snapshot_without_a_time_never_moves_the_watermark_and_is_reported_once() -> None:
    s = trigger()
    broken = untimed("orders-broken", "failed")
    p = run(s, at(10), snapshots=[broken])
    assert p.create == [] and st.parse_time(p.status["lastHandledSnapshotTime"]) < at(1)
    assert [e.reason for e in p.events] == ["SnapshotSkipped"] and "orders-broken" in p.events[0].message
    again = run(s, at(11), status=p.status, snapshots=[broken])
    assert "SnapshotSkipped" not in [e.reason for e in again.events]  # told once, not at every poll
    fresh = snap(5)  # taken before the poll that saw the failed one: still new
    p2 = run(s, at(12), status=again.status, snapshots=[broken, fresh])
    assert created_snapshots(p2) == [fresh.identifier]


def test_cron_mode_skips_an_available_snapshot_without_a_time() -> None:
    s = parsed(schedule="0 3 * * *")
    odd, good = untimed("orders-odd", "available"), snap(60)
    p = run(s, at(181), snapshots=[odd, good])
    assert created_snapshots(p) == [good.identifier]


# -- 2: equal creation times ---------------------------------------------------------------------------------


def test_two_snapshots_with_the_same_time_are_both_exported_under_forbid() -> None:
    s = trigger()
    a = Snapshot("orders-a", ACCOUNT_ARN + "orders-a", at(1), "available")
    b = Snapshot("orders-b", ACCOUNT_ARN + "orders-b", at(1), "available")
    p = run(s, at(2), snapshots=[b, a])
    assert created_snapshots(p) == ["orders-a"]
    done = child_of(s, a, Phase.SUCCEEDED, 3)
    p2 = run(s, at(4), status=p.status, children=[done], snapshots=[a, b])
    assert created_snapshots(p2) == ["orders-b"]
    # Pruned history: the written watermark (time, identifier) alone keeps both handled.
    p3 = run(s, at(6), status=p2.status, snapshots=[a, b])
    assert p3.create == []


def test_a_watermark_written_with_a_time_alone_covers_everything_at_that_time() -> None:
    s = trigger()
    a = Snapshot("orders-a", ACCOUNT_ARN + "orders-a", at(1), "available")
    p = run(s, at(2), status={"lastHandledSnapshotTime": "2026-01-01T00:01:00.000000Z"}, snapshots=[a])
    assert p.create == []


# -- 3: an identifier deleted and re-created -----------------------------------------------------------------


def test_a_reused_identifier_is_a_new_snapshot() -> None:
    s = trigger()
    old = Snapshot("orders-latest", ACCOUNT_ARN + "orders-latest", at(1), "available")
    new = Snapshot("orders-latest", ACCOUNT_ARN + "orders-latest", at(30), "available")
    kid = child_of(s, old, Phase.SUCCEEDED, 10)
    p = run(s, at(31), status={"lastHandledSnapshotTime": "2026-01-01T00:01:00Z"}, children=[kid], snapshots=[new])
    assert created_snapshots(p) == ["orders-latest"]
    assert p.create[0]["metadata"]["name"] != kid.name  # its own child, not the old one's name


# -- 4: identifiers in lower case; a missing source ----------------------------------------------------------


def test_a_missing_source_is_source_not_found() -> None:
    s = parsed(schedule="0 3 * * *")
    p = sch.plan(
        s,
        name="nightly",
        namespace="team",
        uid="u",
        created=T0,
        status={},
        children=[],
        snapshots=None,
        now=at(181),
        snapshots_error="DescribeDBSnapshots: DBInstanceNotFound: DBInstance orders not found.",
        source_missing=True,
    )
    assert p.ready[:2] == ("False", "SourceNotFound") and p.create == []


def test_handled_identifiers_compare_case_insensitively() -> None:
    s = trigger(concurrencyPolicy="Allow")
    a = Snapshot("Orders-Manual", ACCOUNT_ARN + "orders-manual", at(1), "available")
    kid = child_of(s, a)
    lower = Snapshot("orders-manual", ACCOUNT_ARN + "orders-manual", at(1), "available")
    assert run(s, at(2), children=[kid], snapshots=[lower]).create == []


# -- 5: the starting deadline counts from when the snapshot was first seen available --------------------------


def test_starting_deadline_counts_from_first_seen_available() -> None:
    s = trigger(startingDeadlineSeconds=600)
    slow = snap(1)  # took two hours to take: its creation time is long past the deadline when it is first seen
    p = run(s, at(121), snapshots=[slow])
    assert created_snapshots(p) == [slow.identifier]


def test_starting_deadline_passed_while_waiting_is_reported() -> None:
    s = trigger(startingDeadlineSeconds=600)
    a, b = snap(1), snap(2)
    p = run(s, at(3), snapshots=[a, b])
    assert created_snapshots(p) == [a.identifier]
    running = child_of(s, a)
    waiting = run(s, at(4), status=p.status, children=[running], snapshots=[a, b])
    assert "ForbidHolding" in [e.reason for e in waiting.events]
    done = child_of(s, a, Phase.SUCCEEDED, 30)
    late = run(s, at(31), status=waiting.status, children=[done], snapshots=[a, b])
    assert late.create == [] and "SnapshotSkipped" in [e.reason for e in late.events]


# -- impossible schedules -------------------------------------------------------------------------------------


def test_an_impossible_schedule_is_invalid_schedule() -> None:
    p = run(parsed(schedule="0 0 31 2 *"), at(10))
    assert p.ready[:2] == ("False", "InvalidSchedule")
