"""boto3 clients per identity and region, and every botocore exception turned into an AwsError (one place).

``Rds`` and ``S3`` build on it; nothing else imports boto3 for AWS calls. Clients are created once and shared
(boto3 clients are thread-safe; sessions are not, so creation is locked). Retries inside botocore stay short;
the reconciler backs off between attempts with jitter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from rds_export_operator.aws import regions
from rds_export_operator.aws.client_cache import ClientCache
from rds_export_operator.aws.errors import AwsError, ErrorKind
from rds_export_operator.aws.identity import Identities, Identity, IdentityUnavailable

T = TypeVar("T")


def classify(exc: Exception, operation: str) -> AwsError:
    """Map any exception from a botocore call to an AwsError, with the meaning ``aws_errors`` gives its code."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        if status >= 500:
            return AwsError(ErrorKind.RETRYABLE, code, message, operation)
        return AwsError.of(operation, code, message)
    if isinstance(exc, IdentityUnavailable):  # AssumeRole refused or failed: a trust policy may be changing
        role = f" {exc.role_arn}" if exc.role_arn else ""
        return AwsError(ErrorKind.UNAUTHORIZED, exc.code, f"cannot act as the namespace's AWS role{role}", operation)
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return AwsError.of(operation, "NoCredentials", str(exc))
    # Network errors, timeouts, unparseable responses: all worth another try later.
    return AwsError(ErrorKind.RETRYABLE, type(exc).__name__, str(exc), operation)


class AwsClients:
    """Clients of one AWS service: the operator's own per region, or a namespace's assumed role's.

    ``observe(operation, outcome, seconds)`` is called after every call, for metrics.
    """

    service = ""

    def __init__(
        self,
        *,
        session_factory: Callable[[], boto3.session.Session] = boto3.session.Session,
        observe: Callable[[str, str, float], None] | None = None,
        timeout: float = 20.0,
        identities: Identities | None = None,
        connections: int = 10,
    ) -> None:
        """``connections``: kept open per client; as many as threads may call at once (botocore's default, 10,
        makes a busier pool open and drop a TLS connection per call)."""
        self._session_factory, self.identities = session_factory, identities
        self._clients = ClientCache()
        self._lock = threading.Lock()
        self._observe = observe or (lambda operation, outcome, seconds: None)
        self._config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": 2},
            connect_timeout=min(5.0, timeout),
            read_timeout=timeout,
            max_pool_connections=connections,
            user_agent_extra="rds-export-operator",
        )

    def client(self, region: str, identity: Identity | None = None) -> Any:
        """The client of ``identity`` (a namespace's assumed role) or, for None, of the operator's own identity.
        A region AWS does not have is refused (the reconciler refuses those first; this is the last line)."""
        refusal = regions.refusal(region)
        if refusal is not None:
            raise AwsError(ErrorKind.TERMINAL, "UnknownRegion", refusal, "client")
        if identity is not None and not identity.is_operator:
            if self.identities is None:
                raise AwsError(ErrorKind.UNAUTHORIZED, "IdentityUnavailable", "no identity mapping", "AssumeRole")
            return self.identities.clients(identity).client(self.service, region, self._config)
        with self._lock:
            return self._clients.get(
                region,
                lambda: self._session_factory().client(self.service, region_name=region, config=self._config),  # type: ignore[call-overload]
            )

    def call(self, operation: str, fn: Callable[[], T], *, passthrough: tuple[type[Exception], ...] = ()) -> T:
        """Run one call; any exception but ``passthrough`` ones becomes an AwsError. Observed either way."""
        started = time.monotonic()
        try:
            result = fn()
        except passthrough as exc:
            self._observe(operation, getattr(exc, "outcome", type(exc).__name__), time.monotonic() - started)
            raise
        except Exception as exc:
            error = classify(exc, operation)
            self._observe(operation, error.code, time.monotonic() - started)
            raise error from exc
        self._observe(operation, "Success", time.monotonic() - started)
        return result
