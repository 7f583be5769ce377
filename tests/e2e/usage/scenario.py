"""A tenant using every aggregation and charge model, with events ingested across October 2026.

``seed(db, tenant_id, tz)`` writes the same catalog, customers and events for any tenant id, so
a test folds one tenant and closes a twin from raw events, and compares the invoices. Events are
pseudo-random but fixed (``random.Random(13)``); each carries ``ingested_at`` = its timestamp plus
a lag of up to 3 hours, and one in ten arrives days late (still in October or just after it).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore

from tests import factories as f

MONTH = "2026-10"
GRADUATED = [
    {"up_to": 50, "unit_amount_decimal": "20", "flat_amount_decimal": "100"},
    {"up_to": None, "unit_amount_decimal": "7.5"},
]
VOLUME = [
    {"up_to": 10, "unit_amount_decimal": "300"},
    {"up_to": None, "unit_amount_decimal": "250", "flat_amount_decimal": "999"},
]
CHARGES: list[dict[str, Any]] = [
    {"type": "fixed", "description": "Platform", "unit_amount_decimal": "1500", "quantity": "1"},
    {"type": "usage", "meter": "calls", "model": "standard", "unit_amount_decimal": "0.37"},
    {"type": "usage", "meter": "gb", "model": "graduated", "tiers": GRADUATED},
    {"type": "usage", "meter": "peak", "model": "volume", "tiers": VOLUME},
    {"type": "usage", "meter": "users", "model": "package", "package_size": 3, "unit_amount_decimal": "125"},
    {"type": "usage", "meter": "seats", "model": "standard", "unit_amount_decimal": "999.5"},
    {
        "type": "usage",
        "meter": "storage",
        "model": "standard",
        "unit_amount_decimal": "13.37",
        "free_units": 2,
    },
    {"type": "usage", "meter": "region_gb", "model": "standard", "unit_amount_decimal": "3.1415"},
]
METERS: dict[str, dict[str, Any]] = {
    "calls": {"aggregation": "count"},
    "gb": {"aggregation": "sum", "field": "gb"},
    "peak": {"aggregation": "max", "field": "v"},
    "users": {"aggregation": "unique_count", "field": "user"},
    "seats": {"aggregation": "latest", "field": "v"},
    "storage": {"aggregation": "weighted_sum", "field": "delta"},
    "region_gb": {"aggregation": "sum", "field": "gb", "group_by": ["region"]},
}
CUSTOMERS = ("c1", "c2", "c3", "c4")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def seed_catalog(db: firestore.Client, tenant_id: str, tz: str) -> None:
    """Tenant, meters, plan, customers and subscriptions (c2 canceled mid-month, c4 started mid-month,
    c3 with a second subscription started later that takes its events from then on)."""
    f.tenant(db, tenant_id, timezone=tz, invoice_prefix=tenant_id.upper()[:4])
    for code, meter in METERS.items():
        db.document(f"tenants/{tenant_id}/meters/{code}").set(meter)
    f.plan(db, tenant_id, "all", CHARGES)
    for customer_id in CUSTOMERS:
        f.customer(db, tenant_id, customer_id)
    f.subscription(db, tenant_id, "s1", "c1", "all")
    f.subscription(db, tenant_id, "s2", "c2", "all", status="canceled", canceled_at=utc(2026, 10, 17, 9, 30))
    f.subscription(db, tenant_id, "s3", "c3", "all")
    f.subscription(db, tenant_id, "s3b", "c3", "all", started_at=utc(2026, 10, 20, 12))
    f.subscription(db, tenant_id, "s4", "c4", "all", started_at=utc(2026, 10, 11, 4, 45))


def event_documents(
    tz_start: datetime, tz_end: datetime, count: int = 240
) -> list[tuple[str, dict[str, Any]]]:
    """``count`` events between the period's bounds (and a few just outside), fixed by the seed."""
    rng = random.Random(13)
    span = int((tz_end - tz_start).total_seconds())
    docs: list[tuple[str, dict[str, Any]]] = []
    for n in range(count):
        meter = rng.choice(sorted(METERS))
        timestamp = tz_start + timedelta(seconds=rng.randrange(-3600, span + 3600))
        lag = (
            timedelta(days=rng.randrange(1, 6)) if n % 10 == 0 else timedelta(seconds=rng.randrange(0, 10800))
        )
        properties: dict[str, Any] = {
            "gb": rng.choice([1, 2.5, "3.25", "0.001", 7, "x"]),
            "v": rng.choice([3, "12", 4.5, -2, "99", 11]),
            "user": rng.choice(["ann", "bob", "cy", "dee", 7, "7"]),
            "delta": rng.choice([5, -2, "1.5", 10, -3]),
            "region": rng.choice(["eu", "us", "apac"]),
        }
        docs.append(
            (
                f"e{n:04d}",
                {
                    "customer_id": rng.choice(CUSTOMERS),
                    "meter": meter,
                    "timestamp": timestamp,
                    "ingested_at": timestamp + lag,
                    "properties": properties,
                },
            )
        )
    # The boundary itself: the last microsecond of the period and its first instant.
    for n, moment in enumerate((tz_start, tz_end - timedelta(microseconds=1), tz_end)):
        docs.append(
            (
                f"edge{n}",
                {
                    "customer_id": "c1",
                    "meter": "gb",
                    "timestamp": moment,
                    "ingested_at": moment + timedelta(minutes=1),
                    "properties": {"gb": 1000 + n},
                },
            )
        )
    # Ingested a day after the period ended (after the tests' last fold): read raw at the close.
    for n, customer_id in enumerate(CUSTOMERS):
        docs.append(
            (
                f"tail{n}",
                {
                    "customer_id": customer_id,
                    "meter": "storage",
                    "timestamp": tz_end - timedelta(hours=n + 1),
                    "ingested_at": tz_end + timedelta(hours=20),
                    "properties": {"delta": n + 4},
                },
            )
        )
    return docs


def write_events(db: firestore.Client, tenant_id: str, docs: list[tuple[str, dict[str, Any]]]) -> None:
    batch = db.batch()
    for n, (event_id, data) in enumerate(docs, 1):
        batch.set(db.document(f"tenants/{tenant_id}/usage_events/{event_id}"), data)
        if n % 400 == 0:
            batch.commit()
            batch = db.batch()
    batch.commit()


def comparable(invoices: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Invoice id -> what must be equal between a folded and a raw close."""
    return {
        invoice_id: (
            doc["lines"],
            doc["subtotal"],
            doc["tax"],
            doc["total"],
            doc["period_start"],
            doc["period_end"],
        )
        for invoice_id, doc in invoices.items()
    }
