"""kopf timers and daemons without a finalizer, for RdsExportTask (and RdsExportSchedule) objects.

``kopf.timer`` and ``kopf.daemon`` always add a finalizer to the objects they run for, so that kopf can stop
them before an object goes. Ours need none: deletion must do something only for Create + Cancel objects with a
task (``handlers.needs_finalizer``), and kopf stops a spawned handler anyway when the object's DELETED event
arrives. So these are built directly, with kopf's own retries, filters and timing switched off (the reconciler
decides all of that).
"""

from __future__ import annotations

from typing import Any

from kopf._cogs.structs.ids import HandlerId
from kopf._cogs.structs.references import Selector
from kopf._core.intents.handlers import DaemonHandler, TimerHandler

from rds_export_operator.api.names import GROUP, PLURAL, VERSION

_UNSET = dict.fromkeys(("param", "errors", "timeout", "retries", "backoff", "labels", "annotations", "field", "value"))


def _common(fn: Any, handler_id: str, when: Any, initial_delay: Any, plural: str = PLURAL) -> dict[str, Any]:
    return {
        "fn": fn,
        "id": HandlerId(handler_id),
        "selector": Selector(GROUP, VERSION, plural),
        "when": when,
        "initial_delay": initial_delay,
        "requires_finalizer": False,
        **_UNSET,
    }


def timer(
    fn: Any, handler_id: str, *, when: Any, initial_delay: Any, interval: float, plural: str = PLURAL
) -> TimerHandler:
    return TimerHandler(
        **_common(fn, handler_id, when, initial_delay, plural), interval=interval, sharp=None, idle=None
    )


def daemon(fn: Any, handler_id: str, *, when: Any, initial_delay: Any) -> DaemonHandler:
    """A daemon that kopf cancels at once when its object finishes or goes (it only ever sleeps or looks)."""
    return DaemonHandler(
        **_common(fn, handler_id, when, initial_delay),
        cancellation_backoff=None,
        cancellation_timeout=5.0,
        cancellation_polling=None,
    )
