"""Export slots: the queue and the "started, not yet visible" bookkeeping, as one small state machine (pure).

AWS runs at most ``limit`` exports per account (5). Per scope (account and region) the operator counts a slot
as used by every active task in the last shared page, by every Start call in flight, and by every task it
started after that page was fetched (AWS shows it from the next page on). Only the first ``free`` objects of the
queue may call StartExportTask, so a burst of new objects causes no refused StartExportTask.

The queue's order is fair between namespaces (tenants): namespaces take turns, the one served least recently
first, and within one namespace the oldest object first. One team's 50 exports therefore wait behind every other
team's next one instead of holding a shared account's slots for days. ``per_namespace`` optionally caps the
exports a namespace runs at once (its objects' own running tasks, as their status shows, plus its Starts).

State of one object (uid)::

    absent --want()--> WAITING --granted--> STARTING --started()--> STARTED --release()--> absent
                          ^                    |
                          +---limit_reached()--+      (AWS refused although we counted a free slot)

``release(uid)`` is every exit path: the task became visible in status, it was adopted, the spec failed, the
object switched to Observe, finished, or AWS said "not yet" (it queues again at its next try). ``withdraw(uid)``
is the exit of an object that will not look again (marked for deletion, its daemon stopped): a place in the
queue, and a granted slot, are released; STARTED stays (a deletion's cancel asks whether we started a task).
A WAITING or STARTING entry is a lease: each ``want`` renews it, and one not renewed for ``lease`` seconds
expires (its owner died without a word), so no ghost holds the queue. STARTED also answers "was a task already
started for this object?" for a tick that runs on a body older than our own status write, so that such a tick
describes instead of starting a second time.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum

Scope = Hashable  # (account key, region)
Key = tuple[str, str]  # (creationTimestamp, uid): oldest first within a namespace


class State(Enum):
    WAITING = "Waiting"
    STARTING = "Starting"
    STARTED = "Started"


@dataclass
class _Scope:
    waiting: dict[str, list[Key]] = field(default_factory=dict)  # namespace -> its waiting objects, sorted
    starting: set[str] = field(default_factory=set)  # uids with a Start call in flight
    unseen: dict[str, float] = field(default_factory=dict)  # identifier -> when started; not in a page yet
    closed: bool = False  # AWS said the limit is reached: nobody starts until the next page
    served: dict[str, int] = field(default_factory=dict)  # namespace -> serial of its last grant (round-robin)
    grants: int = 0


@dataclass
class _Entry:
    scope: Scope
    state: State
    key: Key
    namespace: str = ""
    renewed: float = 0.0  # when its owner last asked (WAITING, STARTING)


class ExportSlots:
    def __init__(
        self,
        limit: int,
        *,
        per_namespace: int = 0,
        lease: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``per_namespace``: at most this many exports at once per namespace (0: no cap). ``lease``: seconds a
        waiting or starting entry lives without its owner asking again."""
        self.limit, self.per_namespace, self.lease, self.clock = limit, per_namespace, lease, clock
        self._lock = threading.Lock()  # never held across an AWS call: every method is quick
        self._scopes: dict[Scope, _Scope] = {}
        self._entries: dict[str, _Entry] = {}
        self._held: dict[str, set[str]] = {}  # namespace -> uids STARTING or STARTED (for the namespace cap)
        self._running: dict[str, set[str]] = {}  # namespace -> uids whose own export runs (their status says)

    def _scope(self, scope: Scope) -> _Scope:
        state = self._scopes.get(scope)
        if state is None:
            state = self._scopes[scope] = _Scope()
        return state

    def state(self, uid: str) -> State | None:
        with self._lock:
            entry = self._entries.get(uid)
            return entry.state if entry else None

    def want(self, scope: Scope, uid: str, created: str, running: int, namespace: str = "") -> bool:
        """May this object call StartExportTask now? ``running``: active tasks in the last page of ``scope``.

        True moves the object to STARTING (its slot is counted until ``started`` or ``release``).
        """
        with self._lock:
            state = self._scope(scope)
            entry = self._entries.get(uid)
            if entry is not None and entry.state is not State.STARTED:
                entry.renewed = self.clock()
            if entry is not None and entry.state is not State.WAITING:
                return entry.state is State.STARTING
            if entry is None:
                entry = self._entries[uid] = _Entry(scope, State.WAITING, (created, uid), namespace, self.clock())
                bisect.insort(state.waiting.setdefault(namespace, []), entry.key)
            if state.closed or uid not in self._order(state, self._free(state, running)):
                return False
            self._leave(entry, uid)
            state.starting.add(uid)
            state.served[namespace], state.grants = state.grants, state.grants + 1
            entry.state = State.STARTING
            self._held.setdefault(namespace, set()).add(uid)
            return True

    def _free(self, state: _Scope, running: int) -> int:
        return self.limit - running - len(state.starting) - len(state.unseen)

    def _order(self, state: _Scope, count: int) -> list[str]:
        """The first ``count`` waiting objects in the order slots go to them: in rounds, each namespace's next
        oldest, the namespace served least recently first (then the one whose oldest waits longest); a namespace
        at its cap is passed over."""
        if count <= 0:
            return []
        turns = sorted((state.served.get(ns, -1), queue[0], ns) for ns, queue in state.waiting.items() if queue)
        depth = {ns: min(len(state.waiting[ns]), self._room(ns)) for _, _, ns in turns}
        picked: list[str] = []
        for rank in range(int(max(depth.values(), default=0))):
            for _, _, ns in turns:
                if rank < depth[ns]:
                    picked.append(state.waiting[ns][rank][1])
                    if len(picked) == count:
                        return picked
        return picked

    def _room(self, namespace: str) -> float:
        """How many more exports the namespace may start (under the lock)."""
        if not self.per_namespace:
            return math.inf
        busy = self._held.get(namespace, set()) | self._running.get(namespace, set())
        return max(0, self.per_namespace - len(busy))

    def started(self, scope: Scope, uid: str, identifier: str, at: float | None) -> None:
        """AWS accepted the Start at ``at`` (or a task was adopted): counted until a page shows it. ``at`` None:
        a page already shows it (adopted from the page), nothing more to count."""
        with self._lock:
            entry = self._entries.get(uid)
            namespace = ""
            if entry is not None:
                self._leave(entry, uid)
                namespace = entry.namespace
                self._held.setdefault(namespace, set()).add(uid)
            self._entries[uid] = _Entry(scope, State.STARTED, ("", uid), namespace)
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
            bisect.insort(state.waiting.setdefault(entry.namespace, []), entry.key)
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

    def withdraw(self, uid: str) -> None:
        """The object will not look again (marked for deletion, or its daemon stopped): its place in the queue and
        a slot granted to it are free; a STARTED entry stays for the deletion's cancel."""
        with self._lock:
            entry = self._entries.get(uid)
            if entry is not None and entry.state is not State.STARTED:
                del self._entries[uid]
                self._leave(entry, uid)

    def exporting(self, uid: str, namespace: str, running: bool) -> None:
        """Whether the object's own export runs, as its status shows (the per-namespace cap counts it)."""
        with self._lock:
            uids = self._running.setdefault(namespace, set())
            if running:
                uids.add(uid)
            else:
                uids.discard(uid)
                if not uids:
                    del self._running[namespace]

    def _leave(self, entry: _Entry, uid: str) -> None:
        state = self._scope(entry.scope)
        if entry.state is State.WAITING:
            queue = state.waiting.get(entry.namespace, [])
            index = bisect.bisect_left(queue, entry.key)
            if index < len(queue) and queue[index] == entry.key:
                queue.pop(index)
            if not queue:
                state.waiting.pop(entry.namespace, None)
        state.starting.discard(uid)
        held = self._held.get(entry.namespace)
        if held is not None:
            held.discard(uid)
            if not held:
                del self._held[entry.namespace]

    def expire(self) -> list[str]:
        """Drop the waiting and starting entries whose owner has not asked for ``lease`` seconds; their uids."""
        with self._lock:
            now = self.clock()
            gone = [
                uid
                for uid, entry in self._entries.items()
                if entry.state is not State.STARTED and now - entry.renewed > self.lease
            ]
            for uid in gone:
                self._leave(self._entries.pop(uid), uid)
            return gone

    def next_up(self, scope: Scope, running: int) -> list[str]:
        """The waiting objects that would be let start now, in the queue's order (to wake them)."""
        with self._lock:
            state = self._scopes.get(scope)
            if state is None or state.closed:
                return []
            return self._order(state, self._free(state, running))

    def full(self, scope: Scope, running: int) -> bool:
        """Whether every slot of ``scope`` is taken (or AWS said so until the next page): waiting objects wait
        for a slot to free, not for their namespace's cap."""
        with self._lock:
            state = self._scopes.get(scope)
            return state is not None and (state.closed or self._free(state, running) <= 0)

    def order(self, scope: Scope) -> list[str]:
        """Every waiting object of ``scope`` in the order slots would go to them."""
        with self._lock:
            state = self._scopes.get(scope)
            return self._order(state, len(self._entries)) if state else []

    def waiting_in(self, scope: Scope) -> int:
        with self._lock:
            state = self._scopes.get(scope)
            return sum(len(q) for q in state.waiting.values()) if state else 0

    def waiting(self) -> int:
        """Objects that really wait for a slot (the queue-length metric)."""
        with self._lock:
            return sum(len(q) for s in self._scopes.values() for q in s.waiting.values())

    def used(self, scope: Scope) -> int:
        with self._lock:
            state = self._scope(scope)
            return len(state.starting) + len(state.unseen)
