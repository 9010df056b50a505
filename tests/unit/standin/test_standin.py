"""The AWS stand-in's personalities, faults and identities, seen through boto3 over HTTP (no Kubernetes needed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from constants import ACCOUNT, KEY, ROLE
from localdev.controlplane import free_port
from localdev.standin.server import Modes, StandInServer, create_snapshot
from localdev.waiting import wait_until

OTHER_ACCOUNT = "210987654321"
TEAM_ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/team-b-exporter"
NO_RETRY = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10)


@pytest.fixture
def aws(server: StandInServer) -> Iterator[StandInServer]:
    yield server
    server.standin.reset()


def rds(server: StandInServer, session: boto3.Session | None = None, config: Config = NO_RETRY) -> Any:
    return (session or server.session()).client("rds", endpoint_url=server.url, config=config)


def ident(prefix: str = "exp") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def start(client: Any, identifier: str, source: str, role: str = ROLE) -> dict[str, Any]:
    return dict(
        client.start_export_task(
            ExportTaskIdentifier=identifier, SourceArn=source, S3BucketName="b", IamRoleArn=role, KmsKeyId=KEY
        )
    )


def status_filter(*values: str) -> list[dict[str, Any]]:
    return [{"Name": "status", "Values": list(values)}]


def listed(client: Any, **kwargs: Any) -> list[str]:
    return [t["ExportTaskIdentifier"] for t in client.describe_export_tasks(**kwargs)["ExportTasks"]]


@pytest.fixture(scope="module")
def snapshot(server: StandInServer) -> str:
    return create_snapshot(rds(server), f"snap-{uuid.uuid4().hex[:8]}")


# -- public API -----------------------------------------------------------------------------------------------


def test_seed_task_set_task_and_reset(aws: StandInServer) -> None:
    running, done = ident(), ident()
    aws.standin.seed(running, bucket="bkt", prefix="p", export_only=["db.t"], status="IN_PROGRESS", percent=40)
    aws.standin.seed(done, status="COMPLETE")
    task = aws.standin.task(running)
    assert (task.status, task.percent, task.s3_bucket, task.s3_prefix, task.export_only) == (
        "IN_PROGRESS",
        40,
        "bkt",
        "p",
        ("db.t",),
    )
    assert task.start_time is not None and task.end_time is None
    assert aws.standin.task(done).percent == 100 and aws.standin.task(done).end_time is not None
    with pytest.raises(ValueError):
        aws.standin.seed(running)
    seen = {t["ExportTaskIdentifier"]: t for t in rds(aws).describe_export_tasks()["ExportTasks"]}
    assert seen[running]["Status"] == "IN_PROGRESS" and seen[running]["PercentProgress"] == 40
    aws.standin.set_task(running, percent=70)
    assert aws.standin.task(running).percent == 70 and task.percent == 40  # snapshots do not change
    aws.standin.inject("DescribeExportTasks", times=None)
    aws.standin.mode(ignore_filters=True)
    aws.standin.reset()
    assert aws.standin.task(running).status == "CANCELED" and aws.standin.task(done).status == "COMPLETE"
    assert aws.standin.faults_pending("DescribeExportTasks") == 0
    assert aws.standin.mode() == Modes()
    assert running in listed(rds(aws), Filters=status_filter("canceled"))


def test_the_hook_runs_after_success_before_the_answer(aws: StandInServer, snapshot: str) -> None:
    seen: list[int] = []
    identifier = ident()
    aws.standin.after("StartExportTask", lambda p: seen.append(len(aws.standin.tasks())))
    start(rds(aws), identifier, snapshot)
    assert seen and aws.standin.task(identifier).status == "STARTING"


# -- personalities --------------------------------------------------------------------------------------------


def test_ignore_filters_returns_finished_tasks_for_an_active_status_filter(aws: StandInServer) -> None:
    running, done = ident(), ident()
    aws.standin.seed(running, status="IN_PROGRESS")
    aws.standin.seed(done, status="COMPLETE")
    client = rds(aws)
    assert done not in listed(client, Filters=status_filter("in_progress", "starting"))
    aws.standin.mode(ignore_filters=True)
    for _ in range(20):  # more than one page of MaxRecords=20
        aws.standin.seed(ident("old"), status="FAILED")
    page = client.describe_export_tasks(Filters=status_filter("in_progress"), SourceType="CLUSTER", MaxRecords=20)
    ids = [t["ExportTaskIdentifier"] for t in page["ExportTasks"]]
    assert {running, done} <= set(ids) and len(ids) >= 22 and "Marker" not in page
    assert listed(client, ExportTaskIdentifier=done) == [done]  # the identifier is still honoured
    with pytest.raises(ClientError) as error:
        client.describe_export_tasks(ExportTaskIdentifier=ident("missing"))
    assert error.value.response["Error"]["Code"] == "ExportTaskNotFound"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_ignore_filters_mirrors_moto_itself(aws: StandInServer, snapshot: str) -> None:
    """The same calls against moto 5.2.5's own server and against the stand-in in ignore_filters mode."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    try:
        moto_client = boto3.client(
            "rds",
            endpoint_url=f"http://127.0.0.1:{moto._port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=NO_RETRY,
        )
        aws.standin.mode(ignore_filters=True, lowercase_status=True)
        results = []
        for client in (moto_client, rds(aws)):
            before = set(listed(client))
            a, b = ident(), ident()
            start(client, a, snapshot)
            start(client, b, snapshot)
            client.cancel_export_task(ExportTaskIdentifier=b)
            page = client.describe_export_tasks(
                Filters=[*status_filter("failed"), {"Name": "s3-bucket", "Values": ["nope"]}],
                SourceArn="arn:aws:rds:us-east-1:123456789012:snapshot:other",
                SourceType="CLUSTER",
                MaxRecords=20,
                Marker="bogus",
            )
            with pytest.raises(ClientError) as error:
                client.describe_export_tasks(ExportTaskIdentifier=ident("missing"))
            results.append(
                (
                    {t["ExportTaskIdentifier"] for t in page["ExportTasks"]} - before,
                    "Marker" in page,
                    all(t["Status"].islower() for t in page["ExportTasks"]),
                    listed(client, ExportTaskIdentifier=a),
                    error.value.response["Error"]["Code"],
                    a,
                    b,
                )
            )
        for new, has_marker, lower, only_a, not_found, a, b in results:
            assert (new, has_marker, lower, only_a, not_found) == ({a, b}, False, True, [a], "ExportTaskNotFound")
    finally:
        moto.stop()


