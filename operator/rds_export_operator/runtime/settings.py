"""Every knob of the operator in one typed place: command-line flags, each with an environment variable default.

Each setting is one field of `Settings`, declared with `setting(...)`: its type and default, help, environment
variables and single-value validation. The flags, the environment defaults and the checks are derived from these
declarations; checks that relate two settings are in `Settings.__post_init__`.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from rds_export_operator.aws.tenancy import Tenancy

_OBJECT_REF = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TRUE = ("1", "true", "yes")
ENV_PREFIX = "RDS_EXPORT_"

T = TypeVar("T")


Check = tuple[Callable[[Any], bool], str]  # the test (may raise ValueError itself), the message; {!r} is the value


def at_least(low: float, message: str) -> Check:
    return (lambda value: value >= low, message)


def positive(message: str) -> Check:
    return (lambda value: value > 0, message)


NOT_NEGATIVE = at_least(0, "wait deadlines must not be negative")


@dataclass(frozen=True)
class Option:
    """How one setting is set from outside: its flag, the environment variables read (first set wins), and checks."""

    flag: str
    env: tuple[str, ...]
    help: str
    choices: tuple[str, ...] = ()
    valid: Check | None = None

    def named(self, name: str) -> Option:
        """With the flag, variable and choice check that follow from the field's name unless declared."""
        valid, choices = self.valid, self.choices
        if choices and valid is None:
            valid = (
                lambda value: value in choices,
                f"{name.replace('_', ' ')} must be {' or '.join(choices)}, not {{!r}}",
            )
        flag = self.flag or "--" + name.replace("_", "-")
        return replace(self, flag=flag, env=self.env or (ENV_PREFIX + name.upper(),), valid=valid)

    def check(self, value: Any) -> None:
        if self.valid is not None and not self.valid[0](value):
            raise ValueError(self.valid[1].format(value))


def setting(
    default: T,
    help: str,
    *,
    flag: str = "",
    env: tuple[str, ...] = (),
    choices: tuple[str, ...] = (),
    check: Check | None = None,
) -> T:
    """A `Settings` field with its `Option`; the flag is --<name> and the variable RDS_EXPORT_<NAME> unless told."""
    option = Option(flag=flag, env=env, help=help, choices=choices, valid=check)
    return field(default=default, metadata={"option": option})


