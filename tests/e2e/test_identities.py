"""Tenants cannot touch what is not theirs (issue 10): an AWS identity per namespace, assumed through STS, so
that AWS decides what each team may export; B can neither read, adopt nor cancel A's export by editing its spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from constants import PLURAL as KIND
from e2e.conftest import (
    MAPPING,
    RELEASE_NAMESPACE,
    ROLE_A,
    ROLE_B,
    OperatorFactory,
    condition,
    export_task,
    identity_mapping,
    set_mapping,  # noqa: F401  # moved to conftest; kept here for tests that use it
    status_is,
    wait_condition,
)
from localdev.kube import Kubectl
from localdev.standin.server import StandInServer, create_snapshot
from localdev.waiting import wait_until


@pytest.fixture
def mapping(kubectl: Kubectl, namespace: str, team_b: str) -> Iterator[None]:
    with identity_mapping(kubectl, {namespace: ROLE_A, team_b: ROLE_B}):
        yield


def callers(aws: StandInServer, action: str, identifier: str) -> set[str]:
    """Who made the calls of ``action`` that name ``identifier`` (as the parameter, or among a filter's values)."""
    return {c.caller for c in aws.standin.calls(action) if identifier in c.params.values()}


def test_each_namespace_acts_as_its_own_role_and_cannot_touch_the_other(
    kubectl: Kubectl, namespace: str, team_b: str, mapping: None, aws: StandInServer, operator_factory: OperatorFactory
) -> None:
    operator_factory(f"--namespace={team_b}", f"--identities-configmap={RELEASE_NAMESPACE}/{MAPPING}")
    rds_a: Any = aws.session(ROLE_A).client("rds", endpoint_url=aws.url, region_name="us-east-1")
    source_a = create_snapshot(rds_a, f"{namespace}-a")
    assert ":111111111111:" in source_a

    # A's export runs under A's role, in A's account.
    kubectl.apply(export_task("orders", source_a), "-n", namespace)
    obj = kubectl.wait_for(KIND, "orders", namespace, status_is("STARTING"), timeout=60, what="A's export started")
    ident = obj["status"]["exportTaskIdentifier"]
    assert obj["status"]["ownership"] == "Started"
    assert callers(aws, "StartExportTask", ident) == {ROLE_A}

    # B observes A's identifier: AWS (B's account) does not know it; nothing of A's task reaches B's status.
    spy = export_task("spy", source_a, managementPolicy="Observe", exportTaskIdentifier=ident)
    kubectl.apply(spy, "-n", team_b)
    obj = wait_condition(
        kubectl,
        KIND,
        "spy",
        team_b,
        "Synced",
        reason="ExportTaskNotFound",
        timeout=60,
        what="B's observe finds nothing",
    )
    assert "percentProgress" not in obj["status"] and "s3Bucket" not in obj["status"]
    assert ROLE_B in callers(aws, "DescribeExportTasks", ident)  # asked as B, answered for B's account

    # B switches to Create with A's identifier and source: it acts as B, so AWS refuses A's snapshot.
    kubectl.run("patch", KIND, "spy", "-n", team_b, "--type=merge", "-p", '{"spec":{"managementPolicy":"Create"}}')
    obj = wait_condition(kubectl, KIND, "spy", team_b, "Failed", status="True", timeout=60, what="B refused")
    assert obj["status"]["status"] == "REFUSED"
    assert callers(aws, "StartExportTask", ident) == {ROLE_A, ROLE_B}  # B's own try, refused by AWS for B

    # B deletes: nothing is canceled, A's export goes on.
    kubectl.run("delete", KIND, "spy", "-n", team_b, "--wait=false")
    kubectl.wait_gone(KIND, "spy", team_b, timeout=30)
    assert aws.standin.call_count("CancelExportTask", ident) == 0
    task = aws.standin.task(ident, account="111111111111")
    assert task.status in ("STARTING", "IN_PROGRESS")

    # A deletes: A's own role cancels A's export.
    kubectl.run("delete", KIND, "orders", "-n", namespace, "--wait=false")
    wait_until(lambda: aws.standin.call_count("CancelExportTask", ident) > 0, timeout=60, what="A's cancel")
    assert callers(aws, "CancelExportTask", ident) == {ROLE_A}


def test_a_namespace_without_identity_makes_no_aws_call(
    kubectl: Kubectl,
    namespace: str,
    team_b: str,
    mapping: None,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
) -> None:
    stranger = f"{namespace}-c"
    kubectl.run("create", "namespace", stranger)
    try:
        operator_factory(f"--namespace={stranger}", f"--identities-configmap={RELEASE_NAMESPACE}/{MAPPING}")
        kubectl.apply(export_task("lost", snapshot_arn), "-n", stranger)
        obj = wait_condition(
            kubectl, KIND, "lost", stranger, "Synced", reason="NoIdentity", timeout=60, what="no identity mapped"
        )
        assert condition(obj, "Failed").get("status") != "True"  # the admin may still map it
        assert aws.standin.call_count("StartExportTask", obj["status"]["exportTaskIdentifier"]) == 0
    finally:
        kubectl.run("delete", "namespace", stranger, "--wait=false", check=False)