def test_lowercase_status(aws: StandInServer, snapshot: str) -> None:
    aws.standin.mode(lowercase_status=True)
    identifier = ident()
    client = rds(aws)
    assert start(client, identifier, snapshot)["Status"] == "starting"
    aws.standin.set_task(identifier, status="COMPLETE")
    assert client.describe_export_tasks(ExportTaskIdentifier=identifier)["ExportTasks"][0]["Status"] == "complete"
    assert listed(client, Filters=status_filter("complete")).count(identifier) == 1
    assert aws.standin.task(identifier).status == "COMPLETE"  # only the wire changes


# -- faults ---------------------------------------------------------------------------------------------------

ERRORS = {
    "access_denied": ("AccessDenied", 403),
    "throttling": ("Throttling", 400),
    "internal_failure": ("InternalFailure", 500),
    "service_unavailable": ("ServiceUnavailable", 503),
}


def call(aws: StandInServer, action: str, snapshot: str, config: Config = NO_RETRY) -> str:
    """One call of ``action`` that would succeed without a fault; returns the identifier it names."""
    client = rds(aws, config=config)
    identifier = ident()
    if action == "StartExportTask":
        start(client, identifier, snapshot)
    elif action == "DescribeExportTasks":
        aws.standin.seed(identifier)
        client.describe_export_tasks(ExportTaskIdentifier=identifier)
    else:
        aws.standin.seed(identifier, status="IN_PROGRESS")
        client.cancel_export_task(ExportTaskIdentifier=identifier)
    return identifier


@pytest.mark.parametrize("action", ["StartExportTask", "DescribeExportTasks", "CancelExportTask"])
@pytest.mark.parametrize("kind", list(ERRORS))
def test_error_faults_on_each_action(aws: StandInServer, snapshot: str, action: str, kind: str) -> None:
    aws.standin.inject(action, kind)
    with pytest.raises(ClientError) as error:
        call(aws, action, snapshot)
    code, status = ERRORS[kind]
    assert error.value.response["Error"]["Code"] == code
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert aws.standin.calls(action)[-1].fault == kind
    assert aws.standin.faults_pending(action) == 0
    call(aws, action, snapshot)  # the next call is fine again


