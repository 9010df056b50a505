"""ownership.py and the reconciler's use of it (issue 23): a task is the namespace's whose object started or
adopted it; another namespace's object naming it is refused before any AWS call and learns nothing of it."""

from __future__ import annotations

import random
from typing import Any

from rds_export_operator.api import status as st
from rds_export_operator.api.spec import parse_spec
from rds_export_operator.aws.identity import Identity, role_account
from rds_export_operator.aws.tenancy import Tenancy
from rds_export_operator.exports.ownership import Ownership, fill
from rds_export_operator.exports.reconcile import Reconciler
from unit.exports.test_reconcile import SETTINGS, SOURCE, FakeRds, make_spec, put

REGION = "eu-west-1"
SPEC = make_spec(exportTaskIdentifier="shared")


def other(**overrides: Any) -> Any:
    raw = {"sourceArn": SOURCE, "s3BucketName": "bucket", "iamRoleArn": "arn:aws:iam::123456789012:role/export"}
    raw |= {"kmsKeyId": "key", "exportTaskIdentifier": "shared", **overrides}
    return parse_spec(raw, namespace="team-b", name="copy", uid="uid-b", default_region="")


def make(rds: FakeRds, index: Ownership, tenancy: Tenancy | None = None) -> Reconciler:
    return Reconciler(rds, SETTINGS, random.Random(1), ownership=index, tenancy=tenancy)


def test_index_tells_namespaces_apart_even_when_one_name_prefixes_another() -> None:
    index = Ownership()
    index.record("uid-a", "team", REGION, "Shared", owned=True, refused=False)
    assert index.other_owner("team-a", REGION, "shared")  # identifiers compared as AWS stores them: lower case
    assert not index.other_owner("team", REGION, "shared")
    assert not index.other_owner("team-a", "us-east-1", "shared")
    assert not index.claim("uid-b", "team-a", REGION, "shared")
    index.record("uid-a", "team", REGION, "shared", owned=False, refused=False)  # switched: no longer held
    assert index.claim("uid-b", "team-a", REGION, "shared")
    index.forget("uid-b")
    assert not index.other_owner("team", REGION, "shared")


def test_a_claim_survives_a_watch_event_from_before_its_status_write() -> None:
    # The start is decided and claimed; a watch event of the same object (its finalizer stored) still shows no
    # ownership: the claim must hold, or another namespace could adopt the task in that window.
    index = Ownership()
    assert index.claim("uid-a", "team", REGION, "shared")
    fill(index, [("uid-a", "team", REGION, {"status": None})])
    assert not index.claim("uid-b", "team-b", REGION, "shared")
    fill(index, [("uid-a", "team", REGION, {"status": "REFUSED"})])  # a verdict: the claim goes
    assert index.claim("uid-b", "team-b", REGION, "shared")


def test_fill_counts_only_objects_that_own_a_task() -> None:
    index = Ownership()
    rows = [
        ("u1", "a", REGION, {"ownership": "Started", "exportTaskIdentifier": "x"}),
        ("u2", "a", REGION, {"ownership": "Observed", "exportTaskIdentifier": "y"}),
        ("u3", "a", REGION, {"ownership": "Adopted"}),
    ]
    assert fill(index, rows) == 1
    assert index.other_owner("b", REGION, "x") and not index.other_owner("b", REGION, "y")


def test_a_task_started_by_one_namespace_is_refused_to_another_without_an_aws_call() -> None:
    rds, index = FakeRds(), Ownership()
    assert make(rds, index).sync(SPEC, {}, uid="uid-a").status["ownership"] == "Started"
    calls = list(rds.calls)
    for spec in (other(), other(managementPolicy="Observe"), other(kmsKeyId="alias/anything")):
        result = make(rds, index).sync(spec, {}, uid="uid-b")
        assert result.status["status"] == st.REFUSED
        assert result.status["conditions"][1].reason == "NotPermitted"
        assert result.status["ownership"] is None
        assert "bucket" not in str(result.status) and SOURCE not in str(result.status)
    assert rds.calls == calls


