"""A bounded cache of boto3 clients: least recently used first out, and closed (its connection pool too)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

DEFAULT_SIZE = 64  # an identity's (or the operator's) clients: 2 services x a few regions; more means abuse


class ClientCache:
    """Not thread-safe by itself: callers hold the lock they already hold to make clients."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._clients: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = make()
            while len(self._clients) > self.size:
                _, evicted = self._clients.popitem(last=False)
                with contextlib.suppress(Exception):  # a call in flight on it fails retryably, never a verdict
                    evicted.close()
        self._clients.move_to_end(key)
        return client

    def __len__(self) -> int:
        return len(self._clients)