@dataclass(frozen=True)
class Settings:
    # A new setting is one entry here (and a mention in README.md's Configuration paragraph, checked by a test).
    namespaces: tuple[str, ...] = setting(
        (), "namespace to watch (repeatable; env comma-separated)", flag="--namespace"
    )
    poll_interval: float = setting(
        30.0,
        "seconds between DescribeExportTasks calls per account and region",
        check=at_least(1, "poll interval must be at least 1 second, not {}"),
    )
    tick_interval: float = setting(
        3.0, "seconds over which known objects' first looks are spread after a start (at most the poll interval)"
    )
    polling: str = setting(
        "coalesced", "one call per account and region, or per object", choices=("coalesced", "per-object")
    )
    max_concurrent_exports: int = setting(
        5,
        "exports at once per account and region (AWS's quota)",
        check=at_least(1, "max concurrent exports must be at least 1"),
    )
    max_exports_per_namespace: int = setting(
        0,
        "exports at once per namespace, over all its accounts and regions; 0: no cap",
        check=at_least(0, "max exports per namespace must not be negative"),
    )
    max_unfinished_per_namespace: int = setting(
        0,
        "unfinished RdsExportTask objects per namespace; new ones beyond fail (QuotaExceeded); 0: no cap",
        check=at_least(0, "max unfinished per namespace must not be negative"),
    )
    observe_wait: float = setting(
        3600.0, "seconds an Observe object waits for a task AWS does not know before it fails", check=NOT_NEGATIVE
    )
    retry_base_delay: float = setting(5.0, "seconds before the first retry after an AWS error")
    retry_max_delay: float = setting(300.0, "longest retry delay in seconds (doubling from base)")
    source_wait: float = setting(
        43200.0, "seconds to wait out InvalidExportSourceState before failing", check=NOT_NEGATIVE
    )
    iam_wait: float = setting(900.0, "seconds to wait out IamRoleNotFound/MissingPermissions", check=NOT_NEGATIVE)
    aws_warn_after: float = setting(600.0, "seconds of failing AWS calls before a Warning Event", check=NOT_NEGATIVE)
    default_region: str = setting(
        "",
        "region for objects that name none and have no sourceArn (Observe)",
        env=("RDS_EXPORT_DEFAULT_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    log_level: str = setting(
        "INFO", "DEBUG, INFO, WARNING or ERROR", check=(lambda v: v.upper() in _LOG_LEVELS, "unknown log level {!r}")
    )
    log_format: str = setting("plain", "plain or json", choices=("plain", "json"))
    health_endpoint: str = setting(
        "http://0.0.0.0:8080/healthz",
        "liveness endpoint URL to serve (readiness on /readyz of the same port), empty to disable both",
    )
    readiness_period: float = setting(
        5.0,
        "seconds between readiness checks of the API server; not Ready after two periods without success",
        check=positive("readiness period must be positive"),
    )
    max_workers: int = setting(
        16, "threads for handlers and AWS calls", check=at_least(1, "max workers must be at least 1")
    )
    api_connections: int = setting(
        32,
        "concurrent connections to the Kubernetes API server (watch streams come on top)",
        check=at_least(4, "API connections must be at least 4 (watch streams hold some)"),
    )
    aws_timeout: float = setting(
        20.0, "seconds to wait for an AWS answer", check=positive("AWS timeout must be positive")
    )
    tenancy: str = setting(
        "",
        "JSON: namespace -> allowed accounts, regions, iamRoleArns (patterns); empty allows all",
        check=(lambda v: Tenancy.parse(v) is not None, ""),  # parse raises ValueError with the reason
    )
    identities_configmap: str = setting(
        "",
        "ConfigMap (name, or namespace/name; POD_NAMESPACE by default) mapping namespaces to IAM roles; "
        "empty: the operator's own AWS identity for every namespace",
        check=(
            lambda v: not v or _OBJECT_REF.fullmatch(v) is not None,
            "identities ConfigMap must be namespace/name, not {!r}",
        ),
    )
    metrics_port: int = setting(
        9090,
        "Prometheus metrics port; 0: none",
        check=(lambda v: 0 <= v <= 65535, "metrics port must be 0..65535, not {}"),
    )
    leader_election: bool = setting(False, "hold a coordination.k8s.io Lease before reconciling (for several replicas)")
    leader_election_namespace: str = setting(
        "default", "namespace of the Lease", env=("RDS_EXPORT_LEADER_ELECTION_NAMESPACE", "POD_NAMESPACE")
    )
    leader_election_name: str = setting("rds-export-operator", "name of the Lease")
    identity: str = setting("", "this replica's name in the Lease (default: host name and pid)", env=("POD_NAME",))
    lease_duration: float = setting(15.0, "seconds a Lease is valid without renewal")
    renew_deadline: float = setting(10.0, "seconds the leader keeps trying to renew before it stops")
    retry_period: float = setting(2.0, "seconds between attempts to acquire or renew the Lease")
    table_report: bool = setting(True, "read each finished export's per-table outcome from S3 (table_report.py)")
    table_report_wait: float = setting(
        900.0, "seconds missing info files or S3 errors are retried before the report is Unknown", check=NOT_NEGATIVE
    )
    glue_calls_per_second: float = setting(
        10.0, "AWS Glue calls per second at most, all catalog registrations together (0: unpaced)", check=NOT_NEGATIVE
    )
    # Fixed, not settings: kopf's watch request timeouts.
    watch_server_timeout: int = 300
    watch_client_timeout: int = 330

    def __post_init__(self) -> None:
        for _, option, value in options(self):
            option.check(value)
        if not 0.2 <= self.tick_interval <= self.poll_interval:
            raise ValueError("tick interval must be between 0.2 s and the poll interval")
        if not 0 < self.retry_base_delay <= self.retry_max_delay:
            raise ValueError("retry delays must satisfy 0 < base <= max")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry period < renew deadline < lease duration")


def options(settings: Settings | None = None) -> list[tuple[str, Option, Any]]:
    """Every setting: its name, its `Option` and its value in `settings` (the defaults when none)."""
    values = settings or Settings()
    return [
        (f.name, f.metadata["option"].named(f.name), getattr(values, f.name))
        for f in fields(Settings)
        if "option" in f.metadata
    ]


def _env(option: Option, environ: Mapping[str, str]) -> str | None:
    return next((environ[name] for name in option.env if name in environ), None)


def _add(p: argparse.ArgumentParser, name: str, option: Option, default: Any, environ: Mapping[str, str]) -> None:
    """One flag; its default is the environment's string (argparse converts it with the type and reports bad ones)."""
    text = _env(option, environ)
    kwargs: dict[str, Any] = {"dest": name, "help": f"{option.help} [env {', '.join(option.env)}]"}
    if isinstance(default, tuple):  # repeatable flag, comma-separated variable
        kwargs.update(action="append", default=None)
    elif isinstance(default, bool):
        enabled = default if text is None else text.lower() in _TRUE
        kwargs.update(action=argparse.BooleanOptionalAction, default=enabled)
    else:
        kwargs.update(type=type(default), default=str(default) if text is None else text)
        if option.choices:
            kwargs["choices"] = option.choices
    p.add_argument(option.flag, **kwargs)


def parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rds-export-operator", description="Runs RdsExportTask objects as RDS exports.")
    for name, option, default in options():
        _add(p, name, option, default, environ)
    return p


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Flags win over environment variables, which win over defaults. Invalid values exit with a usage error."""
    env = os.environ if environ is None else environ
    p = parser(env)
    values = vars(p.parse_args(argv))
    namespaces = values["namespaces"] or [n for n in env.get(ENV_PREFIX + "NAMESPACES", "").split(",") if n.strip()]
    values["namespaces"] = tuple(n.strip() for n in namespaces)
    values["tick_interval"] = min(values["tick_interval"], values["poll_interval"])
    values["log_level"] = values["log_level"].upper()
    identities = values["identities_configmap"].strip()
    if identities and "/" not in identities:  # a bare name is in the operator's own namespace
        identities = f"{env.get('POD_NAMESPACE') or 'default'}/{identities}"
    values["identities_configmap"] = identities
    values["identity"] = values["identity"] or f"{socket.gethostname()}-{os.getpid()}"
    try:
        return Settings(**values)
    except ValueError as exc:
        p.error(str(exc))
