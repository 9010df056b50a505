"""Entry point: read settings, configure logging, register the handlers, run kopf."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import kopf

from rds_export_operator import handlers, settings
from rds_export_operator.rds import Rds


def main(argv: Sequence[str] | None = None) -> None:
    config = settings.parse(sys.argv[1:] if argv is None else argv)
    kopf.configure(
        debug=config.log_level == "DEBUG",
        quiet=config.log_level in ("WARNING", "ERROR"),
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(config.log_level)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # kopf logs every successful timer tick at INFO; a poll is not news.
    logging.getLogger("kopf.objects").addFilter(lambda r: not r.getMessage().startswith("Timer 'sync' succeeded"))
    registry = kopf.OperatorRegistry()
    handlers.register(registry, config, Rds())
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=config.health_endpoint or None,
    )


if __name__ == "__main__":
    main()
