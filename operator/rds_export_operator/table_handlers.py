"""kopf wiring of the table report: one timer for finished exports whose report is not final yet.

The ``when=`` filter stops the timer once ``TablesComplete`` is final (kopf stops timers whose filter no longer
matches), and the timer never holds a finalizer: deleting a finished object must not wait for S3. The handler is
sync, so the blocking S3 reads run in kopf's thread pool. It writes only the report's own status fields and the
``TablesComplete`` condition (merged by type), never Complete or Failed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kopf._cogs.structs.ids import HandlerId
from kopf._cogs.structs.references import Selector
from kopf._core.intents.handlers import TimerHandler

from rds_export_operator import status as st
from rds_export_operator.identity import Identities
from rds_export_operator.reconcile import Result
from rds_export_operator.resources import GROUP, PLURAL, VERSION
from rds_export_operator.settings import Settings
from rds_export_operator.spec import SpecError, parse_spec
from rds_export_operator.table_report import (
    TABLES_COMPLETE,
    Reader,
    ReportPolicy,
    TableReporter,
    target_of,
    wants_report,
)

logger = logging.getLogger(__name__)


def needs_report(spec: Mapping[str, Any], status: Mapping[str, Any], body: kopf.Body, **_: Any) -> bool:
    return wants_report(spec, status, body.metadata.get("generation"))


class TableReportHandlers:
    def __init__(self, config: Settings, s3: Reader, identities: Identities | None = None) -> None:
        """``identities``: per-namespace AWS identities (the ones the namespace's exports use), when mapped."""
        self.config = config
        self.reporter = TableReporter(
            s3,
            ReportPolicy(
                wait=config.table_report_wait,
                base_delay=config.retry_base_delay,
                max_delay=config.retry_max_delay,
            ),
            identity=identities.resolve if identities else None,
        )
        self.rng = random.Random()

    def register(self, registry: kopf.OperatorRegistry) -> None:
        # Built directly, as the sync timer is: kopf.timer would add a finalizer.
        registry._spawning.append(
            TimerHandler(
                fn=self.report,
                id=HandlerId("tables"),
                param=None,
                errors=None,
                timeout=None,
                retries=None,
                backoff=None,
                selector=Selector(GROUP, VERSION, PLURAL),
                labels=None,
                annotations=None,
                when=needs_report,
                field=None,
                value=None,
                initial_delay=self.first_delay,
                requires_finalizer=False,
                sharp=None,
                idle=None,
                interval=self.config.poll_interval,
            )
        )

    def first_delay(self, **_: Any) -> float:
        # After a restart many reports may be pending: spread their first reads.
        return self.rng.uniform(0, min(self.config.tick_interval, 1.0))

    def report(self, body: kopf.Body, status: kopf.Status, patch: kopf.Patch, retry: int = 0, **_: Any) -> None:
        meta = body.metadata
        try:
            spec = parse_spec(
                body.spec,
                namespace=meta.namespace or "",
                name=meta.name or "",
                uid=meta.uid or "",
                default_region=self.config.default_region,
            )
        except SpecError as exc:  # the sync handler has said why; make the report final so the timer stops
            self._apply(_final_unknown("InvalidSpec", str(exc)), body, patch)
            return
        target = target_of(body.spec, status, region=spec.region, identifier=spec.identifier, namespace=spec.namespace)
        if target is None:
            self._apply(_final_unknown("NoBucket", "neither status nor spec names the export's bucket"), body, patch)
            return
        result = self.reporter.report(target, status, attempt=retry)
        self._apply(result, body, patch)
        if result.retry_after is not None:
            cond = result.status["conditions"][0]
            raise kopf.TemporaryError(f"table report: {cond.reason}: {cond.message}", delay=result.retry_after)

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
        for event in result.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            logger.info("%s/%s: %s: %s", body.metadata.namespace, body.metadata.name, event.reason, event.message)


def _final_unknown(reason: str, message: str) -> Result:
    result = Result()
    result.status["tablesPendingSince"] = None
    result.status["conditions"] = [st.Condition(TABLES_COMPLETE, "Unknown", reason, message)]
    return result
