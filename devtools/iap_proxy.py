"""A development Identity-Aware Proxy in front of ``billing_console`` (``make serve``).

In production IAP authenticates the user and adds ``X-Goog-IAP-JWT-Assertion`` (ES256, issuer
``https://cloud.google.com/iap``). Locally this proxy does the same for one developer: it holds
its own EC P-256 key (``.dev/iap/iap-key.pem``, 0600, created on first use; trusted by nothing in
production), serves its JWK set at ``/_dev_iap/jwk`` (the console's ``IAP_CERTS_URL`` locally),
and forwards every other request to the console with a fresh assertion for ``--email`` and
``--audience`` (any assertion the client sent is dropped, as IAP does).

    python -m devtools.iap_proxy --upstream http://127.0.0.1:8086 --audience /dev/console \
        --email finance@dev.local --port 8080
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google.auth.crypt.es256
import google.auth.jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

IAP_ISSUER = "https://cloud.google.com/iap"
JWK_PATH = "/_dev_iap/jwk"
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}


def _b64(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()


@dataclass(frozen=True)
class IapKey:
    """An ES256 signing key and its key id (the SHA-256 of the public key, shortened)."""

    pem: bytes
    kid: str

    @classmethod
    def generate(cls) -> IapKey:
        """A new P-256 key."""
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls.from_pem(pem)

    @classmethod
    def from_pem(cls, pem: bytes) -> IapKey:
        """The key of a PKCS#8 PEM."""
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(pem, hashlib.sha256(public).hexdigest()[:16])

    def jwks(self) -> dict[str, Any]:
        """The public JWK set, shaped like Google's ``public_key-jwk``."""
        key = serialization.load_pem_private_key(self.pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        numbers = key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": "ES256",
                    "use": "sig",
                    "kid": self.kid,
                    "x": _b64(numbers.x),
                    "y": _b64(numbers.y),
                }
            ]
        }

    def assertion(
        self,
        email: str,
        audience: str,
        *,
        issuer: str = IAP_ISSUER,
        lifetime: int = 600,
        now: float | None = None,
    ) -> str:
        """An IAP-shaped assertion: ``iss``, ``aud``, ``sub``, ``email``, ``iat``, ``exp`` (ES256)."""
        signer = google.auth.crypt.es256.ES256Signer.from_string(self.pem, key_id=self.kid)
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": issuer,
            "aud": audience,
            "email": email,
            "sub": f"accounts.google.com:{hashlib.sha256(email.encode()).hexdigest()[:12]}",
            "iat": issued,
            "exp": issued + lifetime,
        }
        token: bytes = google.auth.jwt.encode(signer, claims)  # type: ignore[no-untyped-call]
        return token.decode()


def load_or_create(directory: Path) -> IapKey:
    """The key kept in ``directory/iap-key.pem`` (created 0600 on first use)."""
    path = directory / "iap-key.pem"
    if path.exists():
        return IapKey.from_pem(path.read_bytes())
    directory.mkdir(parents=True, exist_ok=True)
    key = IapKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.pem)
    return key


def make_handler(key: IapKey, upstream: str, audience: str, email: str) -> type[BaseHTTPRequestHandler]:
    """The request handler: the JWK set, or the request forwarded with an assertion."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: the console logs requests
            return

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in HOP_HEADERS:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            if self.path == JWK_PATH:
                self._answer(200, [("Content-Type", "application/json")], json.dumps(key.jwks()).encode())
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            request = urllib.request.Request(upstream + self.path, data=body, method=self.command)  # noqa: S310 - upstream is http://127.0.0.1
            for name, value in self.headers.items():
                if name.lower() not in HOP_HEADERS and name.lower() != "x-goog-iap-jwt-assertion":
                    request.add_header(name, value)
            request.add_header("X-Goog-IAP-JWT-Assertion", key.assertion(email, audience))
            request.add_header("X-Goog-Authenticated-User-Email", f"accounts.google.com:{email}")
            try:
                with _NO_REDIRECTS.open(request, timeout=120) as response:
                    self._answer(response.status, list(response.headers.items()), response.read())
            except urllib.error.HTTPError as error:
                self._answer(error.code, list(error.headers.items()), error.read())

        do_GET = do_POST = do_HEAD = _forward  # noqa: N815

    return Handler


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the browser follows redirects itself


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


def serve(key: IapKey, upstream: str, audience: str, email: str, port: int = 0) -> ThreadingHTTPServer:
    """Start the proxy on ``127.0.0.1:port`` in a daemon thread; return the server."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", port), make_handler(key, upstream.rstrip("/"), audience, email)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve_wsgi(app: Any, port: int = 0) -> tuple[Any, str]:
    """Serve a WSGI app (the console) on ``127.0.0.1:port`` in a daemon thread: ``(server, url)``."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def main(argv: list[str] | None = None) -> int:
    """Run the proxy until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m devtools.iap_proxy")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--email", default="finance@dev.local")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--dir", type=Path, default=Path(".dev/iap"))
    args = parser.parse_args(argv)
    server = serve(load_or_create(args.dir), args.upstream, args.audience, args.email, args.port)
    print(f"IAP proxy on http://127.0.0.1:{server.server_port} -> {args.upstream} as {args.email}")
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
