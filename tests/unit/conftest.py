"""Fixtures the unit tests share (no control plane): the AWS stand-in, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localdev.standin.server import StandInServer


@pytest.fixture(scope="module")
def server() -> Iterator[StandInServer]:
    """The AWS stand-in for one test module, in manual mode (tests drive each task with ``set_task``)."""
    with StandInServer(auto=False) as srv:
        yield srv
