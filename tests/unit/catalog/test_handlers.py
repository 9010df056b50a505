"""catalog/handlers.py: when the catalog timer runs, who owns the tables, and what a refused grant writes."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from rds_export_operator.api.status import Condition
from rds_export_operator.catalog import handlers
from rds_export_operator.catalog.handlers import CatalogHandlers, needs_catalog, needs_removal, owner_of
from rds_export_operator.exports.reconcile import Result
from rds_export_operator.runtime.metrics import Metrics
from rds_export_operator.runtime.settings import parse

SPEC = {
    "sourceArn": "arn:aws:rds:eu-west-1:123456789012:snapshot:s",
    "s3BucketName": "exports",
    "iamRoleArn": "arn:aws:iam::123456789012:role/export",
    "kmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/k",
    "catalog": {"database": "analytics"},
}


def body(spec: dict[str, Any], status: dict[str, Any], **meta: Any) -> kopf.Body:
    metadata = {"namespace": "team-a", "name": "nightly", "uid": "u1", "generation": 2, **meta}
    return kopf.Body({"metadata": metadata, "spec": spec, "status": status})  # type: ignore[typeddict-item]


def cond(kind: str, status: str, generation: int = 2) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": "R", "observedGeneration": generation}


@pytest.mark.parametrize(
    ("spec", "status", "wanted"),
    [
        (SPEC, {"status": "COMPLETE", "conditions": [cond("TablesComplete", "True")]}, True),
        (SPEC, {"status": "COMPLETE", "conditions": []}, False),  # the table report is not read yet
        (
            SPEC,
            {"status": "COMPLETE", "tablesPendingSince": "t", "conditions": [cond("TablesComplete", "Unknown")]},
            False,
        ),
        ({**SPEC, "tableReport": "Disabled"}, {"status": "COMPLETE"}, True),
        (SPEC, {"status": "FAILED", "conditions": [cond("TablesComplete", "True")]}, False),
        ({k: v for k, v in SPEC.items() if k != "catalog"}, {"status": "COMPLETE"}, False),
        (
            SPEC,
            {"status": "COMPLETE", "conditions": [cond("TablesComplete", "True"), cond("Cataloged", "Unknown")]},
            True,
        ),
        (
            SPEC,
            {"status": "COMPLETE", "conditions": [cond("TablesComplete", "True"), cond("Cataloged", "True")]},
            False,
        ),
        # An edited spec (a new generation) registers again.
        (
            SPEC,
            {"status": "COMPLETE", "conditions": [cond("TablesComplete", "True"), cond("Cataloged", "True", 1)]},
            True,
        ),
    ],
)
def test_the_timer_runs_only_for_complete_exports_with_a_settled_report(
    spec: dict[str, Any], status: dict[str, Any], wanted: bool
) -> None:
    status = {"ownership": "Started", **status}
    assert needs_catalog(spec, status, body(spec, status)) is wanted


@pytest.mark.parametrize("ownership", ["Observed", None])
def test_an_export_the_namespace_did_not_start_or_adopt_is_never_cataloged(ownership: str | None) -> None:
    # Bug (review of the merge): an Observe object of another tenant's task (tableReport Disabled) registered
    # that export's tables in this namespace's database; the table report already read only owned exports.
    status = {"status": "COMPLETE", "ownership": ownership, "conditions": [cond("TablesComplete", "True")]}
    assert not needs_catalog(SPEC, status, body(SPEC, status))
    assert not needs_catalog(SPEC, status, body(SPEC, status), reports=False)


def test_without_the_operators_table_report_the_timer_does_not_wait_for_one() -> None:
    status = {"status": "COMPLETE", "ownership": "Adopted"}
    assert not needs_catalog(SPEC, status, body(SPEC, status))
    assert needs_catalog(SPEC, status, body(SPEC, status), reports=False)


def test_only_delete_objects_that_registered_hold_a_finalizer() -> None:
    delete = {**SPEC, "catalog": {"database": "analytics", "catalogDeletionPolicy": "Delete"}}
    assert needs_removal(delete, {"catalog": {"database": "analytics"}})
    assert not needs_removal(delete, {})
    assert not needs_removal(SPEC, {"catalog": {"database": "analytics"}})


def test_a_schedules_exports_register_as_the_schedule() -> None:
    child = body(SPEC, {}, ownerReferences=[{"kind": "RdsExportSchedule", "name": "nightly", "controller": True}])
    assert owner_of(child) == "RdsExportSchedule/team-a/nightly"
    assert owner_of(body(SPEC, {})) == "RdsExportTask/team-a/nightly"


class NoGlue:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no AWS call expected: {name}")


def test_a_database_outside_the_namespaces_grant_is_final_without_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(handlers.kopf, "event", lambda obj, type, reason, message: events.append((type, reason)))
    config = parse(["--tenancy", '{"team-a": {"glueDatabases": ["team_a_*"]}}', "--default-region", "eu-west-1"])
    wiring = CatalogHandlers(config, NoGlue(), NoGlue(), Metrics())  # type: ignore[arg-type]
    patch = kopf.Patch()
    wiring.catalog(body(SPEC, {"status": "COMPLETE"}), patch)
    conditions = patch["status"]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [("Cataloged", "False", "NotGranted")]
    assert events == [("Warning", "CatalogNotGranted")]


class ScriptedRegistrar:
    """Answers passes from a script of condition reasons; records the attempt each pass was given."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        self.attempts: list[int] = []

    def register(self, spec: Any, where: Any, status: Any, *, attempt: int = 0) -> Result:
        self.attempts.append(attempt)
        reason = self.reasons.pop(0)
        result = Result(retry_after=None if reason == "Registered" else 1.0)
        result.status["conditions"] = [
            Condition("Cataloged", "True" if reason == "Registered" else "Unknown", reason, "")
        ]
        return result


