"""Oversized invoices (issue 8 item 4): one invoice over Firestore's 1 MiB never fails its batch.

The size is Firestore's documented storage size (https://cloud.google.com/firestore/docs/storage-size),
checked here against the emulator's own limit; an invoice too large to store is reported in
``errors`` (``invoice_too_large``) and the others of its batch are created and numbered gaplessly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from google.api_core.exceptions import InvalidArgument
from google.cloud import firestore

from billing.pricing.invoicing import InvoiceDraft, build_invoice
from billing.pricing.periods import month_period
from billing.records import Customer, Meter, Plan, Subscription
from billing.store.firestore_store import MAX_DOCUMENT_BYTES, BillingStore, firestore_document_size
from tests import factories as f
from tests.e2e.store.test_store import NOW, TENANT

METER = Meter.parse("hours", {"aggregation": "sum", "field": "hours", "group_by": ["project"]})
PLAN = Plan.parse(
    "p",
    {
        "currency": "GBP",
        "interval": "month",
        "charges": [
            {"type": "fixed", "description": "Fee", "unit_amount_decimal": "1234"},
            {"type": "usage", "meter": "hours", "model": "standard", "unit_amount_decimal": "100"},
        ],
    },
)


def draft(customer_id: str, groups: int = 0, width: int = 400) -> InvoiceDraft:
    """An invoice with one fixed line and ``groups`` usage lines of ``width``-character groups."""
    customer = Customer.parse(
        customer_id, {"name": customer_id, "status": "active", "address": {"country": "GB"}}
    )
    sub = Subscription.parse(
        f"s-{customer_id}",
        {
            "customer_id": customer_id,
            "plan_id": "p",
            "status": "active",
            "billing_time": "calendar",
            "started_at": datetime(2020, 1, 1, tzinfo=UTC),
        },
    )
    usage: dict[str, dict[tuple[str, ...], Decimal]] = {
        "hours": {(f"{i:0{width}d}",): Decimal(1) for i in range(groups)}
    }
    return build_invoice(
        tenant=TENANT,
        customer=customer,
        subscription=sub,
        plan=PLAN,
        meters={"hours": METER},
        period=month_period(2026, 10, "Europe/London"),
        usage=usage,
        usage_events=groups,
    )


def test_document_size_is_firestores_own_measure(db: firestore.Client) -> None:
    path = ("tenants", "t1", "invoices", "exact")
    empty = firestore_document_size(path, {"x": "", "lines": [{"y": ""}], "n": 1, "at": NOW})
    fill = MAX_DOCUMENT_BYTES - empty  # one value may not take it all (1 MiB - 89): split it
    rest = fill - fill // 2  # in "é", two bytes each in UTF-8
    at_limit: dict[str, Any] = {
        "x": "a" * (fill // 2),
        "lines": [{"y": "é" * (rest // 2) + "b" * (rest % 2)}],
        "n": 1,
        "at": NOW,
    }
    assert firestore_document_size(path, at_limit) == MAX_DOCUMENT_BYTES
    db.document("/".join(path)).set(at_limit)  # exactly 1 MiB: stored
    with pytest.raises(InvalidArgument):
        db.document("/".join(path)).set({**at_limit, "x": at_limit["x"] + "a"})  # 1 byte more
    with pytest.raises(ValueError):
        firestore_document_size(path, {"amount": 2**63})


def test_an_oversized_invoice_is_rejected_and_the_batch_is_numbered_gaplessly(db: firestore.Client) -> None:
    drafts = [draft("c1"), draft("c2", groups=3000), draft("c3")]
    result = BillingStore(db).create_invoices(TENANT, drafts, now=NOW, run_id="r", finalize=True)
    assert [invoice.id for invoice in result.created] == ["s-c1-20261001", "s-c3-20261001"]
    assert [(d.invoice_id, e.code) for d, e in result.rejected] == [("s-c2-20261001", "invoice_too_large")]
    stored = {s.id: s.to_dict() or {} for s in db.collection("tenants/t1/invoices").stream()}
    assert {k: v["number"] for k, v in stored.items()} == {
        "s-c1-20261001": "T1-2026-000001",
        "s-c3-20261001": "T1-2026-000002",
    }


def test_batches_stay_under_the_commit_size_limit(db: firestore.Client) -> None:
    # Ten invoices of about 500 KB: one commit would carry about 5 MB, over the emulator's
    # 4 MiB message limit (Firestore's is 10 MiB: 200 invoices of 50 KB reach it).
    drafts = [draft(f"c{i}", groups=500) for i in range(10)]
    result = BillingStore(db).create_invoices(TENANT, drafts, now=NOW, run_id="r", finalize=True)
    assert len(result.created) == 10 and not result.rejected
    numbers = sorted((s.to_dict() or {})["sequence"] for s in db.collection("tenants/t1/invoices").stream())
    assert numbers == list(range(1, 11))


def test_month_close_reports_the_oversized_invoice_and_bills_the_others(
    db: firestore.Client, call_function: Any
) -> None:
    t = "bigco"
    f.tenant(db, t, invoice_prefix="BIG")
    f.meter(db, t, "hours", "sum", field="hours", group_by=["project"], unit="hrs")
    f.plan(
        db,
        t,
        "consult",
        [{"type": "usage", "meter": "hours", "model": "standard", "unit_amount_decimal": "8000"}],
    )
    for customer_id in ("alice", "bob", "carol"):
        f.customer(db, t, customer_id)
        f.subscription(db, t, f"sub-{customer_id}", customer_id, "consult")
        f.event(
            db,
            t,
            f"{customer_id}-1",
            customer_id,
            "hours",
            datetime(2026, 10, 5, tzinfo=UTC),
            hours=2,
            project="Alpha",
        )
    # bob worked on 1,500 projects with long names: one line each, about 1.4 MB in all.
    batch = db.batch()
    for i in range(1500):
        batch.set(
            db.document(f"tenants/{t}/usage_events/bob-p{i}"),
            {
                "customer_id": "bob",
                "meter": "hours",
                "timestamp": datetime(2026, 10, 6, tzinfo=UTC),
                "properties": {"hours": 1, "project": f"{i:0400d}"},
            },
        )
        if i % 400 == 399:
            batch.commit()
            batch = db.batch()
    batch.commit()
    status, body = call_function("monthly_billing", {"month": "2026-10"}, tenant=t)
    assert status == 200, body
    assert [(e["subscription_id"], e["code"]) for e in body["errors"]] == [("sub-bob", "invoice_too_large")]
    invoices = f.invoices(db, t)
    assert {k: v["number"] for k, v in invoices.items()} == {
        "sub-alice-20261001": "BIG-2026-000001",
        "sub-carol-20261001": "BIG-2026-000002",
    }
    assert body["generated"] == 2
