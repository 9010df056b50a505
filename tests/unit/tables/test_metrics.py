"""metrics.py: rds_export_tables{outcome}, a gauge summed from the objects' status (bounded labels)."""

from __future__ import annotations

from prometheus_client import generate_latest

from rds_export_operator.runtime.metrics import Metrics


def value(metrics: Metrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value("rds_export_tables", {"outcome": outcome})


def test_tables_gauge_sums_status_and_forgets_deleted_objects() -> None:
    m = Metrics()
    assert [value(m, o) for o in ("complete", "failed", "skipped")] == [0, 0, 0]
    m.tables.observe("a", {"total": 120, "complete": 118, "failed": 1, "skipped": 1})
    m.tables.observe("b", {"total": 3, "complete": 3, "failed": 0, "skipped": 0})
    m.tables.observe("c", None)  # no report (yet)
    assert [value(m, o) for o in ("complete", "failed", "skipped")] == [121, 1, 1]
    m.tables.observe("a", {"total": 120, "complete": 120, "failed": 0, "skipped": 0})  # read again
    assert value(m, "failed") == 0 and value(m, "complete") == 123
    m.tables.observe("b", {"complete": 3}, deleted=True)
    assert value(m, "complete") == 120


def test_tables_gauge_ignores_nonsense_and_has_no_per_object_labels() -> None:
    m = Metrics()
    m.tables.observe("a", {"complete": "many", "failed": -3, "skipped": True})
    m.tables.observe("b", ["not", "a", "mapping"])
    assert [value(m, o) for o in ("complete", "failed", "skipped")] == [0, 0, 0]
    text = generate_latest(m.registry).decode()
    lines = [line for line in text.splitlines() if line.startswith("rds_export_tables{")]
    assert sorted(lines) == [
        'rds_export_tables{outcome="complete"} 0.0',
        'rds_export_tables{outcome="failed"} 0.0',
        'rds_export_tables{outcome="skipped"} 0.0',
    ]
