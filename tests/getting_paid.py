"""Helpers shared by the getting-paid tests: fixtures for SMTP and Stripe, invoice seeding.

Use the fixtures by assigning them in a test module (pytest collects module attributes)::

    smtp = pytest.fixture(getting_paid.smtp_fixture, name="smtp")
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from tests import factories as f
from tests.fake_stripe import WEBHOOK_SECRET, FakeStripe, running_fake, sign
from tests.smtp_server import SmtpServer, running_smtp

T = "acme"
ISSUED = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
DUE = ISSUED + timedelta(days=14)


def smtp_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """A running STARTTLS + AUTH SMTP server, with ``SMTP_*`` pointing at it."""
    with running_smtp(tmp_path) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        yield server


def stripe_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    """A running fake Stripe, with ``STRIPE_API_KEY``/``STRIPE_API_BASE``/the webhook secret."""
    with running_fake() as fake:
        monkeypatch.setenv("STRIPE_API_KEY", fake.api_key)
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        yield fake


def seed_tenant(
    db: firestore.Client,
    *,
    email: bool = True,
    stripe: bool | dict[str, Any] = False,
    collection_method: str = "send_invoice",
    **fields: Any,
) -> str:
    """The ``acme`` tenant with email (and optionally Stripe) enabled."""
    extra: dict[str, Any] = {"email": {"enabled": email, "from": "Acme Billing <billing@acme.test>"}}
    if isinstance(stripe, dict):
        extra["stripe"] = stripe
    elif stripe:
        extra["stripe"] = {"enabled": True, "collection_method": collection_method}
    extra.update(fields)
    return f.tenant(db, T, **extra)


def seed_invoice(
    db: firestore.Client,
    invoice_id: str,
    customer_id: str,
    *,
    due_at: datetime = DUE,
    status: str = "open",
    number: str | None = None,
    lines: list[dict[str, Any]] | None = None,
    tax: int = 2000,
    subscription_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An invoice as the month close stores it (GBP, one 100.00 line + 20 % tax by default)."""
    lines = (
        lines
        if lines is not None
        else [
            {
                "description": "Pro plan",
                "quantity": "1",
                "unit_amount_decimal": "10000",
                "amount": 10000,
                "tax_rate": "20",
                "tax": tax,
                "kind": "fixed",
            }
        ]
    )
    subtotal = sum(int(line["amount"]) for line in lines)
    customer = db.document(f"tenants/{T}/customers/{customer_id}").get().to_dict() or {}
    data: dict[str, Any] = {
        "tenant_id": T,
        "customer_id": customer_id,
        "subscription_id": subscription_id or f"sub-{customer_id}",
        "plan_id": "pro",
        "billing_time": "calendar",
        "period_start": datetime(2026, 9, 30, 23, tzinfo=UTC),
        "period_end": datetime(2026, 11, 1, tzinfo=UTC),
        "currency": "GBP",
        "lines": lines,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "tax_inclusive": False,
        "amount_paid": 0,
        "amount_due": subtotal + tax,
        "customer": {
            "id": customer_id,
            "name": customer.get("name"),
            "email": customer.get("email"),
            "address": customer.get("address") or {},
            "tax_id": None,
        },
        "status": status,
        "number": number or f"ACME-2026-{zlib.crc32(invoice_id.encode()) % 10**6:06d}",
        "issued_at": due_at - timedelta(days=14),
        "finalized_at": due_at - timedelta(days=14),
        "due_at": due_at,
        "finalize_at": None,
        "pdf_uri": None,
        "created_at": ISSUED,
    }
    data.update(fields)
    db.document(f"tenants/{T}/invoices/{invoice_id}").set(data)
    return {"invoice_id": invoice_id, **data}


def invoice(db: firestore.Client, invoice_id: str) -> dict[str, Any]:
    return db.document(f"tenants/{T}/invoices/{invoice_id}").get().to_dict() or {}


def customer(db: firestore.Client, customer_id: str) -> dict[str, Any]:
    return db.document(f"tenants/{T}/customers/{customer_id}").get().to_dict() or {}


def signed_post(
    call_function: Any, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, header: str | None = None
) -> tuple[int, dict[str, Any]]:
    """POST ``event`` to ``stripe_webhook`` as Stripe does: raw JSON + ``Stripe-Signature``."""
    payload = json.dumps(event).encode()
    headers = {"Stripe-Signature": header if header is not None else sign(payload, secret)}
    status, body = call_function("stripe_webhook", raw=payload, headers=headers, auth=False)
    return status, body
