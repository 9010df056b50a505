"""The table report end to end (issue 12): after an export finishes, the operator reads the export's own info files
from the stand-in's S3 and reports per-table outcomes, without ever changing Complete/Failed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e.conftest import (
    MAPPING,
    RELEASE_NAMESPACE,
    ROLE_A,
    OperatorFactory,
    condition,
    export_task,
    identity_mapping,
    start_direct,
    started,
    status_is,
)
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.standin.server import StandInServer, create_snapshot

KIND = "rdsexporttasks"


def tables_condition(status: str, reason: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        cond = condition(obj, "TablesComplete")
        return cond.get("status") == status and (reason is None or cond.get("reason") == reason)

    return check


def test_all_tables_complete_shows_counts_and_the_tables_column(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    operator_factory()
    kubectl.apply(export_task("full", snapshot_arn, s3Prefix="exports/full"), "-n", namespace)
    kubectl.apply(export_task("quiet", snapshot_arn, tableReport="Disabled"), "-n", namespace)
    full, quiet = started(kubectl, namespace, "full"), started(kubectl, namespace, "quiet")
    aws.standin.table_outcomes(full, {f"postgres.public.t{i:03}": "COMPLETE" for i in range(117)})
    aws.standin.set_task(quiet, status="COMPLETE")
    aws.standin.set_task(full, status="COMPLETE")

    obj = kubectl.wait_for(KIND, "full", namespace, tables_condition("True"), timeout=30, what="TablesComplete=True")
    assert obj["status"]["tables"] == {"total": 120, "complete": 120, "failed": 0, "skipped": 0}
    assert obj["status"]["tablesSummary"] == "120/120"
    assert "failedTables" not in obj["status"] and "tablesPendingSince" not in obj["status"]
    assert condition(obj, "TablesComplete")["reason"] == "AllTablesComplete"
    assert condition(obj, "Complete")["status"] == "True" and condition(obj, "Failed")["status"] == "False"
    assert not obj["metadata"].get("finalizers")  # the table timer holds none

    table = kubectl.run("get", KIND, "-n", namespace).splitlines()
    header = table[0].split()
    assert "TABLES" in header
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["full"][header.index("TABLES")] == "120/120"
    assert "TablesComplete" in {e["reason"] for e in kubectl.events(namespace, "full")}

    # Switched off per object: finished at the same moment, never read.
    disabled = kubectl.get(KIND, "quiet", namespace)
    assert condition(disabled, "Complete")["status"] == "True"
    assert condition(disabled, "TablesComplete") == {} and "tables" not in disabled["status"]


def test_a_failed_table_is_named_in_status_and_in_a_warning_event(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    kubectl.apply(export_task("partial", snapshot_arn), "-n", namespace)
    ident = started(kubectl, namespace, "partial")
    aws.standin.table_outcomes(ident, {"postgres.public.orders": "FAILED", "postgres.public.blobs": "SKIPPED"})
    aws.standin.set_task(ident, status="COMPLETE")

    obj = kubectl.wait_for(
        KIND, "partial", namespace, tables_condition("False"), timeout=30, what="TablesComplete=False"
    )
    assert condition(obj, "TablesComplete")["reason"] == "TablesFailed"
    assert "postgres.public.orders" in condition(obj, "TablesComplete")["message"]
    assert obj["status"]["tables"] == {"total": 4, "complete": 2, "failed": 1, "skipped": 1}
    assert obj["status"]["tablesSummary"] == "2/4"
    assert [(t["target"], t["status"]) for t in obj["status"]["failedTables"]] == [
        ("postgres.public.orders", "FAILED"),
        ("postgres.public.blobs", "SKIPPED"),
    ]
    assert obj["status"]["failedTables"][0]["reason"]  # the warning text from the file
    assert condition(obj, "Complete")["status"] == "True"  # the export itself is still complete

    events = [e for e in kubectl.events(namespace, "partial") if e["reason"] == "TablesFailed"]
    assert len(events) == 1 and events[0]["type"] == "Warning"
    assert "postgres.public.orders" in events[0]["message"]


def test_s3_access_denied_leaves_the_export_complete_and_the_report_unknown(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    operator_factory("--table-report-wait=3")
    bucket = f"denied-{namespace}"
    aws.standin.deny_bucket(bucket)
    kubectl.apply(export_task("locked", snapshot_arn, s3BucketName=bucket), "-n", namespace)
    ident = started(kubectl, namespace, "locked")
    aws.standin.set_task(ident, status="COMPLETE")

    pending = kubectl.wait_for(
        KIND, "locked", namespace, tables_condition("Unknown", "AccessDenied"), timeout=30, what="AccessDenied"
    )
    assert condition(pending, "Complete")["status"] == "True"
    obj = kubectl.wait_for(
        KIND,
        "locked",
        namespace,
        lambda o: tables_condition("Unknown", "AccessDenied")(o) and "tablesPendingSince" not in o["status"],
        timeout=30,
        what="AccessDenied, final",
    )
    assert "gave up" in condition(obj, "TablesComplete")["message"]
    assert obj["status"]["status"] == "COMPLETE"
    assert condition(obj, "Complete")["status"] == "True" and condition(obj, "Failed")["status"] == "False"
    assert "tables" not in obj["status"]
    assert "TableReportAccessDenied" in {e["reason"] for e in kubectl.events(namespace, "locked")}


def test_files_appearing_late_are_retried_then_reported(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    operator_factory("--table-report-wait=120")
    aws.standin.hold_table_files(f"{namespace}-*")
    kubectl.apply(export_task("slow", snapshot_arn, s3Prefix="late"), "-n", namespace)
    ident = started(kubectl, namespace, "slow")
    aws.standin.set_task(ident, status="COMPLETE")

    pending = kubectl.wait_for(
        KIND, "slow", namespace, tables_condition("Unknown", "NotFound"), timeout=30, what="files not there yet"
    )
    assert pending["status"].get("tablesPendingSince")
    assert "retrying until" in condition(pending, "TablesComplete")["message"]

    aws.standin.write_table_files(ident)
    obj = kubectl.wait_for(KIND, "slow", namespace, tables_condition("True"), timeout=30, what="TablesComplete=True")
    assert obj["status"]["tables"]["total"] == 3 and "tablesPendingSince" not in obj["status"]


@pytest.fixture
def mapped(kubectl: Kubectl, namespace: str) -> Iterator[None]:
    """The test's namespace acts as ROLE_A (per-namespace identities, the chart's mapping ConfigMap)."""
    with identity_mapping(kubectl, {namespace: ROLE_A}):
        yield


def test_the_report_is_read_as_the_namespace_role(
    kubectl: Kubectl, namespace: str, mapped: None, aws: StandInServer, operator_factory: OperatorFactory
) -> None:
    operator_factory(f"--identities-configmap={RELEASE_NAMESPACE}/{MAPPING}")
    rds_a: Any = aws.session(ROLE_A).client("rds", endpoint_url=aws.url, region_name="us-east-1")
    source = create_snapshot(rds_a, f"{namespace}-a")
    bucket = f"team-a-{namespace}"
    kubectl.apply(export_task("teams", source, s3BucketName=bucket), "-n", namespace)
    ident = started(kubectl, namespace, "teams")
    aws.standin.set_task(ident, status="COMPLETE")

    kubectl.wait_for(KIND, "teams", namespace, tables_condition("True"), timeout=60, what="TablesComplete=True")
    calls = aws.standin.s3_calls(bucket)
    assert calls and {c.caller for c in calls} == {ROLE_A}
    assert {c.method for c in calls} == {"GET"}  # it only reads


def test_malformed_and_huge_info_files_are_refused_safely(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    aws.standin.hold_table_files(f"{namespace}-*")
    kubectl.apply(export_task("garbled", snapshot_arn), "-n", namespace)
    kubectl.apply(export_task("bloated", snapshot_arn), "-n", namespace)
    garbled, bloated = started(kubectl, namespace, "garbled"), started(kubectl, namespace, "bloated")
    huge = f"export_tables_info_{bloated}_from_1_to_1.json"
    aws.standin.write_table_files(garbled, {f"export_tables_info_{garbled}_from_1_to_3.json": b'{"perTableStatus": [{'})
    aws.standin.write_table_files(bloated, {huge: b'{"perTableStatus": [' + b" " * (9 * 1024 * 1024) + b"]}"})
    aws.standin.set_task(garbled, status="COMPLETE")
    aws.standin.set_task(bloated, status="COMPLETE")

    for name, reason in (("garbled", "Malformed"), ("bloated", "TooLarge")):
        obj = kubectl.wait_for(KIND, name, namespace, tables_condition("Unknown", reason), timeout=30, what=reason)
        assert condition(obj, "Complete")["status"] == "True"  # the export itself is unaffected
        assert "tables" not in obj["status"] and "tablesPendingSince" not in obj["status"]  # final, no retry
    assert not [c for c in aws.standin.s3_calls("exports-bucket") if c.key.endswith(huge)]  # never downloaded
    assert any(e["reason"] == "TableReportMalformed" for e in kubectl.events(namespace, "garbled"))


def test_an_observed_export_has_none_of_its_files_read(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    rds_client: Any,
    operator_factory: OperatorFactory,
) -> None:
    # Bug (issue 23, "Also"): the table report read the export folders of Observe objects, which may be another
    # tenant's. Only exports the namespace started or adopted are read; the owned one is the control.
    operator_factory()
    outside = f"{namespace}-outside"
    start_direct(rds_client, outside, snapshot_arn)
    kubectl.apply(
        export_task("watched", snapshot_arn, managementPolicy="Observe", exportTaskIdentifier=outside), "-n", namespace
    )
    kubectl.apply(export_task("own", snapshot_arn), "-n", namespace)
    own = started(kubectl, namespace, "own")
    kubectl.wait_for(KIND, "watched", namespace, status_is("STARTING"), timeout=30, what="observed")
    aws.standin.set_task(outside, status="COMPLETE")
    aws.standin.set_task(own, status="COMPLETE")
    kubectl.wait_for(KIND, "own", namespace, tables_condition("True"), timeout=30, what="the owned export's report")
    watched = kubectl.wait_for(KIND, "watched", namespace, status_is("COMPLETE"), timeout=30, what="COMPLETE")
    assert watched["status"]["ownership"] == "Observed" and "tables" not in watched["status"]
    assert any(own in c.key for c in aws.standin.s3_calls())
    assert not [c for c in aws.standin.s3_calls() if outside in c.key]
