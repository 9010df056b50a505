"""Push, not tick: an object's sync sleeps until the poller says its task changed (or a slot freed for it).

The poller runs in threads; kopf's daemons wait on its event loop. ``wake`` may be called from any thread; a wake
that arrives before the object waits is kept (the event stays set), so none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


class Wakeups:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def wake(self, uids: Iterable[str]) -> None:
        """Wake these objects (from any thread)."""
        uids = list(uids)
        if uids and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._set, uids)

    def _set(self, uids: list[str]) -> None:
        for uid in uids:
            self._event(uid).set()

    def _event(self, uid: str) -> asyncio.Event:
        event = self._events.get(uid)
        if event is None:
            event = self._events[uid] = asyncio.Event()
        return event

    async def wait(self, uid: str, at_most: float) -> bool:
        """Sleep until woken (True) or ``at_most`` seconds passed (False). Runs on the loop."""
        event = self._event(uid)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(at_most):
                    await event.wait()
            return event.is_set()
        finally:
            event.clear()

    def forget(self, uid: str) -> None:
        """The object finished or is gone (from any thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._events.pop, uid, None)

    def __len__(self) -> int:
        return len(self._events)
