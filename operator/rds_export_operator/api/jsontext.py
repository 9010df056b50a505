"""Policies given as JSON text (the tenancy flag, the identity mapping ConfigMap): blank means none."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def load_json(text: str, error: Callable[[str], Exception]) -> Any:
    """The JSON value of ``text``, or None if it is blank; raises ``error("not JSON: <why>")`` if it is malformed."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"not JSON: {exc}") from None
