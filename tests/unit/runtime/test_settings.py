"""settings.py: flags over environment over defaults, and validation that exits with a usage error."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Sized

import kopf
import pytest

from rds_export_operator.__main__ import wire
from rds_export_operator.api.names import FINALIZER
from rds_export_operator.exports.handlers import ApiBackoffs
from rds_export_operator.runtime.metrics import Metrics
from rds_export_operator.runtime.settings import Settings, parse


def test_defaults() -> None:
    s = parse([], {})
    assert s.namespaces == ()
    assert (s.poll_interval, s.retry_base_delay, s.retry_max_delay) == (30.0, 5.0, 300.0)
    assert s.default_region == ""
    assert (s.log_level, s.log_format) == ("INFO", "plain")
    assert s.health_endpoint == "http://0.0.0.0:8080/healthz"
    assert (s.max_workers, s.metrics_port) == (16, 9090)
    assert s.leader_election is False
    assert (s.leader_election_namespace, s.leader_election_name) == ("default", "rds-export-operator")
    assert s.identity == f"{socket.gethostname()}-{os.getpid()}"
    assert (s.lease_duration, s.renew_deadline, s.retry_period) == (15.0, 10.0, 2.0)


def test_finalizer_name() -> None:
    assert FINALIZER == "rdsexport.dev/finalizer"


def test_no_handler_needs_the_diff_kopf_no_longer_stores() -> None:
    # handlers.NoDiffBase stores no copy of the spec, so kopf sees every event as a creation: an on.create,
    # on.update or on.resume handler would run on each event. on.delete needs no diff.
    registry, _ = wire(parse([], {}), Metrics())
    changing = registry._changing.get_all_handlers()
    assert changing and {h.reason for h in changing} == {kopf.Reason.DELETE}


def test_api_requests_are_retried_for_as_long_as_the_api_server_is_away() -> None:
    # kopf's own schedule gives up after 9 tries and lets the error out of the daemon, which it then never starts
    # again for the object (tests/e2e/test_faults.py has the outage); ours is kopf's, then every 30 s, every time.
    backoffs = ApiBackoffs()
    assert not isinstance(backoffs, Sized)  # kopf counts the tries of a Sized schedule, and stops after them
    for _ in range(2):  # kopf iterates it anew for each request
        assert list(itertools.islice(backoffs, 12)) == [1, 1, 2, 3, 5, 8, 13, 21, 30, 30, 30, 30]


def test_environment() -> None:
    env = {
        "RDS_EXPORT_NAMESPACES": " team-a, team-b ,,",
        "RDS_EXPORT_POLL_INTERVAL": "12.5",
        "RDS_EXPORT_RETRY_BASE_DELAY": "2",
        "RDS_EXPORT_RETRY_MAX_DELAY": "60",
        "RDS_EXPORT_DEFAULT_REGION": "eu-central-1",
        "AWS_REGION": "us-east-1",
        "RDS_EXPORT_LOG_LEVEL": "debug",
        "RDS_EXPORT_LOG_FORMAT": "json",
        "RDS_EXPORT_HEALTH_ENDPOINT": "",
        "RDS_EXPORT_MAX_WORKERS": "4",
        "RDS_EXPORT_METRICS_PORT": "0",
        "RDS_EXPORT_LEADER_ELECTION": "TRUE",
        "POD_NAMESPACE": "ops",
        "RDS_EXPORT_LEADER_ELECTION_NAME": "lease",
        "POD_NAME": "pod-1",
        "RDS_EXPORT_LEASE_DURATION": "30",
        "RDS_EXPORT_RENEW_DEADLINE": "20",
        "RDS_EXPORT_RETRY_PERIOD": "5",
    }
    assert parse([], env) == Settings(
        namespaces=("team-a", "team-b"),
        poll_interval=12.5,
        retry_base_delay=2.0,
        retry_max_delay=60.0,
        default_region="eu-central-1",
        log_level="DEBUG",
        log_format="json",
        health_endpoint="",
        max_workers=4,
        metrics_port=0,
        leader_election=True,
        leader_election_namespace="ops",
        leader_election_name="lease",
        identity="pod-1",
        lease_duration=30.0,
        renew_deadline=20.0,
        retry_period=5.0,
    )


def test_flags_win_over_environment() -> None:
    env = {
        "RDS_EXPORT_NAMESPACES": "from-env",
        "RDS_EXPORT_POLL_INTERVAL": "12",
        "RDS_EXPORT_LEADER_ELECTION": "true",
        "RDS_EXPORT_LEADER_ELECTION_NAMESPACE": "explicit",
        "POD_NAMESPACE": "pod-ns",
        "POD_NAME": "pod-1",
        "RDS_EXPORT_LOG_FORMAT": "json",
    }
    s = parse(
        [
            "--namespace",
            "a",
            "--namespace",
            " b ",
            "--poll-interval",
            "45",
            "--no-leader-election",
            "--identity",
            "me",
            "--log-format",
            "plain",
            "--log-level",
            "warning",
        ],
        env,
    )
    assert s.namespaces == ("a", "b")
    assert s.poll_interval == 45.0
    assert s.leader_election is False
    assert s.leader_election_namespace == "explicit"  # the specific variable wins over POD_NAMESPACE
    assert s.identity == "me"
    assert (s.log_format, s.log_level) == ("plain", "WARNING")


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({}, ""),
        ({"AWS_DEFAULT_REGION": "us-west-1"}, "us-west-1"),
        ({"AWS_DEFAULT_REGION": "us-west-1", "AWS_REGION": "us-west-2"}, "us-west-2"),
        ({"AWS_REGION": "us-west-2", "RDS_EXPORT_DEFAULT_REGION": "eu-west-3"}, "eu-west-3"),
    ],
)
def test_default_region_precedence(env: dict[str, str], region: str) -> None:
    assert parse([], env).default_region == region
    assert parse(["--default-region", "sa-east-1"], env).default_region == "sa-east-1"


@pytest.mark.parametrize(
    ("value", "enabled"), [("1", True), ("yes", True), ("True", True), ("0", False), ("no", False)]
)
def test_leader_election_env(value: str, enabled: bool) -> None:
    assert parse([], {"RDS_EXPORT_LEADER_ELECTION": value}).leader_election is enabled
    assert parse(["--leader-election"], {"RDS_EXPORT_LEADER_ELECTION": value}).leader_election is True


def test_parse_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDS_EXPORT_MAX_WORKERS", "7")
    assert parse([]).max_workers == 7
    assert parse([], {}).max_workers == 16  # an explicit environ replaces os.environ


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--poll-interval", "0.5"], {}, "poll interval must be at least 1 second"),
        (["--retry-base-delay", "0"], {}, "retry delays"),
        (["--retry-base-delay", "10", "--retry-max-delay", "5"], {}, "retry delays"),
        ([], {"RDS_EXPORT_LOG_FORMAT": "xml"}, "log format must be plain or json"),
        (["--log-format", "xml"], {}, "invalid choice"),
        (["--log-level", "trace"], {}, "unknown log level"),
        (["--max-workers", "0"], {}, "max workers must be at least 1"),
        (["--metrics-port", "65536"], {}, "metrics port must be 0..65535"),
        (["--metrics-port", "-1"], {}, "metrics port must be 0..65535"),
        (["--renew-deadline", "20"], {}, "leader election needs"),
        (["--retry-period", "0"], {}, "leader election needs"),
        (["--retry-period", "10"], {}, "leader election needs"),
        (["--poll-interval", "fast"], {}, "invalid float value"),
        (["--max-workers", "1.5"], {}, "invalid int value"),
        (["--unknown-flag"], {}, "unrecognized arguments"),
        (["--tick-interval", "0.1"], {}, "tick interval must be between"),
        (["--polling", "sometimes"], {}, "invalid choice"),
        ([], {"RDS_EXPORT_POLLING": "sometimes"}, "polling must be coalesced or per-object"),
        (["--max-concurrent-exports", "0"], {}, "max concurrent exports must be at least 1"),
    ],
)
def test_invalid_values_exit_with_usage_error(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv, env)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: rds-export-operator" in err
    assert message in err


@pytest.mark.parametrize("name", ["RDS_EXPORT_POLL_INTERVAL", "RDS_EXPORT_MAX_WORKERS", "RDS_EXPORT_METRICS_PORT"])
def test_invalid_numeric_environment_exits_with_usage_error(name: str) -> None:
    with pytest.raises(SystemExit):
        parse([], {name: "abc"})


def test_nan_poll_interval_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--poll-interval", "nan"], {})
    assert "usage:" in capsys.readouterr().err


def test_tick_interval_is_clamped_to_the_poll_interval() -> None:
    assert parse(["--poll-interval", "2"], {}).tick_interval == 2.0
    assert parse(["--poll-interval", "60", "--tick-interval", "7"], {}).tick_interval == 7.0
    assert parse([], {"RDS_EXPORT_TICK_INTERVAL": "3", "RDS_EXPORT_POLL_INTERVAL": "1.5"}).tick_interval == 1.5


def test_polling_and_export_limit() -> None:
    s = parse([], {})
    assert (s.polling, s.max_concurrent_exports, s.tick_interval) == ("coalesced", 5, 3.0)
    s = parse(["--max-concurrent-exports", "8"], {"RDS_EXPORT_POLLING": "per-object"})
    assert (s.polling, s.max_concurrent_exports) == ("per-object", 8)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"poll_interval": 0.99},
        {"poll_interval": 4, "tick_interval": 5},
        {"tick_interval": 0.1},
        {"polling": "lazy"},
        {"max_concurrent_exports": 0},
        {"retry_base_delay": -1},
        {"retry_base_delay": 301},
        {"log_format": "text"},
        {"log_level": "verbose"},
        {"max_workers": 0},
        {"metrics_port": 70000},
        {"retry_period": 10, "renew_deadline": 10},
        {"renew_deadline": 15, "lease_duration": 15},
    ],
)
def test_settings_validate_on_construction(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_settings_accept_edges() -> None:
    s = Settings(
        poll_interval=1, tick_interval=1, retry_base_delay=5, retry_max_delay=5, metrics_port=65535, log_level="debug"
    )
    assert s.poll_interval == s.tick_interval == 1 and s.retry_base_delay == s.retry_max_delay
    assert Settings(tick_interval=0.2).tick_interval == 0.2
    assert Settings(metrics_port=0).metrics_port == 0


def test_table_report_is_on_by_default_and_can_be_switched_off() -> None:
    s = parse([], {})
    assert (s.table_report, s.table_report_wait) == (True, 900.0)
    assert parse(["--no-table-report"], {}).table_report is False
    assert parse([], {"RDS_EXPORT_TABLE_REPORT": "false"}).table_report is False
    assert parse(["--table-report"], {"RDS_EXPORT_TABLE_REPORT": "false"}).table_report is True
    assert parse(["--table-report-wait", "5"], {}).table_report_wait == 5.0
    assert parse([], {"RDS_EXPORT_TABLE_REPORT_WAIT": "0"}).table_report_wait == 0.0
    with pytest.raises(SystemExit):
        parse(["--table-report-wait", "-1"], {})
    with pytest.raises(SystemExit):
        parse(["--table-report-wait", "nan"], {})
