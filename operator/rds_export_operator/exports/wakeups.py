"""Push, not tick: an object's sync sleeps until the poller says its task changed (or a slot freed for it).

The poller runs in threads; kopf's daemons wait on its event loop. ``wake`` may be called from any thread; a wake
that arrives before the object waits is kept (the event stays set), so none is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable


class Wakeups:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[list[str]], None]] = []

    def listen(self, listener: Callable[[list[str]], None]) -> None:
        """Also tell ``listener`` (on the loop) which objects were woken: those with no daemon yet
        (first_looks.FirstLooks) wait there rather than on an event here."""
        self._listeners.append(listener)

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
        for listener in self._listeners:
            listener(uids)

    def _event(self, uid: str) -> asyncio.Event:
        event = self._events.get(uid)
        if event is None:
            event = self._events[uid] = asyncio.Event()
        return event

    async def wait(self, uid: str, at_most: float, stopped: Awaitable[object] | None = None) -> bool:
        """Sleep until woken (True), ``at_most`` seconds passed or ``stopped`` is done (False). Runs on the loop.

        ``stopped``: kopf's flag that the daemon is to stop: then it returns at once, and the daemon exits of its
        own accord (a daemon kopf has to cancel logs a warning and posts an Event per object)."""
        event = self._event(uid)
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(event.wait())]
        if stopped is not None:
            waits.append(asyncio.ensure_future(stopped))
        try:
            await asyncio.wait(waits, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
            return event.is_set()
        finally:
            for waiting in waits:
                waiting.cancel()
            event.clear()

    def forget(self, uid: str) -> None:
        """The object finished or is gone (from any thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._events.pop, uid, None)

    def __len__(self) -> int:
        return len(self._events)