def test_an_adoption_claims_the_task_so_a_second_namespace_cannot_adopt_it() -> None:
    rds, index = FakeRds(), Ownership()
    put(rds, "shared", Status="IN_PROGRESS", S3Bucket="bucket", IamRoleArn="arn:aws:iam::123456789012:role/export")
    assert make(rds, index).sync(SPEC, {}, uid="uid-a").status["ownership"] == "Adopted"
    assert make(rds, index).sync(other(), {}, uid="uid-b").status["status"] == st.REFUSED


def test_identifier_grants_decide_which_outside_tasks_a_namespace_may_observe_or_adopt() -> None:
    rds, index = FakeRds(), Ownership()
    put(rds, "shared", Status="IN_PROGRESS", S3Bucket="bucket", IamRoleArn="arn:aws:iam::123456789012:role/export")
    tenancy = Tenancy.parse('{"team": {"identifiers": ["nightly-*"]}, "team-b": {}}')
    refused = make(rds, index, tenancy).sync(make_spec(managementPolicy="Observe", exportTaskIdentifier="shared"), {})
    assert refused.status["conditions"][1].reason == "NotPermitted"
    assert rds.calls == []  # an Observe outside the grant: no call
    adopt = make(rds, index, tenancy).sync(SPEC, {}, uid="uid-a")
    assert adopt.status["conditions"][1].reason == "IdentifierInUse"
    assert make(rds, index, tenancy).sync(other(), {}, uid="uid-b").status["ownership"] == "Adopted"


def test_identifier_in_use_names_the_differing_field_only_inside_the_grant() -> None:
    rds = FakeRds()
    put(rds, "shared", Status="IN_PROGRESS", S3Bucket="theirs", IamRoleArn="arn:aws:iam::123456789012:role/export")
    inside = make(rds, Ownership()).sync(SPEC, {}, uid="uid-a")
    assert "s3BucketName" in inside.status["conditions"][1].message
    tenancy = Tenancy.parse('{"team": {"identifiers": ["mine-*"]}}')
    outside = make(rds, Ownership(), tenancy).sync(SPEC, {}, uid="uid-a")
    assert outside.status["conditions"][1].reason == "IdentifierInUse"
    assert "s3BucketName" not in outside.status["conditions"][1].message


def test_an_alias_is_a_difference_against_a_key_arn() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234"
    assert not st.same_kms_key("alias/anything", key)
    assert not st.same_kms_key(key, "alias/anything")
    assert st.same_kms_key("alias/k", "arn:aws:kms:eu-west-1:123456789012:alias/k")
    assert st.same_kms_key("1234", key)


ROLE_A = "arn:aws:iam::111111111111:role/a"
ROLE_B = "arn:aws:iam::222222222222:role/b"


def mapped(rds: FakeRds, role: str) -> Reconciler:
    return Reconciler(
        rds,
        SETTINGS,
        random.Random(1),
        identity=lambda ns: Identity(role, namespace=ns),
        account=lambda identity: role_account(identity.role_arn or ""),
    )


def test_the_status_records_the_role_and_account_and_a_remap_sends_no_call_elsewhere() -> None:
    rds = FakeRds()
    started = mapped(rds, ROLE_A).sync(SPEC, {}, uid="uid-a").status
    assert (started["awsRoleArn"], started["awsAccount"]) == (ROLE_A, "111111111111")
    status = {"ownership": "Started", "status": "IN_PROGRESS", "awsRoleArn": ROLE_A}
    calls = list(rds.calls)
    remapped = mapped(rds, ROLE_B)
    synced = remapped.sync(SPEC, status, uid="uid-a")
    assert synced.status["conditions"][0].reason == "IdentityChanged"
    assert synced.retry_after is not None  # waits: the admin may map it back
    canceled = remapped.cancel(SPEC, status, uid="uid-a")
    assert not canceled.done
    assert rds.calls == calls  # neither a describe nor a cancel under B's role
    assert mapped(rds, ROLE_A).cancel(SPEC, status, uid="uid-a").events[0].reason == "Canceling"
