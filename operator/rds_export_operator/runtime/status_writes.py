"""A status patch outside a kopf handler, on kopf's own API session, and only onto the body it was decided on.

kopf applies a handler's ``patch`` after the handler returns; ``exports.first_looks`` decides outside any handler
(a pool of its own, not a daemon per object), so it writes here: a JSON merge patch of the status subresource
that carries the ``resourceVersion`` the decision read. The API server refuses it (409) if the object changed
since, so a look never writes over a newer body: its next watch event brings the object back. The request goes
through kopf's client (its session, credentials and retries of 5xx, 429 and connection errors with
``settings.networking.error_backoffs``), on the event loop: no thread, no connection of its own. This leans on
kopf internals, as ``spawning`` does (kopf pinned at 1.45.2).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.clients import api, errors

from rds_export_operator.api.names import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)


async def patch_status(
    settings: kopf.OperatorSettings, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
) -> bool:
    """Merge ``status`` into the object's status if the object is still at ``resource_version``. False: it changed
    since (409) or is gone (404), and nothing was written. Must run in a task kopf's context was copied to (its API
    credentials are a context variable)."""
    url = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
    payload = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
    try:
        await api.patch(
            url,
            settings=settings,
            payload=payload,
            headers={"Content-Type": "application/merge-patch+json"},
            logger=logger,
        )
    except (errors.APIConflictError, errors.APINotFoundError):
        return False
    return True
