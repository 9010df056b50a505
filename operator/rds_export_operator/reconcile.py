"""The decisions: start, adopt, queue, poll, cancel, report. Plain Python, testable without Kubernetes.

Each function takes the typed spec, the object's last known status and an AWS gateway, makes at most the AWS
calls the decision needs, and returns a Result: the desired status fields, the Events to post, and when to
look again if that must differ from the normal poll interval.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rds_export_operator import status as st
from rds_export_operator.rds import AwsError, ErrorKind, ExportTask
from rds_export_operator.settings import Settings
from rds_export_operator.spec import ExportSpec

PROGRESS_MILESTONES = (25, 50, 75)


class RdsApi(Protocol):
    def start(self, spec: ExportSpec) -> ExportTask: ...
    def describe(self, region: str, identifier: str) -> ExportTask | None: ...
    def cancel(self, region: str, identifier: str) -> ExportTask: ...


class Slots(Protocol):
    """Who may start an export now (AWS allows 5 running per account), and what is known without a call."""

    def peek(self, region: str, identifier: str) -> ExportTask | None: ...
    def may_start(self, region: str, uid: str, created: str) -> bool: ...
    def forget(self, uid: str) -> None: ...
    def limit_reached(self, region: str) -> None: ...


class Unlimited:
    """No queue of our own: StartExportTask is tried and ExportTaskLimitReachedFault says when to wait."""

    def peek(self, region: str, identifier: str) -> ExportTask | None:
        return None

    def may_start(self, region: str, uid: str, created: str) -> bool:
        return True

    def forget(self, uid: str) -> None:
        pass

    def limit_reached(self, region: str) -> None:
        pass


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


def backoff(settings: Settings, attempt: int, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter over the upper half: base*2^attempt, at most max."""
    ceiling = min(settings.retry_max_delay, settings.retry_base_delay * 2 ** min(attempt, 20))
    return (rng or random).uniform(ceiling / 2, ceiling)


def has_task(status: Mapping[str, Any]) -> bool:
    """Whether the operator has seen an AWS task for this object (rather than nothing yet, or a queue slot)."""
    return status.get("status") not in (None, "", st.QUEUED)


