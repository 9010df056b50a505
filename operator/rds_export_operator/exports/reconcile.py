"""The decisions for one RdsExportTask: start, adopt, queue, poll, cancel, report. Plain Python, no Kubernetes.

Each call takes the typed spec, the object's last known status and an AWS gateway, makes at most the AWS calls the
decision needs, and returns a Result: the desired status fields, the Events to post, and when to look again if
that must differ from the normal interval. Which AWS answer means what is decided in ``aws_errors``; here it
becomes conditions: only a Start answer that says the spec is wrong (or a wait past its deadline) is terminal.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rds_export_operator.api import status as st
from rds_export_operator.api.spec import ExportSpec
from rds_export_operator.aws.errors import SOURCE_NOT_READY_CODES, AwsError, ErrorKind, ExportTask
from rds_export_operator.aws.identity import Identity, IdentityUnavailable, Refusal
from rds_export_operator.aws.tenancy import Tenancy
from rds_export_operator.exports.ownership import ADOPTED, OWNED, STARTED, Ownership

PROGRESS_MILESTONES = (25, 50, 75)
OBSERVED = "Observed"
NOT_PERMITTED = "NotPermitted"
CONGESTION_CODES = frozenset({"RegionBusy", "RefreshPending"})  # polling.Poller's, not AWS's
LOOKUP_PENDING = "LookupPending"  # polling.Poller.find: the answer comes with a wake-up
QUEUED_MESSAGE = "all export slots are taken (or the namespace is at its cap); namespaces take turns, oldest first"


class Gateway(Protocol):
    """AWS calls plus the export slots: ``polling.Poller`` (coalesced) or ``polling.PerObject`` (baseline)."""

    def start(self, spec: ExportSpec) -> ExportTask: ...
    def describe(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask | None: ...
    def find(
        self, region: str, identifier: str, identity: Identity | None = None, uid: str = ""
    ) -> ExportTask | None: ...
    def cancel(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask: ...
    def peek(self, region: str, identifier: str, identity: Identity | None = None) -> ExportTask | None: ...
    def may_start(
        self, region: str, uid: str, created: str, identity: Identity | None = None, namespace: str = ""
    ) -> bool: ...
    def started(self, uid: str) -> bool: ...
    def mark_started(
        self, region: str, uid: str, identifier: str, *, visible: bool = False, identity: Identity | None = None
    ) -> None: ...
    def limit_reached(self, uid: str) -> None: ...
    def release(self, uid: str) -> None: ...
    def watch(self, uid: str, region: str, identifier: str, identity: Identity | None = None) -> None: ...
    def unwatch(self, uid: str) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    poll_interval: float = 30.0
    base_delay: float = 5.0
    max_delay: float = 300.0
    source_wait: float = 12 * 3600.0  # InvalidExportSourceState: a running export of the cluster can take hours
    iam_wait: float = 900.0  # IamRoleNotFound / IamRoleMissingPermissions: IAM propagates in seconds to minutes
    warn_after: float = 600.0  # AWS failing this long: a Warning Event says so
    observe_wait: float = 3600.0  # an Observe of a task AWS does not know fails after this long


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass
class Result:
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None  # look again sooner or later than the poll interval
    done: bool = False  # for deletion: the finalizer may go


def backoff(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter over the upper half: base*2^attempt, at most max."""
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** min(attempt, 20))
    return (rng or random).uniform(ceiling / 2, ceiling)


def has_task(status: Mapping[str, Any]) -> bool:
    """Whether the operator has seen an AWS task for this object (rather than nothing yet, a queue slot, or a
    refusal before any task was this object's)."""
    return status.get("status") not in (None, "", st.QUEUED, st.REFUSED)


