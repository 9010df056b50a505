"""idle_bodies.py against kopf's own memory classes: what it drops, and what it must keep."""

from __future__ import annotations

import asyncio
from typing import Any

from kopf._cogs.structs import bodies
from kopf._core.reactor.inventory import ResourceMemories

from rds_export_operator.runtime import idle_bodies


def raw(uid: str) -> Any:
    return {"apiVersion": "rdsexport.dev/v1alpha1", "kind": "RdsExportTask", "metadata": {"uid": uid, "name": uid}}


def test_only_bodies_no_daemon_reads_are_dropped() -> None:
    async def scenario() -> None:
        memories = ResourceMemories()
        finished = await memories.recall(raw("finished"))
        running = await memories.recall(raw("running"))
        finished.daemons_memory.live_fresh_body = bodies.Body(raw("finished"))
        running.daemons_memory.live_fresh_body = bodies.Body(raw("running"))
        running.daemons_memory.running_daemons["sync"] = object()  # type: ignore[index,assignment]
        assert idle_bodies.release(memories) == 1
        assert finished.daemons_memory.live_fresh_body is None
        assert running.daemons_memory.live_fresh_body is not None  # a daemon reads it: it stays
        assert idle_bodies.release(memories) == 0

    asyncio.run(scenario())
