"""Drafts that can never finalize, and the numbering year (issue 8 item 8b and 8c).

Through ``generate_invoices`` against the Firestore emulator.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from billing.pricing.numbering import sequence_year
from tests import factories as f

T = "drafty"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def run(call_function: Any, as_of: str, **body: Any) -> dict[str, Any]:
    status, response = call_function("generate_invoices", {"as_of": as_of, **body}, tenant=T)
    assert status == 200, response
    result: dict[str, Any] = response
    return result


def seed(db: firestore.Client, *customers: str, **tenant_fields: Any) -> None:
    f.tenant(db, T, invoice_prefix="DR", **{"grace_period_hours": 1, **tenant_fields})
    f.meter(db, T, "calls", "count", field=None)
    f.plan(
        db, T, "payg", [{"type": "usage", "meter": "calls", "model": "standard", "unit_amount_decimal": "10"}]
    )
    for name in customers:
        f.customer(db, T, name)
        f.subscription(
            db,
            T,
            f"sub-{name}",
            name,
            "payg",
            billing_time="anniversary",
            started_at=utc(2026, 1, 1),
            current_period_start=utc(2026, 1, 1),
            current_period_end=utc(2026, 2, 1),
        )
        f.event(db, T, f"e-{name}", name, "calls", utc(2026, 1, 10))


def test_a_draft_repriced_to_nothing_is_deleted_and_never_recreated(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db, "amy")
    assert run(call_function, "2026-02-01T00:10:00Z")["generated"] == 1
    invoice_id = "sub-amy-20260101"
    assert f.invoices(db, T)[invoice_id]["status"] == "draft"
    # The only event is withdrawn during the grace hour: the draft now bills nothing.
    db.document(f"tenants/{T}/usage_events/e-amy").delete()
    body = run(call_function, "2026-02-01T01:30:00Z")
    assert (body["finalized"], body["errors"]) == (0, []), body
    assert {"tenant_id": T, "subscription_id": "sub-amy", "reason": "no_usage"} in body["skips"]
    deleted = f.invoices(db, T)[invoice_id]
    assert (deleted["status"], deleted["number"], deleted["deleted_reason"]) == ("deleted", None, "no_usage")
    assert deleted["history"][-1]["action"] == "deleted"
    # Nothing re-creates or re-prices it; numbering has not moved.
    later = run(call_function, "2026-02-02T00:00:00Z")
    assert (later["generated"], later["finalized"], later["skipped"]) == (0, 0, 0), later
    assert list(db.collection(f"tenants/{T}/invoice_sequences").stream()) == []


def test_drafts_of_suspended_customers_finalize_and_blocked_drafts_are_warned_about(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db, "sue", "arc")
    assert run(call_function, "2026-02-01T00:10:00Z")["generated"] == 2
    db.document(f"tenants/{T}/customers/sue").update(
        {"status": "suspended", "suspended_at": utc(2026, 2, 1, 0, 20)}
    )
    db.document(f"tenants/{T}/customers/arc").update({"status": "archived"})
    body = run(call_function, "2026-02-03T06:10:00Z")
    # sue is suspended: her period is billed like any other (issue 8 item 5).
    assert body["finalized"] == 1, body
    invoices = f.invoices(db, T)
    assert invoices["sub-sue-20260101"]["status"] == "open"
    # arc is archived: the draft cannot finalize; the run says so, with its age.
    assert invoices["sub-arc-20260101"]["status"] == "draft"
    (warning,) = [w for w in body["warnings"] if "sub-arc-20260101" in w]
    assert "2 days 6 hours" in warning and "customer_archived" in warning, warning
    assert body["warnings_count"] >= 1


def test_a_malformed_draft_fails_alone(db: firestore.Client, call_function: Any) -> None:
    # Issue 8 item 7 ("catch per subscription"), for the finalization of stored drafts.
    seed(db, "amy", "ben")
    assert run(call_function, "2026-02-01T00:10:00Z")["generated"] == 2
    db.document(f"tenants/{T}/invoices/sub-ben-20260101").update(
        {"period_end": utc(2026, 1, 1)}
    )  # an empty period: cannot be re-priced
    body = run(call_function, "2026-02-01T01:30:00Z")
    assert body["finalized"] == 1, body
    assert [(e["invoice_id"], e["code"]) for e in body["errors"]] == [("sub-ben-20260101", "internal")]
    assert f.invoices(db, T)["sub-amy-20260101"]["status"] == "open"
    assert any("sub-ben-20260101" in w for w in body["warnings"])


def test_numbering_year_is_the_finalization_year_in_the_tenant_timezone(
    db: firestore.Client, call_function: Any
) -> None:
    assert sequence_year(utc(2026, 12, 31, 23, 30), "Pacific/Auckland") == 2027
    assert sequence_year(utc(2026, 12, 31, 23, 30), "America/Los_Angeles") == 2026
    # 2025-12-31T23:30Z is 1 January 2026 12:30 in Auckland: the invoice is number 1 of 2026.
    seed(db, "kiri", timezone="Pacific/Auckland", grace_period_hours=0)
    db.document(f"tenants/{T}/subscriptions/sub-kiri").update(
        {
            "started_at": utc(2025, 11, 30, 11),
            "current_period_start": utc(2025, 11, 30, 11),
            "current_period_end": utc(2025, 12, 31, 11),
        }
    )
    f.event(db, T, "e-dec", "kiri", "calls", utc(2025, 12, 10))
    body = run(call_function, "2025-12-31T23:30:00Z")
    assert (body["generated"], body["finalized"], body["errors"]) == (1, 1, []), body
    (invoice,) = f.invoices(db, T).values()
    assert (invoice["number"], invoice["sequence_year"]) == ("DR-2026-000001", 2026)
    assert db.document(f"tenants/{T}/invoice_sequences/2026").get().exists
