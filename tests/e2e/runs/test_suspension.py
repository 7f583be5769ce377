"""Suspension never loses a period (issue 8 item 5; Kill Bill's blocking-billing state).

Dunning suspends and reactivates through ``billing.runs.dunning.run_dunning`` with chosen clocks (the
suspension takes effect at the run's real time, which a test cannot otherwise place in a
closed month); the billing runs go through the HTTP functions. Everything runs against the
Firestore emulator.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from billing.delivery.outbox import Services
from billing.runs.dunning import DunningContext, run_dunning
from billing.store.firestore_store import BillingStore
from tests import factories as f
from tests import getting_paid as gp

T = gp.T


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def dunning_at(db: firestore.Client, now: datetime) -> dict[str, Any]:
    """A real dunning run whose clock (``as_of`` and the real time) is ``now``."""
    ctx = DunningContext(
        run_id=uuid.uuid4().hex,
        as_of=now,
        now=now,
        dry_run=False,
        store=BillingStore(db),
        services=Services(),
    )
    body = run_dunning(ctx, T).to_json()
    assert body["errors"] == [], body
    return body


def doc(db: firestore.Client, path: str) -> dict[str, Any]:
    return db.document(f"tenants/{T}/{path}").get().to_dict() or {}


def seed(db: firestore.Client, **sub_fields: Any) -> None:
    gp.seed_tenant(
        db,
        email=False,
        grace_period_hours=0,
        payment_terms_days=60,
        dunning={"reminder_days": [], "suspend_after_days": 5, "uncollectible_after_days": None},
    )
    f.meter(db, T, "calls", "count", field=None, unit="calls", name="API calls")
    f.plan(
        db,
        T,
        "pro",
        [
            {"type": "fixed", "description": "Pro plan", "unit_amount_decimal": "3100"},
            {"type": "usage", "meter": "calls", "model": "standard", "unit_amount_decimal": "10"},
        ],
    )
    f.customer(db, T, "alice", "GB")
    f.subscription(db, T, "sub-alice", "alice", "pro", **sub_fields)


def overdue_invoice(db: firestore.Client, due_at: datetime) -> None:
    """An open invoice of an earlier period that dunning will suspend alice for."""
    gp.seed_invoice(
        db,
        "inv-old",
        "alice",
        due_at=due_at,
        subscription_id="sub-alice",
        period_start=utc(2020, 1, 1),
        period_end=utc(2020, 2, 1),
    )


def fee_line(invoice: dict[str, Any]) -> dict[str, Any]:
    line: dict[str, Any] = next(ln for ln in invoice["lines"] if ln["kind"] == "fixed")
    return line


def test_calendar_month_bills_all_usage_and_the_fee_for_active_days(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db)
    # Due 6 October; suspended by dunning on 11 October 13:00 London, reactivated on paying,
    # 21 October 10:00 London. Active days: 1..11 and 21..31 October = 22 of 31.
    overdue_invoice(db, utc(2026, 10, 6, 12))
    for n, day in enumerate((3, 15, 20, 28)):  # two of the four calls fall in the suspension
        f.event(db, T, f"c{n}", "alice", "calls", utc(2026, 10, day, 12))
    assert dunning_at(db, utc(2026, 10, 11, 12))["suspended"] == 1
    suspended = {"from": utc(2026, 10, 11, 12), "to": None}
    assert doc(db, "customers/alice")["suspensions"] == [suspended]
    assert doc(db, "subscriptions/sub-alice")["suspensions"] == [suspended]
    db.document(f"tenants/{T}/invoices/inv-old").update({"status": "paid"})
    assert dunning_at(db, utc(2026, 10, 21, 9))["reactivated"] == 1
    closed = [{"from": utc(2026, 10, 11, 12), "to": utc(2026, 10, 21, 9)}]
    assert doc(db, "customers/alice")["suspensions"] == closed
    assert doc(db, "subscriptions/sub-alice")["suspensions"] == closed

    status, body = call_function("monthly_billing", {"month": "2026-10"}, tenant=T)
    assert status == 200 and (body["generated"], body["errors"]) == (1, []), body
    invoice = f.invoices(db, T)["sub-alice-20261001"]
    fee = fee_line(invoice)
    assert fee["description"] == "Pro plan (22 of 31 days)" and fee["amount"] == 2200
    usage = next(ln for ln in invoice["lines"] if ln["kind"] == "usage")
    assert (usage["quantity"], usage["amount"]) == ("4", 40)


def test_anniversary_periods_across_a_suspension_are_each_billed_once(
    db: firestore.Client, call_function: Any
) -> None:
    seed(
        db,
        billing_time="anniversary",
        current_period_start=utc(2026, 1, 1),
        current_period_end=utc(2026, 2, 1),
    )
    overdue_invoice(db, utc(2026, 1, 10))
    f.event(db, T, "feb", "alice", "calls", utc(2026, 2, 10))  # usage while suspended
    assert dunning_at(db, utc(2026, 1, 20, 12))["suspended"] == 1

    def run(as_of: str) -> dict[str, Any]:
        status, body = call_function("generate_invoices", {"as_of": as_of}, tenant=T)
        assert status == 200 and body["errors"] == [], body
        result: dict[str, Any] = body
        return result

    first = run("2026-02-01T01:00:00Z")
    second = run("2026-03-01T01:00:00Z")
    db.document(f"tenants/{T}/invoices/inv-old").update({"status": "void"})
    assert dunning_at(db, utc(2026, 3, 10, 12))["reactivated"] == 1
    third = run("2026-04-01T01:00:00Z")
    assert [(b["generated"], b["skipped"], b["advanced"]) for b in (first, second, third)] == [(1, 0, 1)] * 3
    invoices = {k: v for k, v in f.invoices(db, T).items() if k != "inv-old"}
    assert sorted(invoices) == ["sub-alice-20260101", "sub-alice-20260201", "sub-alice-20260301"]
    # January: 1..20 = 20 of 31 days. February: no fee, its usage in full. March: 10..31 = 22.
    assert fee_line(invoices["sub-alice-20260101"])["amount"] == 2000
    february = invoices["sub-alice-20260201"]
    assert [(ln["kind"], ln["amount"]) for ln in february["lines"]] == [("usage", 10)]
    assert fee_line(invoices["sub-alice-20260301"])["description"] == "Pro plan (22 of 31 days)"
    assert fee_line(invoices["sub-alice-20260301"])["amount"] == 2200
    assert doc(db, "subscriptions/sub-alice")["current_period_start"] == utc(2026, 3, 31, 23)


def test_fully_suspended_periods_without_usage_and_hand_written_suspensions(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db)
    # Written by hand: suspended since 15 September (no interval list), and since an unknown date.
    db.document(f"tenants/{T}/customers/alice").update(
        {"status": "suspended", "suspended_at": utc(2026, 9, 15)}
    )
    f.customer(db, T, "bob", status="suspended")
    f.subscription(db, T, "sub-bob", "bob", "pro")
    f.event(db, T, "b1", "bob", "calls", utc(2026, 10, 5))
    f.customer(db, T, "carl", status="archived")
    f.subscription(db, T, "sub-carl", "carl", "pro")
    f.customer(db, T, "dina")
    f.subscription(
        db, T, "sub-dina", "dina", "pro", suspensions=[{"from": utc(2026, 10, 10), "to": utc(2026, 10, 20)}]
    )
    status, body = call_function("monthly_billing", {"month": "2026-10"}, tenant=T)
    assert status == 200 and body["errors"] == [], body
    assert sorted(body["skips"], key=lambda s: s["subscription_id"]) == [
        {"tenant_id": T, "subscription_id": "sub-alice", "reason": "nothing_to_bill"},
        {"tenant_id": T, "subscription_id": "sub-carl", "reason": "customer_archived"},
    ]
    invoices = f.invoices(db, T)
    assert sorted(invoices) == ["sub-bob-20261001", "sub-dina-20261001"]
    # bob, suspended with no date: no fee for the month, its usage billed.
    assert [(ln["kind"], ln["amount"]) for ln in invoices["sub-bob-20261001"]["lines"]] == [("usage", 10)]
    # dina, active again after the interval 10 October 01:00 .. 20 October 01:00 London: 1..10
    # and 20..31 October are billable (a partly active day counts) = 10 + 12 = 22 days.
    assert fee_line(invoices["sub-dina-20261001"])["amount"] == 2200
