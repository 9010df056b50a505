"""The coalesced poller and the export queue, against an in-memory RDS that counts calls."""

from __future__ import annotations

from typing import Any

import pytest

from rds_export_operator.polling import ACTIVE_FILTER, Poller
from rds_export_operator.spec import parse_spec

REGION = "us-east-1"


class FakeRds:
    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []

    def describe_by_status(self, region: str, statuses: list[str], page_size: int = 100) -> Any:
        self.calls.append(("page", tuple(statuses)))
        return [dict(t) for t in self.tasks.values() if t["Status"].lower() in statuses]

    def describe(self, region: str, identifier: str) -> dict[str, Any] | None:
        self.calls.append(("describe", identifier))
        task = self.tasks.get(identifier)
        return dict(task) if task else None

    def start(self, spec: Any) -> dict[str, Any]:
        self.calls.append(("start", spec.identifier))
        self.tasks[spec.identifier] = {"ExportTaskIdentifier": spec.identifier, "Status": "STARTING"}
        return dict(self.tasks[spec.identifier])

    def cancel(self, region: str, identifier: str) -> dict[str, Any]:
        self.calls.append(("cancel", identifier))
        self.tasks[identifier]["Status"] = "CANCELING"
        return dict(self.tasks[identifier])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rds() -> FakeRds:
    return FakeRds()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def poller(rds: FakeRds, clock: Clock) -> Poller:
    return Poller(rds, interval=30, max_concurrent=5, clock=clock)  # type: ignore[arg-type]


def task(rds: FakeRds, ident: str, status: str) -> None:
    rds.tasks[ident] = {"ExportTaskIdentifier": ident, "Status": status}


def spec(ident: str) -> Any:
    return parse_spec(
        {
            "sourceArn": f"arn:aws:rds:{REGION}:123456789012:snapshot:s",
            "s3BucketName": "b",
            "iamRoleArn": "arn:aws:iam::123456789012:role/r",
            "kmsKeyId": "k",
            "exportTaskIdentifier": ident,
        },
        namespace="n",
        name=ident,
        uid=ident,
        default_region="",
    )


def test_one_page_per_interval_serves_every_active_object(poller: Poller, rds: FakeRds, clock: Clock) -> None:
    for i in range(50):
        task(rds, f"t{i}", "IN_PROGRESS")
    for _ in range(3):
        for i in range(50):
            assert poller.describe(REGION, f"t{i}")["Status"] == "IN_PROGRESS"  # type: ignore[index]
    assert rds.calls == [("page", tuple(ACTIVE_FILTER))]
    clock.now += 30
    poller.describe(REGION, "t0")
    assert [c for c in rds.calls if c[0] == "page"] == [("page", tuple(ACTIVE_FILTER))] * 2


def test_a_task_that_left_the_active_set_gets_one_targeted_describe(poller: Poller, rds: FakeRds, clock: Clock) -> None:
    task(rds, "a", "IN_PROGRESS")
    poller.describe(REGION, "a")
    rds.tasks["a"]["Status"] = "COMPLETE"
    clock.now += 30
    assert poller.describe(REGION, "a")["Status"] == "COMPLETE"  # type: ignore[index]
    assert rds.calls[-2:] == [("page", tuple(ACTIVE_FILTER)), ("describe", "a")]


def test_a_fresh_start_and_an_unknown_task_cost_no_call_until_the_next_refresh(
    poller: Poller, rds: FakeRds, clock: Clock
) -> None:
    poller.snapshot(REGION)
    poller.start(spec("new"))
    assert poller.describe(REGION, "new")["Status"] == "STARTING"  # type: ignore[index]
    assert poller.describe(REGION, "ghost") is None
    assert poller.describe(REGION, "ghost") is None
    assert rds.calls == [("page", tuple(ACTIVE_FILTER)), ("start", "new"), ("describe", "ghost")]
    clock.now += 30
    assert poller.describe(REGION, "new")["Status"] == "STARTING"  # type: ignore[index]  # now in the page
    assert ("describe", "new") not in rds.calls


def test_peek_never_calls_beyond_the_page(poller: Poller, rds: FakeRds) -> None:
    task(rds, "done", "COMPLETE")
    task(rds, "run", "STARTING")
    assert poller.peek(REGION, "done") is None
    assert poller.peek(REGION, "run") is not None
    assert [c[0] for c in rds.calls] == ["page"]


def test_queue_starts_oldest_first_within_free_slots(poller: Poller, rds: FakeRds) -> None:
    for i in range(3):
        task(rds, f"busy{i}", "IN_PROGRESS")  # 2 of 5 slots free
    created = {"c": "2026-01-03T00:00:00Z", "a": "2026-01-01T00:00:00Z", "b": "2026-01-02T00:00:00Z"}
    for uid in ("c", "b", "a"):  # c asked first, but a and b are older
        poller.may_start(REGION, uid, created[uid])
    assert not poller.may_start(REGION, "c", created["c"])
    assert poller.may_start(REGION, "a", created["a"])
    assert poller.may_start(REGION, "b", created["b"])
    poller.start(spec("a"))
    poller.forget("a")
    assert not poller.may_start(REGION, "c", created["c"])  # b still ahead; one slot left
    poller.start(spec("b"))
    poller.forget("b")
    assert not poller.may_start(REGION, "c", created["c"])  # full: 3 running + 2 just started
    assert poller.queue_length() == 1


def test_a_refusal_from_aws_closes_the_queue_until_the_next_page(poller: Poller, rds: FakeRds, clock: Clock) -> None:
    assert poller.may_start(REGION, "x", "2026-01-01T00:00:00Z")
    poller.limit_reached(REGION)  # exports started by someone else took the slots
    assert not poller.may_start(REGION, "x", "2026-01-01T00:00:00Z")
    clock.now += 30
    assert poller.may_start(REGION, "x", "2026-01-01T00:00:00Z")


def test_cancel_answer_is_used_until_the_next_page(poller: Poller, rds: FakeRds) -> None:
    poller.snapshot(REGION)
    task(rds, "c", "IN_PROGRESS")
    poller.cancel(REGION, "c")
    assert poller.describe(REGION, "c")["Status"] == "CANCELING"  # type: ignore[index]
    assert ("describe", "c") not in rds.calls


def test_a_failed_page_is_shared_instead_of_retried_by_every_object(poller: Poller, rds: FakeRds, clock: Clock) -> None:
    boom = RuntimeError("Throttling")

    def failing(*args: Any, **kwargs: Any) -> Any:
        rds.calls.append(("page", "failed"))
        raise boom

    rds.describe_by_status = failing  # type: ignore[method-assign]
    for _ in range(20):
        with pytest.raises(RuntimeError):
            poller.describe(REGION, "x")
    assert rds.calls == [("page", "failed")]
    clock.now += 5
    with pytest.raises(RuntimeError):
        poller.describe(REGION, "x")
    assert len(rds.calls) == 2
