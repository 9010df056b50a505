"""Entry point: read settings, configure logging, serve metrics, lead (optionally), run kopf."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Sequence

import kopf

from rds_export_operator import handlers, schedule_handlers, settings
from rds_export_operator.health import standby_health
from rds_export_operator.leader import LeaderElector, LeaseApi
from rds_export_operator.metrics import Metrics
from rds_export_operator.rds import Rds

logger = logging.getLogger("rds_export_operator")


def main(argv: Sequence[str] | None = None) -> int:
    config = settings.parse(sys.argv[1:] if argv is None else argv)
    kopf.configure(
        debug=config.log_level == "DEBUG",
        quiet=config.log_level in ("WARNING", "ERROR"),
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(config.log_level)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # kopf logs every successful timer tick and watch event at INFO; a poll is not news.
    quiet = ("Timer 'sync' succeeded", "Handler 'track' succeeded")
    logging.getLogger("kopf.objects").addFilter(lambda r: not r.getMessage().startswith(quiet))

    metrics = Metrics()
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    registry = kopf.OperatorRegistry()
    handlers.Handlers(config, Rds(observe=metrics.observe_call, timeout=config.aws_timeout), metrics).register(registry)
    schedule_handlers.register(registry, config, metrics.observe_call)

    # Leadership lost: kopf stops, the process exits non-zero and restarts as a standby. An asyncio flag, because
    # kopf waits on a threading.Event in an executor thread that would then block the loop's shutdown.
    loop = asyncio.new_event_loop()
    stop_flag: asyncio.Future[None] | None = None
    lost = threading.Event()
    elector: LeaderElector | None = None
    renewing = threading.Event()
    if config.leader_election:
        elector = LeaderElector(
            LeaseApi.from_environment(config.leader_election_namespace, config.leader_election_name),
            identity=config.identity,
            lease_duration=config.lease_duration,
            renew_deadline=config.renew_deadline,
            retry_period=config.retry_period,
        )
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        with standby_health(config.health_endpoint):
            leading = elector.acquire(stop)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not leading:
            return 0
        stop_flag = flag = loop.create_future()

        def set_flag() -> None:
            if not flag.done():
                flag.set_result(None)

        def on_lost() -> None:
            lost.set()
            loop.call_soon_threadsafe(set_flag)

        threading.Thread(target=elector.keep_renewing, args=(on_lost, renewing), name="lease", daemon=True).start()
    try:
        kopf.run(
            loop=loop,
            registry=registry,
            standalone=True,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            liveness_endpoint=config.health_endpoint or None,
            stop_flag=stop_flag,
        )
    finally:
        renewing.set()
        if elector and not lost.is_set():
            elector.release()
    return 1 if lost.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
