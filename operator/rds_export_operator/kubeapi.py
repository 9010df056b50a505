"""A small blocking Kubernetes API client with the operator's own credentials, for threads beside kopf's loop.

Leader election and the readiness check run before and beside kopf's event loop, so they cannot use kopf's
session; JSON over HTTPS with the standard library is all they need. In a pod the ServiceAccount token is read
from its file on every request: projected tokens rotate (about hourly), and a token read once would expire.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kopf

# As kopf.login_with_service_account reads it.
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class NotFound(Exception):
    """HTTP 404."""


class Conflict(Exception):
    """HTTP 409: someone else wrote the object since we read it (or created it first)."""


class KubeApi:
    def __init__(self, info: kopf.ConnectionInfo, token_file: Path | None = None) -> None:
        self.server = info.server.rstrip("/")
        self.info, self.token_file = info, token_file
        self.context = info.as_ssl_context()

    @classmethod
    def from_environment(cls) -> KubeApi:
        """As kopf logs in (handlers.login): the ServiceAccount in a pod, else $KUBECONFIG."""
        settings = kopf.OperatorSettings()
        info = kopf.login_with_service_account(settings=settings)
        if info is not None:
            return cls(info, token_file=SERVICE_ACCOUNT_TOKEN)
        info = kopf.login_with_kubeconfig(settings=settings)
        if info is None:
            raise RuntimeError("no Kubernetes credentials (no ServiceAccount token, no KUBECONFIG)")
        return cls(info)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(self.info.as_http_headers())
        if self.token_file is not None:
            headers["Authorization"] = f"{self.info.scheme or 'Bearer'} {self.token_file.read_text().strip()}"
        return headers

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
        """The decoded JSON answer. Raises NotFound, Conflict, other HTTPError, URLError/OSError, ValueError."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method, headers=self.headers())
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code in (404, 409):
                detail = error.read().decode(errors="replace")
                raise (NotFound if error.code == 404 else Conflict)(detail) from None
            raise
