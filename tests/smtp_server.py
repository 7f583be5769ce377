"""A real SMTP server for tests: aiosmtpd on a free loopback port, STARTTLS and AUTH required.

The server presents a self-signed certificate for ``127.0.0.1``/``localhost`` generated per
session; clients trust it through ``SMTP_CA_FILE``. It refuses ``MAIL`` before STARTTLS and AUTH
(``require_starttls``, ``auth_required``), accepts one username/password, and keeps every
message it accepted, parsed (``email.policy.default``), in ``messages``. So the tests exercise
the production path: ``SMTP_STARTTLS=true`` (the default), certificate verification, login.

``fail_next(n, code)`` makes the next ``n`` ``DATA`` commands fail with a temporary error
(``451``) to test retries.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USERNAME = "billing-mailer"
PASSWORD = "smtp-test-password-123"
SENDER = "Billing <billing@mail.test>"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: ``(cert.pem, key.pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class Received:
    """One accepted message: envelope, parsed message, whether TLS and AUTH were in place."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def kind(self) -> str:
        return str(self.message["X-Billing-Kind"])

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""

    def attachments(self) -> list[tuple[str, str, bytes]]:
        return [
            (str(a.get_filename()), a.get_content_type(), a.get_content())
            for a in self.message.iter_attachments()
        ]


@dataclass
class Handler:
    messages: list[Received] = field(default_factory=list)
    failures_left: int = 0
    failure_reply: str = "451 4.3.0 Temporary failure, try again later"
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                return self.failure_reply
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=message,
                    tls=session.ssl is not None,
                    authenticated=bool(session.authenticated),
                )
            )
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpServer:
    """A running server: its port, CA file, received messages and env for the mailer."""

    controller: Controller
    handler: Handler
    port: int
    ca_file: Path

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    def of_kind(self, kind: str) -> list[Received]:
        return [m for m in self.messages if m.kind == kind]

    def fail_next(self, count: int = 1, reply: str | None = None) -> None:
        with self.handler.lock:
            self.handler.failures_left = count
            if reply:
                self.handler.failure_reply = reply

    def clear(self) -> None:
        with self.handler.lock:
            self.handler.messages.clear()

    def env(self) -> dict[str, str]:
        return {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_USERNAME": USERNAME,
            "SMTP_PASSWORD": PASSWORD,
            "SMTP_STARTTLS": "true",
            "SMTP_FROM": SENDER,
            "SMTP_CA_FILE": str(self.ca_file),
            "SMTP_TIMEOUT": "10",
        }


@contextmanager
def running_smtp(directory: Path) -> Iterator[SmtpServer]:
    """Start a STARTTLS + AUTH server on a free port; stop it afterwards."""
    cert, key = make_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Handler()
    port = _free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=_authenticator,
        server_hostname="localhost",
    )
    controller.start()
    try:
        yield SmtpServer(controller, handler, port, cert)
    finally:
        controller.stop()
