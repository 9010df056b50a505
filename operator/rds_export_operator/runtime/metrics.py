"""Prometheus series, served on their own port from process start (standby replicas report too)."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rds_export_operator.aws.errors import THROTTLING_CODES


class ExportTracker(Collector):
    """Last known status of every object the operator sees, for the per-status and queue gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, str] = {}
        self.queue_length: Callable[[], int] = lambda: 0  # objects that really wait for a slot (the slots' truth)

    def observe(self, uid: str, status: str | None, *, deleted: bool = False) -> None:
        with self._lock:
            if deleted:
                self._status.pop(uid, None)
            else:
                self._status[uid] = status or "PENDING"

    def counts(self) -> Tally[str]:
        with self._lock:
            return Tally(self._status.values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.counts()
        by_status = GaugeMetricFamily("rds_export_tasks", "RdsExportTask objects by export status", labels=["status"])
        for status, count in sorted(counts.items()):
            by_status.add_metric([status], count)
        yield by_status
        yield GaugeMetricFamily(
            "rds_export_queue_length", "Exports waiting for a free AWS export slot", value=self.queue_length()
        )


class TableTracker(Collector):
    """The table reports in the objects' status, summed by outcome: ``rds_export_tables{outcome}``.

    A gauge fed from status, not a counter of reads: it is right after a restart (every object's status is seen
    again) and forgets deleted objects; ``outcome`` has three values, no per-object labels."""

    OUTCOMES = ("complete", "failed", "skipped")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, tuple[int, int, int]] = {}

    def observe(self, uid: str, tables: object, *, deleted: bool = False) -> None:
        counts = (
            tuple(_count(tables.get(o)) for o in self.OUTCOMES) if isinstance(tables, Mapping) and not deleted else None
        )
        with self._lock:
            if counts is None:
                self._tables.pop(uid, None)
            else:
                self._tables[uid] = (counts[0], counts[1], counts[2])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            sums = [sum(c[i] for c in self._tables.values()) for i in range(len(self.OUTCOMES))]
        family = GaugeMetricFamily(
            "rds_export_tables", "Tables in the table reports of RdsExportTask objects, by outcome", labels=["outcome"]
        )
        for outcome, total in zip(self.OUTCOMES, sums, strict=True):
            family.add_metric([outcome], total)
        yield family


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.tracker = ExportTracker()
        self.registry.register(self.tracker)
        self.tables = TableTracker()
        self.registry.register(self.tables)
        self.aws_calls = Counter(
            "rds_export_aws_calls", "AWS API calls", ["operation", "outcome"], registry=self.registry
        )
        self.throttles = Counter(
            "rds_export_aws_throttles", "AWS throttling errors", ["operation"], registry=self.registry
        )
        self.aws_latency = Histogram(
            "rds_export_aws_call_duration_seconds",
            "Duration of AWS API calls (polls are DescribeExportTasks)",
            ["operation"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.leader = Gauge(
            "rds_export_leader",
            "1 while this replica reconciles (the leader, or the only replica), 0 while it waits as a standby",
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "rds_export_reconcile_errors",
            "Reconciles that ended in an error, by reason",
            ["reason"],
            registry=self.registry,
        )

        self.catalog_tables = Counter(
            "rds_export_catalog_tables",
            "Glue tables handled by catalog registration, by outcome (created, adopted, repointed, left_out)",
            ["outcome"],
            registry=self.registry,
        )

    def observe_call(self, operation: str, outcome: str, seconds: float) -> None:
        self.aws_calls.labels(operation, outcome).inc()
        self.aws_latency.labels(operation).observe(seconds)
        if outcome in THROTTLING_CODES:
            self.throttles.labels(operation).inc()

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
