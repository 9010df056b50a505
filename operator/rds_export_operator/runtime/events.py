"""Events a decision asks for, posted on the object and logged the same way (kubectl describe and the log agree)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

import kopf


class Event(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


def post(body: kopf.Body, events: Iterable[Event], log: logging.Logger) -> None:
    """Each event as a Kubernetes Event on ``body`` (kopf's bounded posting) and a log line."""
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        log.info("%s/%s: %s: %s", body.metadata.namespace, body.metadata.name, event.reason, event.message)
