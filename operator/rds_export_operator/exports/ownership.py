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

STARTED, ADOPTED = "Started", "Adopted"
OWNED = (STARTED, ADOPTED)  # status.ownership of an object whose task is its own (only these may cancel it)
Key = tuple[str, str]  # (region, identifier)


def key(region: str, identifier: str) -> Key:
    return region, identifier.lower()


class Ownership:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_uid: dict[str, tuple[Key, str]] = {}  # uid -> (task, namespace)
        self._holders: dict[Key, dict[str, str]] = {}  # task -> {uid: namespace}

    def record(self, uid: str, namespace: str, region: str, identifier: str | None, owned: bool) -> None:
        """An object as a watch event (or the start-up list) shows it; not owned, or no identifier: forgotten."""
        with self._lock:
            self._drop(uid)
            if owned and identifier and uid:
                self._hold(uid, namespace, key(region, identifier))

    def forget(self, uid: str) -> None:
        """The object is gone: the task is no longer held by it."""
        with self._lock:
            self._drop(uid)

    def other_owner(self, namespace: str, region: str, identifier: str) -> bool:
        """Whether an object of another namespace holds this task."""
        with self._lock:
            return any(ns != namespace for ns in self._holders.get(key(region, identifier), {}).values())

    def holds(self, namespace: str, region: str, identifier: str) -> bool:
        """Whether an object of this namespace holds this task."""
        with self._lock:
            return namespace in self._holders.get(key(region, identifier), {}).values()

    def claim(self, uid: str, namespace: str, region: str, identifier: str) -> bool:
        """Hold the task for this object unless another namespace holds it (then False, and nothing changes)."""
        task = key(region, identifier)
        with self._lock:
            if any(ns != namespace for ns in self._holders.get(task, {}).values()):
                return False
            if uid:
                self._drop(uid)
                self._hold(uid, namespace, task)
            return True

    def release(self, uid: str, region: str, identifier: str) -> None:
        """A claim that did not become ownership (the start was refused, the adoption mismatched)."""
        with self._lock:
            held = self._by_uid.get(uid)
            if held is not None and held[0] == key(region, identifier):
                self._drop(uid)

    def _hold(self, uid: str, namespace: str, task: Key) -> None:
        self._by_uid[uid] = (task, namespace)
        self._holders.setdefault(task, {})[uid] = namespace

    def _drop(self, uid: str) -> None:
        held = self._by_uid.pop(uid, None)
        if held is None:
            return
        holders = self._holders.get(held[0], {})
        holders.pop(uid, None)
        if not holders:
            self._holders.pop(held[0], None)


def owned(status: Mapping[str, Any]) -> bool:
    """Whether an object's status says its task is its own (started or adopted by it)."""
    return status.get("ownership") in OWNED and bool(status.get("exportTaskIdentifier"))


def fill(index: Ownership, objects: Iterable[tuple[str, str, str, Mapping[str, Any]]]) -> int:
    """Record (uid, namespace, region, status) of every listed object; returns how many own a task."""
    count = 0
    for uid, namespace, region, status in objects:
        is_owned = owned(status)
        index.record(uid, namespace, region, str(status.get("exportTaskIdentifier") or ""), is_owned)
        count += is_owned
    return count
