"""The one small blocking Kubernetes API client, with the operator's own credentials, for threads beside kopf's loop.

Leader election, the readiness check and the identity mapping source run before or beside kopf's event loop, so
they cannot use kopf's session; JSON over HTTPS with the standard library is all they need. Credentials rotate,
so a client stays usable for the life of the process: in a pod the ServiceAccount token is read from its file on
every request (projected tokens rotate about hourly), and a 401 logs in again once before giving up.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kopf

# As kopf.login_with_service_account reads it.
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
Login = Callable[[], tuple[kopf.ConnectionInfo, Path | None]]


class NotFound(Exception):
    """HTTP 404."""


class Conflict(Exception):
    """HTTP 409: someone else wrote the object since we read it (or created it first)."""


class ApiError(urllib.error.HTTPError):
    """Any other HTTP error, with the message of the API server's Status (``HTTP 403: ...``)."""

    def __str__(self) -> str:
        return f"HTTP {self.code}: {self.msg}"


def environment_login() -> tuple[kopf.ConnectionInfo, Path | None]:
    """As kopf logs in (handlers.login): the ServiceAccount (and its token file) in a pod, else $KUBECONFIG."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings)
    if info is not None:
        return info, SERVICE_ACCOUNT_TOKEN
    info = kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise RuntimeError("no Kubernetes credentials (no ServiceAccount token, no KUBECONFIG)")
    return info, None


class KubeApi:
    """Either fixed credentials (``info``, optionally with a ``token_file`` read per request), or a ``login``
    called on first use and again after a 401; with neither, the operator's own (``environment_login``)."""

    def __init__(
        self,
        info: kopf.ConnectionInfo | None = None,
        token_file: Path | None = None,
        *,
        login: Callable[[], kopf.ConnectionInfo] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._login: Login | None = None
        if login is not None:
            self._login = lambda: (login(), token_file)
        elif info is None:
            self._login = environment_login
        self.token_file, self.timeout = token_file, timeout
        self._lock = threading.Lock()
        self._session: tuple[kopf.ConnectionInfo, ssl.SSLContext] | None = None
        if info is not None:
            self._session = (info, info.as_ssl_context())

    @classmethod
    def from_environment(cls) -> KubeApi:
        """The operator's own credentials, logged in now: no credentials at all fail at start, not later."""
        api = cls()
        api._connection()
        return api

    def _connection(self, renew: bool = False) -> tuple[kopf.ConnectionInfo, ssl.SSLContext]:
        with self._lock:
            if self._session is None or (renew and self._login is not None):
                assert self._login is not None
                info, self.token_file = self._login()
                self._session = (info, info.as_ssl_context())
            return self._session

    def headers(self) -> dict[str, str]:
        info, _ = self._connection()
        headers = {"Content-Type": "application/json", "Accept": "application/json", **info.as_http_headers()}
        if self.token_file is not None:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {self.token_file.read_text().strip()}"
        return headers

    def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """The decoded JSON answer. Raises NotFound, Conflict, ApiError, URLError/OSError, ValueError."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            info, context = self._connection(renew=attempt > 0)
            url = info.server.rstrip("/") + path
            request = urllib.request.Request(url, data=data, method=method, headers=self.headers())
            try:
                with urllib.request.urlopen(request, timeout=timeout or self.timeout, context=context) as response:
                    return json.load(response)
            except urllib.error.HTTPError as error:
                if error.code == 401 and attempt == 0:  # rotated credentials: log in (or read the token) again
                    continue
                message = _status_message(error)
                if error.code in (404, 409):
                    raise (NotFound if error.code == 404 else Conflict)(message) from None
                raise ApiError(error.url, error.code, message, error.headers, None) from None
        raise AssertionError("unreachable")

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if it does not exist."""
        try:
            return dict(self.request("GET", path))
        except NotFound:
            return None

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", path, body))


def _status_message(error: urllib.error.HTTPError) -> str:
    text = error.read().decode(errors="replace")
    try:
        return str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        return text[:500]