class Reconciler:
    def __init__(
        self, rds: RdsApi, settings: Settings, rng: random.Random | None = None, slots: Slots | None = None
    ) -> None:
        self.rds, self.settings, self.rng = rds, settings, rng or random.Random()
        self.slots: Slots = slots or Unlimited()
        # Objects whose task we started or adopted but whose status may not show it yet (a tick can run on a
        # body older than our own write): describe those, never start again. Dropped once status shows the task.
        self._started: set[str] = set()

    def forget(self, uid: str) -> None:
        self.slots.forget(uid)
        self._started.discard(uid)

    # -- the periodic sync: create path, adoption, queue, polling ------------------------------------------------

    def sync(
        self, spec: ExportSpec, status: Mapping[str, Any], *, attempt: int = 0, uid: str = "", created: str = ""
    ) -> Result:
        """``uid`` and ``created`` (creationTimestamp) place the object in the export queue, oldest first."""
        result = Result()
        try:
            if spec.creates and not has_task(status) and uid not in self._started:
                task = self._start_or_adopt(spec, status, result, uid=uid, created=created)
                if task is not None and uid:
                    self._started.add(uid)
            else:
                task = self.rds.describe(spec.region, spec.identifier)
                if task is None:
                    return self._missing(spec, status, result)
        except AwsError as error:
            return self._aws_error(error, status, result, attempt=attempt)
        if task is None:  # queued
            return result
        self._report(task, status, result)
        return result

    def _start_or_adopt(
        self, spec: ExportSpec, status: Mapping[str, Any], result: Result, *, uid: str, created: str
    ) -> ExportTask | None:
        known = self.slots.peek(spec.region, spec.identifier)
        if known is not None:  # already running (we crashed after starting it?): adopt without a call
            return self._adopt(spec, known, result, uid)
        if not self.slots.may_start(spec.region, uid, created):
            self._queue(status, result, "all export slots are taken; oldest waiting exports start first")
            return None
        try:
            task = self.rds.start(spec)
        except AwsError as error:
            if error.kind is ErrorKind.LIMIT_REACHED:
                self.slots.limit_reached(spec.region)
                self._queue(status, result, error.message)
                return None
            if error.kind is not ErrorKind.ALREADY_EXISTS:
                self.slots.forget(uid)
                raise
            existing = self.rds.describe(spec.region, spec.identifier)
            if existing is None:  # gone between the two calls: look again soon, never guess
                raise AwsError(ErrorKind.RETRYABLE, "ExportTaskAlreadyExists", error.message, error.operation) from None
            return self._adopt(spec, existing, result, uid)
        self.slots.forget(uid)
        result.events.append(Event("Normal", "Started", f"started export task {spec.identifier}"))
        return task

    def _adopt(self, spec: ExportSpec, existing: ExportTask, result: Result, uid: str) -> ExportTask:
        self.slots.forget(uid)
        if existing.get("SourceArn") != spec.source_arn:
            raise AwsError(
                ErrorKind.TERMINAL,
                "IdentifierInUse",
                f"export task {spec.identifier} already exists for another source "
                f"({existing.get('SourceArn')}); choose another exportTaskIdentifier",
                "StartExportTask",
            )
        result.events.append(Event("Normal", "Adopted", f"adopted existing export task {spec.identifier}"))
        return existing

    def _queue(self, status: Mapping[str, Any], result: Result, message: str) -> None:
        result.status["status"] = st.QUEUED
        result.status["conditions"] = [
            *st.outcome_conditions(st.QUEUED),
            st.Condition(st.SYNCED, "True", "ExportLimitReached", f"waiting for a free export slot: {message}"),
        ]
        if status.get("status") != st.QUEUED:
            result.events.append(Event("Normal", "Queued", "AWS export limit reached; the export waits for a slot"))

    def _report(self, task: ExportTask, status: Mapping[str, Any], result: Result) -> None:
        fields = st.task_fields(task)
        new, old = fields["status"], status.get("status")
        result.status.update(fields)
        result.status["conditions"] = [
            *st.outcome_conditions(new, fields.get("failureCause", "")),
            st.Condition(st.SYNCED, "True", "Synced", ""),
        ]
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
        result.status["conditions"] = [st.Condition(st.SYNCED, "False", "ExportTaskNotFound", message)]
        if _synced_reason(status) != "ExportTaskNotFound":
            result.events.append(Event("Warning", "ExportTaskNotFound", message))
        return result

    def _aws_error(self, error: AwsError, status: Mapping[str, Any], result: Result, *, attempt: int) -> Result:
        message = f"{error.operation}: {error.message}" if error.message else error.operation
        if error.kind is ErrorKind.TERMINAL:
            result.status["conditions"] = [
                st.Condition(st.COMPLETE, "False", error.code),
                st.Condition(st.FAILED, "True", error.code, message),
                st.Condition(st.SYNCED, "False", error.code, message),
            ]
            result.events.append(Event("Warning", error.code, message))
            return result
        result.status["conditions"] = [st.Condition(st.SYNCED, "False", error.code, message)]
        if _synced_reason(status) != error.code:
            result.events.append(Event("Warning", error.code, f"{message}; retrying with backoff"))
        result.retry_after = backoff(self.settings, attempt, self.rng)
        return result

    # -- deletion ---------------------------------------------------------------------------------------------

    def cancel(self, spec: ExportSpec, status: Mapping[str, Any], *, attempt: int = 0) -> Result:
        """Cancel a running export and wait until AWS reports it finished; ``done`` lets the object go."""
        result = Result()
        try:
            if status.get("status") == "CANCELING":
                task = self.rds.describe(spec.region, spec.identifier)
            else:
                task = self.rds.cancel(spec.region, spec.identifier)
                result.events.append(Event("Normal", "Canceling", f"canceling export task {spec.identifier}"))
        except AwsError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                result.done = True  # never started (queued) or no longer known: nothing to cancel
                return result
            if error.kind is ErrorKind.INVALID_STATE:
                # Not cancelable: it finished, or a cancel is under way (we may have crashed after asking).
                try:
                    task = self.rds.describe(spec.region, spec.identifier)
                except AwsError:
                    result.retry_after = backoff(self.settings, attempt, self.rng)
                    return result
                if task is not None and st.normalize_status(task.get("Status")) in ("COMPLETE", "FAILED"):
                    result.events.append(Event("Normal", "AlreadyFinished", "export had already finished"))
            elif error.kind is ErrorKind.TERMINAL:  # e.g. AccessDenied: cancel can never succeed, say so, let go
                result.events.append(Event("Warning", error.code, f"could not cancel: {error.message}"))
                result.done = True
                return result
            else:
                result.events.append(Event("Warning", error.code, f"cancel failed, retrying: {error.message}"))
                result.retry_after = backoff(self.settings, attempt, self.rng)
                return result
        if task is None:
            result.done = True
            return result
        self._report(task, status, result)
        result.done = result.status["status"] in st.TERMINAL_STATUSES
        if not result.done:
            result.retry_after = self.settings.poll_interval
        return result


def _synced_reason(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == st.SYNCED:
            return str(cond.get("reason"))
    return None


def _transition_event(new: str, fields: Mapping[str, Any]) -> Event:
    if new == "COMPLETE":
        return Event("Normal", "Complete", f"export complete: {fields.get('totalExtractedDataInGB', 0)} GB extracted")
    if new == "FAILED":
        return Event("Warning", "Failed", f"export failed: {fields.get('failureCause', 'no cause given')}")
    if new == "CANCELED":
        return Event("Normal", "Canceled", "export canceled")
    return Event("Normal", new.title().replace("_", ""), f"export is {new}")
