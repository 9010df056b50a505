"""Export slots: the queue and the "started, not yet visible" bookkeeping, as one small state machine (pure).

AWS runs at most ``limit`` exports per account (5). Per scope (account and region) the operator counts a slot
as used by every active task in the last shared page, by every Start call in flight, and by every task it
started after that page was fetched (AWS shows it from the next page on). Objects that want a slot wait in
creation order, oldest first; only the first ``free`` of them may call StartExportTask, so a burst of new
objects causes no refused StartExportTask.

State of one object (uid)::

    absent --want()--> WAITING --granted--> STARTING --started()--> STARTED --release()--> absent
                          ^                    |
                          +---limit_reached()--+      (AWS refused although we counted a free slot)

``release(uid)`` is every exit path: the task became visible in status, it was adopted, the spec failed, the
object switched to Observe, was deleted, or AWS said "not yet" (it queues again at its next try). STARTED also
answers "was a task already started for this object?" for a tick that runs on a body older than our own status
write, so that such a tick describes instead of starting a second time.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum

Scope = Hashable  # (account key, region)


class State(Enum):
    WAITING = "Waiting"
    STARTING = "Starting"
    STARTED = "Started"


@dataclass
class _Scope:
    waiting: list[tuple[str, str]] = field(default_factory=list)  # sorted (creationTimestamp, uid)
    starting: set[str] = field(default_factory=set)  # uids with a Start call in flight
    unseen: dict[str, float] = field(default_factory=dict)  # identifier -> when started; not in a page yet
    closed: bool = False  # AWS said the limit is reached: nobody starts until the next page


@dataclass
class _Entry:
    scope: Scope
    state: State
    key: tuple[str, str]


class ExportSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()  # never held across an AWS call: every method is quick
        self._scopes: dict[Scope, _Scope] = {}
        self._entries: dict[str, _Entry] = {}

    def _scope(self, scope: Scope) -> _Scope:
        state = self._scopes.get(scope)
        if state is None:
            state = self._scopes[scope] = _Scope()
        return state

    def state(self, uid: str) -> State | None:
        with self._lock:
            entry = self._entries.get(uid)
            return entry.state if entry else None

    def want(self, scope: Scope, uid: str, created: str, running: int) -> bool:
        """May this object call StartExportTask now? ``running``: active tasks in the last page of ``scope``.

        True moves the object to STARTING (its slot is counted until ``started`` or ``release``).
        """
        with self._lock:
            state = self._scope(scope)
            entry = self._entries.get(uid)
            if entry is not None and entry.state is not State.WAITING:
                return entry.state is State.STARTING
            key = (created, uid)
            if entry is None:
                bisect.insort(state.waiting, key)
                entry = self._entries[uid] = _Entry(scope, State.WAITING, key)
            free = self.limit - running - len(state.starting) - len(state.unseen)
            if state.closed or free <= 0 or bisect.bisect_left(state.waiting, key) >= free:
                return False
            state.waiting.pop(bisect.bisect_left(state.waiting, key))
            state.starting.add(uid)
            entry.state = State.STARTING
            return True

    def started(self, scope: Scope, uid: str, identifier: str, at: float | None) -> None:
        """AWS accepted the Start at ``at`` (or a task was adopted): counted until a page shows it. ``at`` None:
        a page already shows it (adopted from the page), nothing more to count."""
        with self._lock:
            entry = self._entries.get(uid)
            if entry is not None:
                self._leave(entry, uid)
            self._entries[uid] = _Entry(scope, State.STARTED, ("", uid))
            if at is not None:
                self._scope(scope).unseen[identifier] = at

    def limit_reached(self, uid: str) -> None:
        """AWS refused although we counted a free slot (exports started by others): wait for the next page."""
        with self._lock:
            entry = self._entries.get(uid)
            if entry is None:
                return
            state = self._scope(entry.scope)
            state.closed = True
            self._leave(entry, uid)
            bisect.insort(state.waiting, entry.key)
            entry.state = State.WAITING

    def page(self, scope: Scope, fetched_at: float, identifiers: Iterable[str]) -> None:
        """A new page of ``scope`` was fetched: tasks started before it are counted by the page from now on."""
        seen = set(identifiers)
        with self._lock:
            state = self._scope(scope)
            state.closed = False
            state.unseen = {i: at for i, at in state.unseen.items() if at >= fetched_at and i not in seen}

    def release(self, uid: str) -> None:
        with self._lock:
            entry = self._entries.pop(uid, None)
            if entry is not None:
                self._leave(entry, uid)

    def _leave(self, entry: _Entry, uid: str) -> None:
        state = self._scope(entry.scope)
        if entry.state is State.WAITING:
            index = bisect.bisect_left(state.waiting, entry.key)
            if index < len(state.waiting) and state.waiting[index] == entry.key:
                state.waiting.pop(index)
        state.starting.discard(uid)

    def next_up(self, scope: Scope, running: int) -> list[str]:
        """The waiting objects that would be let start now, oldest first (to wake them)."""
        with self._lock:
            state = self._scopes.get(scope)
            if state is None or state.closed:
                return []
            free = self.limit - running - len(state.starting) - len(state.unseen)
            return [uid for _, uid in state.waiting[: max(0, free)]]

    def waiting_in(self, scope: Scope) -> int:
        with self._lock:
            state = self._scopes.get(scope)
            return len(state.waiting) if state else 0

    def waiting(self) -> int:
        """Objects that really wait for a slot (the queue-length metric)."""
        with self._lock:
            return sum(len(s.waiting) for s in self._scopes.values())

    def used(self, scope: Scope) -> int:
        with self._lock:
            state = self._scope(scope)
            return len(state.starting) + len(state.unseen)
