"""``make serve``: every function on loopback, with the emulators and the local OIDC issuer.

Loads the shipped Online Retail sample (tenant ``uk-retail``, November 2011) unless ``--empty``,
starts each function in ``functions/`` with ``functions-framework`` on its own port, prints the
URLs and ready-to-run admin commands, and keeps running until Ctrl-C (or SIGTERM), then stops
everything by PID.

The finance console (``billing_console``) runs in this process behind the development IAP proxy
(``devtools.iap_proxy``), which signs the IAP assertion for ``--console-email`` (default
``admin@dev.local``, a platform principal here): open the printed URL in a browser. Its "Dry run"
and "Run now" POST the local functions with tokens from the local issuer.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from google.cloud import firestore

from billing.console import create_app
from billing.console.run_now import HttpRunner
from billing.console.settings import SCHEDULED_FUNCTIONS, ConsoleSettings
from billing.http.auth.iap import IapSettings
from billing.pricing.periods import add_interval
from devtools import iap_proxy, online_retail
from devtools.demo import SAMPLE
from devtools.dev_issuer import mint_token
from devtools.emulators import free_port
from devtools.local import FUNCTIONS, REPO, LocalStack

ANNIVERSARY_TENANT = "saas-demo"


def seed_anniversary_tenant(db: firestore.Client) -> None:
    """A small SaaS tenant billed on anniversaries, so ``generate_invoices`` has work to do.

    Three subscriptions on a monthly plan (a platform fee and API calls), anchored on 2026-08-31,
    -09-15 and -10-01; calling ``generate_invoices`` with ``as_of`` 2026-11-02 invoices every
    period that has ended by then (two, one and one) and advances each subscription.
    """
    root = db.collection("tenants").document(ANNIVERSARY_TENANT)
    root.set(
        {
            "name": "SaaS Demo Ltd",
            "status": "active",
            "timezone": "Europe/London",
            "currency": "EUR",
            "invoice_prefix": "SD",
            "payment_terms_days": 14,
            "tax_rates": {"IE": "23", "DE": "19"},
            "grace_period_hours": 0,
        }
    )
    root.collection("meters").document("api_calls").set(
        {"aggregation": "count", "unit": "calls", "name": "API calls"}
    )
    root.collection("plans").document("team").set(
        {
            "currency": "EUR",
            "interval": "month",
            "interval_count": 1,
            "charges": [
                {"type": "fixed", "description": "Team plan", "unit_amount_decimal": "4900"},
                {
                    "type": "usage",
                    "meter": "api_calls",
                    "model": "graduated",
                    "tiers": [
                        {"up_to": 1000, "unit_amount_decimal": "0"},
                        {"up_to": None, "unit_amount_decimal": "0.2"},
                    ],
                },
            ],
        }
    )
    for number, (anchor, country) in enumerate(
        (
            (datetime(2026, 8, 31, 9, tzinfo=UTC), "IE"),
            (datetime(2026, 9, 15, 9, tzinfo=UTC), "DE"),
            (datetime(2026, 10, 1, 9, tzinfo=UTC), "IE"),
        ),
        start=1,
    ):
        customer = f"team-{number}"
        root.collection("customers").document(customer).set(
            {
                "name": f"Team {number} GmbH",
                "email": f"{customer}@example.com",
                "address": {"country": country},
                "status": "active",
            }
        )
        end = add_interval(anchor, "month", 1, "Europe/London")
        root.collection("subscriptions").document(f"sub-{customer}").set(
            {
                "customer_id": customer,
                "plan_id": "team",
                "status": "active",
                "billing_time": "anniversary",
                "started_at": anchor,
                "current_period_start": anchor,
                "current_period_end": end,
            }
        )
        batch = db.batch()
        for call in range(1500 * number):
            batch.set(
                root.collection("usage_events").document(f"{customer}-{call}"),
                {
                    "customer_id": customer,
                    "meter": "api_calls",
                    "timestamp": anchor + timedelta(minutes=20 * call),
                    "properties": {},
                },
            )
            if call % 400 == 399:
                batch.commit()
                batch = db.batch()
        batch.commit()


CONSOLE_AUDIENCE = "/dev/billing_console"


def start_console(stack: LocalStack, email: str) -> tuple[list[Any], str]:
    """The console in this process behind the dev IAP proxy; ``(servers to stop, URL to open)``."""
    key = iap_proxy.load_or_create(stack.dev_dir / "iap")
    proxy_port = free_port()
    issuer = stack.key
    assert issuer is not None
    settings = ConsoleSettings(
        iap=IapSettings(
            audience=CONSOLE_AUDIENCE, certs_url=f"http://127.0.0.1:{proxy_port}{iap_proxy.JWK_PATH}"
        ),
        secret_key=secrets.token_urlsafe(32),
        allowed_principals=frozenset(stack.env["AUTH_ALLOWED_PRINCIPALS"].split(",")),
        run_mode="http",
        function_urls={n: stack.functions[n][1] for n in SCHEDULED_FUNCTIONS if n in stack.functions},
    )
    runner = HttpRunner(
        settings.function_urls, token_source=lambda audience: mint_token(issuer, audience=audience)
    )
    server, upstream = iap_proxy.serve_wsgi(create_app(settings, runner=runner))
    proxy = iap_proxy.serve(key, upstream, CONSOLE_AUDIENCE, email, proxy_port)
    return [proxy, server], f"http://127.0.0.1:{proxy_port}/"


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m devtools.serve")
    parser.add_argument("--empty", action="store_true", help="do not load the sample data")
    parser.add_argument("--base-port", type=int, default=8081)
    parser.add_argument("--console-email", default="admin@dev.local", help="who the dev IAP proxy signs in")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with LocalStack() as stack:
        if not args.empty:
            loaded = online_retail.load(
                firestore.Client(project=stack.project), SAMPLE, "2011-11", tenant_id="uk-retail"
            )
            print(
                f"loaded {loaded.events_written} events of {loaded.customers} customers "
                "(tenant uk-retail, 2011-11)"
            )
            seed_anniversary_tenant(firestore.Client(project=stack.project))
            print(f"seeded tenant {ANNIVERSARY_TENANT}: 3 anniversary subscriptions")
        for offset, name in enumerate(FUNCTIONS):
            if (REPO / "functions" / name / "main.py").exists():
                url = stack.start_function(name, args.base_port + offset)
                print(f"{name:<18} {url}")
        servers, console_url = start_console(stack, args.console_email)
        print(f"{'billing_console':<18} {console_url}  (browser; dev IAP proxy as {args.console_email})")
        print("\nenvironment of the functions:")
        for key, value in sorted(stack.env.items()):
            print(f"  {key}={value}")
        first = stack.functions.get("monthly_billing")
        if first:
            print(
                "\ntry:\n  .venv/bin/python -m admin call monthly_billing --local "
                f"--url {first[1]} --tenant uk-retail --month 2011-11 --dry-run"
            )
        generate = stack.functions.get("generate_invoices")
        if generate:
            print(
                "  .venv/bin/python -m admin call generate_invoices --local "
                f"--url {generate[1]} --tenant {ANNIVERSARY_TENANT} "
                "--as-of 2026-11-02T00:00:00Z"
            )
        print("\nCtrl-C stops everything.")
        stop.wait()
        for server in servers:
            server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
