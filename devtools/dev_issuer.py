"""A local OIDC issuer that stands in for Google when functions run on this machine.

It mints RS256 ID tokens shaped like the ones Cloud Scheduler sends (``iss``, ``aud``, ``sub``,
``email``, ``email_verified``, ``iat``, ``exp``, ``azp``) and serves its certificate as
``{kid: PEM}`` at ``/certs`` (Google's ``oauth2/v1/certs`` format) and as a JWKS at ``/jwks``,
so functions run with ``AUTH_MODE=verify`` exactly as in production, only with::

    AUTH_CERTS_URL=http://127.0.0.1:PORT/certs
    AUTH_ISSUERS=https://dev-issuer.local
    AUTH_ALLOWED_PRINCIPALS=scheduler@dev.local
    AUTH_AUDIENCE=<the function's local URL>

The key (RSA 2048 and a self-signed X.509 certificate, one PEM file, mode 0600) lives in
``.dev/issuer/`` (gitignored) and is created on first use. It is for development only: nothing
in production trusts it. Command line::

    python -m devtools.dev_issuer serve --port 8090 --dir .dev/issuer   # until killed
    python -m devtools.dev_issuer token --audience http://127.0.0.1:8081 [--email E] [--platform]

``token`` prints a token on stdout (the only place this project prints one); ``--platform``
replaces its signature the way Cloud Run IAM does (``SIGNATURE_REMOVED_BY_GOOGLE``).
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google.auth.crypt
import google.auth.jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

DEV_ISSUER = "https://dev-issuer.local"
"""The ``iss`` of every dev token; add it to ``AUTH_ISSUERS`` locally."""

DEV_PRINCIPAL = "scheduler@dev.local"
"""The default ``email`` of dev tokens, the principal allowed locally."""

DEFAULT_DIR = Path(".dev/issuer")
"""Where :func:`load_or_create_key` keeps the key by default (relative to the repo root)."""

KEY_FILE = "dev-issuer.pem"
"""The file holding the private key followed by the certificate."""

SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
"""What Cloud Run puts in place of the signature of a token it verified."""

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class DevKey:
    """An RSA signing key and its self-signed certificate.

    Attributes:
        private_key_pem: PKCS#8 PEM of the RSA 2048 private key.
        certificate_pem: PEM of the self-signed X.509 certificate of its public key.
        kid: the key id, the first 16 hex characters of the SHA-256 of the certificate's DER.

    """

    private_key_pem: bytes
    certificate_pem: bytes
    kid: str

    def signer(self) -> google.auth.crypt.Signer:
        """Return a google-auth RS256 signer carrying this key's ``kid`` (parsed once, cached)."""
        return _signer(self.private_key_pem, self.kid)

    def certs(self) -> dict[str, str]:
        """Return ``{kid: PEM certificate}``, the format of Google's ``oauth2/v1/certs``."""
        return {self.kid: self.certificate_pem.decode("ascii")}

    def jwk(self) -> dict[str, str]:
        """Return the public key as an RSA JWK (RFC 7517/7518) with ``kid``, ``alg``, ``use``."""
        cert = x509.load_pem_x509_certificate(self.certificate_pem)
        public = cert.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        numbers = public.public_numbers()
        return {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }


def generate_key(common_name: str = "dev-issuer.local") -> DevKey:
    """Create a fresh RSA 2048 key and a self-signed certificate valid for ten years (in memory)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .sign(private_key, hashes.SHA256())
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _dev_key(key_pem, cert)


def load_or_create_key(directory: Path = DEFAULT_DIR) -> DevKey:
    """Load the key in ``directory/dev-issuer.pem``, creating it (and the directory) if absent.

    Creation is race-free across processes: the key is written to a temporary file and
    hard-linked into place, so when two processes start at once both end up with the winner's
    key. The file is mode 0600.

    Raises:
        ValueError: the file exists but does not hold a private key and a certificate.

    """
    path = directory / KEY_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        key = generate_key()
        tmp = directory / f".{KEY_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_key_pem + key.certificate_pem)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its key
        finally:
            tmp.unlink()
    return _parse_key_file(path.read_bytes())


def mint_token(
    key: DevKey,
    *,
    audience: str,
    email: str = DEV_PRINCIPAL,
    lifetime: int = 3600,
    now: float | None = None,
    issuer: str = DEV_ISSUER,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Return an RS256 ID token signed by ``key``, shaped like a Google service-account token.

    Claims: ``iss``, ``aud``, ``sub`` (a stable numeric id derived from the email, like a
    service account's unique id), ``email``, ``email_verified`` (true), ``iat`` (``now``,
    default the current time), ``exp`` (``iat + lifetime``) and ``azp`` (= ``sub``).
    ``extra_claims`` are applied last; a ``None`` value removes that claim (to build invalid
    tokens in tests).
    """
    issued_at = int(time.time() if now is None else now)
    subject = str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16))
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "azp": subject,
        "email": email,
        "email_verified": True,
        "iat": issued_at,
        "exp": issued_at + lifetime,
    }
    for name, value in (extra_claims or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    token: bytes = google.auth.jwt.encode(key.signer(), claims)  # type: ignore[no-untyped-call]
    return token.decode("ascii")


def strip_signature(token: str) -> str:
    """Replace the token's signature with ``SIGNATURE_REMOVED_BY_GOOGLE``, as Cloud Run IAM does."""
    header, payload, _ = token.split(".")
    return f"{header}.{payload}.{SIGNATURE_REMOVED}"


class CertsServer(ThreadingHTTPServer):
    """An HTTP server publishing keys at ``/certs`` (``{kid: PEM}``) and ``/jwks`` (JWKS).

    Attributes:
        keys: the published keys; replace the list to simulate a rotation.
        fetches: how many certificate documents were served (tests count them).
        max_age: the ``Cache-Control: max-age`` sent, or ``None`` for no header.

    """

    daemon_threads = True

    def __init__(self, port: int, keys: Sequence[DevKey], max_age: int | None = 300) -> None:
        super().__init__((LOOPBACK, port), _CertsHandler)
        self.keys: list[DevKey] = list(keys)
        self.fetches = 0
        self.max_age = max_age
        self._count_lock = threading.Lock()

    def count_fetch(self) -> None:
        """Add one to :attr:`fetches` (thread-safe)."""
        with self._count_lock:
            self.fetches += 1

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.server_address[1]}"


