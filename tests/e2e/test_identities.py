"""Tenants cannot touch what is not theirs (issue 10): an AWS identity per namespace, assumed through STS, so
that AWS decides what each team may export; B can neither read, adopt nor cancel A's export by editing its spec."""

from __future__ import annotations

import json
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
    set_mapping,
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


@pytest.fixture
def stranger(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """A namespace no rule of the mapping names (default "none"), deleted afterwards."""
    name = f"{namespace}-c"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def assert_no_identity(kubectl: Kubectl, aws: StandInServer, namespace: str, source: str, what: str) -> None:
    """An export in ``namespace`` waits for an identity (retried, not a verdict) and makes no AWS call."""
    kubectl.apply(export_task("lost", source), "-n", namespace)
    obj = kubectl.wait_for(
        KIND, "lost", namespace, lambda o: condition(o, "Synced").get("reason") == "NoIdentity", timeout=60, what=what
    )
    assert condition(obj, "Failed").get("status") != "True"  # the admin may still map it
    assert aws.standin.call_count("StartExportTask", obj["status"]["exportTaskIdentifier"]) == 0


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

    # B observes A's identifier: A's object owns it, so B is refused before any AWS call (issue 23).
    spy = export_task("spy", source_a, managementPolicy="Observe", exportTaskIdentifier=ident)
    kubectl.apply(spy, "-n", team_b)
    obj = wait_condition(
        kubectl,
        KIND,
        "spy",
        team_b,
        "Failed",
        reason="NotPermitted",
        timeout=60,
        what="B's observe refused",
    )
    assert "percentProgress" not in obj["status"] and "s3Bucket" not in obj["status"]
    assert ROLE_B not in callers(aws, "DescribeExportTasks", ident)

    # B switches to Create with A's identifier and source: still A's, still no call.
    kubectl.run("patch", KIND, "spy", "-n", team_b, "--type=merge", "-p", '{"spec":{"managementPolicy":"Create"}}')
    obj = wait_condition(kubectl, KIND, "spy", team_b, "Failed", status="True", timeout=60, what="B refused")
    assert obj["status"]["status"] == "REFUSED"
    assert callers(aws, "StartExportTask", ident) == {ROLE_A}

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
    stranger: str,
    mapping: None,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
) -> None:
    operator_factory(f"--namespace={stranger}", f"--identities-configmap={RELEASE_NAMESPACE}/{MAPPING}")
    assert_no_identity(kubectl, aws, stranger, snapshot_arn, "no identity mapped")


ROLE_A1 = "arn:aws:iam::111111111111:role/team-a-exports"
ROLE_B1 = "arn:aws:iam::111111111111:role/team-b-exports"  # another role in the same account as A's


def test_two_roles_in_one_account_cannot_adopt_each_others_export(
    kubectl: Kubectl,
    namespace: str,
    team_b: str,
    aws: StandInServer,
    operator_factory: OperatorFactory,
) -> None:
    # Bug (issue 23, attack 2): adoption calls only Describe, which IAM allows B's role in the same account, so
    # B's exact copy of A's export was Adopted and its deletion canceled A's export as B.
    before = kubectl.get("configmap", MAPPING, RELEASE_NAMESPACE)["data"]
    rules = {"rules": [{"namespace": namespace, "roleArn": ROLE_A1}, {"namespace": team_b, "roleArn": ROLE_B1}]}
    set_mapping(kubectl, {"identities.json": json.dumps(rules)})
    try:
        operator_factory(f"--namespace={team_b}", f"--identities-configmap={RELEASE_NAMESPACE}/{MAPPING}")
        rds_a: Any = aws.session(ROLE_A1).client("rds", endpoint_url=aws.url, region_name="us-east-1")
        source = create_snapshot(rds_a, f"{namespace}-one")
        ident = f"{namespace}-one-account"
        kubectl.apply(export_task("orders", source, exportTaskIdentifier=ident), "-n", namespace)
        kubectl.wait_for(KIND, "orders", namespace, status_is("STARTING"), timeout=60, what="A's export")
        kubectl.apply(export_task("copy", source, exportTaskIdentifier=ident), "-n", team_b)
        obj = kubectl.wait_for(
            KIND,
            "copy",
            team_b,
            lambda o: condition(o, "Failed").get("reason") == "NotPermitted",
            timeout=60,
            what="B's copy refused",
        )
        assert obj["status"].get("ownership") is None and "s3Bucket" not in obj["status"]
        kubectl.run("delete", KIND, "copy", "-n", team_b, "--wait=false")
        kubectl.wait_gone(KIND, "copy", team_b, timeout=30)
        assert ROLE_B1 not in callers(aws, "DescribeExportTasks", ident) | callers(aws, "StartExportTask", ident)
        assert aws.standin.call_count("CancelExportTask", ident) == 0
        assert aws.standin.task(ident, account="111111111111").status in ("STARTING", "IN_PROGRESS")
    finally:
        set_mapping(kubectl, before)


def test_deleting_the_mapping_keeps_the_last_good_one(
    kubectl: Kubectl,
    namespace: str,
    team_b: str,
    stranger: str,
    mapping: None,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
) -> None:
    # Bug (issue 23, attack 6): deleting the identity ConfigMap switched every namespace, including those refused
    # by default "none", to the operator's own identity; in-flight cancels went to the wrong account.
    saved = kubectl.get("configmap", MAPPING, RELEASE_NAMESPACE)
    try:
        operator_factory(
            f"--namespace={stranger}",
            f"--namespace={team_b}",
            f"--identities-configmap={RELEASE_NAMESPACE}/{MAPPING}",
        )
        rds_a: Any = aws.session(ROLE_A).client("rds", endpoint_url=aws.url, region_name="us-east-1")
        source_a = create_snapshot(rds_a, f"{namespace}-keep")
        kubectl.apply(export_task("orders", source_a), "-n", namespace)
        obj = kubectl.wait_for(KIND, "orders", namespace, status_is("STARTING"), timeout=60, what="A's export")
        ident = obj["status"]["exportTaskIdentifier"]

        def warnings() -> int:
            return sum(e["reason"] == "IdentityMappingMissing" for e in kubectl.events(RELEASE_NAMESPACE, MAPPING))

        before = warnings()
        kubectl.run("delete", "configmap", MAPPING, "-n", RELEASE_NAMESPACE)
        wait_until(lambda: warnings() > before, timeout=60, what="the operator to notice the deletion")
        assert_no_identity(kubectl, aws, stranger, snapshot_arn, "still no identity")
        kubectl.run("delete", KIND, "orders", "-n", namespace, "--wait=false")
        wait_until(lambda: aws.standin.call_count("CancelExportTask", ident) > 0, timeout=60, what="A's cancel")
        assert callers(aws, "CancelExportTask", ident) == {ROLE_A}  # still A's role, not the operator's own
    finally:
        meta = {key: saved["metadata"].get(key, {}) for key in ("labels", "annotations")}
        meta |= {"name": MAPPING, "namespace": RELEASE_NAMESPACE}
        kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": saved["data"]})
