"""Helpers shared by the review-and-correction tests (issue 10): a review tenant and its calls.

Use the fixture by assigning it in a test module (pytest collects module attributes)::

    admin = pytest.fixture(reviewing.admin_fixture, name="admin")
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from tests import factories as f

T = "review"
OCT = datetime(2026, 10, 10, 12, tzinfo=UTC)
Admin = Callable[..., tuple[int, dict[str, Any]]]


def admin_fixture(call_function: Any) -> Admin:
    """``admin(body, request_id=None, tenant=T, headers=None)`` calls billing_admin."""

    def call(
        body: dict[str, Any],
        request_id: str | None = None,
        *,
        tenant: str = T,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        sent = {**({"X-Request-ID": request_id} if request_id else {}), **(headers or {})}
        result: tuple[int, dict[str, Any]] = call_function("billing_admin", body, tenant=tenant, headers=sent)
        return result

    return call


def ok(result: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """The body of a 200 answer (fails the test on any other status)."""
    status, body = result
    assert status == 200, body
    return body


def seed(db: firestore.Client, customers: int = 5, tenant: str = T, **tenant_fields: Any) -> None:
    """A review tenant: plan ``pro`` = 10.00 a month + 0.10 a call; customer ``cN`` makes N calls."""
    f.tenant(db, tenant, invoice_prefix="RV", **{"month_close_review": True, **tenant_fields})
    f.meter(db, tenant, "calls", "count", field=None)
    f.plan(
        db,
        tenant,
        "pro",
        [
            {"type": "fixed", "description": "Pro plan", "unit_amount_decimal": "1000", "quantity": "1"},
            {"type": "usage", "meter": "calls", "model": "standard", "unit_amount_decimal": "10"},
        ],
    )
    for n in range(1, customers + 1):
        f.customer(db, tenant, f"c{n}")
        f.subscription(db, tenant, f"sub-c{n}", f"c{n}", "pro")
        for e in range(n):
            f.event(db, tenant, f"e-c{n}-{e}", f"c{n}", "calls", OCT)


def close(call_function: Any, tenant: str = T) -> dict[str, Any]:
    """Run the month close of 2026-10 for ``tenant``; its (error-free) answer."""
    status, body = call_function("monthly_billing", {"month": "2026-10"}, tenant=tenant)
    assert status == 200 and body["errors"] == [], body
    result: dict[str, Any] = body
    return result


def draft_id(n: int) -> str:
    """The month-close invoice id of customer ``cN`` for October 2026."""
    return f"sub-c{n}-20261001"
