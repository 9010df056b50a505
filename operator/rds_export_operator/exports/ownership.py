"""Which namespace an export task belongs to: the one whose RdsExportTask object started or adopted it.

Derived from the objects in the cluster, not from this process's memory: every watch event of an object with
``status.ownership`` Started or Adopted records its identifier and namespace (``record``), and at start-up the
operator lists every object before kopf's watches begin (``fill``), so after a restart no object of namespace B
can decide before the object of namespace A that owns the identifier is known. Between a decision and the watch
event that shows it, ``claim`` holds the identifier for the deciding object (check and take in one step, under a
lock, never across an AWS call).

Tasks are keyed by region and identifier, lower-cased (AWS stores identifiers in lower case, rds-export-api.md).
Two accounts may hold the same identifier as two tasks: the index cannot tell them apart, so it refuses the
second namespace (a false refusal, never a leak); the remedy is another identifier.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from rds_export_operator.api.status import REFUSED

STARTED, ADOPTED = "Started", "Adopted"
OWNED = (STARTED, ADOPTED)  # status.ownership of an object whose task is its own (only these may cancel it)
Key = tuple[str, str]  # (region, identifier)


def key(region: str, identifier: str) -> Key:
    return region, identifier.lower()


class Ownership:
    """Two sources of holders: what the objects' statuses show (``record``, from the cluster), and this process's
    claims for decisions whose status is not written yet (``claim``). A watch event from before the claim's
    status write must not drop the claim: only a refusal, a release or the object's deletion does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shown: dict[str, tuple[Key, str]] = {}  # uid -> (task, namespace), as the status shows it
        self._claimed: dict[str, tuple[Key, str]] = {}  # uid -> (task, namespace), claimed by this process

    def record(self, uid: str, namespace: str, region: str, identifier: str | None, owned: bool, refused: bool) -> None:
        """An object as a watch event (or the start-up list) shows it; not owned, or no identifier: not held by
        its status (a claim stays unless the object was refused)."""
        with self._lock:
            self._shown.pop(uid, None)
            if refused:
                self._claimed.pop(uid, None)
            if owned and identifier and uid:
                self._shown[uid] = (key(region, identifier), namespace)

    def forget(self, uid: str) -> None:
        """The object is gone: the task is no longer held by it."""
        with self._lock:
            self._shown.pop(uid, None)
            self._claimed.pop(uid, None)

    def _namespaces(self, task: Key) -> set[str]:
        return {ns for held in (self._shown, self._claimed) for k, ns in held.values() if k == task}

    def other_owner(self, namespace: str, region: str, identifier: str) -> bool:
        """Whether an object of another namespace holds this task."""
        with self._lock:
            return bool(self._namespaces(key(region, identifier)) - {namespace})

    def holds(self, namespace: str, region: str, identifier: str) -> bool:
        """Whether an object of this namespace holds this task."""
        with self._lock:
            return namespace in self._namespaces(key(region, identifier))

    def claim(self, uid: str, namespace: str, region: str, identifier: str) -> bool:
        """Hold the task for this object unless another namespace holds it (then False, and nothing changes)."""
        task = key(region, identifier)
        with self._lock:
            if self._namespaces(task) - {namespace}:
                return False
            if uid:
                self._claimed[uid] = (task, namespace)
            return True

    def release(self, uid: str, region: str, identifier: str) -> None:
        """A claim that did not become ownership (the start was refused, the adoption mismatched)."""
        with self._lock:
            held = self._claimed.get(uid)
            if held is not None and held[0] == key(region, identifier):
                del self._claimed[uid]


def owned(status: Mapping[str, Any]) -> bool:
    """Whether an object's status says its task is its own (started or adopted by it)."""
    return status.get("ownership") in OWNED and bool(status.get("exportTaskIdentifier"))


def fill(index: Ownership, objects: Iterable[tuple[str, str, str, Mapping[str, Any]]]) -> int:
    """Record (uid, namespace, region, status) of every listed object; returns how many own a task."""
    count = 0
    for uid, namespace, region, status in objects:
        is_owned = owned(status)
        identifier = str(status.get("exportTaskIdentifier") or "")
        index.record(uid, namespace, region, identifier, is_owned, refused=status.get("status") == REFUSED)
        count += is_owned
    return count
