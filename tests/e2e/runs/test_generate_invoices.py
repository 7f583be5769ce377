"""generate_invoices through the HTTP function: anniversary periods, drafts, grace, finalization."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from tests import factories as f

T = "cloudco"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def seed(db: firestore.Client, *, grace: float = 1, **sub_fields: Any) -> None:
    f.tenant(db, T, invoice_prefix="CC", payment_terms_days=30, grace_period_hours=grace)
    f.meter(db, T, "storage_gb", "max", field="gb", unit="GB", name="Peak storage")
    f.plan(
        db,
        T,
        "monthly",
        [
            {"type": "fixed", "description": "Platform fee", "unit_amount_decimal": "3000"},
            {"type": "usage", "meter": "storage_gb", "model": "standard", "unit_amount_decimal": "10"},
        ],
    )
    f.customer(db, T, "zed", "GB")
    # Anchored on Jan 31 at 10:00 London time (GMT): the periods run Jan 31 -> Feb 28 -> Mar 31.
    fields: dict[str, Any] = {
        "billing_time": "anniversary",
        "started_at": utc(2026, 1, 31, 10),
        "current_period_start": utc(2026, 1, 31, 10),
        "current_period_end": utc(2026, 2, 28, 10),
    }
    fields.update(sub_fields)
    f.subscription(db, T, "sub-zed", "zed", "monthly", **fields)


def run(call_function: Any, as_of: str, **body: Any) -> dict[str, Any]:
    status, response = call_function("generate_invoices", {"as_of": as_of, **body}, tenant=T)
    assert status == 200, response
    result: dict[str, Any] = response
    return result


def sub(db: firestore.Client) -> dict[str, Any]:
    return db.document(f"tenants/{T}/subscriptions/sub-zed").get().to_dict() or {}


def test_draft_then_finalized_after_grace_with_late_usage(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    f.event(db, T, "s1", "zed", "storage_gb", utc(2026, 2, 10), gb=40)
    body = run(call_function, "2026-02-28T10:30:00Z")
    assert body["generated"] == 1 and body["finalized"] == 0 and body["advanced"] == 1
    assert body["draft_totals"] == {"GBP": (3000 + 400) * 12 // 10}
    invoice = f.invoices(db, T)["sub-zed-20260131"]
    assert invoice["status"] == "draft" and invoice["number"] is None
    assert invoice["finalize_at"] == utc(2026, 2, 28, 11, 30)
    moved = sub(db)
    assert (moved["current_period_start"], moved["current_period_end"]) == (
        utc(2026, 2, 28, 10),
        utc(2026, 3, 31, 9),
    )  # Mar 31 10:00 BST
    assert moved["billing_cycle_anchor"] == utc(2026, 1, 31, 10)

    # Late usage for February arrives during the grace hour; an event after the period does not count.
    f.event(db, T, "s2", "zed", "storage_gb", utc(2026, 2, 27), gb=55)
    f.event(db, T, "s3", "zed", "storage_gb", utc(2026, 2, 28, 10, 5), gb=99)
    body = run(call_function, "2026-02-28T11:00:00Z")
    assert body["finalized"] == 0 and body["generated"] == 0
    body = run(call_function, "2026-02-28T11:31:00Z")
    assert body["finalized"] == 1 and body["generated"] == 0
    invoice = f.invoices(db, T)["sub-zed-20260131"]
    assert invoice["status"] == "open" and invoice["number"] == "CC-2026-000001"
    assert invoice["subtotal"] == 3000 + 550 and invoice["tax"] == 710
    assert invoice["issued_at"] == utc(2026, 2, 28, 11, 31)
    assert invoice["due_at"] == utc(2026, 3, 30, 11, 31)
    assert invoice["pdf_uri"].endswith(f"/{T}/2026-01/CC-2026-000001.pdf")
    assert body["totals"] == {"GBP": 3550 + 710}

    # An open invoice never changes amounts.
    f.event(db, T, "s4", "zed", "storage_gb", utc(2026, 2, 20), gb=500)
    run(call_function, "2026-02-28T12:00:00Z")
    assert f.invoices(db, T)["sub-zed-20260131"]["subtotal"] == 3550


def test_missed_periods_are_invoiced_oldest_first(db: firestore.Client, call_function: Any) -> None:
    seed(db, grace=0)
    body = run(call_function, "2026-06-01T00:00:00Z")
    assert body["generated"] == 4 and body["finalized"] == 4, body
    invoices = f.invoices(db, T)
    assert sorted(invoices) == [
        "sub-zed-20260131",
        "sub-zed-20260228",
        "sub-zed-20260331",
        "sub-zed-20260430",
    ]
    numbers = [invoices[i]["number"] for i in sorted(invoices)]
    assert numbers == [f"CC-2026-00000{n}" for n in (1, 2, 3, 4)]
    ends = [invoices[i]["period_end"] for i in sorted(invoices)]
    assert ends == [utc(2026, 2, 28, 10), utc(2026, 3, 31, 9), utc(2026, 4, 30, 9), utc(2026, 5, 31, 9)]
    assert sub(db)["current_period_end"] == utc(2026, 6, 30, 9)
    body = run(call_function, "2026-06-01T00:00:00Z")
    assert body["generated"] == 0 and body["finalized"] == 0 and body["advanced"] == 0


def test_canceled_subscription_gets_a_final_prorated_invoice(
    db: firestore.Client, call_function: Any
) -> None:
    # Canceled on Mar 10 at noon: active on the 11 local days Feb 28 .. Mar 10 of a period of
    # 31 days (Feb 28 10:00 -> Mar 31 10:00 BST).
    seed(
        db,
        grace=0,
        status="canceled",
        canceled_at=utc(2026, 3, 10, 12),
        current_period_start=utc(2026, 2, 28, 10),
        current_period_end=utc(2026, 3, 31, 9),
    )
    f.event(db, T, "in", "zed", "storage_gb", utc(2026, 3, 5), gb=10)
    f.event(db, T, "after", "zed", "storage_gb", utc(2026, 3, 20), gb=1000)
    body = run(call_function, "2026-03-10T13:00:00Z")
    assert body["generated"] == 1 and body["finalized"] == 1, body
    invoice = f.invoices(db, T)["sub-zed-20260228"]
    fee = next(line for line in invoice["lines"] if line["kind"] == "fixed")
    assert fee["description"] == "Platform fee (11 of 31 days)"
    assert fee["amount"] == 1065  # 3000 x 11 / 31 = 1064.52 -> 1065
    usage = next(line for line in invoice["lines"] if line["kind"] == "usage")
    assert usage["quantity"] == "10" and usage["amount"] == 100
    body = run(call_function, "2026-05-01T00:00:00Z")
    assert body["generated"] == 0


def test_concurrent_runs_create_and_finalize_once(db: firestore.Client, call_function: Any) -> None:
    seed(db, grace=0)
    results = f.concurrently(4, lambda: run(call_function, "2026-04-01T00:00:00Z"))
    assert sum(r["generated"] for r in results) == 2
    assert sum(r["finalized"] for r in results) == 2
    assert sum(r["advanced"] for r in results) == 1
    invoices = f.invoices(db, T)
    assert sorted(inv["number"] for inv in invoices.values()) == ["CC-2026-000001", "CC-2026-000002"]
    assert sub(db)["current_period_end"] == utc(2026, 4, 30, 9)


def test_manual_trigger_finalizes_now(db: firestore.Client, call_function: Any) -> None:
    seed(db, grace=24)
    body = run(call_function, "2026-03-01T00:00:00Z", subscription_id="sub-zed")
    assert body["generated"] == 1 and body["finalized"] == 1
    assert f.invoices(db, T)["sub-zed-20260131"]["status"] == "open"


def test_dry_run_and_bad_requests(db: firestore.Client, call_function: Any) -> None:
    seed(db, grace=0)
    f.subscription(db, T, "sub-cal", "zed", "monthly")
    before = f.all_documents(db, T)
    body = run(call_function, "2026-06-01T00:00:00Z", dry_run=True)
    assert body["generated"] == 4 and len(body["invoices"]) == 4
    assert f.all_documents(db, T) == before
    cases: list[tuple[dict[str, Any], str | None, int]] = [
        ({"as_of": "2026-06-01"}, T, 400),
        ({"as_of": "2026-06-01T00:00:00"}, T, 400),
        ({"subscription_id": "sub-zed"}, None, 400),
        ({"subscription_id": "sub-cal"}, T, 400),
        ({"subscription_id": "nope"}, T, 404),
        ({"month": "2026-05"}, T, 400),
    ]
    for request, tenant, expected in cases:
        status, response = call_function("generate_invoices", request, tenant=tenant)
        assert status == expected, (request, response)
    assert f.all_documents(db, T) == before


def test_as_of_in_the_future_is_refused(db: firestore.Client, call_function: Any) -> None:
    seed(db, grace=0)
    before = f.all_documents(db, T)
    status, body = call_function("generate_invoices", {"as_of": "2999-01-01T00:00:00Z"}, tenant=T)
    assert status == 400 and body["error"]["code"] == "as_of_in_future"
    assert f.all_documents(db, T) == before


def test_the_stored_period_anchors_the_cycle(db: firestore.Client, call_function: Any) -> None:
    # Started on Jan 1 with a trial to Jan 15: the cycle runs from the 15th (Stripe anchors on
    # the trial end), with no stub period realigning it on the 1st.
    seed(
        db,
        grace=0,
        started_at=utc(2026, 1, 1),
        trial_end=utc(2026, 1, 15),
        current_period_start=utc(2026, 1, 15),
        current_period_end=utc(2026, 2, 15),
    )
    body = run(call_function, "2026-03-16T00:00:00Z")
    assert body["generated"] == 2, body
    invoices = f.invoices(db, T)
    assert sorted(invoices) == ["sub-zed-20260115", "sub-zed-20260215"]
    second = invoices["sub-zed-20260215"]
    assert (second["period_start"], second["period_end"]) == (utc(2026, 2, 15), utc(2026, 3, 15))
    fee = next(line for line in second["lines"] if line["kind"] == "fixed")
    assert fee["amount"] == 3000  # a whole period, not a stub
    assert sub(db)["current_period_start"] == utc(2026, 3, 15)


def test_open_invoices_without_a_pdf_are_repaired_by_the_next_run(
    db: firestore.Client, call_function: Any
) -> None:
    # As if a run had died between numbering an invoice and storing its PDF.
    seed(db, grace=0)
    run(call_function, "2026-03-01T00:00:00Z")
    ref = db.document(f"tenants/{T}/invoices/sub-zed-20260131")
    number = (ref.get().to_dict() or {})["number"]
    ref.update({"pdf_uri": None})
    body = run(call_function, "2026-03-01T01:00:00Z")
    assert body["generated"] == 0 and body["errors"] == []
    assert body["stats"]["pdfs_rendered"] == 1
    repaired = ref.get().to_dict() or {}
    assert repaired["pdf_uri"].endswith(f"/{T}/2026-01/{number}.pdf")
    assert repaired["number"] == number


def test_an_unreadable_tenant_with_a_subscription_id_is_reported_not_500(
    db: firestore.Client, call_function: Any
) -> None:
    # Review finding: with subscription_id, an unreadable tenant document hit an assert (500).
    f.tenant(db, "broken", timezone="Mars/Olympus_Mons")
    status, body = call_function(
        "generate_invoices", {"subscription_id": "sub-1", "as_of": "2026-11-02T00:00:00Z"}, tenant="broken"
    )
    assert status == 200, body
    assert [(e["tenant_id"], e["code"]) for e in body["errors"]] == [("broken", "unknown_timezone")]
    assert body["generated"] == 0 and f.invoices(db, "broken") == {}