class _CertsHandler(BaseHTTPRequestHandler):
    server: CertsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/certs":
            body: dict[str, Any] = {}
            for key in self.server.keys:
                body.update(key.certs())
        elif path == "/jwks":
            body = {"keys": [key.jwk() for key in self.server.keys]}
        else:
            self.send_error(404)
            return
        self.server.count_fetch()
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.server.max_age is not None:
            self.send_header("Cache-Control", f"public, max-age={self.server.max_age}")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test and ``make serve`` output quiet."""


def serve_certs(
    key: DevKey | Sequence[DevKey],
    port: int = 0,
    *,
    max_age: int | None = 300,
) -> tuple[CertsServer, str]:
    """Serve ``key`` (or several) on ``127.0.0.1:port`` from a background daemon thread.

    Returns:
        The server (stop it with ``server.shutdown(); server.server_close()``) and the
        ``{kid: PEM}`` URL, ``http://127.0.0.1:PORT/certs``; the JWKS is at ``/jwks``.

    """
    keys = [key] if isinstance(key, DevKey) else list(key)
    server = CertsServer(port, keys, max_age=max_age)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="dev-issuer",
        daemon=True,
    )
    thread.start()
    return server, f"{server.base_url}/certs"


@functools.lru_cache(maxsize=32)
def _signer(private_key_pem: bytes, kid: str) -> google.auth.crypt.Signer:
    # Loading an RSA key checks it (about 0.1 s); tests mint many tokens from one key.
    signer: google.auth.crypt.Signer = google.auth.crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
        private_key_pem,
        key_id=kid,
    )
    return signer


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _dev_key(private_key_pem: bytes, cert: x509.Certificate) -> DevKey:
    der = cert.public_bytes(serialization.Encoding.DER)
    return DevKey(
        private_key_pem=private_key_pem,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        kid=hashlib.sha256(der).hexdigest()[:16],
    )


def _parse_key_file(data: bytes) -> DevKey:
    marker = b"-----BEGIN CERTIFICATE-----"
    index = data.find(marker)
    if index <= 0:
        raise ValueError(f"{KEY_FILE} must hold a PEM private key followed by a certificate")
    private_key = serialization.load_pem_private_key(data[:index], password=None)
    cert = x509.load_pem_x509_certificate(data[index:])
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ValueError(f"{KEY_FILE} does not hold an RSA private key")
    return _dev_key(data[:index], cert)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.dev_issuer",
        description=__doc__.splitlines()[0],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the certificates until killed")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    token = sub.add_parser("token", help="print a token signed by the dev key")
    token.add_argument("--audience", required=True, help="the function's URL (AUTH_AUDIENCE)")
    token.add_argument("--email", default=DEV_PRINCIPAL)
    token.add_argument("--lifetime", type=int, default=3600, help="seconds")
    token.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    token.add_argument("--issuer", default=DEV_ISSUER)
    token.add_argument(
        "--platform",
        action="store_true",
        help="strip the signature as Cloud Run IAM does (for AUTH_MODE=platform)",
    )
    args = parser.parse_args(argv)
    key = load_or_create_key(args.dir)
    if args.command == "token":
        minted = mint_token(
            key, audience=args.audience, email=args.email, lifetime=args.lifetime, issuer=args.issuer
        )
        print(strip_signature(minted) if args.platform else minted)
        return 0
    server = CertsServer(args.port, [key])
    print(
        f"dev issuer {DEV_ISSUER} (kid {key.kid}) serving {server.base_url}/certs and {server.base_url}/jwks",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
