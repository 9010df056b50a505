"""Entry point: read settings, configure logging, serve metrics and probes, lead (optionally), run kopf."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

import kopf
from kopf._core.reactor.inventory import ResourceMemories

from rds_export_operator.aws.glue import Glue
from rds_export_operator.aws.rds import Rds
from rds_export_operator.aws.s3 import S3
from rds_export_operator.catalog.handlers import CatalogHandlers
from rds_export_operator.exports import handlers
from rds_export_operator.runtime import health, idle_bodies, settings
from rds_export_operator.runtime.kubeapi import KubeApi
from rds_export_operator.runtime.leader import leadership
from rds_export_operator.runtime.metrics import Metrics
from rds_export_operator.schedules import handlers as schedule_handlers
from rds_export_operator.tables.handlers import TableReportHandlers


def configure_logging(config: settings.Settings) -> None:
    kopf.configure(
        debug=config.log_level == "DEBUG",
        quiet=config.log_level in ("WARNING", "ERROR"),
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(config.log_level)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # kopf logs every successful timer tick and watch event at INFO; a poll is not news.
    quiet = (
        f"Daemon 'sync' failed temporarily: {handlers.UP_TO_DATE}",
        "Handler 'track' succeeded",
        "Timer 'tables' succeeded",
        "Timer 'catalog' succeeded",
    )
    logging.getLogger("kopf.objects").addFilter(lambda r: not r.getMessage().startswith(quiet))


def wire(config: settings.Settings, metrics: Metrics) -> tuple[kopf.OperatorRegistry, ResourceMemories]:
    """Every handler on one registry, and kopf's per-object memories."""
    registry = kopf.OperatorRegistry()
    wiring = handlers.Handlers(
        config, Rds(observe=metrics.observe_call, timeout=config.aws_timeout, connections=config.max_workers), metrics
    )
    wiring.register(registry)
    schedule_handlers.register(registry, config, metrics.observe_call, wiring.identities)
    # The table report and the catalog read the export's info files as the namespace's identity (its exports').
    s3 = S3(
        observe=metrics.observe_call,
        timeout=config.aws_timeout,
        identities=wiring.identities,
        connections=config.max_workers,
    )
    if config.table_report:
        reports = TableReportHandlers(config, s3, wiring.identities)
        reports.register(registry)
        wiring.report_with = reports.with_first_look  # an export adopted finished: one write for both
    glue = Glue(
        calls_per_second=config.glue_calls_per_second,
        observe=metrics.observe_call,
        timeout=config.aws_timeout,
        identities=wiring.identities,
        connections=config.max_workers,
    )
    CatalogHandlers(config, glue, s3, metrics, wiring.identities).register(registry)

    memories = ResourceMemories()  # kopf's per-object memory, swept of finished objects' bodies
    idle_bodies.register(registry, memories)
    return registry, memories


def main(argv: Sequence[str] | None = None) -> int:
    config = settings.parse(sys.argv[1:] if argv is None else argv)
    configure_logging(config)
    metrics = Metrics()
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    registry, memories = wire(config, metrics)
    loop = asyncio.new_event_loop()
    probes = health.Probes(config.readiness_period)
    probes.loop = loop
    probes.register(registry)
    check = health.api_check(KubeApi.from_environment(), config.namespaces) if config.health_endpoint else None
    with health.serving(config.health_endpoint, probes, check), leadership(config, loop, probes) as lead:
        if lead.leading:
            metrics.leader.set(1)
            kopf.run(
                loop=loop,
                registry=registry,
                standalone=True,
                clusterwide=not config.namespaces,
                namespaces=config.namespaces,
                stop_flag=lead.stop_flag,
                memories=memories,
            )
            metrics.leader.set(0)
    if lead.exit_code:
        logging.getLogger(__name__).error(
            "leadership lost: exiting with code %d to restart as a standby", lead.exit_code
        )
    return lead.exit_code


if __name__ == "__main__":
    sys.exit(main())
