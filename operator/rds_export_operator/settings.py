"""Every knob of the operator in one typed place: command-line flags, each with an environment variable default."""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rds_export_operator.tenancy import Tenancy

_OBJECT_REF = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    poll_interval: float = 30.0  # how often AWS is asked (one paginated call per account and region)
    tick_interval: float = 3.0  # how often each unfinished object looks at the shared answer (no AWS call)
    polling: str = "coalesced"  # or "per-object": the naive baseline, one describe per object per poll
    max_concurrent_exports: int = 5  # AWS's per-account quota; raise it if AWS raised yours
    retry_base_delay: float = 5.0
    retry_max_delay: float = 300.0
    source_wait: float = 43200.0  # how long "source not ready" (InvalidExportSourceState) is waited out
    iam_wait: float = 900.0  # how long "IAM role not usable yet" is waited out (IAM propagation)
    aws_warn_after: float = 600.0  # AWS failing this long for an object: a Warning Event
    default_region: str = ""
    log_level: str = "INFO"
    log_format: str = "plain"
    health_endpoint: str = "http://0.0.0.0:8080/healthz"
    readiness_period: float = 5.0  # seconds between readiness API checks; not Ready after 2 periods without one
    max_workers: int = 16
    api_connections: int = 32  # concurrent connections to the Kubernetes API server
    aws_timeout: float = 20.0  # seconds to wait for an AWS answer
    tenancy: str = ""  # JSON policy: which accounts, regions, roles each namespace may use (tenancy.py)
    identities_configmap: str = ""  # "namespace/name" of the identity mapping (identity.py); empty: own identity
    watch_server_timeout: int = 300
    watch_client_timeout: int = 330
    metrics_port: int = 9090  # 0: no metrics endpoint
    leader_election: bool = False
    leader_election_namespace: str = "default"
    leader_election_name: str = "rds-export-operator"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    table_report: bool = True  # read each finished export's per-table outcome from S3 (table_report.py)
    table_report_wait: float = 900.0  # how long missing info files or S3 errors are retried, then Unknown

    def __post_init__(self) -> None:
        if self.poll_interval < 1:
            raise ValueError(f"poll interval must be at least 1 second, not {self.poll_interval}")
        if not 0.2 <= self.tick_interval <= self.poll_interval:
            raise ValueError("tick interval must be between 0.2 s and the poll interval")
        if self.polling not in ("coalesced", "per-object"):
            raise ValueError(f"polling must be coalesced or per-object, not {self.polling!r}")
        if self.max_concurrent_exports < 1:
            raise ValueError("max concurrent exports must be at least 1")
        if min(self.source_wait, self.iam_wait, self.aws_warn_after) < 0:
            raise ValueError("wait deadlines must not be negative")
        if not 0 < self.retry_base_delay <= self.retry_max_delay:
            raise ValueError("retry delays must satisfy 0 < base <= max")
        if self.log_format not in ("plain", "json"):
            raise ValueError(f"log format must be plain or json, not {self.log_format!r}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"unknown log level {self.log_level!r}")
        Tenancy.parse(self.tenancy)  # raises ValueError with the reason
        if self.identities_configmap and not _OBJECT_REF.fullmatch(self.identities_configmap):
            raise ValueError(f"identities ConfigMap must be namespace/name, not {self.identities_configmap!r}")
        if not self.readiness_period > 0:
            raise ValueError("readiness period must be positive")
        if not self.aws_timeout > 0:
            raise ValueError("AWS timeout must be positive")
        if self.api_connections < 4:
            raise ValueError("API connections must be at least 4 (watch streams hold some)")
        if self.max_workers < 1:
            raise ValueError("max workers must be at least 1")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics port must be 0..65535, not {self.metrics_port}")
        if not self.table_report_wait >= 0:
            raise ValueError("table report wait must not be negative")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry period < renew deadline < lease duration")


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Flags win over environment variables, which win over defaults. Invalid values exit with a usage error.

    Environment defaults stay strings: argparse converts them with the flag's type and reports bad ones.
    """
    env = os.environ if environ is None else environ
    d = Settings()
    p = argparse.ArgumentParser(prog="rds-export-operator", description="Runs RdsExportTask objects as RDS exports.")
    p.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        help="namespace to watch (repeatable; env RDS_EXPORT_NAMESPACES, comma-separated); default all",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=env.get("RDS_EXPORT_POLL_INTERVAL", str(d.poll_interval)),
        help="seconds between DescribeExportTasks calls per account and region",
    )
    p.add_argument(
        "--tick-interval",
        type=float,
        default=env.get("RDS_EXPORT_TICK_INTERVAL", str(d.tick_interval)),
        help="seconds between an object's looks at the shared answer (default 3, at most the poll interval)",
    )
    p.add_argument("--polling", choices=["coalesced", "per-object"], default=env.get("RDS_EXPORT_POLLING", d.polling))
    p.add_argument(
        "--max-concurrent-exports",
        type=int,
        default=env.get("RDS_EXPORT_MAX_CONCURRENT_EXPORTS", str(d.max_concurrent_exports)),
    )
    p.add_argument(
        "--retry-base-delay", type=float, default=env.get("RDS_EXPORT_RETRY_BASE_DELAY", str(d.retry_base_delay))
    )
    p.add_argument(
        "--retry-max-delay", type=float, default=env.get("RDS_EXPORT_RETRY_MAX_DELAY", str(d.retry_max_delay))
    )
    p.add_argument(
        "--source-wait",
        type=float,
        default=env.get("RDS_EXPORT_SOURCE_WAIT", str(d.source_wait)),
        help="seconds to wait out InvalidExportSourceState (source busy or not available) before failing",
    )
    p.add_argument(
        "--iam-wait",
        type=float,
        default=env.get("RDS_EXPORT_IAM_WAIT", str(d.iam_wait)),
        help="seconds to wait out IamRoleNotFound / IamRoleMissingPermissions (IAM propagation) before failing",
    )
    p.add_argument(
        "--aws-warn-after",
        type=float,
        default=env.get("RDS_EXPORT_AWS_WARN_AFTER", str(d.aws_warn_after)),
        help="seconds of failing AWS calls after which an object gets a Warning Event",
    )
    p.add_argument(
        "--default-region",
        default=env.get("RDS_EXPORT_DEFAULT_REGION", env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", ""))),
        help="region for objects that name none and have no sourceArn (Observe); AWS_REGION by default",
    )
    p.add_argument("--log-level", default=env.get("RDS_EXPORT_LOG_LEVEL", d.log_level))
    p.add_argument("--log-format", choices=["plain", "json"], default=env.get("RDS_EXPORT_LOG_FORMAT", d.log_format))
    p.add_argument(
        "--health-endpoint",
        default=env.get("RDS_EXPORT_HEALTH_ENDPOINT", d.health_endpoint),
        help="liveness endpoint URL to serve (readiness on /readyz of the same port), empty to disable both",
    )
    p.add_argument(
        "--readiness-period",
        type=float,
        default=env.get("RDS_EXPORT_READINESS_PERIOD", str(d.readiness_period)),
        help="seconds between readiness checks of the API server; not Ready after two periods without success",
    )
    p.add_argument(
        "--tenancy",
        default=env.get("RDS_EXPORT_TENANCY", ""),
        help="JSON: namespace -> allowed accounts, regions, iamRoleArns (patterns); empty allows all",
    )
    p.add_argument(
        "--identities-configmap",
        default=env.get("RDS_EXPORT_IDENTITIES_CONFIGMAP", d.identities_configmap),
        help="ConfigMap (name, or namespace/name; POD_NAMESPACE by default) mapping namespaces to IAM roles; "
        "empty: the operator's own AWS identity for every namespace",
    )
    p.add_argument("--aws-timeout", type=float, default=env.get("RDS_EXPORT_AWS_TIMEOUT", str(d.aws_timeout)))
    p.add_argument("--api-connections", type=int, default=env.get("RDS_EXPORT_API_CONNECTIONS", str(d.api_connections)))
    p.add_argument("--max-workers", type=int, default=env.get("RDS_EXPORT_MAX_WORKERS", str(d.max_workers)))
    p.add_argument("--metrics-port", type=int, default=env.get("RDS_EXPORT_METRICS_PORT", str(d.metrics_port)))
    p.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=env.get("RDS_EXPORT_LEADER_ELECTION", "false").lower() in ("1", "true", "yes"),
        help="hold a coordination.k8s.io Lease before reconciling (needed with more than one replica)",
    )
    p.add_argument(
        "--leader-election-namespace",
        default=env.get("RDS_EXPORT_LEADER_ELECTION_NAMESPACE", env.get("POD_NAMESPACE", d.leader_election_namespace)),
    )
    p.add_argument("--leader-election-name", default=env.get("RDS_EXPORT_LEADER_ELECTION_NAME", d.leader_election_name))
    p.add_argument("--identity", default=env.get("POD_NAME", ""), help="this replica's name in the Lease")
    p.add_argument("--lease-duration", type=float, default=env.get("RDS_EXPORT_LEASE_DURATION", str(d.lease_duration)))
    p.add_argument("--renew-deadline", type=float, default=env.get("RDS_EXPORT_RENEW_DEADLINE", str(d.renew_deadline)))
    p.add_argument("--retry-period", type=float, default=env.get("RDS_EXPORT_RETRY_PERIOD", str(d.retry_period)))
    p.add_argument(
        "--table-report",
        action=argparse.BooleanOptionalAction,
        default=env.get("RDS_EXPORT_TABLE_REPORT", "true").lower() in ("1", "true", "yes"),
        help="read each finished export's per-table outcome from its S3 info files (default on; objects can opt "
        "out with spec.tableReport: Disabled)",
    )
    p.add_argument(
        "--table-report-wait",
        type=float,
        default=env.get("RDS_EXPORT_TABLE_REPORT_WAIT", str(d.table_report_wait)),
        help="seconds to retry missing table info files or S3 errors before TablesComplete=Unknown",
    )
    args = p.parse_args(argv)
    identities = args.identities_configmap.strip()
    if identities and "/" not in identities:
        identities = f"{env.get('POD_NAMESPACE') or 'default'}/{identities}"
    namespaces = args.namespaces or [n for n in env.get("RDS_EXPORT_NAMESPACES", "").split(",") if n.strip()]
    try:
        return Settings(
            namespaces=tuple(n.strip() for n in namespaces),
            poll_interval=args.poll_interval,
            tick_interval=min(args.tick_interval, args.poll_interval),
            polling=args.polling,
            max_concurrent_exports=args.max_concurrent_exports,
            retry_base_delay=args.retry_base_delay,
            retry_max_delay=args.retry_max_delay,
            source_wait=args.source_wait,
            iam_wait=args.iam_wait,
            aws_warn_after=args.aws_warn_after,
            default_region=args.default_region,
            log_level=args.log_level.upper(),
            log_format=args.log_format,
            health_endpoint=args.health_endpoint,
            readiness_period=args.readiness_period,
            max_workers=args.max_workers,
            api_connections=args.api_connections,
            aws_timeout=args.aws_timeout,
            tenancy=args.tenancy,
            identities_configmap=identities,
            metrics_port=args.metrics_port,
            leader_election=args.leader_election,
            leader_election_namespace=args.leader_election_namespace,
            leader_election_name=args.leader_election_name,
            identity=args.identity or f"{socket.gethostname()}-{os.getpid()}",
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
            table_report=args.table_report,
            table_report_wait=args.table_report_wait,
        )
    except ValueError as exc:
        p.error(str(exc))
