"""Faults on StartExportTask and CancelExportTask (issue 9): every kind of answer a real endpoint gives when it
is unwell leaves exactly one export per object, never a verdict, and never an export that runs unowned."""

from __future__ import annotations

import pytest

from constants import PLURAL as KIND
from e2e.conftest import OperatorFactory, condition, export_task, start_export, status_is, tasks_of
from localdev.kube import Kubectl
from localdev.standin.server import StandInServer
from localdev.waiting import wait_until

FAULTS = ["access_denied", "throttling", "internal_failure", "timeout", "reset", "lost_answer"]


@pytest.mark.parametrize("kind", FAULTS)
def test_start_faults_make_exactly_one_export(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
    kind: str,
) -> None:
    # A timeout answers after the operator gave up (1 s); a lost answer starts the export and drops the reply.
    operator_factory("--aws-timeout=1")
    aws.standin.inject("StartExportTask", kind, times=2, **({"delay": 2.0} if kind == "timeout" else {}))
    kubectl.apply(export_task("flaky", snapshot_arn), "-n", namespace)
    obj = kubectl.wait_for(KIND, "flaky", namespace, status_is("STARTING"), timeout=60, what="started in the end")
    assert condition(obj, "Failed").get("status") == "False"
    assert obj["status"]["ownership"] in ("Started", "Adopted")
    assert tasks_of(aws, snapshot_arn) == [obj["status"]["exportTaskIdentifier"]]


@pytest.mark.parametrize("kind", ["access_denied", "throttling", "internal_failure", "reset"])
def test_cancel_faults_keep_the_export_owned_until_it_is_canceled(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
    kind: str,
) -> None:
    operator_factory()
    ident = start_export(kubectl, namespace, "doomed", snapshot_arn)
    aws.standin.inject("CancelExportTask", kind, times=3)
    kubectl.run("delete", KIND, "doomed", "-n", namespace, "--wait=false")
    wait_until(lambda: aws.standin.call_count("CancelExportTask", ident) >= 1, timeout=30, what="the first cancel")
    obj = kubectl.get_or_none(KIND, "doomed", namespace)
    assert obj is not None and obj["metadata"].get("finalizers")  # still held while the cancel fails
    wait_until(lambda: aws.standin.task(ident).status in ("CANCELING", "CANCELED"), timeout=60, what="canceled")
    aws.standin.set_task(ident, status="CANCELED")
    kubectl.wait_gone(KIND, "doomed", namespace, timeout=60)
    assert aws.standin.call_count("CancelExportTask", ident) >= 2  # failed ones, then the one that worked
