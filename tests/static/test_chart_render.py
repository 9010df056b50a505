"""The Helm chart without a cluster: lint, rendering, schema and README. Installs are in tests/cluster."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmchart import (
    CHART,
    CRD_LINK,
    CRD_SOURCE,
    OPERATOR_RULES,
    SCHEMA_ERROR,
    Helm,
    Render,
    container,
    env_of,
    leader_election_rules,
    not_identities,
    of_kind,
    only,
)
from rds_export_operator.aws.tenancy import GRANT_KEYS, Grant, Tenancy

SCHEDULE_CRD_SOURCE = CRD_SOURCE.parent / "rdsexportschedules.rdsexport.dev.yaml"
SCHEDULE_CRD_LINK = CRD_LINK.parent / "rdsexportschedules.rdsexport.dev.yaml"

# --- the CRD is a symlink to the one source ----------------------------------------------------------------------


def test_chart_crd_is_a_relative_symlink_to_the_one_crd_source() -> None:
    assert CRD_LINK.is_symlink()
    assert str(CRD_LINK.readlink()) == "../../../crds/rdsexporttasks.rdsexport.dev.yaml"
    assert CRD_LINK.resolve() == CRD_SOURCE.resolve()
    assert str(SCHEDULE_CRD_LINK.readlink()) == "../../../crds/rdsexportschedules.rdsexport.dev.yaml"
    assert SCHEDULE_CRD_LINK.resolve() == SCHEDULE_CRD_SOURCE.resolve()


def test_helm_follows_the_crd_symlink_in_template_and_package(helm: Helm, tmp_path: Path) -> None:
    done = helm("template", "r1", str(CHART), "--include-crds")
    assert done.returncode == 0, done.stderr
    assert "symbolic link" in done.stderr  # Helm 4 says so (level=INFO) and includes the linked file's contents
    crds = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "CustomResourceDefinition"]
    by_name = {d["metadata"]["name"]: d for d in crds}
    assert len(crds) == 2
    assert by_name["rdsexporttasks.rdsexport.dev"] == yaml.safe_load(CRD_SOURCE.read_text())
    assert by_name["rdsexportschedules.rdsexport.dev"] == yaml.safe_load(SCHEDULE_CRD_SOURCE.read_text())

    done = helm("package", str(CHART), "--destination", str(tmp_path))
    assert done.returncode == 0, done.stderr
    with tarfile.open(tmp_path / "rds-export-operator-0.1.0.tgz") as tgz:
        member = tgz.getmember("rds-export-operator/crds/rdsexporttasks.rdsexport.dev.yaml")
        assert member.isfile()  # the package holds the file itself, not a link
        packaged = tgz.extractfile(member)
        assert packaged is not None
        assert packaged.read() == CRD_SOURCE.read_bytes()
        schedules = tgz.extractfile("rds-export-operator/crds/rdsexportschedules.rdsexport.dev.yaml")
        assert schedules is not None and schedules.read() == SCHEDULE_CRD_SOURCE.read_bytes()


# --- lint ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--set", "watchNamespaces={team-a,team-b}"],
        ["--set", "replicas=2"],
        ["--set", "leaderElection.enabled=true,serviceMonitor.enabled=true,aws.region=eu-west-1"],
        ["--set", "replicas=2,networkPolicy.enabled=true,prometheusRule.enabled=true"],
    ],
    ids=["defaults", "namespaced", "replicas-2", "leader-election-servicemonitor", "networkpolicy-prometheusrule"],
)
def test_lint_strict(helm: Helm, args: list[str]) -> None:
    done = helm("lint", "--strict", str(CHART), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


# --- rendering -----------------------------------------------------------------------------------------------------


def test_defaults_render_a_locked_down_single_replica_operator(render: Render) -> None:
    docs = render()
    # no NetworkPolicy, ServiceMonitor or PrometheusRule by default
    assert sorted(d["kind"] for d in not_identities(docs)) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    deployment = only(docs, "Deployment")
    assert deployment["metadata"]["name"] == "r1-rds-export-operator"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "r1-rds-export-operator"
    assert pod["automountServiceAccountToken"] is True
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    for absent in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert absent not in pod

    c = container(docs)
    assert c["image"] == "ghcr.io/rds-export-operator/rds-export-operator:0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert "args" not in c
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["resources"] == {
        "requests": {"cpu": "50m", "memory": "256Mi", "ephemeral-storage": "64Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "256Mi"},
    }
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert c["ports"] == [
        {"name": "health", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert env_of(docs) == {
        "RDS_EXPORT_NAMESPACES": "",
        "RDS_EXPORT_POLL_INTERVAL": "30",
        "RDS_EXPORT_TABLE_REPORT": "true",
        "RDS_EXPORT_GLUE_CALLS_PER_SECOND": "10",
        "RDS_EXPORT_MAX_EXPORTS_PER_NAMESPACE": "0",
        "RDS_EXPORT_MAX_UNFINISHED_PER_NAMESPACE": "0",
        "RDS_EXPORT_OBSERVE_WAIT": "3600",
        "RDS_EXPORT_IDENTITIES_CONFIGMAP": "ops/r1-rds-export-operator-identities",
        "RDS_EXPORT_LOG_LEVEL": "INFO",
        "RDS_EXPORT_LOG_FORMAT": "json",
        "RDS_EXPORT_HEALTH_ENDPOINT": "http://0.0.0.0:8080/healthz",
        "RDS_EXPORT_METRICS_PORT": "9090",
        "RDS_EXPORT_LEADER_ELECTION": "false",
        "RDS_EXPORT_LEADER_ELECTION_NAMESPACE": "ops",
        "RDS_EXPORT_LEADER_ELECTION_NAME": "r1-rds-export-operator",
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }

    assert only(docs, "ClusterRole")["rules"] == OPERATOR_RULES
    binding = only(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "r1-rds-export-operator",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r1-rds-export-operator", "namespace": "ops"}]

    sa = only(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is True
    assert "annotations" not in sa["metadata"]

    service = only(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    for doc in docs:
        cluster_scoped = doc["kind"] in ("ClusterRole", "ClusterRoleBinding")
        assert doc["metadata"].get("namespace") == (None if cluster_scoped else "ops"), doc["metadata"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "r1"


def test_watch_namespaces_render_a_role_in_each_and_no_cluster_role(render: Render) -> None:
    docs = not_identities(render("--set", "watchNamespaces={team-a,team-b}"))
    assert not of_kind(docs, "ClusterRole")
    assert not of_kind(docs, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r for r in of_kind(docs, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(docs, "RoleBinding")}
    assert sorted(roles) == sorted(bindings) == ["team-a", "team-b"]  # no leader election Role at 1 replica
    for namespace in ("team-a", "team-b"):
        assert roles[namespace]["metadata"]["name"] == "r1-rds-export-operator"
        assert roles[namespace]["rules"] == OPERATOR_RULES
        assert bindings[namespace]["roleRef"]["kind"] == "Role"
        assert bindings[namespace]["roleRef"]["name"] == "r1-rds-export-operator"
        assert bindings[namespace]["subjects"] == [
            {"kind": "ServiceAccount", "name": "r1-rds-export-operator", "namespace": "ops"}
        ]
    assert env_of(docs)["RDS_EXPORT_NAMESPACES"] == "team-a,team-b"


def test_two_replicas_roll_with_leader_election_and_a_disruption_budget(render: Render) -> None:
    docs = not_identities(render("--set", "replicas=2"))
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = env_of(docs)
    assert env["RDS_EXPORT_LEADER_ELECTION"] == "true"
    assert env["RDS_EXPORT_LEADER_ELECTION_NAMESPACE"] == "ops"
    assert env["RDS_EXPORT_LEADER_ELECTION_NAME"] == "r1-rds-export-operator"
    role = only(docs, "Role")
    assert role["metadata"] == {
        **role["metadata"],
        "name": "r1-rds-export-operator-leader-election",
        "namespace": "ops",
    }
    assert role["rules"] == leader_election_rules("r1-rds-export-operator")
    binding = only(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == "r1-rds-export-operator-leader-election"
    assert binding["subjects"][0]["name"] == "r1-rds-export-operator"
    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert only(docs, "ClusterRole")["rules"] == OPERATOR_RULES


def test_leader_election_role_only_when_enabled(render: Render) -> None:
    assert not of_kind(not_identities(render()), "Role")
    docs = not_identities(render("--set", "leaderElection.enabled=true"))
    assert only(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert env_of(docs)["RDS_EXPORT_LEADER_ELECTION"] == "true"
    assert only(docs, "Role")["rules"] == leader_election_rules("r1-rds-export-operator")
    assert not of_kind(docs, "PodDisruptionBudget")  # pdb.enabled auto: only with more than one replica
    # Leader election and namespaced mode together: a Role per watched namespace plus the Lease Role.
    docs = not_identities(render("--set", "replicas=3,watchNamespaces={ops,team-a}"))
    names = sorted((r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(docs, "Role"))
    assert names == [
        ("ops", "r1-rds-export-operator"),
        ("ops", "r1-rds-export-operator-leader-election"),
        ("team-a", "r1-rds-export-operator"),
    ]
    # rbac.create=false: no RBAC object at all.
    docs = render("--set", "replicas=2,rbac.create=false")
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]


def test_disruption_budget_switches(render: Render) -> None:
    assert not of_kind(render("--set", "replicas=2,pdb.enabled=false"), "PodDisruptionBudget")
    assert only(render("--set", "pdb.enabled=true"), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    pdb = only(render("--set", "replicas=4", "--set-string", "pdb.maxUnavailable=50%"), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == "50%"


def test_values_reach_the_objects(render: Render, tmp_path: Path) -> None:
    values = {
        "fullnameOverride": "exports",
        "image": {"repository": "registry.example.com/rds-export-operator", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "pollInterval": 45,
        "logLevel": "DEBUG",
        "logFormat": "plain",
        "aws": {"region": "eu-west-1", "endpointUrl": "http://aws-standin.test:5000"},
        "extraArgs": ["--max-workers=32"],
        "extraEnv": [
            {"name": "RDS_EXPORT_RETRY_MAX_DELAY", "value": "600"},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/export"}},
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "data"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "priorityClassName": "system-cluster-critical",
        "terminationGracePeriodSeconds": 60,
        "serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "10s", "labels": {"release": "prom"}},
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    docs = render("-f", str(path))
    deployment = only(docs, "Deployment")
    assert deployment["metadata"]["name"] == "exports"
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"example.com/a": "b"}
    assert pod["metadata"]["labels"]["team"] == "data"
    spec = pod["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"] == values["tolerations"]
    assert spec["affinity"] == {"nodeAffinity": {}}
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["terminationGracePeriodSeconds"] == 60
    c = container(docs)
    assert c["image"] == "registry.example.com/rds-export-operator:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert c["args"] == ["--max-workers=32"]
    env = env_of(docs)
    assert env["RDS_EXPORT_POLL_INTERVAL"] == "45"
    assert env["RDS_EXPORT_LOG_LEVEL"] == "DEBUG"
    assert env["RDS_EXPORT_LOG_FORMAT"] == "plain"
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_ENDPOINT_URL"] == "http://aws-standin.test:5000"
    assert env["RDS_EXPORT_RETRY_MAX_DELAY"] == "600"
    assert env["FROM_SECRET"] == {"secretKeyRef": {"name": "s", "key": "k"}}
    assert env["RDS_EXPORT_LEADER_ELECTION_NAME"] == "exports"
    sa = only(docs, "ServiceAccount")
    assert sa["metadata"]["name"] == "exports"
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/export"}
    monitor = only(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == only(docs, "Service")["spec"]["selector"]


def test_existing_service_account(render: Render) -> None:
    docs = render("--set", "serviceAccount.create=false,serviceAccount.name=platform-exports")
    assert not of_kind(docs, "ServiceAccount")
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-exports"
    assert only(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "platform-exports"


# --- probes, storage, spreading, image pinning ---------------------------------------------------------------------


def test_readiness_is_a_distinct_faster_probe_than_liveness(render: Render) -> None:
    c = container(render())
    live, ready = c["livenessProbe"], c["readinessProbe"]
    assert live["httpGet"] == {"path": "/healthz", "port": "health"}
    assert ready["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["health"] == 8080
    # Not Ready long before being killed: a shorter period and a lower failure threshold.
    assert ready["periodSeconds"] < live["periodSeconds"]
    assert ready["failureThreshold"] < live["failureThreshold"]
    assert ready["periodSeconds"] * ready["failureThreshold"] < live["periodSeconds"] * live["failureThreshold"]
    # Timings are values; the handler stays the chart's.
    c = container(render("--set", "readinessProbe.periodSeconds=7,livenessProbe.failureThreshold=6"))
    assert c["readinessProbe"]["periodSeconds"] == 7
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["failureThreshold"] == 6


def test_ephemeral_storage_covers_the_tmp_volume(render: Render) -> None:
    docs = render()
    c = container(docs)
    volume = only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    mebibytes = {k: int(c["resources"][k]["ephemeral-storage"].removesuffix("Mi")) for k in ("requests", "limits")}
    assert mebibytes["requests"] <= mebibytes["limits"]
    assert int(volume["emptyDir"]["sizeLimit"].removesuffix("Mi")) < mebibytes["limits"]


def test_several_replicas_prefer_different_nodes(render: Render) -> None:
    assert "affinity" not in only(render(), "Deployment")["spec"]["template"]["spec"]
    deployment = only(render("--set", "replicas=2"), "Deployment")
    pod = deployment["spec"]["template"]
    assert pod["spec"]["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
                    },
                }
            ]
        }
    }
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    # The affinity value's other parts are kept; its own podAntiAffinity replaces the chart's.
    linux = {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
    node = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [linux]}]}}
    zone = {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"team": "data"}}}
    mine = {"requiredDuringSchedulingIgnoredDuringExecution": [zone]}
    docs = render("--set-json", f"affinity={json.dumps({'nodeAffinity': node})}", "--set", "replicas=3")
    affinity = only(docs, "Deployment")["spec"]["template"]["spec"]["affinity"]
    assert affinity["nodeAffinity"] == node
    assert affinity["podAntiAffinity"] == pod["spec"]["affinity"]["podAntiAffinity"]
    docs = render("--set-json", f"affinity={json.dumps({'podAntiAffinity': mine})}", "--set", "replicas=2")
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["affinity"] == {"podAntiAffinity": mine}


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_image_digest_pins_the_image(render: Render) -> None:
    docs = render("--set", f"image.digest={DIGEST}")
    c = container(docs)
    assert c["image"] == f"ghcr.io/rds-export-operator/rds-export-operator@{DIGEST}"
    assert c["imagePullPolicy"] == "IfNotPresent"  # pinned: a digest never changes
    assert only(docs, "Deployment")["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.0"
    c = container(render("--set", f"image.digest={DIGEST},image.tag=1.2.3"))
    assert c["image"].endswith(f"rds-export-operator@{DIGEST}")  # the digest wins over the tag


# --- NetworkPolicy ---------------------------------------------------------------------------------------------------


def test_network_policy_allows_only_the_operators_traffic(render: Render, tmp_path: Path) -> None:
    assert not of_kind(render(), "NetworkPolicy")
    docs = render("--set", "networkPolicy.enabled=true")
    policy = only(docs, "NetworkPolicy")
    deployment = only(docs, "Deployment")
    assert policy["metadata"]["name"] == "r1-rds-export-operator"
    assert policy["metadata"]["namespace"] == "ops"
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # Ingress: only the two named ports, from any source by default.
    assert policy["spec"]["ingress"] == [
        {"ports": [{"port": "health", "protocol": "TCP"}, {"port": "metrics", "protocol": "TCP"}]}
    ]
    assert {p["name"] for p in container(docs)["ports"]} == {"health", "metrics"}
    dns, api, aws = policy["spec"]["egress"]
    assert dns == {
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
    }
    # No CIDRs given: any address, but only on these ports.
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    assert aws == {"ports": [{"port": 443, "protocol": "TCP"}]}

    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    agent = {"to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}], "ports": [{"port": 80, "protocol": "TCP"}]}
    values = {
        "networkPolicy": {
            "enabled": True,
            "ingressFrom": [prometheus],
            "dns": {"to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}]},
            "apiServer": {"cidrs": ["10.0.0.10/32", "10.0.0.11/32"], "ports": [6443]},
            "aws": {"cidrs": ["10.1.0.0/24"], "ports": [443]},
            "extraEgress": [agent],
        }
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    policy = only(render("-f", str(path)), "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"] == [prometheus]
    dns, api, aws, extra = policy["spec"]["egress"]
    assert dns["to"] == [{"ipBlock": {"cidr": "169.254.20.10/32"}}]
    assert api == {
        "ports": [{"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.0.0.10/32"}}, {"ipBlock": {"cidr": "10.0.0.11/32"}}],
    }
    assert aws == {"ports": [{"port": 443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.1.0.0/24"}}]}
    assert extra == agent


# --- PrometheusRule --------------------------------------------------------------------------------------------------


def alerts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rule = only(docs, "PrometheusRule")
    [group] = rule["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def test_prometheus_rule_alerts_and_thresholds(render: Render, tmp_path: Path) -> None:
    assert not of_kind(render(), "PrometheusRule")
    docs = render("--set", "prometheusRule.enabled=true")
    rule = only(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "ops"
    found = alerts(docs)
    assert sorted(found) == [
        "RdsExportAwsCallsFailing",
        "RdsExportFailed",
        "RdsExportNoLeader",
        "RdsExportQueued",
        "RdsExportThrottled",
    ]
    own = 'job="r1-rds-export-operator-metrics", namespace="ops"'  # what the chart's ServiceMonitor scrapes
    assert (
        found["RdsExportFailed"]["expr"] == f'sum(delta(rds_export_tasks{{status=~"FAILED|REFUSED", {own}}}[15m])) > 0'
    )
    assert found["RdsExportAwsCallsFailing"]["expr"] == (
        f'sum by (operation, outcome) (rate(rds_export_aws_calls_total{{outcome!="Success", {own}}}[5m])) > 0'
    )
    assert found["RdsExportAwsCallsFailing"]["for"] == "10m"
    assert found["RdsExportThrottled"]["expr"] == (
        f"sum by (operation) (rate(rds_export_aws_throttles_total{{{own}}}[5m])) > 0"
    )
    assert found["RdsExportThrottled"]["for"] == "15m"
    assert found["RdsExportQueued"]["expr"] == f"max(rds_export_queue_length{{{own}}}) > 0"
    assert found["RdsExportQueued"]["for"] == "30m"
    assert found["RdsExportNoLeader"]["expr"] == f"(sum(rds_export_leader{{{own}}}) or vector(0)) < 1"
    assert found["RdsExportNoLeader"]["for"] == "1m"
    assert "for" not in found["RdsExportFailed"]
    for name, alert in found.items():
        assert alert["labels"] == {"severity": "critical" if name == "RdsExportNoLeader" else "warning"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
    # Alertmanager templates pass through Helm untouched.
    assert "{{ $labels.operation }}" in found["RdsExportThrottled"]["annotations"]["summary"]

    values = {
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "prom"},
            "alertLabels": {"team": "data", "severity": "page"},
            "selector": 'service="exports"',
            "rateWindow": "2m",
            "exportFailedWindow": "1h",
            "awsCallsFailingFor": "20m",
            "throttlesPerSecond": 0.5,
            "throttledFor": "5m",
            "queuedFor": "2h",
            "noLeaderFor": "45s",
        }
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    docs = render("-f", str(path))
    assert only(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "prom"
    found = alerts(docs)
    assert (
        found["RdsExportFailed"]["expr"]
        == 'sum(delta(rds_export_tasks{status=~"FAILED|REFUSED", service="exports"}[1h])) > 0'
    )
    assert "[2m]" in found["RdsExportAwsCallsFailing"]["expr"]
    assert found["RdsExportAwsCallsFailing"]["for"] == "20m"
    assert found["RdsExportThrottled"]["expr"].endswith('{service="exports"}[2m])) > 0.5')
    assert found["RdsExportThrottled"]["for"] == "5m"
    assert found["RdsExportQueued"]["for"] == "2h"
    assert found["RdsExportNoLeader"]["for"] == "45s"
    for alert in found.values():
        assert alert["labels"] == {"team": "data", "severity": "page"}


# --- the schema refuses bad values ---------------------------------------------------------------------------------

BAD_VALUES = [
    (["--set", "replicas=0"], ["'/replicas'", "minimum: got 0, want 1"]),
    (["--set", "replicas=two"], ["'/replicas'", "got string, want integer"]),
    (["--set", "logLevel=LOUD"], ["'/logLevel'", "must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR'"]),
    (["--set", "logFormat=xml"], ["'/logFormat'", "must be one of 'plain', 'json'"]),
    (["--set", "pollInterval=0"], ["'/pollInterval'", "minimum: got 0, want 1"]),
    (["--set", "watchNamespaces[0]=Bad_NS"], ["'/watchNamespaces/0'", "'Bad_NS' does not match pattern"]),
    (["--set", "replica=2"], ["additional properties 'replica' not allowed"]),
    (["--set", "serviceAccount.anotations.a=b"], ["'/serviceAccount'", "additional properties 'anotations'"]),
    (["--set", "rbac.create=yes"], ["'/rbac/create'", "got string, want boolean"]),
    (["--set", "image.tag=2"], ["'/image/tag'", "got number, want string"]),
    (["--set", "pdb.enabled=maybe"], ["'/pdb/enabled'", "must be one of 'auto', true, false"]),
    (["--set", "aws.region=Europe"], ["'/aws/region'", "'Europe' does not match pattern"]),
    (["--set", "image.digest=latest"], ["'/image/digest'", "'latest' does not match pattern"]),
    (["--set", "networkPolicy.apiServer.ports={0}"], ["'/networkPolicy/apiServer/ports/0'", "minimum: got 0"]),
    (["--set", "networkPolicy.aws.cidrs={anywhere}"], ["'/networkPolicy/aws/cidrs/0'", "does not match pattern"]),
    (["--set", "networkPolicy.ingresFrom={}"], ["'/networkPolicy'", "additional properties 'ingresFrom'"]),
    (["--set-string", "prometheusRule.queuedFor=30"], ["'/prometheusRule/queuedFor'", "'30' does not match pattern"]),
    (["--set", "prometheusRule.throttlesPerSecond=-1"], ["'/prometheusRule/throttlesPerSecond'", "minimum"]),
]


@pytest.mark.parametrize(("args", "messages"), BAD_VALUES, ids=[a[1] for a, _ in BAD_VALUES])
def test_schema_refuses_bad_values_with_a_clear_message(helm: Helm, args: list[str], messages: list[str]) -> None:
    done = helm("template", "r1", str(CHART), *args)
    assert done.returncode != 0
    assert SCHEMA_ERROR in done.stderr
    for message in messages:
        assert message in done.stderr


FREE_FORM = {"podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe"}


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaf value paths; objects that the schema treats as free-form maps (or that are empty) are leaves."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in FREE_FORM:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def test_schema_and_readme_cover_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) - {"global"} == set(values)
    for key, value in values.items():
        prop = schema["properties"][key]
        if isinstance(value, dict) and "properties" in prop:
            assert set(prop["properties"]) >= set(value), key
            assert prop.get("additionalProperties") is False, key
    readme = (CHART / "README.md").read_text()
    missing = [path for path in flatten(values) if f"`{path}`" not in readme]
    assert not missing, f"values not documented in the chart README: {missing}"


@pytest.mark.parametrize("key", GRANT_KEYS)
def test_every_grant_key_the_operator_accepts_can_be_set_through_helm(render: Render, key: str) -> None:
    # Bug (issue 23, attack 7): the schema refused sourceArns, s3Buckets and kmsKeys, the controls the docs name.
    # Generated from the operator's own list of grant keys: a new key fails here until the chart takes it.
    docs = render("--set-json", "tenancy=" + json.dumps({"team-a": {key: ["pattern-*"]}}))
    grant = Tenancy.parse(env_of(docs)["RDS_EXPORT_TENANCY"]).grants
    assert grant is not None and grant["team-a"] != Grant()
    readme = (CHART / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `tenancy` |"))
    assert key in row
    assert key in (CHART / "values.yaml").read_text()
