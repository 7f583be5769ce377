"""Seed Firestore (the real emulator) with tenants, customers, meters, plans, subscriptions, events.

Documents follow ``CONTRACT.md`` exactly; keyword arguments override any field.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.cloud import firestore

T = TypeVar("T")


def tenant(db: firestore.Client, tenant_id: str = "acme", **fields: Any) -> str:
    data = {
        "name": "Acme Analytics Ltd",
        "status": "active",
        "timezone": "Europe/London",
        "currency": "GBP",
        "invoice_prefix": "ACME",
        "payment_terms_days": 14,
        "tax_rates": {"GB": "20", "DE": "19"},
        "legal_name": "Acme Analytics Ltd",
        "address_lines": ["1 Main Street", "London EC1A 1BB", "United Kingdom"],
        "email": "billing@acme.test",
        "tax_id": "GB123456789",
    }
    data.update(fields)
    db.document(f"tenants/{tenant_id}").set(data)
    return tenant_id


def customer(
    db: firestore.Client, tenant_id: str, customer_id: str, country: str | None = "GB", **fields: Any
) -> str:
    data: dict[str, Any] = {
        "name": f"Customer {customer_id}",
        "email": f"{customer_id}@example.com",
        "address": {"country": country} if country else {},
        "status": "active",
    }
    data.update(fields)
    db.document(f"tenants/{tenant_id}/customers/{customer_id}").set(data)
    return customer_id


def meter(
    db: firestore.Client,
    tenant_id: str,
    code: str,
    aggregation: str = "sum",
    field: str | None = "value",
    **fields: Any,
) -> str:
    data: dict[str, Any] = {"aggregation": aggregation}
    if field is not None:
        data["field"] = field
    data.update(fields)
    db.document(f"tenants/{tenant_id}/meters/{code}").set(data)
    return code


def plan(
    db: firestore.Client,
    tenant_id: str,
    plan_id: str,
    charges: list[dict[str, Any]],
    currency: str = "GBP",
    **fields: Any,
) -> str:
    data = {"currency": currency, "interval": "month", "interval_count": 1, "charges": charges}
    data.update(fields)
    db.document(f"tenants/{tenant_id}/plans/{plan_id}").set(data)
    return plan_id


def subscription(
    db: firestore.Client,
    tenant_id: str,
    subscription_id: str,
    customer_id: str,
    plan_id: str,
    started_at: datetime = datetime(2020, 1, 1, tzinfo=UTC),
    **fields: Any,
) -> str:
    data = {
        "customer_id": customer_id,
        "plan_id": plan_id,
        "status": "active",
        "billing_time": "calendar",
        "started_at": started_at,
    }
    data.update(fields)
    db.document(f"tenants/{tenant_id}/subscriptions/{subscription_id}").set(data)
    return subscription_id


def event(
    db: firestore.Client,
    tenant_id: str,
    event_id: str,
    customer_id: str,
    meter_code: str,
    timestamp: datetime,
    **properties: Any,
) -> str:
    db.document(f"tenants/{tenant_id}/usage_events/{event_id}").set(
        {"customer_id": customer_id, "meter": meter_code, "timestamp": timestamp, "properties": properties}
    )
    return event_id


def invoices(db: firestore.Client, tenant_id: str) -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() or {} for s in db.collection(f"tenants/{tenant_id}/invoices").stream()}


def all_documents(db: firestore.Client, tenant_id: str) -> dict[str, dict[str, Any]]:
    """Every document under the tenant (path -> data), to prove that nothing changed."""
    out: dict[str, dict[str, Any]] = {}
    root = db.document(f"tenants/{tenant_id}")
    snap = root.get()
    if snap.exists:
        out[root.path] = snap.to_dict() or {}
    for collection in root.collections():
        for doc in collection.stream():
            out[doc.reference.path] = doc.to_dict() or {}
    return out


def concurrently(count: int, action: Callable[[], T]) -> list[T]:
    """Run ``action`` in ``count`` threads released at the same instant; return their results.

    Fails (re-raises the first exception) if any thread raised, so a crashed run cannot hide
    behind the others' success.
    """
    barrier = threading.Barrier(count)
    results: list[T] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            result = action()
        except BaseException as exc:
            with lock:
                failures.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results
