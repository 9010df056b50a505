"""Faults survived: crashes at each step, control-plane restarts, AWS errors and garbage, credentials kept secret.

Each test ends with the same evidence: one export per object, the object's status equal to the AWS truth,
no finalizer left behind where the object is gone.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from constants import PLURAL as KIND
from e2e.conftest import OperatorFactory, condition, export_task, progress_is, start_export, status_is, wait_condition
from e2e.conftest import tasks_of as tasks_for
from localdev.controlplane import ControlPlane
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.standin.server import StandInServer
from localdev.waiting import wait_until


@pytest.mark.parametrize("crash_point", ["start-in-flight", "start-answered", "status-written", "polling"])
def test_crash_at_each_step_of_the_create_path(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
    crash_point: str,
) -> None:
    first = operator_factory()
    if crash_point == "start-in-flight":  # AWS gets the call; the operator dies before any answer
        aws.standin.inject("StartExportTask", delay=1.0)
    if crash_point == "start-answered":  # AWS started it; the operator dies before it can write status
        aws.standin.after("StartExportTask", lambda _: first.kill())
    starts_before = aws.standin.call_count("StartExportTask")  # the stand-in's log spans the session
    kubectl.apply(export_task("crashy", snapshot_arn), "-n", namespace)
    if crash_point == "start-in-flight":
        wait_until(lambda: aws.standin.call_count("StartExportTask") > starts_before, timeout=30, what="our start call")
        first.kill()
    elif crash_point == "start-answered":
        wait_until(lambda: first.proc and first.proc.poll() is not None, timeout=30, what="the crash")
    else:
        kubectl.wait_for(KIND, "crashy", namespace, status_is("STARTING"), timeout=30, what="STARTING")
        if crash_point == "polling":
            aws.standin.after("DescribeExportTasks", lambda _: first.kill())
            wait_until(lambda: first.proc and first.proc.poll() is not None, timeout=30, what="the crash")
        else:
            first.kill()
    aws.standin.clear_hooks()
    wait_until(lambda: tasks_for(aws, snapshot_arn), timeout=30, what="the task in AWS")
    (ident,) = tasks_for(aws, snapshot_arn)
    aws.standin.set_task(ident, status="IN_PROGRESS", percent=33)

    operator_factory()
    obj = kubectl.wait_for(
        KIND, "crashy", namespace, progress_is(33), timeout=30, what="the restarted operator to converge"
    )
    assert obj["status"]["exportTaskIdentifier"] == ident
    assert tasks_for(aws, snapshot_arn) == [ident]  # exactly one export for this object
    aws.standin.set_task(ident, status="COMPLETE")
    obj = kubectl.wait_for(
        KIND,
        "crashy",
        namespace,
        lambda o: not o["metadata"].get("finalizers") and o["status"].get("status") == "COMPLETE",
        timeout=30,
        what="COMPLETE, no finalizer",
    )
    assert condition(obj, "Complete")["status"] == "True"


def test_crash_between_cancel_and_finalizer_removal(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    first = operator_factory()
    ident = start_export(kubectl, namespace, "cancel-crash", snapshot_arn)
    aws.standin.after("CancelExportTask", lambda _: first.kill())
    kubectl.run("delete", KIND, "cancel-crash", "-n", namespace, "--wait=false")
    wait_until(lambda: first.proc and first.proc.poll() is not None, timeout=30, what="the crash")
    aws.standin.clear_hooks()
    assert aws.standin.task(ident).status == "CANCELING"
    operator_factory()
    kubectl.wait_for(
        KIND,
        "cancel-crash",
        namespace,
        status_is("CANCELING"),
        timeout=30,
        what="CANCELING seen by the restarted operator",
    )
    assert kubectl.get_or_none(KIND, "cancel-crash", namespace) is not None  # held until AWS says CANCELED
    aws.standin.set_task(ident, status="CANCELED")
    kubectl.wait_gone(KIND, "cancel-crash", namespace, timeout=30)
    assert tasks_for(aws, snapshot_arn) == [ident]


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_while_exports_run(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator: OperatorProcess,
    component: str,
) -> None:
    ident = start_export(kubectl, namespace, "survivor", snapshot_arn)
    control_plane.restart(component)
    aws.standin.set_task(ident, status="IN_PROGRESS", percent=44)
    kubectl.wait_for(
        KIND, "survivor", namespace, progress_is(44), timeout=60, what=f"progress after the {component} restart"
    )
    aws.standin.set_task(ident, status="COMPLETE")
    kubectl.run("wait", f"{KIND}/survivor", "-n", namespace, "--for=condition=Complete", "--timeout=60s")
    assert operator.proc is not None and operator.proc.poll() is None
    assert tasks_for(aws, snapshot_arn) == [ident]


def test_an_api_server_outage_longer_than_kopfs_retries_loses_no_export(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator: OperatorProcess,
) -> None:
    """Bug: kopf tried a status write 9 times (54 s of backoff) and then let the error out of the object's daemon,
    which it then never starts again for that object: after an API-server outage of a minute, the export's status
    froze until the operator restarted. The write must wait for the API server instead, however long it is away."""
    ident = start_export(kubectl, namespace, "outlasting", snapshot_arn)
    control_plane.stop_component("kube-apiserver", kill=True)
    try:
        aws.standin.set_task(ident, status="IN_PROGRESS", percent=44)  # seen by the poller; the write must wait
        ninth = re.compile(r"Request attempt #9\S* failed.*PATCH")  # kopf's 8 backoffs are behind it
        wait_until(lambda: ninth.search(operator.log()), timeout=120, what="kopf's ninth try of the status write")
    finally:
        control_plane.start_component("kube-apiserver")
    kubectl.wait_for(KIND, "outlasting", namespace, progress_is(44), timeout=90, what="the write made in the outage")
    aws.standin.set_task(ident, status="COMPLETE")
    kubectl.run("wait", f"{KIND}/outlasting", "-n", namespace, "--for=condition=Complete", "--timeout=60s")
    assert operator.proc is not None and operator.proc.poll() is None
    assert tasks_for(aws, snapshot_arn) == [ident]


FAULTS = {
    "5xx burst": {"code": "InternalFailure", "status": 500, "message": "An internal error occurred"},
    "throttling": {"code": "Throttling", "status": 400, "message": "Rate exceeded"},
    "timeout": {"delay": 2.5},
    "malformed answer": {"malformed": True},
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_aws_faults_on_describe_are_survived_with_bounded_retries(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
    fault: str,
) -> None:
    operator = operator_factory("--aws-timeout=1")
    ident = start_export(kubectl, namespace, "faulty", snapshot_arn)
    before = aws.standin.call_count("DescribeExportTasks")
    aws.standin.inject("DescribeExportTasks", times=8, **FAULTS[fault])
    started = time.monotonic()
    aws.standin.set_task(ident, status="IN_PROGRESS", percent=61, gb=4)
    obj = wait_condition(
        kubectl, KIND, "faulty", namespace, "Synced", status="False", what="Synced=False during the fault"
    )
    assert condition(obj, "Synced")["message"]
    obj = kubectl.wait_for(
        KIND, "faulty", namespace, progress_is(61), timeout=60, what="the update made during the fault"
    )
    elapsed = time.monotonic() - started
    calls = aws.standin.call_count("DescribeExportTasks") - before
    assert condition(obj, "Synced")["status"] == "True"
    assert obj["status"]["totalExtractedDataInGB"] == 4
    # Bounded: backoff (0.5 s doubling to 2 s, 2 attempts each) keeps it far from a hot loop.
    assert calls <= 8 + 4 * elapsed, (calls, elapsed)
    assert operator.proc is not None and operator.proc.poll() is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"status": "in_progress", "percent": 12}, ("IN_PROGRESS", 12)),  # lower case, as moto answers
        ({"status": "PAUSED_FOR_MAINTENANCE", "percent": 13}, ("PAUSED_FOR_MAINTENANCE", 13)),  # unknown status
        ({"status": "IN_PROGRESS", "percent": None, "gb": None}, ("IN_PROGRESS", None)),  # optional fields missing
    ],
)
def test_odd_but_parseable_answers(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator: OperatorProcess,
    changes: dict[str, Any],
    expected: tuple[str, int | None],
) -> None:
    ident = start_export(kubectl, namespace, "odd", snapshot_arn)
    aws.standin.set_task(ident, **changes)
    obj = kubectl.wait_for(KIND, "odd", namespace, status_is(expected[0]), timeout=30, what=expected[0])
    assert obj["status"].get("percentProgress", None if expected[1] is None else -1) in (expected[1], 0)
    assert condition(obj, "Synced")["status"] == "True"
    assert condition(obj, "Complete")["status"] == "False" and condition(obj, "Failed")["status"] == "False"
    aws.standin.set_task(ident, status="complete")
    kubectl.run("wait", f"{KIND}/odd", "-n", namespace, "--for=condition=Complete", "--timeout=30s")
    assert operator.proc is not None and operator.proc.poll() is None


def test_sigterm_stops_gracefully_within_the_grace_period(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    operator = operator_factory()
    for i in range(5):
        kubectl.apply(export_task(f"busy-{i}", snapshot_arn), "-n", namespace)
    kubectl.wait_for(
        KIND, "busy-4", namespace, lambda o: o.get("status", {}).get("status"), timeout=30, what="the operator at work"
    )
    started = time.monotonic()
    assert operator.stop(timeout=30) == 0
    assert time.monotonic() - started < 25  # the chart's terminationGracePeriodSeconds is 30


def test_credentials_never_reach_status_events_or_logs(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    secret = "SECRETMARKER" + "x" * 28
    operator = operator_factory(
        "--log-level=DEBUG", AWS_ACCESS_KEY_ID="AKIAMARKERMARKER0000", AWS_SECRET_ACCESS_KEY=secret
    )
    kubectl.apply(export_task("creds", snapshot_arn), "-n", namespace)
    obj = kubectl.wait_for(KIND, "creds", namespace, status_is("STARTING"), timeout=30, what="STARTING")
    aws.standin.inject(
        "DescribeExportTasks", times=2, code="InternalFailure", status=500, message="An internal error occurred"
    )
    aws.standin.set_task(obj["status"]["exportTaskIdentifier"], status="FAILED", failure_cause="KMS key check failed")
    kubectl.run("wait", f"{KIND}/creds", "-n", namespace, "--for=condition=Failed", "--timeout=30s")
    operator.stop()
    texts = [
        operator.log(),
        kubectl.run("get", KIND, "creds", "-n", namespace, "-o", "yaml"),
        kubectl.run("get", "events", "-n", namespace, "-o", "yaml"),
    ]
    assert "KMS key check failed" in texts[1]
    for text in texts:
        assert secret not in text
        assert "AKIAMARKERMARKER0000" not in text


def test_tenancy_policy_refuses_what_a_namespace_was_not_granted(
    kubectl: Kubectl, namespace: str, aws: StandInServer, snapshot_arn: str, operator_factory: OperatorFactory
) -> None:
    policy = json.dumps(
        {
            namespace: {
                "accounts": ["123456789012"],
                "regions": ["us-east-1"],
                "iamRoleArns": ["arn:aws:iam::123456789012:role/rds-s3-*"],
            }
        }
    )
    operator_factory(f"--tenancy={policy}")
    kubectl.apply(export_task("granted", snapshot_arn), "-n", namespace)
    kubectl.apply(
        export_task("escalating", snapshot_arn, iamRoleArn="arn:aws:iam::123456789012:role/admin"), "-n", namespace
    )
    other = "arn:aws:rds:us-east-1:210987654321:snapshot:elsewhere"
    kubectl.apply(export_task("foreign", other, kmsKeyId="alias/k"), "-n", namespace)
    kubectl.wait_for(KIND, "granted", namespace, status_is("STARTING"), timeout=30, what="the granted export")
    for name, message in [
        ("escalating", "may not use IAM role arn:aws:iam::123456789012:role/admin"),
        ("foreign", "may not use AWS account 210987654321"),
    ]:
        obj = wait_condition(kubectl, KIND, name, namespace, "Failed", status="True", what="refusal")
        assert condition(obj, "Failed")["reason"] == "NotPermitted"
        assert message in condition(obj, "Failed")["message"]
        assert aws.standin.call_count("StartExportTask", obj["status"]["exportTaskIdentifier"]) == 0
        assert "NotPermitted" in [e["reason"] for e in kubectl.events(namespace, name)]
