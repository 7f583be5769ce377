r"""``python -m admin usage CUSTOMER``: the open period's usage of a customer (``current_usage``).

Usage::

    python -m admin usage CUSTOMER --tenant T [--subscription-id ID] [--as-of RFC3339] [--url URL]
        [--audience AUD] [--local | --token-source SOURCE] [--json] [--timeout SECONDS]

POSTs ``{"customer_id", "subscription_id"?}`` to ``current_usage`` (``--url``, default
``$ADMIN_URL_CURRENT_USAGE``) with ``X-Tenant-ID: T`` and an ID token obtained as ``call`` does
(``admin.cli``: same token sources, same refusal to send a token over plain HTTP off loopback).
Prints a table (meter, units, events, amount in minor units) and the period's totals, or the raw
JSON with ``--json``. Exit status as ``call``: 0, 1 (HTTP >= 400), 2 (arguments), 3 (no token or
no connection).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from admin import cli


def register(commands: Any) -> None:
    """Add the ``usage`` subcommand to ``python -m admin``'s subparsers."""
    usage = commands.add_parser(
        "usage",
        help="show a customer's usage in the open period, priced (current_usage)",
        description="Ask current_usage for a customer's open-period usage and print it.",
    )
    usage.add_argument("customer", metavar="CUSTOMER", help="the customer id")
    usage.add_argument("--tenant", required=True, help="the customer's tenant (X-Tenant-ID)")
    usage.add_argument("--subscription-id", dest="subscription_id", help="when the customer has several")
    usage.add_argument(
        "--as-of", dest="as_of", type=cli._rfc3339, help="RFC 3339: the period containing it (default now)"
    )
    usage.add_argument("--url", help="current_usage's URL (default $ADMIN_URL_CURRENT_USAGE)")
    usage.add_argument("--audience", help="the token's audience (default: the URL)")
    usage.add_argument(
        "--token-source", choices=cli.TOKEN_SOURCES, help="default $ADMIN_TOKEN_SOURCE, else google"
    )
    usage.add_argument("--local", action="store_true", help="same as --token-source local (dev issuer key)")
    usage.add_argument(
        "--issuer-dir", type=Path, default=Path(".dev/issuer"), help="dev issuer key directory"
    )
    usage.add_argument("--email", help="the principal of a --local token")
    usage.add_argument("--impersonate-service-account", dest="impersonate", help="for --token-source gcloud")
    usage.add_argument("--json", action="store_true", help="print the answer as JSON")
    usage.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")


def render(answer: Mapping[str, Any]) -> str:
    """The answer of ``current_usage`` as a short text table (amounts in minor units)."""
    lines = [
        f"customer {answer['customer_id']}, subscription {answer['subscription_id']}",
        f"period {answer['from_datetime']} .. {answer['to_datetime']} (as of {answer['as_of']})",
        f"{'meter':<24} {'units':>18} {'events':>8} {'amount':>12}",
    ]
    for charge in answer.get("charges", []):
        lines.append(
            f"{charge['meter']:<24} {charge['units']:>18} {charge['events_count']:>8} {charge['amount']:>12}"
        )
    currency = answer["currency"]
    lines.append(
        f"amount {answer['amount']}  tax {answer['tax']}  total {answer['total']}  ({currency} minor units)"
    )
    return "\n".join(lines)


def run(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    *,
    environ: Mapping[str, str] = os.environ,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """Run ``usage``; return the exit status (see the module docstring)."""
    url = args.url or environ.get("ADMIN_URL_CURRENT_USAGE", "").strip()
    if not url:
        parser.error("--url is required (or set ADMIN_URL_CURRENT_USAGE)")
    source = (
        "local"
        if args.local
        else args.token_source or environ.get("ADMIN_TOKEN_SOURCE", "").strip() or "google"
    )
    if source not in cli.TOKEN_SOURCES:
        parser.error(f"ADMIN_TOKEN_SOURCE must be one of {', '.join(cli.TOKEN_SOURCES)}")
    problem = cli.transport_problem(url)
    if problem:
        parser.error(problem)
    body = {"customer_id": args.customer}
    if args.subscription_id:
        body["subscription_id"] = args.subscription_id
    if args.as_of:
        body["as_of"] = args.as_of
    try:
        token = cli.obtain_token(
            source,
            args.audience or url,
            issuer_dir=args.issuer_dir,
            email=args.email,
            impersonate=args.impersonate,
            environ=environ,
        )
        response = cli.call_function(url, token, body, tenant=args.tenant, timeout=args.timeout)
    except cli.AdminError as exc:
        print(f"error: {exc}", file=stderr)
        return cli.EXIT_NO_CONNECTION
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code >= 400 or not isinstance(answer, dict):
        print(json.dumps(answer, indent=2) if answer is not None else response.text, file=stdout)
        print(f"error: current_usage answered HTTP {response.status_code}", file=stderr)
        return cli.EXIT_HTTP_ERROR
    print(json.dumps(answer, indent=2, ensure_ascii=False) if args.json else render(answer), file=stdout)
    return cli.EXIT_OK
