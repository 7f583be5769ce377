"""A local GCE metadata server: the identity endpoint google-auth's ``fetch_id_token`` uses.

Locally, ``TASKS_MODE=http`` mints the tasks' bearer tokens as Cloud Tasks does in production:
through google-auth (``google.oauth2.id_token.fetch_id_token(Request(), audience)``), which finds
the metadata server at ``GCE_METADATA_IP`` (its ping) and ``GCE_METADATA_HOST`` (its
``/computeMetadata/v1/`` API). This server answers, for requests carrying ``Metadata-Flavor:
Google`` (403 otherwise, as the real server does):

- ``GET /``: the ping (200 with ``Metadata-Flavor: Google``);
- ``GET /computeMetadata/v1/instance/service-accounts/default/?recursive=true``: ``{email,
  aliases, scopes}``;
- ``GET|POST /computeMetadata/v1/instance/service-accounts/default/identity?audience=A``: an
  ID token for audience ``A`` and the configured service-account email, signed by the local
  issuer's key (``devtools.dev_issuer.mint_token``), so the worker verifies it against the
  issuer's ``/certs`` like any other token. 400 without an audience.

Point google-auth at it with ``GCE_METADATA_HOST=127.0.0.1:PORT`` and
``GCE_METADATA_IP=127.0.0.1:PORT`` (set before google-auth is imported: it reads the host at
import; ``point_google_auth_at`` also patches an already imported module). Development only.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devtools.dev_issuer import LOOPBACK, DevKey, mint_token

IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
ACCOUNT_PATH = "/computeMetadata/v1/instance/service-accounts/default/"


class MetadataServer(ThreadingHTTPServer):
    """Serves the identity endpoint for ``email`` with tokens signed by ``key``.

    Attributes:
        tokens_minted: how many ID tokens were served (tests count them).

    """

    daemon_threads = True

    def __init__(self, port: int, key: DevKey, email: str) -> None:
        super().__init__((LOOPBACK, port), _MetadataHandler)
        self.key = key
        self.email = email
        self.tokens_minted = 0
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` (the value of ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP``)."""
        return f"{LOOPBACK}:{self.server_address[1]}"

    def mint(self, audience: str) -> str:
        """A token for ``audience`` (counted)."""
        with self._lock:
            self.tokens_minted += 1
        return mint_token(self.key, audience=audience, email=self.email)


class _MetadataHandler(BaseHTTPRequestHandler):
    server: MetadataServer

    def _answer(self, status: int, body: bytes, content_type: str = "application/text") -> None:
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.headers.get("Metadata-Flavor") != "Google":
            self._answer(403, b"Missing Metadata-Flavor: Google header")
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/":
            self._answer(200, b"ok")
        elif parts.path == ACCOUNT_PATH:
            info = {"email": self.server.email, "aliases": ["default"], "scopes": []}
            self._answer(200, json.dumps(info).encode(), "application/json")
        elif parts.path == IDENTITY_PATH:
            audience = (query.get("audience") or [""])[0]
            if not audience:
                self._answer(400, b"audience required")
                return
            self._answer(200, self.server.mint(audience).encode())
        else:
            self._answer(404, b"not found")

    def do_POST(self) -> None:
        """google-auth POSTs for bound tokens; answered like a GET."""
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def serve_metadata(key: DevKey, email: str, port: int = 0) -> MetadataServer:
    """Start a ``MetadataServer`` on ``127.0.0.1:port`` in a daemon thread; stop with ``shutdown()``."""
    server = MetadataServer(port, key, email)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="metadata", daemon=True
    ).start()
    return server


def point_google_auth_at(host: str) -> dict[str, str]:
    """Set ``GCE_METADATA_HOST``/``GCE_METADATA_IP`` to ``host`` and patch google-auth if imported.

    Returns the environment variables set (for child processes).
    """
    env = {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host}
    os.environ.update(env)
    from google.auth.compute_engine import _metadata

    _metadata._GCE_METADATA_HOST = host  # read once at import by google-auth
    return env
