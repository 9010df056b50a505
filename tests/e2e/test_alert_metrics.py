"""The chart's PrometheusRule asks only for series a running operator really serves: a renamed metric or label
breaks this test, not the alert."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.conftest import export_task, status_is
from helmchart import helm_runner, only, renderer
from localdev.aws_standin import StandInServer
from localdev.controlplane import ControlPlane, free_port
from localdev.kube import Kubectl
from localdev.stack import OperatorProcess
from localdev.waiting import wait_until

KIND = "rdsexporttasks"
# Labels Prometheus adds when it scrapes (target labels), not served on /metrics.
TARGET_LABELS = {"job", "namespace", "instance", "pod", "service", "endpoint", "container"}
# Names the rule uses before the operator serves them. Each must be missing today (checked below), so the entry
# has to go once the series exists: rds_export_leader (1 on the replica holding the Lease) is still to be added.
NOT_YET_SERVED = {"rds_export_leader"}

SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")


def served_series(text: str) -> dict[str, set[str]]:
    """Sample name -> the label names seen on its samples, from the Prometheus text format."""
    series: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match[2] or "")
            series.setdefault(match[1], set()).update(labels)
    return series


def used_series(expr: str) -> dict[str, set[str]]:
    """Metric name -> label names an expression needs (matchers, and by/without labels), target labels left out."""
    grouped = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    used: dict[str, set[str]] = {}
    for name, matchers in SELECTOR.findall(expr):
        used.setdefault(name, set()).update(set(MATCHER.findall(matchers)) | grouped)
    return {name: labels - TARGET_LABELS for name, labels in used.items()}


def test_selectors_are_parsed_as_promql_reads_them() -> None:
    expr = 'sum by (operation, outcome) (rate(m_total{outcome!="Success", job="j"}[5m])) > 0 or vector(0)'
    assert used_series(expr) == {"m_total": {"outcome", "operation"}}
    text = '# TYPE m counter\nm_total{operation="A",outcome="B"} 1.0\nq 0.0\n'
    assert served_series(text) == {"m_total": {"operation", "outcome"}, "q": set()}


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
    operator_factory: Callable[..., OperatorProcess],
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

    def scrape() -> dict[str, set[str]] | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            series = served_series(response.read().decode())
        return series if "rds_export_aws_throttles_total" in series and "rds_export_tasks" in series else None

    served = wait_until(scrape, timeout=15, what="the throttled and failed export in the metrics")
    assert set(rule_exprs) >= {"RdsExportFailed", "RdsExportQueued", "RdsExportNoLeader"}
    missing: list[str] = []
    for alert, expr in rule_exprs.items():
        used = used_series(expr)
        assert used, f"{alert} selects no series: {expr}"
        for name, labels in used.items():
            if name in NOT_YET_SERVED:
                continue
            if name not in served:
                missing.append(f"{alert}: {name} is not served")
            elif not labels <= served[name]:
                missing.append(f"{alert}: {name} has no label(s) {sorted(labels - served[name])}")
    assert not missing, "\n".join(missing)
    # The exceptions are real and used: once the operator serves a name, remove it from NOT_YET_SERVED.
    used_anywhere = {name for expr in rule_exprs.values() for name in used_series(expr)}
    assert used_anywhere >= NOT_YET_SERVED
    assert not NOT_YET_SERVED & set(served), f"served now, drop from NOT_YET_SERVED: {NOT_YET_SERVED & set(served)}"
