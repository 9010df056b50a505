"""tables/handlers.py's filter (issue 23): the report reads only exports the namespace started or adopted."""

from __future__ import annotations

from typing import Any, cast

import kopf
import pytest

from rds_export_operator.tables.handlers import needs_report


@pytest.mark.parametrize(
    ("ownership", "reads"), [("Started", True), ("Adopted", True), ("Observed", False), (None, False)]
)
def test_only_an_owned_export_has_its_files_read(ownership: str | None, reads: bool) -> None:
    status: dict[str, Any] = {"status": "COMPLETE", "ownership": ownership}
    body = kopf.Body(cast(kopf.RawBody, {"metadata": {"generation": 1}, "spec": {}, "status": status}))
    assert needs_report({}, status, body) is reads