def mismatches(spec: ExportSpec, task: ExportTask) -> list[str]:
    """The spec fields that differ from what AWS reports for a task. The required fields (source, bucket, role,
    key) cannot differ when an odd answer omits them; the optional ones mean "none" when absent, as at Start."""

    def differs(ours: object, theirs: object) -> bool:
        return theirs is not None and ours != theirs

    key = task.get("KmsKeyId")
    checks = [
        ("sourceArn", differs(spec.source_arn, task.get("SourceArn"))),
        ("s3BucketName", differs(spec.s3_bucket_name, task.get("S3Bucket"))),
        ("s3Prefix", (st.s3_prefix_as_stored(spec.s3_prefix) or "") != (task.get("S3Prefix") or "")),
        ("iamRoleArn", differs(spec.iam_role_arn, task.get("IamRoleArn"))),
        ("kmsKeyId", bool(key) and not st.same_kms_key(spec.kms_key_id or "", str(key))),
        ("exportOnly", sorted(task.get("ExportOnly") or []) != sorted(spec.export_only)),
    ]
    return [name for name, differ in checks if differ]


class Reconciler:
    def __init__(
        self,
        aws: Gateway,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        *,
        tenancy: Tenancy | None = None,
        identity: Callable[[str], Identity | Refusal] | None = None,
        ownership: Ownership | None = None,
        account: Callable[[Identity], str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        region_refusal: Callable[[str], str | None] = lambda region: None,
    ) -> None:
        """``identity``: the AWS identity of a namespace (identity.Identities.resolve); None: the operator's own.
        ``ownership``: which namespace's object owns which task (filled from the cluster by the handlers).
        ``account``: the AWS account of an identity (identity.Identities.account_of), recorded with the task.
        ``region_refusal``: why a region cannot be used (it does not exist), or None."""
        self.aws, self.policy, self.rng = aws, policy or RetryPolicy(), rng or random.Random()
        self.region_refusal = region_refusal
        self.tenancy, self.resolve, self.clock = tenancy or Tenancy(), identity, clock
        self.ownership = ownership or Ownership()
        self.account = account
        self._warned: set[str] = set()  # objects told that AWS has been failing for long (once per outage)

    def forget(self, uid: str) -> None:
        """The object's task shows in its status: no slot, no start in flight."""
        self.aws.release(uid)

    def drop(self, uid: str) -> None:
        """The object finished or is gone: nothing to hold, watch or warn about."""
        self.aws.release(uid)
        self.aws.unwatch(uid)
        self._warned.discard(uid)

    # -- the periodic sync ---------------------------------------------------------------------------------------

    def sync(
        self,
        spec: ExportSpec,
        status: Mapping[str, Any],
        *,
        attempt: int = 0,
        uid: str = "",
        created: str = "",
        has_finalizer: bool = True,
    ) -> Result:
        """``uid`` and ``created`` (creationTimestamp) place the object in the export queue, oldest first.

        ``has_finalizer``: an object that cancels on deletion starts no export before its finalizer is stored.
        """
        result = Result()
        refusal = self.region_refusal(spec.region)
        if refusal is not None:  # before any client, poller scope or slot scope is made for it
            self.aws.release(uid)
            return _terminal(result, "UnknownRegion", refusal)
        refusal = self.tenancy.refusal(spec)
        if refusal is not None:
            self.aws.release(uid)
            return _terminal(result, NOT_PERMITTED, refusal)
        ownership = status.get("ownership")
        if ownership not in OWNED and self.ownership.other_owner(spec.namespace, spec.region, spec.identifier):
            # Another namespace's object started or adopted it: not a word about it, and no AWS call.
            self.aws.release(uid)
            return _not_theirs(result, spec)
        if not spec.creates and not self._own(spec):
            refusal = self.tenancy.identifier_refusal(spec.namespace, spec.identifier)
            if refusal is not None:
                return _terminal(result, NOT_PERMITTED, refusal)
        try:
            spec = self._with_identity(spec, status)
            if not spec.creates:
                task = self._observe(spec, status, result, uid)
            elif (has_task(status) and ownership in OWNED) or self.aws.started(uid):
                task = self.aws.find(spec.region, spec.identifier, spec.identity, uid)
            elif has_task(status):  # Observe switched to Create, or a status from before ownership existed
                task = self._adopt_known(spec, result, uid)
            else:
                task = self._start_or_adopt(spec, status, result, uid=uid, created=created, has_finalizer=has_finalizer)
                if task is None:
                    return result
        except AwsError as error:
            return self._aws_error(error, status, result, uid=uid, attempt=attempt)
        if task is None:
            self._missing(spec, status, result)
        elif result.status.get("status") != st.REFUSED:
            self._report(task, status, result, uid)
        if uid and result.status.get("status") not in (st.REFUSED, *st.TERMINAL_STATUSES):
            self.aws.watch(uid, spec.region, spec.identifier, spec.identity)  # woken when its task changes
        return result

    def _with_identity(self, spec: ExportSpec, status: Mapping[str, Any]) -> ExportSpec:
        """The spec with its namespace's AWS identity. No identity mapped, or the mapping or the namespace's labels
        unreadable right now: an AwsError that retries without any AWS call (the admin may map it later). A task
        recorded under another role than the one mapped now: the same, so that no call goes to another role or
        account about a task of the same identifier (the admin maps it back, or the user lets it go)."""
        if self.resolve is None:
            if status.get("awsRoleArn"):
                raise AwsError(ErrorKind.UNAUTHORIZED, "IdentityChanged", _changed(status, None), "AssumeRole")
            return spec
        try:
            identity = self.resolve(spec.namespace)
        except IdentityUnavailable as exc:
            raise AwsError(ErrorKind.UNAUTHORIZED, exc.code, exc.message, "AssumeRole") from exc
        if isinstance(identity, Refusal):
            raise AwsError(ErrorKind.UNAUTHORIZED, "NoIdentity", identity.message, "AssumeRole")
        if status.get("awsRoleArn") is not None and status.get("awsRoleArn") != (identity.role_arn or ""):
            raise AwsError(ErrorKind.UNAUTHORIZED, "IdentityChanged", _changed(status, identity), "AssumeRole")
        return replace(spec, identity=identity)

    def _record_identity(self, spec: ExportSpec, result: Result) -> None:
        """The role and account the task is now this object's under (only with an identity mapping)."""
        if self.resolve is None or spec.identity is None:
            return
        result.status["awsRoleArn"] = spec.identity.role_arn or ""
        if self.account is not None:
            # The role is what later calls are checked against; the account is for people (STS may be down now).
            with contextlib.suppress(IdentityUnavailable):
                result.status["awsAccount"] = self.account(spec.identity)

    def _observe(self, spec: ExportSpec, status: Mapping[str, Any], result: Result, uid: str) -> ExportTask | None:
        task = self.aws.find(spec.region, spec.identifier, spec.identity, uid)
        if task is None:
            return None
        if self.tenancy.task_refusal(spec.namespace, task) is not None:
            # Say nothing about a task outside the namespace's grant: not its source, bucket or cause.
            _terminal(
                result,
                "NotPermitted",
                f"export task {spec.identifier} is outside what namespace {spec.namespace} may observe "
                "(its source, bucket, role or key is not granted by the operator's tenancy policy)",
            )
            return task
        if status.get("ownership") != OBSERVED:
            result.status["ownership"] = OBSERVED
        return task

    def _own(self, spec: ExportSpec) -> bool:
        """Whether an object of the spec's own namespace owns its task (so no identifier grant is needed)."""
        return self.ownership.holds(spec.namespace, spec.region, spec.identifier)

    def _adopt_known(self, spec: ExportSpec, result: Result, uid: str) -> ExportTask | None:
        task = self.aws.find(spec.region, spec.identifier, spec.identity, uid)
        return None if task is None else self._adopt(spec, task, result, uid)

    def _start_or_adopt(
        self,
        spec: ExportSpec,
        status: Mapping[str, Any],
        result: Result,
        *,
        uid: str,
        created: str,
        has_finalizer: bool,
    ) -> ExportTask | None:
        known = self.aws.peek(spec.region, spec.identifier, spec.identity)
        if known is not None:  # already running (we crashed after starting it?): adopt without a call
            return self._adopt(spec, known, result, uid, visible=True)
        if status.get("status") != st.QUEUED:  # a queued object was looked up before it queued
            # Matched by identifier before anything starts: one batched lookup for a burst of new objects.
            known = self.aws.find(spec.region, spec.identifier, spec.identity, uid)
            if known is not None:  # a running one is not in the page yet: its slot counts until a page shows it
                visible = st.normalize_status(known.get("Status")) not in st.ACTIVE_STATUSES
                return self._adopt(spec, known, result, uid, visible=visible)
        if not self.aws.may_start(spec.region, uid, created, spec.identity, spec.namespace):
            self._queue(status, result, QUEUED_MESSAGE)
            return None
        if spec.cancels_on_delete and not has_finalizer:
            # The slot is ours; the finalizer that lets a deletion cancel the export must be stored first. This
            # status asks for it (handlers.needs_finalizer: not empty, not queued or refused). No retry loop: the
            # watch event that shows the finalizer wakes the object (handlers.track).
            result.status.update({"status": None, "queuedSince": None})
            result.status["conditions"] = [
                st.Condition(
                    st.SYNCED,
                    "True",
                    "AwaitingFinalizer",
                    "the export starts once the finalizer that cancels it on deletion is stored",
                )
            ]
            return None
        if not self.ownership.claim(uid, spec.namespace, spec.region, spec.identifier):
            self.aws.release(uid)
            _not_theirs(result, spec)
            return None
        try:
            task = self.aws.start(spec)
        except AwsError as error:
            if error.kind is ErrorKind.LIMIT_REACHED:
                self.aws.limit_reached(uid)
                self._queue(status, result, error.message)
                return None
            self.aws.release(uid)
            self.ownership.release(uid, spec.region, spec.identifier)  # _adopt claims it again if it may
            if error.kind is not ErrorKind.ALREADY_EXISTS:
                raise
            existing = self.aws.describe(spec.region, spec.identifier, spec.identity)
            if existing is None:  # gone between the two calls: look again soon, never guess
                raise AwsError(ErrorKind.RETRYABLE, "ExportTaskAlreadyExists", error.message, error.operation) from None
            return self._adopt(spec, existing, result, uid)
        self.aws.mark_started(spec.region, uid, spec.identifier, identity=spec.identity)
        result.status["ownership"] = STARTED
        self._record_identity(spec, result)
        result.events.append(Event("Normal", "Started", f"started export task {spec.identifier}"))
        return task

    def _adopt(
        self, spec: ExportSpec, existing: ExportTask, result: Result, uid: str, *, visible: bool = False
    ) -> ExportTask:
        outside = None if self._own(spec) else self.tenancy.identifier_refusal(spec.namespace, spec.identifier)
        outside = outside or self.tenancy.task_refusal(spec.namespace, existing)
        differ = mismatches(spec, existing)
        if differ or outside:
            self.aws.release(uid)
            # Which field differs is told only about a task the namespace may see: no oracle for the others.
            what = f"a different {', '.join(differ)}" if differ and not outside else "other settings"
            _terminal(
                result,
                "IdentifierInUse",
                f"export task {spec.identifier} already exists with {what}; choose another exportTaskIdentifier",
            )
            return existing
        if not self.ownership.claim(uid, spec.namespace, spec.region, spec.identifier):
            self.aws.release(uid)
            _not_theirs(result, spec)
            return existing
        self.aws.mark_started(spec.region, uid, spec.identifier, visible=visible, identity=spec.identity)
        result.status["ownership"] = ADOPTED
        self._record_identity(spec, result)
        result.events.append(Event("Normal", "Adopted", f"adopted existing export task {spec.identifier}"))
        return existing

    def _queue(self, status: Mapping[str, Any], result: Result, message: str) -> None:
        result.status["status"] = st.QUEUED
        result.status["conditions"] = [
            *st.outcome_conditions(st.QUEUED),
            st.Condition(st.SYNCED, "True", "ExportLimitReached", f"waiting for a free export slot: {message}"),
        ]
        if status.get("status") != st.QUEUED:
            result.status["queuedSince"] = st.rfc3339(self.clock())
            result.events.append(Event("Normal", "Queued", "AWS export limit reached; the export waits for a slot"))

    def _report(self, task: ExportTask, status: Mapping[str, Any], result: Result, uid: str) -> None:
        fields = st.task_fields(task)
        new, old = fields["status"], status.get("status")
        result.status.update(fields)
        for stale in ("queuedSince", "waitingSince", "notFoundSince"):
            if status.get(stale):
                result.status[stale] = None
        result.status["conditions"] = [
            *st.outcome_conditions(new, fields.get("failureCause", "")),
            st.Condition(st.SYNCED, "True", "Synced", ""),
        ]
        self._warned.discard(uid)
        if new != old and not (old in (None, st.QUEUED) and new == "STARTING"):  # Started/Adopted said it
            result.events.append(_transition_event(new, fields))
        old_progress = int(status.get("percentProgress") or 0)
        for milestone in PROGRESS_MILESTONES:
            if old_progress < milestone <= fields.get("percentProgress", 0) and new == "IN_PROGRESS":
                result.events.append(Event("Normal", "Progress", f"export is {milestone}% done"))

    def _missing(self, spec: ExportSpec, status: Mapping[str, Any], result: Result) -> Result:
        if spec.creates:
            message = (
                f"export task {spec.identifier} is no longer reported by AWS; the operator does not start it again"
            )
        else:
            message = f"no export task {spec.identifier} in {spec.region} to observe"
            now = self.clock()
            # its own field: waitingSince may hold an earlier "not yet" wait of this object as a Create
            since = st.parse_time(status.get("notFoundSince")) or now
            if now - since >= timedelta(seconds=self.policy.observe_wait):  # never known: stop watching for it
                waited = f"{message}: AWS has not known it since {st.rfc3339(since)}"
                return _terminal(result, "ExportTaskNotFound", waited)
            result.status["notFoundSince"] = st.rfc3339(since)
            message = f"{message}; watched until {st.rfc3339(since + timedelta(seconds=self.policy.observe_wait))}"
            if status.get("status") == st.QUEUED:  # switched from Create while queued: no longer waits
                result.status.update({"status": None, "queuedSince": None})
        result.status["conditions"] = [st.Condition(st.SYNCED, "False", "ExportTaskNotFound", message)]
        if _synced(status).get("reason") != "ExportTaskNotFound":
            result.events.append(Event("Warning", "ExportTaskNotFound", message))
        return result

    def _aws_error(
        self, error: AwsError, status: Mapping[str, Any], result: Result, *, uid: str, attempt: int
    ) -> Result:
        if error.code in CONGESTION_CODES:  # our own thread budget, not AWS: no news to write, look again soon
            result.retry_after = self.rng.uniform(0.5, 2.0)
            return result
        if error.code == LOOKUP_PENDING:  # no news either: sleep until the lookup's answer wakes the object
            return result
        message = f"{error.operation}: {error.message}" if error.message else error.operation
        now = self.clock()
        if error.kind is ErrorKind.TERMINAL:
            return _terminal(result, error.code, message)
        if error.kind is ErrorKind.NOT_YET:
            since = st.parse_time(status.get("waitingSince")) or now
            wait = self.policy.source_wait if error.code in SOURCE_NOT_READY_CODES else self.policy.iam_wait
            deadline = since + timedelta(seconds=wait)
            if now >= deadline:
                gave_up = f"{message}; still refused after waiting {_duration(wait)} since {st.rfc3339(since)}"
                return _terminal(result, error.code, gave_up)
            result.status["waitingSince"] = st.rfc3339(since)
            message = f"{message}; AWS says not yet: retrying until {st.rfc3339(deadline)}"
        result.status["conditions"] = [st.Condition(st.SYNCED, "False", error.code, message)]
        if _synced(status).get("reason") != error.code:
            result.events.append(Event("Warning", error.code, f"{message}; retrying with backoff"))
        synced = _synced(status)
        failing_since = st.parse_time(synced.get("lastTransitionTime")) if synced.get("status") == "False" else None
        long_failing = failing_since and now - failing_since >= timedelta(seconds=self.policy.warn_after)
        if long_failing and failing_since and uid not in self._warned:
            self._warned.add(uid)
            began = st.rfc3339(failing_since)
            result.events.append(Event("Warning", "AwsUnavailable", f"AWS calls have failed since {began}: {message}"))
        result.retry_after = backoff(self.policy, attempt, self.rng)
        return result

    # -- deletion ---------------------------------------------------------------------------------------------

    def cancel(self, spec: ExportSpec, status: Mapping[str, Any], *, attempt: int = 0, uid: str = "") -> Result:
        """Cancel this object's own running export and wait until AWS reports it finished; ``done`` lets it go.

        Objects that never started or adopted a task (queued, refused, Observe) make no AWS call at all. A Start
        whose answer never reached the status (a crash, a lost answer) is found by describing: when the status
        shows no task yet, the task is this object's if we started it in this process, or if its identifier is
        derived from this object's UID and it matches the spec; any other identifier is never presumed ours.
        """
        result = Result()
        owned = status.get("ownership") in OWNED and has_task(status)
        unseen = not has_task(status) and status.get("status") not in (st.QUEUED, st.REFUSED)
        maybe_ours = unseen and (self.aws.started(uid) or spec.derived_identifier)
        if not spec.cancels_on_delete or not (owned or maybe_ours):
            result.done = True
            return result
        try:
            spec = self._with_identity(spec, status)
            if not owned:
                found = self.aws.describe(spec.region, spec.identifier, spec.identity)
                if found is None or mismatches(spec, found):
                    result.done = True  # nothing was started for this object
                    return result
            if status.get("status") == "CANCELING":
                task = self.aws.describe(spec.region, spec.identifier, spec.identity)
            else:
                task = self.aws.cancel(spec.region, spec.identifier, spec.identity)
                result.events.append(Event("Normal", "Canceling", f"canceling export task {spec.identifier}"))
        except AwsError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                result.done = True  # no longer known: nothing to cancel
                return result
            if error.kind is not ErrorKind.INVALID_STATE:
                # Never let go of a running export because one call failed: retry (a user who wants the object
                # gone anyway sets deletionPolicy: Retain).
                result.events.append(Event("Warning", error.code, f"cancel failed, retrying: {error.message}"))
                result.retry_after = backoff(self.policy, attempt, self.rng)
                return result
            try:  # not cancelable: it finished, or a cancel is under way (we may have crashed after asking)
                task = self.aws.describe(spec.region, spec.identifier, spec.identity)
            except AwsError:
                result.retry_after = backoff(self.policy, attempt, self.rng)
                return result
            if task is not None and st.normalize_status(task.get("Status")) in ("COMPLETE", "FAILED"):
                result.events.append(Event("Normal", "AlreadyFinished", "export had already finished"))
        if task is None:
            result.done = True
            return result
        self._report(task, status, result, "")
        result.done = result.status["status"] in st.TERMINAL_STATUSES
        if not result.done:
            result.retry_after = self.policy.poll_interval
        return result


def _terminal(result: Result, reason: str, message: str) -> Result:
    """A verdict: the spec must change. Status shows REFUSED, never a task that is not this object's."""
    result.status.update(st.cleared_task_fields())
    result.status.update({"status": st.REFUSED, "queuedSince": None, "waitingSince": None})
    result.status["conditions"] = [
        st.Condition(st.COMPLETE, "False", reason),
        st.Condition(st.FAILED, "True", reason, message),
        st.Condition(st.SYNCED, "False", reason, message),
    ]
    result.events.append(Event("Warning", reason, message))
    return result


def _changed(status: Mapping[str, Any], identity: Identity | None) -> str:
    was = status.get("awsRoleArn") or "the operator's own identity"
    now = identity or "the operator's own identity"
    return f"the task was started under {was}, the namespace is now mapped to {now}; no call is made about it"


def _not_theirs(result: Result, spec: ExportSpec) -> Result:
    """The task is another namespace's: refused, saying nothing of it (the object owns nothing either)."""
    _terminal(
        result,
        NOT_PERMITTED,
        f"export task {spec.identifier} is not available to namespace {spec.namespace}; "
        "choose another exportTaskIdentifier",
    )
    result.status["ownership"] = None
    return result


def refused(reason: str, message: str) -> Result:
    return _terminal(Result(), reason, message)


def _synced(status: Mapping[str, Any]) -> Mapping[str, Any]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == st.SYNCED:
            return dict(cond)
    return {}


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds / 60:g}m" if seconds >= 60 else f"{seconds:g}s"


def _transition_event(new: str, fields: Mapping[str, Any]) -> Event:
    if new == "COMPLETE":
        return Event("Normal", "Complete", f"export complete: {fields.get('totalExtractedDataInGB', 0)} GB extracted")
    if new == "FAILED":
        return Event("Warning", "Failed", f"export failed: {fields.get('failureCause', 'no cause given')}")
    if new == "CANCELED":
        return Event("Normal", "Canceled", "export canceled")
    return Event("Normal", new.title().replace("_", ""), f"export is {new}")
