"""The health endpoint while this replica is a standby (kopf serves its own liveness endpoint once leading)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse


@contextmanager
def standby_health(endpoint: str) -> Iterator[None]:
    """Answer 200 on the endpoint's path until the block ends (then the port is free for kopf)."""
    if not endpoint:
        yield
        return
    url = urlparse(endpoint)
    path = url.path or "/"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.split("?")[0] == path
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"standby\n" if ok else b"not found\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 80), Handler)
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
