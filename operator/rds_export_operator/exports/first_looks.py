"""New objects without a daemon each: the first look of an object with no status yet is made by a bounded pool.

A new RdsExportTask has no status, so it is unfinished, and kopf would spawn a daemon for it at once. When
1,000s are created at once nearly all of them were in flight together (their first writes go at the speed of
the cores), each daemon holding its object's full body and a few tasks until that write: the burst that set the
operator's peak memory (bench/README.md, issue 27 item 1). Now objects with no status get no daemon
(``handlers.Handlers.runs``); ``workers`` tasks here make their first look, fed from the watch events, and write
the object's first status. From then on the object is finished (never a daemon) or unfinished (kopf spawns its
daemon on the watch event of that write, as before).

What waits here is one trimmed body per object (the latest seen), not a daemon. An object whose look waits for
an answer that comes with a wake-up (a lookup by identifier) is parked without holding a worker: it goes back to
the queue when woken, or after the look's own delay (a lost wake-up never leaves an object without a look).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

# look(item) -> None: done (the object has its first status, or its next watch event brings it back);
# a number: look again after that many seconds, or sooner when woken.
Look = Callable[[dict[str, Any]], Awaitable[float | None]]


class FirstLooks:
    def __init__(self, look: Look, *, workers: int = 16) -> None:
        self.look, self.workers = look, workers
        self._items: dict[str, dict[str, Any]] = {}  # uid -> the latest trimmed body, while the pool holds it
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._parked: dict[str, asyncio.TimerHandle] = {}
        self._looking: dict[str, bool] = {}  # uid -> woken during its look (the answer came before it parked)
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def offer(self, uid: str, item: dict[str, Any]) -> None:
        """The latest body of an object with no status (on the loop). Starts the workers on first use, in the
        caller's context: kopf's handler context, which carries its API credentials and its Event queue."""
        self._items[uid] = item
        if uid not in self._parked:
            self._enqueue(uid)
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._work()) for _ in range(self.workers)]

    def drop(self, uid: str) -> None:
        """The object has a status now, or is gone: not ours any more (on the loop)."""
        if self._items.pop(uid, None) is not None:
            parked = self._parked.pop(uid, None)
            if parked is not None:
                parked.cancel()

    def wake(self, uids: Iterable[str]) -> None:
        """Parked objects whose answer came (on the loop)."""
        for uid in uids:
            parked = self._parked.pop(uid, None)
            if parked is not None:
                parked.cancel()
                self._enqueue(uid)
            elif uid in self._looking:
                self._looking[uid] = True

    def _enqueue(self, uid: str) -> None:
        if uid not in self._queued:
            self._queued.add(uid)
            self._queue.append(uid)
            self._ready.set()

    def _unpark(self, uid: str) -> None:
        if self._parked.pop(uid, None) is not None:
            self._enqueue(uid)

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            uid = self._queue.popleft()
            self._queued.discard(uid)
            item = self._items.get(uid)
            if item is None:
                continue  # dropped while queued
            self._looking[uid] = False
            try:
                again = await self.look(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the pool; its next watch event brings the object back
                logger.exception("first look of %s failed", uid)
                again = None
            finally:
                woken = self._looking.pop(uid, False)
            if self._items.get(uid) is not item:
                if uid in self._items and uid not in self._parked:
                    self._enqueue(uid)  # a newer body came during the look (our write was refused): look again
                continue
            if again is None:
                del self._items[uid]
            elif woken:
                self._enqueue(uid)
            else:
                self._parked[uid] = asyncio.get_running_loop().call_later(again, self._unpark, uid)

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for handle in self._parked.values():
            handle.cancel()

    def __len__(self) -> int:
        return len(self._items)