def test_backoff_counts_failures_in_a_row_not_passes_that_made_progress() -> None:
    config = parse(["--default-region", "eu-west-1"])
    wiring = CatalogHandlers(config, NoGlue(), NoGlue(), Metrics())  # type: ignore[arg-type]
    script = ScriptedRegistrar(
        ["Registering", "Registering", "GlueUnavailable", "GlueUnavailable", "Registering", "Registered"]
    )
    wiring.registrar = script  # type: ignore[assignment]
    status = {"status": "COMPLETE"}
    for _ in range(5):
        with pytest.raises(kopf.TemporaryError):
            wiring.catalog(body(SPEC, status), kopf.Patch(), retry=7)
    wiring.catalog(body(SPEC, status), kopf.Patch(), retry=7)
    assert script.attempts == [0, 0, 0, 1, 2, 0]
    assert wiring._failures == {}


class RecordingRegistrar:
    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove(self, spec: Any, where: Any) -> list[str]:
        self.removed.append(spec.database)
        return []


@pytest.mark.parametrize(
    ("grants", "removed", "event"),
    [("", ["analytics"], "CatalogDeleted"), ('{"team-a": {"glueDatabases": ["other"]}}', [], "CatalogNotDeleted")],
)
def test_deletion_removes_from_the_database_registered_in_and_only_within_the_grant(
    monkeypatch: pytest.MonkeyPatch, grants: str, removed: list[str], event: str
) -> None:
    # Bug (review of the merge): removal used spec.catalog.database, which an edit may change after registering
    # (tables left behind in the old one, GetTables paged over a database of another team), without the grant.
    events: list[str] = []
    monkeypatch.setattr(handlers.kopf, "event", lambda obj, type, reason, message: events.append(reason))
    config = parse([*(["--tenancy", grants] if grants else []), "--default-region", "eu-west-1"])
    wiring = CatalogHandlers(config, NoGlue(), NoGlue(), Metrics())  # type: ignore[arg-type]
    registrar = RecordingRegistrar()
    wiring.registrar = registrar  # type: ignore[assignment]
    edited = {**SPEC, "catalog": {"database": "team_b", "catalogDeletionPolicy": "Delete"}}
    wiring.remove(body(edited, {"status": "COMPLETE", "catalog": {"database": "analytics"}}))
    assert registrar.removed == removed
    assert events == [event]


def test_failures_of_deleted_or_abandoned_registrations_are_not_kept_for_ever(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bug: a registration failing when its object was deleted (or stopped asking for a catalog) kept its count.
    monkeypatch.setattr(handlers.kopf, "event", lambda *a, **k: None)
    config = parse(["--default-region", "eu-west-1"])
    now = [0.0]
    wiring = CatalogHandlers(config, NoGlue(), NoGlue(), Metrics(), clock=lambda: now[0])  # type: ignore[arg-type]
    wiring.registrar = ScriptedRegistrar(["GlueUnavailable", "GlueUnavailable", "GlueUnavailable"])  # type: ignore[assignment]
    deleted, abandoned = (
        body(SPEC, {"status": "COMPLETE"}, uid="deleted"),
        body(SPEC, {"status": "COMPLETE"}, uid="abandoned"),
    )
    for failing in (deleted, abandoned):
        with pytest.raises(kopf.TemporaryError):
            wiring.catalog(failing, kopf.Patch())
    assert set(wiring._failures) == {"deleted", "abandoned"}
    wiring.registrar = RecordingRegistrar()  # type: ignore[assignment]
    wiring.remove(deleted)
    assert set(wiring._failures) == {"abandoned"}
    now[0] = 2 * 300.0 + 1  # no pass for twice the longest backoff: a live failing one is tried within one
    live = body(SPEC, {"status": "COMPLETE"}, uid="live")
    wiring.registrar = ScriptedRegistrar(["GlueUnavailable"])  # type: ignore[assignment]
    with pytest.raises(kopf.TemporaryError):
        wiring.catalog(live, kopf.Patch())
    assert set(wiring._failures) == {"live"}
