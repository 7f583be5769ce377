r"""``python -m admin``: call a billing function by hand with an OIDC ID token.

Usage::

    python -m admin call FUNCTION_NAME --url URL [--tenant T] [--month YYYY-MM]
        [--as-of RFC3339] [--subscription-id ID] [--action ACTION] [--invoice-id ID]
        [--amount MINOR_UNITS] [--paid-at RFC3339] [--dry-run] [--data JSON|@file]
        [review fields, below] [--request-id ID] [--output auto|json|text]
        [--audience AUD] [--local | --token-source SOURCE] [--timeout SECONDS]

The body is ``--data`` (a JSON object) with the flags laid over it: ``--month`` -> ``month``,
``--as-of`` -> ``as_of``, ``--subscription-id`` -> ``subscription_id``, ``--action`` ->
``action``, ``--invoice-id`` -> ``invoice_id``, ``--amount`` -> ``amount``, ``--paid-at`` ->
``paid_at``, ``--dry-run`` -> ``"dry_run": true``. ``--tenant`` is sent as ``X-Tenant-ID``.
The review actions (issue 10) take ``--invoice-ids A,B,C`` -> ``invoice_ids`` (a list, in
order), ``--line-id``, ``--description``, ``--quantity`` (decimal string), ``--unit-amount`` ->
``unit_amount_decimal`` (decimal string, minor units, negative for a discount),
``--tax-exempt``, ``--customer-id``, ``--line DESCRIPTION:QUANTITY:UNIT_AMOUNT`` (repeatable,
-> ``lines``), ``--idempotency-key``, ``--finalize``, ``--memo`` and ``--reason``.
``--request-id`` is sent as ``X-Request-ID``: the same id sent again is a no-op.
``--url`` defaults to ``$ADMIN_URL_<FUNCTION_NAME>`` (e.g. ``ADMIN_URL_MONTHLY_BILLING``).
Examples::

    python -m admin call monthly_billing --url "$URL" --month 2026-10 --dry-run
    python -m admin call generate_invoices --url "$URL" --as-of 2026-11-01T00:00:00Z
    python -m admin call billing_admin --url "$URL" --tenant acme --action mark_paid \
        --invoice-id inv_123 --amount 1200 --paid-at 2026-11-03T10:00:00Z
    python -m admin call billing_admin --url "$URL" --tenant acme --action add_line_item \
        --invoice-id sub_1-20261001 --description "Loyalty discount" --quantity 1 \
        --unit-amount -500 --request-id discount-sub_1-oct
    python -m admin call billing_admin --url "$URL" --tenant acme --action finalize \
        --invoice-ids sub_3-20261001,sub_1-20261001
    python -m admin call billing_admin --url "$URL" --tenant acme --action create_invoice \
        --customer-id cus_1 --line "Prepaid support:10:5000" --idempotency-key prepaid-cus_1-nov \
        --finalize

Token sources (``--token-source``, default ``$ADMIN_TOKEN_SOURCE``, else ``google``); the
audience is ``--audience`` or the URL:

``google``
    ``google.oauth2.id_token.fetch_id_token``: a service-account key in
    ``GOOGLE_APPLICATION_CREDENTIALS`` (or an impersonated-service-account ADC file), or the
    metadata server on GCP. User credentials from ``gcloud auth application-default login``
    cannot mint ID tokens for an arbitrary audience; use ``gcloud`` or ``env`` below instead.
``local`` (also ``--local``)
    Minted from the dev issuer key in ``--issuer-dir`` (default ``.dev/issuer``) for
    ``--email`` (default ``scheduler@dev.local``): for ``make serve``/``make demo``.
``gcloud``
    ``gcloud auth print-identity-token --audiences=AUD --include-email``, with
    ``--impersonate-service-account`` (or ``$ADMIN_IMPERSONATE_SERVICE_ACCOUNT``) when set.
``env``
    The token in ``$ADMIN_ID_TOKEN``, e.g.
    ``ADMIN_ID_TOKEN=$(gcloud auth print-identity-token --impersonate-service-account=SA
    --audiences=URL --include-email)``; a token never goes on the command line.

The token goes over ``https://`` only, or over plain ``http://`` to loopback (``localhost``,
127.0.0.0/8, ``[::1]``); any other URL is refused (exit status 2) before a token is obtained.
When the token's audience (its ``aud`` claim, or ``--audience``) is not on the URL's origin,
a warning goes to stderr: the function will probably answer 401, and the server at the URL
receives a token meant for another.

The response is printed as indented JSON (raw text if it is not JSON); with ``--output auto``
(the default) an answer that carries an invoice (the review actions) is printed as text instead:
the invoice with its lines and totals (``admin.invoice_text``). ``--output json`` always prints
JSON, ``--output text`` asks for text wherever there is an invoice. Exit status: 0 for HTTP
< 400, 1 for HTTP >= 400, 2 for bad arguments, 3 when no token could be obtained or the
function could not be reached. The token is never printed or logged.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import requests

from admin.invoice_text import render_answer

TOKEN_SOURCES = ("google", "local", "gcloud", "env")
OUTPUTS = ("auto", "json", "text")
"""``--output``: ``auto`` prints invoices as text and everything else as JSON."""
REVIEW_FLAGS = (
    "line_id",
    "description",
    "quantity",
    "unit_amount_decimal",
    "customer_id",
    "idempotency_key",
    "memo",
    "reason",
)
"""Where ``call`` gets its ID token; see the module docstring."""

EXIT_OK = 0
EXIT_HTTP_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_CONNECTION = 3

# Whole-string matches with ASCII classes: "$" would let a trailing newline through, "\d" other
# scripts' digits.
_FUNCTION_NAME = re.compile(r"[a-z][a-z0-9_]*")
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


class AdminError(RuntimeError):
    """The call could not be made: no token, or the function could not be reached."""


def build_parser() -> argparse.ArgumentParser:
    """Return the ``python -m admin`` argument parser (subcommand ``call``)."""
    parser = argparse.ArgumentParser(
        prog="python -m admin",
        description="Call a billing function with an OIDC ID token.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    call = sub.add_parser(
        "call",
        help="POST a JSON body to a function and print its answer",
        description="POST a JSON body to a billing function and print its JSON answer.",
    )
    call.add_argument(
        "function",
        metavar="FUNCTION_NAME",
        help="monthly_billing, generate_invoices, dunning, billing_admin, ...",
    )
    call.add_argument("--url", help="the function's URL (default $ADMIN_URL_<FUNCTION_NAME>)")
    call.add_argument("--audience", help="the token's audience (default: the URL)")
    call.add_argument("--tenant", help="restrict to one tenant (sent as X-Tenant-ID)")
    body = call.add_argument_group("body fields (laid over --data)")
    body.add_argument("--month", type=_month, help="YYYY-MM (monthly_billing)")
    body.add_argument(
        "--as-of", dest="as_of", type=_rfc3339, help="RFC 3339 instant (generate_invoices, dunning)"
    )
    body.add_argument("--subscription-id", dest="subscription_id")
    body.add_argument("--action", help="billing_admin action, e.g. mark_paid, void")
    body.add_argument("--invoice-id", dest="invoice_id")
    body.add_argument("--amount", type=_amount, help="minor units (billing_admin mark_paid)")
    body.add_argument("--paid-at", dest="paid_at", type=_rfc3339, help="RFC 3339 instant")
    body.add_argument(
        "--dry-run", dest="dry_run", action="store_true", help="send dry_run: true (nothing is written)"
    )
    _review_arguments(call, body)
    body.add_argument(
        "--data", type=_json_object, help="a JSON object, or @FILE holding one, used as the base body"
    )
    auth = call.add_argument_group("token")
    auth.add_argument(
        "--token-source", choices=TOKEN_SOURCES, help="default $ADMIN_TOKEN_SOURCE, else google"
    )
    auth.add_argument("--local", action="store_true", help="same as --token-source local (dev issuer key)")
    auth.add_argument(
        "--issuer-dir",
        type=Path,
        default=Path(".dev/issuer"),
        help="dev issuer key directory for --local (default .dev/issuer)",
    )
    auth.add_argument("--email", help="the principal of a --local token (default scheduler@dev.local)")
    auth.add_argument(
        "--impersonate-service-account",
        dest="impersonate",
        help="for --token-source gcloud (default $ADMIN_IMPERSONATE_SERVICE_ACCOUNT)",
    )
    call.add_argument(
        "--method", choices=("POST", "GET"), default="POST", help="GET fetches the health document (no body)"
    )
    call.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    from admin import usage  # imports this module: registered here, after it has loaded

    usage.register(sub)
    return parser


def _review_arguments(call: argparse.ArgumentParser, body: argparse._ArgumentGroup) -> None:
    """The flags of the review actions (issue 10): body fields, ``--request-id``, ``--output``."""
    call.add_argument(
        "--output", choices=OUTPUTS, default="auto", help="auto (default: invoices as text), json, text"
    )
    call.add_argument("--request-id", dest="request_id", help="sent as X-Request-ID (a retry is a no-op)")
    body.add_argument("--invoice-ids", dest="invoice_ids", type=_id_list, help="A,B,C (finalize, in order)")
    body.add_argument("--line-id", dest="line_id", help="remove_line_item")
    body.add_argument("--description", help="add_line_item")
    body.add_argument("--quantity", help="decimal string (add_line_item)")
    body.add_argument("--unit-amount", dest="unit_amount_decimal", help="minor units, decimal string")
    body.add_argument("--tax-exempt", dest="tax_exempt", action="store_true", help="the line carries no tax")
    body.add_argument("--customer-id", dest="customer_id", help="create_invoice")
    body.add_argument(
        "--line",
        dest="lines",
        action="append",
        type=_line,
        help="DESCRIPTION:QUANTITY:UNIT_AMOUNT (create_invoice; repeatable)",
    )
    body.add_argument("--idempotency-key", dest="idempotency_key", help="create_invoice")
    body.add_argument("--finalize", action="store_true", help="create_invoice, regenerate: finalize at once")
    body.add_argument("--memo", help="create_invoice")
    body.add_argument("--reason", help="kept in the invoice's history")


def build_body(args: argparse.Namespace) -> dict[str, Any]:
    """Return ``--data`` with every given body flag laid over it (see the module docstring)."""
    body: dict[str, Any] = dict(args.data or {})
    for name in ("month", "as_of", "subscription_id", "action", "invoice_id", "amount", "paid_at"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.dry_run:
        body["dry_run"] = True
    for name in (*REVIEW_FLAGS, "invoice_ids", "lines"):
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    for name in ("tax_exempt", "finalize"):
        if getattr(args, name, False):
            body[name] = True
    return body


def obtain_token(
    source: str,
    audience: str,
    *,
    issuer_dir: Path = Path(".dev/issuer"),
    email: str | None = None,
    impersonate: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """Return an ID token for ``audience`` from ``source`` (one of :data:`TOKEN_SOURCES`).

    Raises:
        AdminError: the source could not produce a token (the message says how to fix it and
            never contains a token).

    """
    if source == "local":
        from devtools.dev_issuer import DEV_PRINCIPAL, load_or_create_key, mint_token

        key = load_or_create_key(issuer_dir)
        return mint_token(key, audience=audience, email=email or DEV_PRINCIPAL)
    if email:
        raise AdminError(
            "--email only applies to --local tokens; other sources mint a token "
            "for the identity of their credentials"
        )
    if source == "env":
        token = environ.get("ADMIN_ID_TOKEN", "").strip()
        if not token:
            raise AdminError("ADMIN_ID_TOKEN is empty (token source 'env')")
        return token
    if source == "gcloud":
        return _gcloud_token(audience, impersonate or environ.get("ADMIN_IMPERSONATE_SERVICE_ACCOUNT"))
    if source == "google":
        return _google_token(audience)
    raise AdminError(f"unknown token source {source!r}; use one of {', '.join(TOKEN_SOURCES)}")


def call_function(
    url: str,
    token: str,
    body: Mapping[str, Any] | None,
    *,
    tenant: str | None = None,
    method: str = "POST",
    timeout: float = 600.0,
    request_id: str | None = None,
) -> requests.Response:
    """Send the request with ``Authorization: Bearer <token>`` (and ``X-Tenant-ID``, ``X-Request-ID``).

    Raises:
        AdminError: the function could not be reached (connection, TLS, timeout).

    """
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if tenant:
        headers["X-Tenant-ID"] = tenant
    if request_id:
        headers["X-Request-ID"] = request_id
    try:
        if method == "GET":
            return requests.get(url, headers=headers, timeout=timeout)
        return requests.post(url, json=dict(body or {}), headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise AdminError(f"could not reach {url}: {type(exc).__name__}") from None


def transport_problem(url: str) -> str | None:
    """Why ``url`` must not receive a bearer token, or ``None`` when it may.

    A token is sent over ``https://`` only, or over plain ``http://`` to this machine's
    loopback (``localhost``, 127.0.0.0/8, ``::1``: ``make serve``). Anywhere else, plain HTTP
    would show the token to every network hop, and anyone holding it can call the function
    until it expires.
    """
    parts = urllib.parse.urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme == "https" and host:
        return None
    if scheme == "http" and host and _is_loopback(host):
        return None
    return (
        f"refusing to send a token to {url!r}: use https://, or plain HTTP only to "
        "localhost, 127.0.0.0/8 or [::1]"
    )


def audience_warning(url: str, token: str, audience: str) -> str | None:
    """A warning when the token's audience is not on the origin of ``url``; else ``None``.

    The audience is read from the token's (unverified) ``aud`` claim, else ``audience`` (what
    was asked for). A mismatch usually means a 401, and it also means that whoever serves
    ``url`` receives a token another service accepts.
    """
    audiences = _token_audiences(token) or [audience]
    target = _origin(url)
    if any(_origin(aud) == target for aud in audiences):
        return None
    shown = ", ".join(_origin_text(aud) for aud in audiences)
    return (
        f"the token's audience ({shown}) is not on the origin of {_origin_text(url)}; "
        "the function will probably refuse it, and that server receives a token meant "
        "for another"
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; return the exit status (see the module docstring)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "usage":
        from admin import usage

        return usage.run(args, parser, environ=environ, stdout=out, stderr=err)
    if not _FUNCTION_NAME.fullmatch(args.function):
        parser.error(f"FUNCTION_NAME must look like monthly_billing, not {args.function!r}")
    url = args.url or environ.get(f"ADMIN_URL_{args.function.upper()}", "").strip()
    if not url:
        parser.error(f"--url is required (or set ADMIN_URL_{args.function.upper()})")
    if args.local:
        source = "local"
    else:
        source = args.token_source or environ.get("ADMIN_TOKEN_SOURCE", "").strip() or "google"
    if source not in TOKEN_SOURCES:
        parser.error(f"ADMIN_TOKEN_SOURCE must be one of {', '.join(TOKEN_SOURCES)}")
    problem = transport_problem(url)
    if problem:
        parser.error(problem)
    body = build_body(args)
    try:
        token = obtain_token(
            source,
            args.audience or url,
            issuer_dir=args.issuer_dir,
            email=args.email,
            impersonate=args.impersonate,
            environ=environ,
        )
        warning = audience_warning(url, token, args.audience or url)
        if warning:
            print(f"warning: {warning}", file=err)
        response = call_function(
            url,
            token,
            None if args.method == "GET" else body,
            tenant=args.tenant,
            method=args.method,
            timeout=args.timeout,
            request_id=args.request_id,
        )
    except AdminError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_NO_CONNECTION
    print(_render(response, args.output), file=out)
    if response.status_code >= 400:
        print(f"error: {args.function} answered HTTP {response.status_code}", file=err)
        return EXIT_HTTP_ERROR
    return EXIT_OK


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the scheme's default port filled in (RFC 6454)."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}" if port is not None else f"{scheme}://{shown}"


def _token_audiences(token: str) -> list[str]:
    """The ``aud`` claim of a JWT, unverified (only to compare origins); ``[]`` if unreadable."""
    try:
        segment = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError):
        return []
    aud = claims.get("aud") if isinstance(claims, dict) else None
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def _render(response: requests.Response, output: str = "json") -> str:
    """The answer as printed: JSON, or (``auto``/``text``) an invoice answer as text."""
    try:
        document = response.json()
    except ValueError:
        return response.text
    if output != "json":
        readable = render_answer(document)
        if readable is not None:
            return readable
    return json.dumps(document, indent=2, ensure_ascii=False)


def _google_token(audience: str) -> str:
    import google.auth.exceptions
    import google.auth.transport.requests
    import google.oauth2.id_token

    try:
        token: str = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
            google.auth.transport.requests.Request(),
            audience,
        )
    except google.auth.exceptions.GoogleAuthError as exc:
        raise AdminError(
            f"could not get a Google ID token ({type(exc).__name__}: {exc}). Use a "
            "service-account key in GOOGLE_APPLICATION_CREDENTIALS, run on GCP, or use "
            "--token-source gcloud --impersonate-service-account SA"
        ) from None
    return token


def _gcloud_token(audience: str, impersonate: str | None) -> str:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise AdminError("gcloud not found (token source 'gcloud')")
    argv = [gcloud, "auth", "print-identity-token", f"--audiences={audience}", "--include-email"]
    if impersonate:
        argv.append(f"--impersonate-service-account={impersonate}")
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    token = result.stdout.strip()
    if result.returncode != 0 or not token:
        detail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise AdminError(f"gcloud auth print-identity-token failed: {detail[0]}")
    return token


def _month(value: str) -> str:
    if not _MONTH.fullmatch(value):
        raise argparse.ArgumentTypeError(f"expected YYYY-MM, got {value!r}")
    return value


def _rfc3339(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
        raise argparse.ArgumentTypeError(
            f"expected an RFC 3339 instant with an offset, e.g. 2026-11-01T00:00:00Z, got {value!r}"
        )
    return value


def _amount(value: str) -> int:
    try:
        amount = int(value)
    except ValueError:
        amount = -1
    if amount < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer in minor units, got {value!r}")
    return amount


def _id_list(value: str) -> list[str]:
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError(f"expected ids separated by commas, got {value!r}")
    return ids


def _line(value: str) -> dict[str, str]:
    """``DESCRIPTION:QUANTITY:UNIT_AMOUNT`` (the description may hold colons; the last two split)."""
    parts = value.rsplit(":", 2)
    if len(parts) != 3 or not all(part.strip() for part in parts):
        raise argparse.ArgumentTypeError(f"expected DESCRIPTION:QUANTITY:UNIT_AMOUNT, got {value!r}")
    description, quantity, unit_amount = (part.strip() for part in parts)
    return {"description": description, "quantity": quantity, "unit_amount_decimal": unit_amount}


def _json_object(value: str) -> dict[str, Any]:
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {value[1:]}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--data is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise argparse.ArgumentTypeError("--data must be a JSON object")
    return document
