"""The settings table (settings.py) against everything that names a setting: the CLI's --help, the chart's
Deployment and values, and README.md's Configuration paragraph. Adding a setting anywhere else fails here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

from helmchart import CHART, REPO, Render, env_of
from rds_export_operator.runtime.settings import Settings, options, parse

FLAGS = {option.flag for _, option, _ in options()}
ENV_VARS = {name for _, option, _ in options() for name in option.env}
NOT_SETTINGS = {"AWS_ENDPOINT_URL"}  # read by boto3 itself, not by the operator's settings

# Chart value -> (a non-default value to render with, the setting it becomes, what the setting then holds).
VALUES: dict[str, tuple[Any, str, Any]] = {
    "watchNamespaces": (["team-a", "team-b"], "namespaces", ("team-a", "team-b")),
    "pollInterval": (45, "poll_interval", 45.0),
    "tenancy": ({"team-a": {"regions": ["eu-west-1"]}}, "tenancy", {"team-a": {"regions": ["eu-west-1"]}}),
    "logLevel": ("DEBUG", "log_level", "DEBUG"),
    "logFormat": ("plain", "log_format", "plain"),
    "leaderElection.enabled": (True, "leader_election", True),
    "aws.region": ("eu-west-1", "default_region", "eu-west-1"),
    "tableReport": (False, "table_report", False),
    "glueCallsPerSecond": (2.5, "glue_calls_per_second", 2.5),
    "tenantLimits.exportsPerNamespace": (2, "max_exports_per_namespace", 2),
    "tenantLimits.unfinishedPerNamespace": (500, "max_unfinished_per_namespace", 500),
    "tenantLimits.observeWait": (600, "observe_wait", 600.0),
}
NOT_SETTING_VALUES = {"aws.endpointUrl", "extraEnv"}


def test_help_lists_exactly_the_settings_flags() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rds_export_operator", "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", done.stdout)) - {"--help"}
    negations = {f"--no-{flag[2:]}" for flag in FLAGS}  # boolean settings have a --no- form too
    assert shown - negations == FLAGS


def test_every_setting_has_a_flag_an_environment_variable_and_help() -> None:
    for name, option, _ in options():
        assert option.flag.startswith("--") and option.env and option.help, name
        assert option.flag in (f"--{name.replace('_', '-')}", "--namespace"), name


def test_readme_configuration_names_every_flag_and_only_existing_ones() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(--[a-z][a-z-]*)", section)) - {f"--no-{flag[2:]}" for flag in FLAGS}
    assert named - FLAGS == set(), "README names flags that do not exist"
    assert FLAGS - named == set(), "README's Configuration paragraph misses flags"


def test_the_deployment_sets_only_known_settings(render: Render) -> None:
    sets = [f"{key}={json.dumps(value)}" for key, (value, _, _) in VALUES.items()]
    docs = render("--set-json", ",".join(sets), "--set", "aws.endpointUrl=http://aws:5000")
    env = env_of(docs)
    assert set(env) - ENV_VARS - NOT_SETTINGS == set(), "the Deployment sets variables no setting reads"
    # The downward API's values as the kubelet would fill them in.
    strings = {k: v if isinstance(v, str) else {"POD_NAME": "pod-1", "POD_NAMESPACE": "ops"}[k] for k, v in env.items()}
    settings = parse([], strings)
    for key, (_, name, expected) in VALUES.items():
        got = getattr(settings, name)
        assert (json.loads(got) if name == "tenancy" else got) == expected, key
    assert settings.identity == "pod-1" and settings.leader_election_namespace == "ops"
    assert settings.identities_configmap.startswith("ops/")
    assert settings != Settings()


def test_every_chart_value_in_the_environment_maps_to_a_setting() -> None:
    template = (CHART / "templates" / "deployment.yaml").read_text()
    env_block = template.split("          env:\n", 1)[1].split("          ports:\n", 1)[0]
    referenced = set(re.findall(r"\.Values\.([A-Za-z.]+[A-Za-z])", env_block))
    assert referenced - set(VALUES) - NOT_SETTING_VALUES == set(), "map these chart values to settings in VALUES"
    assert set(VALUES) - referenced <= {"leaderElection.enabled"}  # that one goes through a template helper
