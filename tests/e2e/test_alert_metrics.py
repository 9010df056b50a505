"""The chart's PrometheusRule asks only for series a running operator really serves: a renamed metric or label
breaks this test, not the alert."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from constants import PLURAL as KIND
from e2e.conftest import OperatorFactory, export_task, status_is
from helmchart import helm_runner, only, renderer
from localdev.controlplane import ControlPlane, free_port
from localdev.kube import Kubectl
from localdev.standin.server import StandInServer
from localdev.waiting import wait_until

# Labels Prometheus adds when it scrapes (target labels), not served on /metrics.
TARGET_LABELS = {"job", "namespace", "instance", "pod", "service", "endpoint", "container"}

SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")
PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

# A label with the value it must have on some served series, or None when any value will do.
Label = tuple[str, str | None]


def served_series(text: str) -> dict[str, set[tuple[str, str]]]:
    """Sample name -> the (label, value) pairs seen on its samples, from the Prometheus text format."""
    series: dict[str, set[tuple[str, str]]] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            series.setdefault(match[1], set()).update(PAIR.findall(match[2] or ""))
    return series


def used_series(expr: str) -> dict[str, set[Label]]:
    """Metric name -> the labels an expression relies on, target labels left out: ``=`` and ``!=`` matchers need
    their value to exist (``outcome!="Success"`` means nothing if no outcome is "Success"), regex matchers and
    by/without labels only the label."""
    grouped: set[Label] = {(g.strip(), None) for group in GROUPING.findall(expr) for g in group.split(",") if g.strip()}
    used: dict[str, set[Label]] = {}
    for name, matchers in SELECTOR.findall(expr):
        exact = {(label, value if op in ("=", "!=") else None) for label, op, value in MATCHER.findall(matchers)}
        used.setdefault(name, set()).update(exact | grouped)
    return {name: {(k, v) for k, v in labels if k not in TARGET_LABELS} for name, labels in used.items()}


def unserved(used: set[Label], served: set[tuple[str, str]]) -> list[str]:
    names = {label for label, _ in served}
    return [
        f"{k}={v!r}" if v is not None else k
        for k, v in sorted(used, key=str)
        if k not in names or (v is not None and (k, v) not in served)
    ]


def test_selectors_are_parsed_as_promql_reads_them() -> None:
    expr = (
        'sum by (operation, outcome) (rate(m_total{outcome!="Success", status=~"F.*", job="j"}[5m])) > 0 or vector(0)'
    )
    assert used_series(expr) == {
        "m_total": {("outcome", "Success"), ("outcome", None), ("operation", None), ("status", None)}
    }
    text = '# TYPE m counter\nm_total{operation="A",outcome="Success"} 1.0\nq 0.0\n'
    served = served_series(text)
    assert served == {"m_total": {("operation", "A"), ("outcome", "Success")}, "q": set()}
    assert unserved(used_series(expr)["m_total"], served["m_total"]) == ["status"]
    assert unserved({("outcome", "Failure")}, served["m_total"]) == ["outcome='Failure'"]


@pytest.fixture
def rule_exprs(control_plane: ControlPlane, tmp_path: Path) -> dict[str, str]:
    render = renderer(helm_runner(control_plane.helm, control_plane.env(), tmp_path / "helm-home"))
    rule = only(render("--set", "prometheusRule.enabled=true"), "PrometheusRule")
    return {r["alert"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]}


def test_every_series_the_alerts_use_is_served_by_a_running_operator(
    kubectl: Kubectl,
    namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
    rule_exprs: dict[str, str],
) -> None:
    port = free_port()
    operator_factory(f"--metrics-port={port}")
    # One export whose poll is throttled, then fails: the labelled series (calls, throttles, tasks) exist.
    kubectl.apply(export_task("alerting", snapshot_arn), "-n", namespace)
    obj = kubectl.wait_for(KIND, "alerting", namespace, status_is("STARTING"), timeout=30, what="STARTING")
    aws.standin.inject("DescribeExportTasks", times=2)  # botocore retries one throttle by itself
    aws.standin.set_task(obj["status"]["exportTaskIdentifier"], status="FAILED", failure_cause="S3 access denied")
    kubectl.wait_for(KIND, "alerting", namespace, status_is("FAILED"), timeout=30, what="FAILED")

    def scrape() -> dict[str, set[tuple[str, str]]] | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            series = served_series(response.read().decode())
        failed = ("status", "FAILED") in series.get("rds_export_tasks", set())
        return series if failed and "rds_export_aws_throttles_total" in series else None

    served = wait_until(scrape, timeout=15, what="the throttled and failed export in the metrics")
    assert set(rule_exprs) >= {"RdsExportFailed", "RdsExportQueued", "RdsExportNoLeader"}
    missing: list[str] = []
    for alert, expr in rule_exprs.items():
        used = used_series(expr)
        assert used, f"{alert} selects no series: {expr}"
        for name, labels in used.items():
            if name not in served:
                missing.append(f"{alert}: {name} is not served")
            elif gaps := unserved(labels, served[name]):
                missing.append(f"{alert}: {name} is not served with {gaps}")
    assert not missing, "\n".join(missing)
