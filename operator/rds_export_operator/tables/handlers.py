"""kopf wiring of the table report: one timer for finished exports whose report is not final yet.

The ``when=`` filter stops the timer once ``TablesComplete`` is final (kopf stops timers whose filter no longer
matches), and the timer never holds a finalizer: deleting a finished object must not wait for S3. The handler is
sync, so the blocking S3 reads run in kopf's thread pool. It writes only the report's own status fields and the
``TablesComplete`` condition (merged by type), never Complete or Failed.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from rds_export_operator.api import status as st
from rds_export_operator.api.spec import SpecError, parse_object_spec
from rds_export_operator.aws.identity import Identities
from rds_export_operator.exports.ownership import OWNED
from rds_export_operator.exports.reconcile import Event, Result
from rds_export_operator.runtime import events, spawning
from rds_export_operator.runtime.settings import Settings
from rds_export_operator.tables.report import (
    TABLES_COMPLETE,
    Reader,
    ReportPolicy,
    TableReporter,
    target_of,
    wants_report,
)

logger = logging.getLogger(__name__)
KEEP_WRITTEN = 3600.0  # seconds
QUICK_REPORT_BYTES = 1024**2  # table files read with a first look: about 170 tables of 6 KB of schema each


def needs_report(spec: Mapping[str, Any], status: Mapping[str, Any], body: kopf.Body, **_: Any) -> bool:
    # Only an export the namespace started or adopted: an Observe of another tenant's task reads none of its files.
    owned = status.get("ownership") in OWNED
    return owned and wants_report(spec, status, body.metadata.get("generation"))


class TableReportHandlers:
    def __init__(self, config: Settings, s3: Reader, identities: Identities | None = None) -> None:
        """``identities``: per-namespace AWS identities (the ones the namespace's exports use), when mapped."""
        self.config = config
        policy = ReportPolicy(
            wait=config.table_report_wait, base_delay=config.retry_base_delay, max_delay=config.retry_max_delay
        )
        resolve = identities.resolve if identities else None
        self.reporter = TableReporter(s3, policy, identity=resolve)
        # With a first look, only a report small enough to read at once (the look's worker waits on it): a larger
        # one is refused before any download, and its timer reads it.
        self.quick = TableReporter(s3, replace(policy, max_total_bytes=QUICK_REPORT_BYTES), identity=resolve)
        self.rng = random.Random()
        # uid -> (generation, when) of a report this process wrote final. kopf stops the timer only once the
        # watch event of that write is processed, which under load (thousands of objects adopted at once) can
        # take minutes: a tick before that must not read S3 again. Kept an hour (KEEP_WRITTEN), longer than
        # kopf's queue has been seen behind; about 150 bytes per export finished in that hour.
        self._written: dict[str, tuple[int | None, float]] = {}
        self._lock = threading.Lock()
        self._prune_above = 1000
        self.clock = time.monotonic

    def register(self, registry: kopf.OperatorRegistry) -> None:
        # A read that is not final retries after its own delay (a TemporaryError), so the interval paces only the
        # ticks after a final report: they read nothing (``_written``) and wait for kopf to stop the timer, which
        # takes minutes when 1,000s of objects are adopted at once, and each tick costs kopf an invocation (31x
        # the timers' CPU at 10,000 objects against 1,000 when they ticked every poll interval). The price: a spec
        # edit that kopf sees before it has stopped the timer (only while it is that far behind) is read at the
        # next tick, up to 10 intervals later; otherwise the edit starts a new timer at once.
        interval = 10 * self.config.poll_interval  # no finalizer: see spawning.py
        registry._spawning.append(
            spawning.timer(self.report, "tables", when=needs_report, initial_delay=self.first_delay, interval=interval)
        )

    def first_delay(self, **_: Any) -> float:
        # After a restart many reports may be pending: spread their first reads.
        return self.rng.uniform(0, min(self.config.tick_interval, 1.0))

    def report(self, body: kopf.Body, status: kopf.Status, patch: kopf.Patch, retry: int = 0, **_: Any) -> None:
        decided = self.decide(body, patch, retry)
        if decided is None:
            return
        result, generation = decided
        events.post(body, result.events, logger)
        if result.retry_after is None:  # kopf applies the patch
            self._remember(body.metadata.uid or "", generation)
        else:
            cond = result.status["conditions"][0]
            raise kopf.TemporaryError(f"table report: {cond.reason}: {cond.message}", delay=result.retry_after)

    def decide(
        self, body: kopf.Body, patch: kopf.Patch, retry: int = 0, reporter: TableReporter | None = None
    ) -> tuple[Result, int | None] | None:
        """Read the report and put its status in ``patch`` (blocking: S3), with the generation of the spec it read.
        None: already written final for this generation. The caller posts its Events and remembers a final one."""
        written = self._written.get(body.metadata.uid or "")
        if written is not None and written[0] == body.metadata.get("generation"):
            return None
        # kopf replaces a timer's body in place as watch events arrive: decide on one version of it, or an edit
        # during the S3 reads would stamp the old spec's report as the new generation's.
        body = kopf.Body(cast(kopf.RawBody, copy.deepcopy(dict(body))))
        status, meta = body.status, body.metadata
        try:
            spec = parse_object_spec(body.spec, meta, self.config.default_region)
        except SpecError as exc:  # the sync handler has said why; make the report final so the timer stops
            result = _final_unknown("InvalidSpec", str(exc))
        else:
            target = target_of(
                body.spec, status, region=spec.region, identifier=spec.identifier, namespace=spec.namespace
            )
            if target is None:
                result = _final_unknown("NoBucket", "neither status nor spec names the export's bucket")
            else:
                result = (reporter or self.reporter).report(target, status, attempt=retry)
        self._apply(result, body, patch)
        return result, meta.get("generation")

    def with_first_look(
        self, body: kopf.Body, look: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[Event], Callable[[], None]] | None:
        """The report of an export its first look found finished (``look``: the status that look writes), if it
        is final now (blocking: S3): the status fields to add to that look's write, so that one write carries
        both; its Events; what to call once the write is stored (its timer must not read it again). None: a report
        that must wait (files not there yet) or is too large to read at once: its timer reads it, which the
        write's watch event starts."""
        raw = copy.deepcopy(dict(body))
        status = raw.setdefault("status", {})
        for key, value in look.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = copy.deepcopy(value)
        merged = kopf.Body(cast(kopf.RawBody, raw))
        if not needs_report(merged.spec, merged.status, merged):
            return None
        report = kopf.Patch()
        decided = self.decide(merged, report, 0, self.quick)
        if decided is None or decided[0].retry_after is not None or _reason(decided[0]) == "TooLarge":
            return None
        result, generation = decided
        uid = body.metadata.uid or ""
        # Its conditions are the merged list (the look's and its own).
        return dict(report.status), result.events, lambda: self._remember(uid, generation)

    def _remember(self, uid: str, generation: int | None) -> None:
        now = self.clock()
        with self._lock:  # kopf's threads (the timer) and the first looks' (with_first_look) both write here
            if len(self._written) > self._prune_above:  # amortised: the bound doubles with what stays
                self._written = {u: w for u, w in self._written.items() if now - w[1] < KEEP_WRITTEN}
                self._prune_above = max(1000, 2 * len(self._written))
            self._written[uid] = (generation, now)

    def _apply(self, result: Result, body: kopf.Body, patch: kopf.Patch) -> None:
        current = body.status
        now = datetime.now(UTC)
        desired = dict(result.status)
        desired["conditions"] = st.merge_conditions(
            current.get("conditions"), desired["conditions"], now=now, generation=body.metadata.get("generation")
        )
        desired["lastUpdateTime"] = st.rfc3339(now)
        for key, value in st.status_patch(current, desired).items():
            patch.status[key] = value


def _reason(result: Result) -> str:
    conditions = result.status.get("conditions") or []
    return str(conditions[0].reason) if conditions else ""


def _final_unknown(reason: str, message: str) -> Result:
    result = Result()
    result.status["tablesPendingSince"] = None
    result.status["conditions"] = [st.Condition(TABLES_COMPLETE, "Unknown", reason, message)]
    return result
