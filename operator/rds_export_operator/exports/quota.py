"""The optional cap on unfinished RdsExportTask objects per namespace (pure; fed by the watch events).

Each unfinished object costs the operator a daemon, a kept body and a place in the poller's bookkeeping,
whether or not AWS knows its task: a namespace that creates thousands would take the memory every tenant shares.
Over the cap, a new object (one with no status yet) is refused (Failed, QuotaExceeded) and gets no daemon; an
object the operator already looked at keeps running, so a restart, which sees every object again in any order,
refuses nothing that ran before. A finished or deleted object frees its place.
"""

from __future__ import annotations

import threading


class UnfinishedQuota:
    def __init__(self, limit: int) -> None:
        """``limit``: unfinished objects per namespace; 0: no cap."""
        self.limit = limit
        self._lock = threading.Lock()
        self._admitted: dict[str, set[str]] = {}  # namespace -> uids of its unfinished objects
        self._refused: set[str] = set()  # refused, until the watch event of their verdict comes

    def admit(self, namespace: str, uid: str, *, new: bool) -> bool:
        """Count this unfinished object; False: it is new and its namespace is at the cap (refuse it)."""
        if not self.limit:
            return True
        with self._lock:
            if uid in self._refused:
                return False
            admitted = self._admitted.setdefault(namespace, set())
            if uid not in admitted and new and len(admitted) >= self.limit:
                self._refused.add(uid)
                return False
            admitted.add(uid)
            return True

    def refused(self, uid: str) -> bool:
        return uid in self._refused

    def drop(self, namespace: str, uid: str) -> None:
        """The object finished or is gone."""
        if not self.limit:
            return
        with self._lock:
            self._refused.discard(uid)
            admitted = self._admitted.get(namespace)
            if admitted is not None:
                admitted.discard(uid)
                if not admitted:
                    del self._admitted[namespace]