@pytest.mark.parametrize("action", ["StartExportTask", "DescribeExportTasks", "CancelExportTask"])
def test_a_reset_closes_the_connection_without_an_answer(aws: StandInServer, snapshot: str, action: str) -> None:
    aws.standin.inject(action, "reset")
    with pytest.raises(ConnectionClosedError) as error:
        call(aws, action, snapshot)
    assert isinstance(error.value.kwargs["error"].args[1], ConnectionResetError)  # a TCP RST, not an HTTP answer
    if action == "StartExportTask":
        started = aws.standin.calls(action)[-1].params["ExportTaskIdentifier"]
        with pytest.raises(KeyError):
            aws.standin.task(started)  # a plain reset does nothing
    call(aws, action, snapshot)


@pytest.mark.parametrize("action", ["StartExportTask", "DescribeExportTasks", "CancelExportTask"])
def test_a_timeout_answers_after_the_client_gave_up(aws: StandInServer, snapshot: str, action: str) -> None:
    aws.standin.inject(action, "timeout", delay=1.5)
    with pytest.raises(ReadTimeoutError):
        call(aws, action, snapshot, config=Config(retries={"total_max_attempts": 1}, read_timeout=0.5))
    identifier = aws.standin.calls(action)[-1].params["ExportTaskIdentifier"]
    if action != "DescribeExportTasks":  # AWS was only slow: the call still takes effect
        wanted = "STARTING" if action == "StartExportTask" else "CANCELING"
        wait_until(
            lambda: identifier in {t.identifier for t in aws.standin.tasks() if t.status == wanted},
            timeout=10,
            what=wanted,
        )
    call(aws, action, snapshot)


def test_a_delay_alone_answers_correctly_late(aws: StandInServer, snapshot: str) -> None:
    aws.standin.inject("StartExportTask", delay=0.3)
    identifier = call(aws, "StartExportTask", snapshot)
    assert aws.standin.task(identifier).status == "STARTING"
    assert aws.standin.calls("StartExportTask")[-1].fault == "custom"


def test_lost_answer_start_exists_in_aws(aws: StandInServer, snapshot: str) -> None:
    aws.standin.inject("StartExportTask", "lost_answer")
    identifier = ident()
    client = rds(aws)
    with pytest.raises(ConnectionClosedError):
        start(client, identifier, snapshot)
    assert aws.standin.task(identifier).status == "STARTING"
    with pytest.raises(ClientError) as error:  # the client's retry
        start(client, identifier, snapshot)
    assert error.value.response["Error"]["Code"] == "ExportTaskAlreadyExists"
    assert aws.standin.call_count("StartExportTask", identifier) == 2


def test_a_fault_on_every_call_until_cleared(aws: StandInServer) -> None:
    aws.standin.inject("*", "service_unavailable", times=None)
    client = rds(aws)
    for _ in range(4):
        with pytest.raises(ClientError):
            client.describe_export_tasks()
    with pytest.raises(ClientError):
        client.cancel_export_task(ExportTaskIdentifier=ident())
    assert aws.standin.faults_pending("DescribeExportTasks") == float("inf")
    aws.standin.clear_faults()
    client.describe_export_tasks()


def test_a_fault_rate_is_random_but_repeatable(aws: StandInServer) -> None:
    client = rds(aws)

    def pattern() -> list[bool]:
        aws.standin.clear_faults()
        aws.standin.inject("DescribeExportTasks", "throttling", times=None, rate=0.3, seed=42)
        hits = []
        for _ in range(40):
            try:
                client.describe_export_tasks(MaxRecords=20)
                hits.append(False)
            except ClientError as error:
                assert error.response["Error"]["Code"] == "Throttling"
                hits.append(True)
        return hits

    first = pattern()
    assert pattern() == first
    assert 4 <= sum(first) <= 24


def test_botocore_retries_see_the_fault_as_transient(aws: StandInServer) -> None:
    aws.standin.inject("DescribeExportTasks", "internal_failure", times=2)
    before = aws.standin.call_count("DescribeExportTasks")
    rds(aws, config=Config(retries={"mode": "standard", "max_attempts": 3})).describe_export_tasks()
    assert aws.standin.call_count("DescribeExportTasks") - before == 3


# -- AWS details ----------------------------------------------------------------------------------------------


def test_a_snapshot_being_created_is_not_exportable_yet(aws: StandInServer) -> None:
    client = rds(aws)
    source = create_snapshot(client, f"snap-{uuid.uuid4().hex[:8]}")
    aws.standin.set_snapshot_status(source, "creating")
    with pytest.raises(ClientError) as error:
        start(client, ident(), source)
    assert error.value.response["Error"]["Code"] == "InvalidExportSourceState"
    aws.standin.set_snapshot_status(source, "available")
    assert start(client, ident(), source)["Status"] == "STARTING"


