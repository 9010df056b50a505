"""The table report end to end (issues 12 and 25): after an export finishes, the operator reads the export's own info
files from the stand-in's S3 (in the shape RDS writes them) and the task's WarningMessage, and reports per-table
outcomes, without ever changing Complete/Failed."""

from __future__ import annotations

import threading
import time
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
from localdev.scale import process_usage
from localdev.stack import OperatorProcess
from localdev.standin.server import StandInServer, create_snapshot
from localdev.waiting import wait_until

KIND = "rdsexporttasks"


def tables_condition(status: str, reason: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        cond = condition(obj, "TablesComplete")
        return cond.get("status") == status and (reason is None or cond.get("reason") == reason)

    return check


def held(kubectl: Kubectl, namespace: str, aws: StandInServer, name: str, source: str, **spec: Any) -> str:
    """An export whose info files the stand-in writes only when the test asks (``write_table_files``)."""
    aws.standin.hold_table_files(f"{namespace}-*")
    kubectl.apply(export_task(name, source, **spec), "-n", namespace)
    return started(kubectl, namespace, name)


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
    # The files hold a database-level entry beside the 120 tables (as real Postgres exports do): not a table.
    tables = obj["status"]["tables"]
    assert {k: tables[k] for k in ("total", "complete", "failed", "skipped")} == {
        "total": 120,
        "complete": 120,
        "failed": 0,
        "skipped": 0,
    }
    assert [d["target"] for d in tables["databases"]] == ["postgres"]
    assert isinstance(tables["exportedDataInGB"], float) and 0 < tables["exportedDataInGB"] < 1
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
    assert {k: obj["status"]["tables"][k] for k in ("total", "complete", "failed", "skipped")} == {
        "total": 4,
        "complete": 2,
        "failed": 1,
        "skipped": 1,  # from the task's WarningMessage
    }
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


def test_skipped_tables_in_the_warning_message_are_named(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    kubectl.apply(export_task("skips", snapshot_arn), "-n", namespace)
    ident = started(kubectl, namespace, "skips")
    reason = "COLUMN_WITH_UNSUPPORTED_CHARACTER_IN_NAME"
    aws.standin.table_outcomes(ident, {"postgres.public.secret": "SKIPPED", "postgres.public.odd": f"SKIPPED:{reason}"})
    aws.standin.table_shape(ident, general=("FAILED_TO_EXTRACT_TABLES_LIST_FOR_DATABASE",))
    aws.standin.set_task(ident, status="COMPLETE")

    obj = kubectl.wait_for(
        KIND, "skips", namespace, tables_condition("False", "TablesSkipped"), timeout=30, what="TablesSkipped"
    )
    message = condition(obj, "TablesComplete")["message"]
    assert "postgres.public.secret (SKIPPED: PERMISSIONS_DO_NOT_EXIST)" in message
    assert f"postgres.public.odd (SKIPPED: {reason})" in message
    assert "FAILED_TO_EXTRACT_TABLES_LIST_FOR_DATABASE" in message  # WarningMessage's general reasons
    assert {k: obj["status"]["tables"][k] for k in ("total", "complete", "skipped")} == {
        "total": 5,
        "complete": 3,
        "skipped": 2,
    }
    assert obj["status"]["tablesSummary"] == "3/5"
    assert {t["target"] for t in obj["status"]["failedTables"]} == {"postgres.public.secret", "postgres.public.odd"}
    assert "TablesSkipped" in {e["reason"] for e in kubectl.events(namespace, "skips")}


def test_a_missing_middle_file_is_unknown_until_it_appears(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
) -> None:
    operator_factory("--table-report-wait=120")
    ident = held(kubectl, namespace, aws, "gappy", snapshot_arn)
    aws.standin.table_outcomes(ident, {"postgres.public.a": "COMPLETE", "postgres.public.b": "COMPLETE"})
    aws.standin.table_shape(ident, per_file=2)  # a database entry and 5 tables: 1-2, 3-4, 5-6
    aws.standin.set_task(ident, status="COMPLETE")
    files = aws.standin.table_files(ident)  # export_info says COMPLETE
    middle = f"export_tables_info_{ident}_from_3_to_4.json"
    assert middle in files
    aws.standin.write_table_files(ident, {n: c for n, c in files.items() if n != middle})

    pending = kubectl.wait_for(
        KIND, "gappy", namespace, tables_condition("Unknown", "Incomplete"), timeout=30, what="Incomplete"
    )
    assert "entries 3..4 are missing" in condition(pending, "TablesComplete")["message"]
    assert pending["status"].get("tablesPendingSince") and "tables" not in pending["status"]

    aws.standin.write_table_files(ident, {middle: files[middle]})
    obj = kubectl.wait_for(KIND, "gappy", namespace, tables_condition("True"), timeout=30, what="TablesComplete=True")
    assert obj["status"]["tablesSummary"] == "5/5"


def test_s3_access_denied_is_retried_until_an_iam_fix_takes_effect(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
) -> None:
    operator_factory("--table-report-wait=3")  # past it, AccessDenied is retried every --retry-max-delay (2 s)
    bucket = f"denied-{namespace}"
    aws.standin.deny_bucket(bucket)
    kubectl.apply(export_task("locked", snapshot_arn, s3BucketName=bucket), "-n", namespace)
    ident = started(kubectl, namespace, "locked")
    aws.standin.set_task(ident, status="COMPLETE")

    pending = kubectl.wait_for(
        KIND, "locked", namespace, tables_condition("Unknown", "AccessDenied"), timeout=30, what="AccessDenied"
    )
    assert condition(pending, "Complete")["status"] == "True"
    assert pending["status"].get("tablesPendingSince") and "tables" not in pending["status"]
    # Well past --table-report-wait, the operator still reads (slowly) and the report is not final.
    past = time.monotonic() + 6
    reads = len(aws.standin.s3_calls(bucket))
    wait_until(
        lambda: time.monotonic() > past and len(aws.standin.s3_calls(bucket)) > reads + 1,
        timeout=60,
        what="reads past the wait",
    )
    obj = kubectl.get(KIND, "locked", namespace)
    assert tables_condition("Unknown", "AccessDenied")(obj) and obj["status"].get("tablesPendingSince")
    assert "gave up" not in condition(obj, "TablesComplete")["message"]
    assert condition(obj, "Complete")["status"] == "True" and condition(obj, "Failed")["status"] == "False"

    aws.standin.allow_bucket(bucket)  # the IAM fix: no spec edit needed
    obj = kubectl.wait_for(KIND, "locked", namespace, tables_condition("True"), timeout=30, what="TablesComplete=True")
    assert obj["status"]["tablesSummary"] == "3/3" and "tablesPendingSince" not in obj["status"]


def test_files_appearing_late_are_retried_then_reported(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    operator_factory("--table-report-wait=120")
    ident = held(kubectl, namespace, aws, "slow", snapshot_arn, s3Prefix="late")
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


def test_malformed_info_files_are_refused_safely(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator: OperatorProcess
) -> None:
    # Files too large to read are refused from the listing (unit tests: the caps are 1 GiB a file, 4 GiB in all).
    garbled = held(kubectl, namespace, aws, "garbled", snapshot_arn)
    aws.standin.write_table_files(
        garbled,
        {
            f"export_tables_info_{garbled}_from_1_to_3.json": b'{"perTableStatus": [{',
            f"export_info_{garbled}.json": b'{"status": "COMPLETE"}',
        },
    )
    aws.standin.set_task(garbled, status="COMPLETE")

    obj = kubectl.wait_for(
        KIND, "garbled", namespace, tables_condition("Unknown", "Malformed"), timeout=30, what="Malformed"
    )
    assert condition(obj, "Complete")["status"] == "True"  # the export itself is unaffected
    assert "tables" not in obj["status"] and "tablesPendingSince" not in obj["status"]  # final, no retry
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


def test_a_50000_table_export_is_reported_within_the_memory_bound(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
) -> None:
    """50,000 tables of 30 columns (about 300 MB of info files, in 101 files): the operator streams them one at a
    time and its RSS rises by at most 50 MiB while it reads (the base code refused them as TooLarge: 64 MiB cap)."""
    op = operator_factory("--table-report-wait=600")
    ident = held(kubectl, namespace, aws, "wide", snapshot_arn)
    aws.standin.table_shape(ident, count=50_000, columns=30, per_file=500)
    aws.standin.set_task(ident, status="COMPLETE")
    kubectl.wait_for(KIND, "wide", namespace, tables_condition("Unknown", "NotFound"), timeout=30, what="no files")
    assert op.proc is not None
    baseline = process_usage(op.proc.pid)[0]
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], process_usage(op.proc.pid)[0])  # type: ignore[union-attr]

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        started_at = time.monotonic()
        keys = aws.standin.write_table_files(ident)
        assert len(keys) == 102  # 50,001 entries (a database entry) in 101 files, and export_info
        obj = kubectl.wait_for(KIND, "wide", namespace, tables_condition("True"), timeout=600, what="50,000 tables")
        seconds = time.monotonic() - started_at
    finally:
        done.set()
        sampler.join()
    assert obj["status"]["tablesSummary"] == "50000/50000"
    assert obj["status"]["tables"]["total"] == 50_000
    rise = peak[0] - baseline
    print(f"50,000 tables x 30 columns: RSS {baseline:.1f} -> peak {peak[0]:.1f} MiB (+{rise:.1f}), {seconds:.0f} s")
    assert rise <= 50, f"the operator's RSS rose by {rise:.1f} MiB while it read the report"
