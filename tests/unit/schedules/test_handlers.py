"""The pure helpers of schedule_handlers: when a task finished (TTL), which objects a schedule owns, status text."""

from __future__ import annotations

from datetime import UTC, datetime

from rds_export_operator.schedules import handlers as sh


def test_finished_at_prefers_the_task_end_time() -> None:
    done = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:05:00Z"}
    status = {"taskEndTime": "2026-01-01T00:04:00Z", "conditions": [done]}
    assert sh.finished_at(status) == datetime(2026, 1, 1, 0, 4, tzinfo=UTC)
    assert sh.finished_at({"conditions": [done]}) == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    refused = {"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:06:00Z"}
    assert sh.finished_at({"conditions": [refused]}) == datetime(2026, 1, 1, 0, 6, tzinfo=UTC)
    running = {"taskEndTime": "2026-01-01T00:04:00Z", "conditions": [{"type": "Complete", "status": "False"}]}
    assert sh.finished_at(running) is None


def test_ttl_timer_only_for_finished_objects_with_the_field() -> None:
    finished = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert sh.finished_with_ttl({"ttlSecondsAfterFinished": 0}, finished)
    assert not sh.finished_with_ttl({}, finished)
    assert not sh.finished_with_ttl({"ttlSecondsAfterFinished": 60}, {"status": "IN_PROGRESS"})


def test_only_the_controller_reference_makes_a_child() -> None:
    def obj(refs: list[dict[str, object]]) -> dict[str, object]:
        return {"metadata": {"ownerReferences": refs}}

    assert sh._owned_by(obj([{"uid": "u1", "controller": True}]), "u1")
    assert not sh._owned_by(obj([{"uid": "u1"}]), "u1")  # owned, but another controller decides about it
    assert not sh._owned_by(obj([{"uid": "u2", "controller": True}]), "u1")
    assert not sh._owned_by({"metadata": {}}, "u1")


def test_when_column() -> None:
    assert sh._when({"trigger": "NewSnapshot"}) == "NewSnapshot"
    assert sh._when({"schedule": "0 3 * * *"}) == "0 3 * * *"
    assert sh._when({"schedule": "0 3 * * *", "timeZone": "Europe/Berlin"}) == "0 3 * * * (Europe/Berlin)"