def test_iam_propagation_for_a_number_of_calls_or_a_time(aws: StandInServer, snapshot: str) -> None:
    client = rds(aws)
    aws.standin.deny_role(ROLE, calls=2)
    for _ in range(2):
        with pytest.raises(ClientError) as error:
            start(client, ident(), snapshot)
        assert error.value.response["Error"]["Code"] == "IamRoleMissingPermissions"
    start(client, ident(), snapshot)
    aws.standin.deny_role(ROLE, "IamRoleNotFound", seconds=60)
    with pytest.raises(ClientError) as error:
        start(client, ident(), snapshot)
    assert error.value.response["Error"]["Code"] == "IamRoleNotFound"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    aws.standin.deny_role(ROLE, seconds=0)  # propagated by now
    start(client, ident(), snapshot)


# -- identities and accounts ----------------------------------------------------------------------------------


def test_calls_are_recorded_under_the_assumed_role(aws: StandInServer, snapshot: str) -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/team-a-exporter"
    team = rds(aws, aws.session(role, session_name="ns-team-a.nightly", external_id="ext-1"))
    identifier = ident()
    start(team, identifier, snapshot, role=ROLE)
    rds(aws).describe_export_tasks(ExportTaskIdentifier=identifier)
    start_call, describe_call = aws.standin.calls()[-2:]
    assert (start_call.caller, start_call.session_name, start_call.account) == (role, "ns-team-a.nightly", ACCOUNT)
    assert (describe_call.caller, describe_call.account) == ("default", ACCOUNT)
    assert aws.standin.call_count("StartExportTask", identifier, caller=role) == 1
    assert aws.standin.call_count("StartExportTask", identifier, caller="default") == 0
    assert aws.standin.task(identifier).account == ACCOUNT  # same account: the default client sees it


def test_accounts_are_separate(aws: StandInServer, snapshot: str) -> None:
    team_session = aws.session(TEAM_ROLE)
    team = rds(aws, team_session)
    own = create_snapshot(team, f"snap-{uuid.uuid4().hex[:8]}")
    assert f":{OTHER_ACCOUNT}:" in own
    with pytest.raises(ClientError) as error:  # another account's snapshot is not theirs to export
        start(team, ident(), snapshot)
    assert error.value.response["Error"]["Code"] == "DBSnapshotNotFound"
    for _ in range(5):  # the default account is full ...
        aws.standin.seed(ident("busy"), status="IN_PROGRESS")
    with pytest.raises(ClientError) as error:
        start(rds(aws), ident(), snapshot)
    assert error.value.response["Error"]["Code"] == "ExportTaskLimitReachedFault"
    theirs = ident()
    start(team, theirs, own, role=TEAM_ROLE)  # ... the other account is not
    assert aws.standin.task(theirs).account == OTHER_ACCOUNT
    assert listed(team) == [theirs]
    assert theirs not in listed(rds(aws))
    for client in (rds(aws),):
        with pytest.raises(ClientError) as error:
            client.cancel_export_task(ExportTaskIdentifier=theirs)
        assert error.value.response["Error"]["Code"] == "ExportTaskNotFound"
    aws.standin.seed(theirs)  # the same identifier in the default account is another task
    assert {t.account for t in aws.standin.tasks() if t.identifier == theirs} == {ACCOUNT, OTHER_ACCOUNT}
    with pytest.raises(LookupError):
        aws.standin.task(theirs)
    assert aws.standin.task(theirs, account=OTHER_ACCOUNT).status == "STARTING"


def test_a_script_may_give_each_task_its_own_duration() -> None:
    """The backfill benchmark (issue 27) draws each export's duration from a spread."""
    from datetime import UTC, datetime, timedelta

    from localdev.standin.rds_exports import Script, Task, _advance

    began = datetime(2026, 1, 1, tzinfo=UTC)
    script = Script(starting=1.0, running=20.0, durations={"long": 50.0})
    fields: dict[str, Any] = {
        "source_arn": "s", "source_type": "SNAPSHOT", "s3_bucket": "b", "iam_role_arn": "r", "kms_key_id": "k",
        "s3_prefix": None, "export_only": (), "account": ACCOUNT, "region": "us-east-1", "created": began,
        "snapshot_time": began, "phase_since": began,
    }  # fmt: skip
    later = began + timedelta(seconds=26)
    assert _advance(Task(identifier="short", **fields), script, later).status == "COMPLETE"
    long = _advance(Task(identifier="long", **fields), script, later)
    assert (long.status, long.percent) == ("IN_PROGRESS", 50)
    done = _advance(long, script, began + timedelta(seconds=60))
    assert done.end_time == began + timedelta(seconds=51)
