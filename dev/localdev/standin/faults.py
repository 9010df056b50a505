"""Fault injection for the AWS stand-in: what a call should suffer instead of (or besides) its normal answer.

A :class:`Fault` says how to answer; a rule says how often (the next N calls, or every call until cleared, each
with a probability drawn from a seeded RNG). Named presets cover what real endpoints do to clients.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any


class ConnectionAbort(ConnectionResetError):
    """Raised from the WSGI app to drop the connection without an HTTP answer (see :func:`abort_connection`)."""


@dataclass(frozen=True)
class Fault:
    """How one call goes wrong.

    - ``code``/``status``/``message``: the error answered (AWS query-protocol XML); ``code=None`` answers normally.
    - ``delay``: hold the answer this long first (a timeout for a client whose read timeout is shorter); the
      call is then carried out as usual, as a slow AWS would.
    - ``malformed``: answer 200 with a body that is not XML.
    - ``reset``: close the connection with a TCP reset instead of answering (botocore: ConnectionClosedError).
    - ``applied``: carry the action out before the fault is delivered: with ``reset`` on StartExportTask the
      export exists in AWS while the client never learns it (the idempotency case).
    """

    code: str | None = "Throttling"
    status: int = 400
    message: str = "Rate exceeded"
    delay: float = 0.0
    malformed: bool = False
    reset: bool = False
    applied: bool = False
    name: str = ""

    @property
    def answers_error(self) -> bool:
        return self.code is not None and not (self.reset or self.malformed)

    @property
    def carries_out(self) -> bool:
        """Whether the action itself happens (its effects are visible to later calls)."""
        return self.applied or not (self.answers_error or self.reset or self.malformed)


PRESETS: dict[str, Fault] = {
    "access_denied": Fault(
        "AccessDenied",
        403,
        "User is not authorized to perform: rds:{action} because no identity-based policy allows it",
    ),
    "throttling": Fault("Throttling", 400, "Rate exceeded"),
    "internal_failure": Fault("InternalFailure", 500, "An internal error occurred."),
    "service_unavailable": Fault("ServiceUnavailable", 503, "Service is unavailable. Please try again later."),
    "timeout": Fault(code=None, delay=5.0),
    "reset": Fault(reset=True),
    "malformed": Fault(malformed=True),
    "lost_answer": Fault(reset=True, applied=True),
}


def make_fault(action: str, kind: str | None, fields: dict[str, Any]) -> Fault:
    """A preset (``kind``) with ``fields`` overriding it, or a raw :class:`Fault` from ``fields``.

    A raw fault with only a ``delay`` answers correctly, late (as it always did)."""
    if kind is not None:
        if kind not in PRESETS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(PRESETS)}")
        base = PRESETS[kind]
        fault = replace(base, name=kind, **fields)
    else:
        if "delay" in fields and "code" not in fields:
            fields = {**fields, "code": None}
        fault = Fault(name=fields.pop("name", "custom"), **fields)
    return replace(fault, message=fault.message.replace("{action}", action))


@dataclass
class _Rule:
    fault: Fault
    remaining: int | None  # None: every call until cleared
    rate: float
    rng: random.Random = field(repr=False, default_factory=random.Random)


class FaultBook:
    """Per action, a queue of rules; only the head rule is consulted, so injections apply in order."""

    def __init__(self) -> None:
        self._rules: dict[str, deque[_Rule]] = {}
        self._lock = threading.Lock()

    def add(self, action: str, fault: Fault, *, times: int | None, rate: float, seed: int) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for every call)")
        if not 0.0 < rate <= 1.0:
            raise ValueError("rate must be in (0, 1]")
        with self._lock:
            self._rules.setdefault(action, deque()).append(_Rule(fault, times, rate, random.Random(seed)))

    def take(self, action: str) -> Fault | None:
        """The fault for this call of ``action``, if any (consumes one use of the head rule when it fires)."""
        with self._lock:
            rules = self._rules.get(action)
            if not rules:
                return None
            rule = rules[0]
            if rule.rate < 1.0 and rule.rng.random() >= rule.rate:
                return None
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    rules.popleft()
            return rule.fault

    def pending(self, action: str) -> float:
        """How many injected faults of ``action`` are left (``inf`` while an every-call rule is active)."""
        with self._lock:
            rules = self._rules.get(action, deque())
            return sum(float("inf") if r.remaining is None else r.remaining for r in rules)

    def clear(self, action: str | None = None) -> None:
        with self._lock:
            if action is None:
                self._rules.clear()
            else:
                self._rules.pop(action, None)


def abort_connection(connection: socket.socket, rfile: Any) -> None:
    """Close ``connection`` with a TCP RST (SO_LINGER 0) at once, without writing any HTTP answer.

    ``rfile`` (the handler's buffered reader) holds a reference that would defer the close, so it goes first."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rfile.close()
    connection.close()
