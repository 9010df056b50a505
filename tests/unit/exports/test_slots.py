"""The export queue (slots.ExportSlots) as a tenant meets it: no ghost holds it, no team hogs it (issue 23)."""

from __future__ import annotations

from rds_export_operator.exports.slots import ExportSlots, State

SCOPE = ("123456789012", "eu-west-1")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def queue(slots: ExportSlots, namespace: str, count: int, start: int = 0) -> list[str]:
    """``count`` objects of ``namespace`` ask for a slot while all 5 are taken; their uids, oldest first."""
    uids = [f"{namespace}-{i:03d}" for i in range(start, start + count)]
    for i, uid in enumerate(uids, start):
        assert not slots.want(SCOPE, uid, f"2026-12-04T10:{i // 60:02d}:{i % 60:02d}Z", 5, namespace)
    return uids


def test_free_slots_go_round_robin_between_namespaces_oldest_first_within_one() -> None:
    slots = ExportSlots(5)
    hog = queue(slots, "hog", 50)  # one team's 50 exports, all older than the others'
    small = queue(slots, "small", 2, start=50)
    third = queue(slots, "third", 1, start=52)
    assert slots.order(SCOPE)[:6] == [hog[0], small[0], third[0], hog[1], small[1], hog[2]]
    # One slot frees: the oldest waiter overall (its namespace was never served) gets it...
    assert slots.next_up(SCOPE, 4) == [hog[0]]
    assert slots.want(SCOPE, hog[0], "", 4, "hog")
    # ...and the next free slot goes to the namespace served least recently, not to the hog's next 49.
    assert slots.next_up(SCOPE, 3) == [small[0]]
    assert not slots.want(SCOPE, hog[1], "", 3, "hog")
    assert slots.want(SCOPE, small[0], "", 3, "small")
    assert slots.next_up(SCOPE, 2) == [third[0]]


def test_one_namespace_alone_is_served_oldest_first() -> None:
    slots = ExportSlots(5)
    uids = queue(slots, "team", 8)
    assert slots.next_up(SCOPE, 2) == uids[:3]
    assert not slots.want(SCOPE, uids[3], "", 2, "team")
    assert slots.want(SCOPE, uids[0], "", 2, "team")


def test_a_withdrawn_place_is_free_at_once_but_a_started_task_is_still_known() -> None:
    """Attack 3: objects that queued, then were marked for deletion (held by a finalizer of their own), are not
    deleted for long; their daemons stopped. Their places must not block everyone behind them."""
    slots = ExportSlots(5)
    ghosts = queue(slots, "mallory", 5)
    victim = queue(slots, "alice", 1, start=5)[0]
    assert slots.next_up(SCOPE, 4) == [ghosts[0]]
    for uid in ghosts:
        slots.withdraw(uid)
    assert slots.next_up(SCOPE, 4) == [victim]
    assert slots.want(SCOPE, victim, "", 4, "alice")
    slots.started(SCOPE, victim, "exp-1", at=1.0)
    slots.withdraw(victim)  # the deletion's cancel still asks whether this process started its task
    assert slots.state(victim) is State.STARTED


def test_waiting_and_starting_entries_expire_unless_renewed() -> None:
    clock = Clock()
    slots = ExportSlots(5, lease=100.0, clock=clock)
    ghost, live = queue(slots, "team", 2)
    assert slots.want(SCOPE, ghost, "", 3, "team")  # granted; its owner then dies before starting anything
    clock.now = 60
    assert not slots.want(SCOPE, live, "", 4, "team")  # the live one asks again: renewed
    clock.now = 101
    assert slots.expire() == [ghost]
    assert slots.state(ghost) is None and slots.state(live) is State.WAITING
    assert slots.next_up(SCOPE, 4) == [live]


def test_a_namespace_at_its_cap_is_passed_over() -> None:
    slots = ExportSlots(5, per_namespace=2)
    slots.exporting("running-1", "hog", True)
    hog = queue(slots, "hog", 3)
    other = queue(slots, "other", 1, start=3)
    assert slots.order(SCOPE) == [hog[0], other[0]]  # one more for the hog, then it is at 2
    assert slots.want(SCOPE, hog[0], "", 0, "hog")
    assert slots.next_up(SCOPE, 1) == [other[0]]  # the hog's second start would be its third export
    slots.exporting("running-1", "hog", False)
    assert slots.order(SCOPE) == [other[0], hog[1]]


def test_full_means_every_slot_taken_or_aws_said_so() -> None:
    """The poller pages faster only while this holds (issue 27): a wait for a namespace's cap is not a wait for
    a slot."""
    slots = ExportSlots(2, per_namespace=1)
    assert not slots.full("s", running=0)  # nobody asked yet
    assert slots.want("s", "a", "2026-01-01T00:00:00Z", running=0, namespace="n")
    assert not slots.want("s", "b", "2026-01-02T00:00:00Z", running=0, namespace="n")  # the cap
    assert not slots.full("s", running=0)  # one slot free: b waits for its namespace's cap
    assert slots.full("s", running=1)  # a's Start in flight plus one running task
    slots.limit_reached("a")
    assert slots.full("s", running=0)  # AWS refused: full until the next page
    slots.page("s", 0.0, [])
    assert not slots.full("s", running=0)
