"""``python -m admin call`` against a tiny local function that checks the token with billing.http.auth."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from admin.cli import main
from billing.errors import BillingError
from billing.http.auth import AuthSettings, CertCache, authenticate
from devtools.dev_issuer import (
    DEV_ISSUER,
    DEV_PRINCIPAL,
    CertsServer,
    DevKey,
    load_or_create_key,
    mint_token,
    serve_certs,
)
from tests.conftest import REPO


@dataclass
class Function:
    """A fake billing function: authenticates like the real ones and echoes what it got."""

    url: str
    server: ThreadingHTTPServer
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[tuple[DevKey, Path, CertsServer]]:
    directory = tmp_path / "issuer"
    key = load_or_create_key(directory)
    server, _ = serve_certs(key)
    yield key, directory, server
    server.shutdown()
    server.server_close()


@pytest.fixture
def function(issuer: tuple[DevKey, Path, CertsServer]) -> Iterator[Function]:
    _, _, certs = issuer
    cache = CertCache()
    holder: dict[str, Function] = {}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, document: dict[str, Any]) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, body: Any) -> None:
            fn = holder["fn"]
            settings = AuthSettings(
                mode="verify",
                audience=fn.url,
                allowed_principals=frozenset({DEV_PRINCIPAL}),
                certs_url=f"{certs.base_url}/certs",
                issuers=frozenset({DEV_ISSUER}),
            )
            fn.requests.append({"method": self.command, "headers": dict(self.headers), "body": body})
            try:
                principal = authenticate(self.headers.get("Authorization"), settings, cache=cache)
            except BillingError as exc:
                self._answer(exc.status, exc.to_json())
                return
            self._answer(
                200,
                {
                    "principal": principal.email,
                    "body": body,
                    "tenant": self.headers.get("X-Tenant-ID"),
                    "path": self.path,
                    "method": self.command,
                },
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._handle(json.loads(self.rfile.read(length) or b"null"))

        def do_GET(self) -> None:
            self._handle(None)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fn = Function(url=f"http://127.0.0.1:{server.server_address[1]}/", server=server)
    holder["fn"] = fn
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fn
    server.shutdown()
    server.server_close()


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ=environ or {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_monthly_billing_call_posts_body_and_tenant(
    function: Function,
    issuer: tuple[DevKey, Path, CertsServer],
) -> None:
    _, directory, _ = issuer
    code, out, err = run(
        [
            "call",
            "monthly_billing",
            "--url",
            function.url,
            "--local",
            "--issuer-dir",
            str(directory),
            "--tenant",
            "acme",
            "--month",
            "2026-10",
            "--dry-run",
        ]
    )
    assert (code, err) == (0, "")
    answer = json.loads(out)
    assert answer == {
        "principal": DEV_PRINCIPAL,
        "body": {"month": "2026-10", "dry_run": True},
        "tenant": "acme",
        "path": "/",
        "method": "POST",
    }
    assert out.startswith("{\n  ")  # pretty-printed
    [request] = function.requests
    assert request["headers"]["Authorization"].startswith("Bearer ey")
    assert request["headers"]["Content-Type"] == "application/json"
    token = request["headers"]["Authorization"].split()[1]
    assert token not in out and token not in err


def test_flags_lay_over_data(
    function: Function, issuer: tuple[DevKey, Path, CertsServer], tmp_path: Path
) -> None:
    _, directory, _ = issuer
    data = tmp_path / "body.json"
    data.write_text(json.dumps({"action": "void", "note": "from file", "amount": 1}))
    code, out, _ = run(
        [
            "call",
            "billing_admin",
            "--url",
            function.url,
            "--local",
            "--issuer-dir",
            str(directory),
            "--data",
            f"@{data}",
            "--action",
            "mark_paid",
            "--invoice-id",
            "inv_1",
            "--amount",
            "1200",
            "--paid-at",
            "2026-11-03T10:00:00Z",
        ]
    )
    assert code == 0
    assert json.loads(out)["body"] == {
        "action": "mark_paid",
        "note": "from file",
        "amount": 1200,
        "invoice_id": "inv_1",
        "paid_at": "2026-11-03T10:00:00Z",
    }
    code, out, _ = run(
        [
            "call",
            "generate_invoices",
            "--url",
            function.url,
            "--local",
            "--issuer-dir",
            str(directory),
            "--data",
            '{"x": [1]}',
            "--as-of",
            "2026-11-01T00:00:00+01:00",
            "--subscription-id",
            "sub_9",
        ]
    )
    assert code == 0
    assert json.loads(out)["body"] == {
        "x": [1],
        "as_of": "2026-11-01T00:00:00+01:00",
        "subscription_id": "sub_9",
    }
    assert function.requests[-1]["headers"].get("X-Tenant-ID") is None


def test_env_selects_local_source_and_url(
    function: Function, issuer: tuple[DevKey, Path, CertsServer]
) -> None:
    _, directory, _ = issuer
    environ = {"ADMIN_TOKEN_SOURCE": "local", "ADMIN_URL_DUNNING": function.url}
    code, out, _ = run(["call", "dunning", "--issuer-dir", str(directory)], environ)
    assert code == 0
    assert json.loads(out)["body"] == {}


def test_http_errors_exit_non_zero(function: Function, issuer: tuple[DevKey, Path, CertsServer]) -> None:
    _, directory, _ = issuer
    code, out, err = run(
        [
            "call",
            "monthly_billing",
            "--url",
            function.url,
            "--local",
            "--issuer-dir",
            str(directory),
            "--email",
            "intruder@dev.local",
        ]
    )
    assert code == 1
    assert json.loads(out)["error"]["code"] == "permission_denied"
    assert "HTTP 403" in err
    code, out, err = run(
        [
            "call",
            "monthly_billing",
            "--url",
            function.url,
            "--local",
            "--issuer-dir",
            str(directory),
            "--audience",
            "https://elsewhere",
        ]
    )
    assert code == 1
    assert json.loads(out)["error"]["code"] == "unauthenticated"
    assert "HTTP 401" in err


def test_env_token_source_is_never_echoed(
    function: Function, issuer: tuple[DevKey, Path, CertsServer]
) -> None:
    key, _, _ = issuer
    token = mint_token(key, audience=function.url)
    code, out, err = run(
        ["call", "monthly_billing", "--url", function.url, "--token-source", "env"], {"ADMIN_ID_TOKEN": token}
    )
    assert code == 0
    assert function.requests[-1]["headers"]["Authorization"] == f"Bearer {token}"
    assert token not in out + err
    code, _, err = run(["call", "monthly_billing", "--url", function.url, "--token-source", "env"], {})
    assert code == 3 and "ADMIN_ID_TOKEN" in err


def test_get_sends_no_body(function: Function, issuer: tuple[DevKey, Path, CertsServer]) -> None:
    _, directory, _ = issuer
    code, out, _ = run(
        [
            "call",
            "monthly_billing",
            "--url",
            function.url,
            "--local",
            "--issuer-dir",
            str(directory),
            "--method",
            "GET",
        ]
    )
    assert code == 0
    assert json.loads(out)["method"] == "GET"


@pytest.mark.parametrize(
    "argv",
    [
        ["call", "monthly_billing", "--local"],  # no URL
        ["call", "monthly_billing", "--url", "http://x", "--month", "2026-13"],
        ["call", "monthly_billing", "--url", "http://x", "--month", "2026-1"],
        ["call", "monthly_billing", "--url", "https://x", "--month", "2026-10\n"],
        ["call", "monthly_billing", "--url", "https://x", "--month", "\u0662\u0660\u0662\u0666-10"],
        ["call", "monthly_billing\n", "--url", "https://x"],
        ["call", "generate_invoices", "--url", "http://x", "--as-of", "2026-11-01"],
        ["call", "generate_invoices", "--url", "http://x", "--as-of", "2026-11-01T00:00:00"],
        ["call", "billing_admin", "--url", "http://x", "--amount", "-5"],
        ["call", "billing_admin", "--url", "http://x", "--amount", "1.5"],
        ["call", "billing_admin", "--url", "http://x", "--data", "[1]"],
        ["call", "billing_admin", "--url", "http://x", "--data", "{nope"],
        ["call", "Monthly-Billing", "--url", "http://x"],
        ["call", "monthly_billing", "--url", "http://x", "--token-source", "magic"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(argv)
    assert info.value.code == 2


def test_unknown_token_source_from_env_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        run(["call", "dunning", "--url", "http://x"], {"ADMIN_TOKEN_SOURCE": "magic"})
    assert info.value.code == 2


def test_unreachable_function_exits_3(issuer: tuple[DevKey, Path, CertsServer]) -> None:
    _, directory, _ = issuer
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = run(
        [
            "call",
            "dunning",
            "--url",
            f"http://127.0.0.1:{port}/",
            "--local",
            "--issuer-dir",
            str(directory),
            "--timeout",
            "5",
        ]
    )
    assert (code, out) == (3, "")
    assert "could not reach" in err


def test_email_only_for_local_tokens() -> None:
    code, _, err = run(
        ["call", "dunning", "--url", "https://x", "--token-source", "env", "--email", "a@b.c"],
        {"ADMIN_ID_TOKEN": "x"},
    )
    assert code == 3 and "--email" in err


def test_python_dash_m_admin(function: Function, issuer: tuple[DevKey, Path, CertsServer]) -> None:
    _, directory, _ = issuer
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "admin",
            "call",
            "monthly_billing",
            "--url",
            function.url,
            "--local",
            "--issuer-dir",
            str(directory),
            "--month",
            "2026-10",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["body"] == {"month": "2026-10"}


def test_google_source_without_credentials_exits_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    code, out, err = run(["call", "dunning", "--url", "http://127.0.0.1:9/"])
    assert (code, out) == (3, "")
    assert "could not get a Google ID token" in err


# -- issue 8 item 16: never a token over plain HTTP off this machine; audience mismatch warns -----
@pytest.mark.parametrize(
    "url",
    [
        "http://billing.example.com/monthly_billing",
        "http://10.0.0.7:8080/",
        "HTTP://example.com/",
        "http://127.0.0.1.evil.example/",
        "http://localhost.evil.example/",
        "ftp://example.com/",
        "billing.example.com/fn",
        "http:///nohost",
    ],
)
def test_plain_http_to_another_host_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        run(
            ["call", "dunning", "--url", url, "--token-source", "env"],
            {"ADMIN_ID_TOKEN": "secret-token-value"},
        )
    assert info.value.code == 2


def test_refusal_names_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(
            ["call", "dunning", "--url", "http://billing.example.com/", "--token-source", "env"],
            {"ADMIN_ID_TOKEN": "secret-token-value"},
        )
    err = capsys.readouterr().err
    assert "plain HTTP" in err and "https://" in err and "secret-token-value" not in err


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://billing.example.com/fn", True),
        ("http://127.0.0.1:8080/", True),
        ("http://127.9.8.7/", True),
        ("http://localhost:8080/x", True),
        ("http://LOCALHOST/", True),
        ("http://[::1]:8080/", True),
        ("http://[::ffff:127.0.0.1]/", True),
        ("http://[::2]/", False),
        ("http://128.0.0.1/", False),
        ("http://0.0.0.0/", False),
    ],
)
def test_transport_rule(url: str, ok: bool) -> None:
    from admin.cli import transport_problem

    assert (transport_problem(url) is None) is ok


def test_localhost_url_is_allowed(function: Function, issuer: tuple[DevKey, Path, CertsServer]) -> None:
    key, _, _ = issuer
    url = function.url.replace("127.0.0.1", "localhost")
    token = mint_token(key, audience=function.url)
    code, out, err = run(
        ["call", "dunning", "--url", url, "--token-source", "env"], {"ADMIN_ID_TOKEN": token}
    )
    # The fake function checks its own audience (the 127.0.0.1 URL), so it answers 200; the
    # origins differ by host name, so the CLI warns.
    assert code == 0, err
    assert "warning" in err and token not in err + out


def test_audience_with_another_origin_warns(
    function: Function, issuer: tuple[DevKey, Path, CertsServer]
) -> None:
    key, directory, _ = issuer
    code, _, err = run(
        [
            "call",
            "dunning",
            "--url",
            function.url,
            "--local",
            "--issuer-dir",
            str(directory),
            "--audience",
            "https://billing.example.com/dunning",
        ]
    )
    assert code == 1  # the function refuses a token for another audience
    assert "warning" in err and "https://billing.example.com" in err
    assert function.url.rstrip("/") in err

    env_token = mint_token(key, audience="https://elsewhere.example/fn")
    code, _, err = run(
        ["call", "dunning", "--url", function.url, "--token-source", "env"], {"ADMIN_ID_TOKEN": env_token}
    )
    assert "warning" in err and "https://elsewhere.example" in err and env_token not in err

    same_origin = mint_token(key, audience=function.url + "other_path")
    code, _, err = run(
        ["call", "dunning", "--url", function.url, "--token-source", "env"], {"ADMIN_ID_TOKEN": same_origin}
    )
    assert "warning" not in err


def test_review_flags_build_the_body_and_send_the_request_id(
    function: Function, issuer: tuple[DevKey, Path, CertsServer]
) -> None:
    _, directory, _ = issuer
    base = ["call", "billing_admin", "--url", function.url, "--local", "--issuer-dir", str(directory)]
    code, out, _ = run(
        [
            *base,
            "--tenant",
            "acme",
            "--action",
            "create_invoice",
            "--customer-id",
            "cus_1",
            "--line",
            "Support: 10 hours:10:5000",
            "--line",
            "Discount:1:-500",
            "--idempotency-key",
            "prepaid-1",
            "--finalize",
            "--memo",
            "Prepaid",
            "--request-id",
            "req-1",
        ]
    )
    assert code == 0
    assert json.loads(out)["body"] == {
        "action": "create_invoice",
        "customer_id": "cus_1",
        "lines": [
            {"description": "Support: 10 hours", "quantity": "10", "unit_amount_decimal": "5000"},
            {"description": "Discount", "quantity": "1", "unit_amount_decimal": "-500"},
        ],
        "idempotency_key": "prepaid-1",
        "finalize": True,
        "memo": "Prepaid",
    }
    assert function.requests[-1]["headers"].get("X-Request-ID") == "req-1"
    code, out, _ = run([*base, "--action", "finalize", "--invoice-ids", "b, a,c", "--output", "json"])
    assert code == 0 and json.loads(out)["body"] == {"action": "finalize", "invoice_ids": ["b", "a", "c"]}
    assert "X-Request-ID" not in function.requests[-1]["headers"]


@pytest.mark.parametrize("argv", [["--line", "no-colons"], ["--line", "x::5"], ["--invoice-ids", ","]])
def test_bad_review_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["call", "billing_admin", "--url", "http://127.0.0.1:1/", *argv], environ={})
    assert exc.value.code == 2
