"""The month close through the HTTP function, against the real Firestore and Storage emulators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore, storage

from tests import factories as f
from tests.conftest import TEST_BUCKET

MONTH = "2026-10"  # Europe/London: [2026-09-30T23:00Z, 2026-11-01T00:00Z); BST ends on the 25th
T = "acme"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def seed_acme(db: firestore.Client, *, bulk: bool = True) -> None:
    f.tenant(db, T)
    f.meter(db, T, "api_calls", "count", field=None, unit="calls", name="API calls")
    f.meter(db, T, "hours", "sum", field="hours", group_by=["project"], unit="hrs", name="Consulting")
    f.plan(
        db,
        T,
        "pro",
        [
            {"type": "fixed", "description": "Pro plan", "unit_amount_decimal": "1000"},
            {"type": "usage", "meter": "hours", "model": "standard", "unit_amount_decimal": "8000"},
            {"type": "usage", "meter": "api_calls", "model": "standard", "unit_amount_decimal": "0.5"},
        ],
    )
    f.plan(
        db,
        T,
        "payg",
        [
            {"type": "usage", "meter": "api_calls", "model": "standard", "unit_amount_decimal": "2"},
        ],
    )
    f.customer(db, T, "alice", "GB")
    f.customer(db, T, "bernd", "DE")
    f.customer(db, T, "carla", "GB", tax_exempt=True)
    f.customer(db, T, "dora", "GB")
    f.subscription(db, T, "sub-alice", "alice", "pro")
    f.subscription(db, T, "sub-bernd", "bernd", "payg")
    f.subscription(db, T, "sub-carla", "carla", "payg")
    f.subscription(db, T, "sub-dora", "dora", "payg")  # no usage, no fixed fee -> skipped
    # alice: 12 hours on Project Alpha, 3.5 on Beta; 3 API calls, one of them on the first
    # instant of the month (BST) and one just before it (not counted).
    f.event(db, T, "e1", "alice", "hours", utc(2026, 10, 5, 9), hours=8, project="Project Alpha")
    f.event(db, T, "e2", "alice", "hours", utc(2026, 10, 28, 9), hours="4", project="Project Alpha")
    f.event(db, T, "e3", "alice", "hours", utc(2026, 10, 30, 9), hours=3.5, project="Beta")
    f.event(db, T, "e4", "alice", "api_calls", utc(2026, 9, 30, 23))
    f.event(db, T, "e5", "alice", "api_calls", utc(2026, 9, 30, 22, 59, 59))
    f.event(db, T, "e6", "alice", "api_calls", utc(2026, 10, 31, 23, 59, 59))
    f.event(db, T, "e7", "alice", "api_calls", utc(2026, 11, 1, 0))  # next month: not counted
    # bernd: 1,001 calls at 2p = 2002p, DE 19% tax = 380.38 -> 380
    if not bulk:
        return
    batch = db.batch()
    for i in range(1001):
        batch.set(
            db.document(f"tenants/{T}/usage_events/b{i}"),
            {
                "customer_id": "bernd",
                "meter": "api_calls",
                "timestamp": utc(2026, 10, 10, 12, 0, i % 60),
                "properties": {},
            },
        )
        if i % 400 == 399:
            batch.commit()
            batch = db.batch()
    batch.commit()
    # carla: 3 calls, exempt
    for i in range(3):
        f.event(db, T, f"c{i}", "carla", "api_calls", utc(2026, 10, 3, i))


def expected_alice() -> dict[str, Any]:
    # fixed 1000; Alpha 12 h x 8000 = 96000; Beta 3.5 h x 8000 = 28000; 2 calls x 0.5 = 1
    lines = {"Pro plan": 1000, "Alpha": 96000, "Beta": 28000, "calls": 1}
    subtotal = sum(lines.values())
    tax = 200 + 19200 + 5600 + 0  # 20 % per line, rounded per line (0.2 -> 0)
    return {"subtotal": subtotal, "tax": tax, "total": subtotal + tax}


def test_month_close_bills_every_subscription(
    db: firestore.Client, gcs: storage.Client, call_function: Any
) -> None:
    seed_acme(db)
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200, body
    assert body["generated"] == 3
    assert body["skipped"] == 1
    assert body["skips"] == [{"tenant_id": T, "subscription_id": "sub-dora", "reason": "no_usage"}]
    assert body["errors"] == []
    invoices = f.invoices(db, T)
    assert sorted(invoices) == ["sub-alice-20261001", "sub-bernd-20261001", "sub-carla-20261001"]

    alice = invoices["sub-alice-20261001"]
    want = expected_alice()
    assert (alice["subtotal"], alice["tax"], alice["total"]) == (want["subtotal"], want["tax"], want["total"])
    descriptions = [line["description"] for line in alice["lines"]]
    assert "Consulting – Project Alpha: 12 hrs at GBP 80.00" in descriptions
    assert "Consulting – Beta: 3.5 hrs at GBP 80.00" in descriptions
    assert "API calls: 2 calls at GBP 0.005" in descriptions
    calls = next(line for line in alice["lines"] if line.get("meter") == "api_calls")
    assert (calls["quantity"], calls["unit_amount_decimal"], calls["amount"]) == ("2", "0.5", 1)
    assert alice["period_start"] == utc(2026, 9, 30, 23)
    assert alice["period_end"] == utc(2026, 11, 1)
    assert alice["status"] == "open" and alice["currency"] == "GBP"

    bernd = invoices["sub-bernd-20261001"]
    assert (bernd["subtotal"], bernd["tax"], bernd["total"]) == (2002, 380, 2382)
    carla = invoices["sub-carla-20261001"]
    assert (carla["subtotal"], carla["tax"], carla["total"]) == (6, 0, 6)
    assert body["totals"] == {"GBP": want["total"] + 2382 + 6}

    # Gapless numbers in finalization order (sorted by customer), due = issue + 14 days.
    numbers = sorted(inv["number"] for inv in invoices.values())
    year = alice["issued_at"].year
    assert numbers == [f"ACME-{year}-00000{i}" for i in (1, 2, 3)]
    for invoice in invoices.values():
        assert (invoice["due_at"] - invoice["issued_at"]).days == 14
        uri = invoice["pdf_uri"]
        assert uri == f"gs://{TEST_BUCKET}/{T}/2026-10/{invoice['number']}.pdf"
        blob = gcs.bucket(TEST_BUCKET).blob(uri.split("/", 3)[3])
        assert blob.download_as_bytes().startswith(b"%PDF")

    # The run record.
    runs = list(db.collection(f"tenants/{T}/billing_runs").stream())
    assert len(runs) == 1
    record = runs[0].to_dict() or {}
    assert record["status"] == "completed" and record["generated"] == 3
    assert record["month"] == MONTH and record["principal"] == "scheduler@dev.local"


def test_dry_run_writes_nothing_and_previews(db: firestore.Client, call_function: Any) -> None:
    seed_acme(db)
    before = f.all_documents(db, T)
    status, body = call_function("monthly_billing", {"month": MONTH, "dry_run": True}, tenant=T)
    assert status == 200, body
    assert body["dry_run"] is True and body["generated"] == 3
    previews = {inv["invoice_id"]: inv for inv in body["invoices"]}
    assert previews["sub-alice-20261001"]["total"] == expected_alice()["total"]
    assert f.all_documents(db, T) == before


def test_one_bad_subscription_does_not_stop_the_run(db: firestore.Client, call_function: Any) -> None:
    seed_acme(db)
    f.meter(db, T, "broken", "median", field="x")
    f.plan(
        db,
        T,
        "uses-broken",
        [{"type": "usage", "meter": "broken", "model": "standard", "unit_amount_decimal": "1"}],
    )
    f.plan(
        db,
        T,
        "uses-missing",
        [{"type": "usage", "meter": "nope", "model": "standard", "unit_amount_decimal": "1"}],
    )
    f.plan(db, T, "in-euro", [{"type": "fixed", "unit_amount_decimal": "500"}], currency="EUR")
    for sub, plan in (
        ("s-broken", "uses-broken"),
        ("s-missing", "uses-missing"),
        ("s-euro", "in-euro"),
        ("s-noplan", "ghost"),
    ):
        f.customer(db, T, f"c-{sub}")
        f.subscription(db, T, sub, f"c-{sub}", plan)
    f.event(db, T, "x1", "alice", "hours", utc(2026, 10, 6), hours="lots", project="Beta")
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200, body
    assert body["generated"] == 3
    errors = {e["subscription_id"]: e for e in body["errors"]}
    assert sorted(errors) == ["s-broken", "s-euro", "s-missing", "s-noplan"]
    assert errors["s-broken"]["code"] == "invalid_field"
    assert "median" in errors["s-broken"]["error"]
    assert errors["s-missing"]["code"] == "unknown_meter"
    assert errors["s-euro"]["code"] == "currency_mismatch"
    assert errors["s-noplan"]["code"] == "unknown_plan"
    assert body["warnings_count"] == 1
    assert "not numeric" in body["warnings"][0]
    # The non-numeric event was ignored: alice's total is unchanged.
    assert f.invoices(db, T)["sub-alice-20261001"]["total"] == expected_alice()["total"]


def test_concurrent_and_repeated_runs_create_each_invoice_once(
    db: firestore.Client, call_function: Any
) -> None:
    seed_acme(db)
    results: list[tuple[int, dict[str, Any]]] = f.concurrently(
        4, lambda: call_function("monthly_billing", {"month": MONTH}, tenant=T)
    )
    assert [status for status, _ in results] == [200] * 4, results
    assert sum(body["generated"] for _, body in results) == 3
    first = f.invoices(db, T)
    assert len(first) == 3
    numbers = sorted(inv["number"] for inv in first.values())
    year = next(iter(first.values()))["issued_at"].year
    assert numbers == [f"ACME-{year}-00000{i}" for i in (1, 2, 3)]

    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200 and body["generated"] == 0
    assert {s["reason"] for s in body["skips"]} == {"already_invoiced", "no_usage"}
    again = f.invoices(db, T)
    for invoice_id, invoice in first.items():
        assert again[invoice_id]["number"] == invoice["number"]
        assert again[invoice_id]["total"] == invoice["total"]
        assert again[invoice_id]["pdf_uri"]
    sequence = db.document(f"tenants/{T}/invoice_sequences/{year}").get().to_dict() or {}
    assert sequence["last"] == 3


def test_subscription_window_and_suspension(db: firestore.Client, call_function: Any) -> None:
    seed_acme(db)
    f.customer(db, T, "late")
    f.subscription(db, T, "sub-late", "late", "payg", started_at=utc(2026, 10, 20))
    f.event(db, T, "l1", "late", "api_calls", utc(2026, 10, 19))  # before start: not counted
    f.event(db, T, "l2", "late", "api_calls", utc(2026, 10, 21))
    f.customer(db, T, "gone")
    f.subscription(db, T, "sub-gone", "gone", "payg", status="canceled", canceled_at=utc(2026, 9, 1))
    f.event(db, T, "g1", "gone", "api_calls", utc(2026, 10, 21))
    f.customer(db, T, "paused")
    f.subscription(db, T, "sub-paused", "paused", "payg", status="suspended")
    f.event(db, T, "p1", "paused", "api_calls", utc(2026, 10, 21))
    f.subscription(db, T, "sub-future", "alice", "payg", started_at=utc(2026, 11, 2))
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200, body
    invoices = f.invoices(db, T)
    assert invoices["sub-late-20261001"]["subtotal"] == 2
    assert "sub-gone-20261001" not in invoices
    assert "sub-future-20261001" not in invoices
    # Suspended (issue 8 item 5): the month is still billed, its usage in full (no fixed fee on
    # this plan); no skip for suspension.
    assert invoices["sub-paused-20261001"]["subtotal"] == 2
    assert all(s["subscription_id"] != "sub-paused" for s in body["skips"])


def test_all_active_tenants_when_no_tenant_is_named(db: firestore.Client, call_function: Any) -> None:
    seed_acme(db)
    f.tenant(db, "other", currency="JPY", timezone="Asia/Tokyo", invoice_prefix="OTH")
    f.customer(db, "other", "kenji", "JP")
    f.plan(db, "other", "flat", [{"type": "fixed", "unit_amount_decimal": "5000"}], currency="JPY")
    f.subscription(db, "other", "sub-kenji", "kenji", "flat")
    f.tenant(db, "sleeping", status="disabled")
    status, body = call_function("monthly_billing", {"month": MONTH})
    assert status == 200, body
    assert body["totals"] == {"GBP": expected_alice()["total"] + 2382 + 6, "JPY": 5000}
    assert sorted(t["tenant_id"] for t in body["tenants"]) == [T, "other"]
    kenji = f.invoices(db, "other")["sub-kenji-20261001"]
    assert kenji["period_start"] == utc(2026, 9, 30, 15)  # midnight in Tokyo


def test_calendar_subscription_needs_a_monthly_plan(db: firestore.Client, call_function: Any) -> None:
    seed_acme(db, bulk=False)
    f.plan(db, T, "yearly", [{"type": "fixed", "unit_amount_decimal": "120000"}], interval="year")
    f.subscription(db, T, "sub-yearly", "alice", "yearly")
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200, body
    assert [(e["subscription_id"], e["code"]) for e in body["errors"]] == [("sub-yearly", "not_monthly_plan")]
    assert "sub-yearly-20261001" not in f.invoices(db, T)
    assert body["generated"] == 1  # alice's pro plan (without bulk, bernd and carla have no usage)


def test_an_event_counts_for_one_subscription_only(db: firestore.Client, call_function: Any) -> None:
    seed_acme(db, bulk=False)
    # bernd also holds a second plan charging the same meter, started later: an event without
    # subscription_id counts for the most recently started one; a pinned event for its own.
    f.plan(
        db,
        T,
        "payg-2",
        [{"type": "usage", "meter": "api_calls", "model": "standard", "unit_amount_decimal": "3"}],
    )
    f.subscription(db, T, "sub-bernd-2", "bernd", "payg-2", started_at=utc(2026, 5, 1))
    f.event(db, T, "n1", "bernd", "api_calls", utc(2026, 10, 2))
    f.event(db, T, "n2", "bernd", "api_calls", utc(2026, 10, 3))
    db.document(f"tenants/{T}/usage_events/p1").set(
        {
            "customer_id": "bernd",
            "meter": "api_calls",
            "timestamp": utc(2026, 10, 4),
            "properties": {},
            "subscription_id": "sub-bernd",
        }
    )
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200, body
    invoices = f.invoices(db, T)
    assert invoices["sub-bernd-20261001"]["subtotal"] == 2  # p1 at 2p
    assert invoices["sub-bernd-2-20261001"]["subtotal"] == 6  # n1, n2 at 3p


def test_malformed_events_and_bad_flags_are_reported(db: firestore.Client, call_function: Any) -> None:
    seed_acme(db, bulk=False)
    db.document(f"tenants/{T}/usage_events/bad").set(
        {"meter": "api_calls", "timestamp": utc(2026, 10, 2), "properties": {}}
    )
    f.customer(db, T, "flaky", "GB", tax_exempt="yes")
    f.subscription(db, T, "sub-flaky", "flaky", "payg")
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200, body
    assert any("1 usage events without a customer_id" in w for w in body["warnings"])
    errors = {e["subscription_id"]: e for e in body["errors"]}
    assert "tax_exempt" in errors["sub-flaky"]["error"]
    f.tenant(db, "strict", tax_inclusive="false")
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant="strict")
    assert status == 200 and body["errors"][0]["code"] == "invalid_field"
    assert "tax_inclusive" in body["errors"][0]["error"]
