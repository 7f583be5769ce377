"""CSV exports against the store (billing.exports): the sums match the invoices and credit notes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from google.cloud import firestore

from billing.exports import ar_aging, invoice_register, write_aging, write_register
from billing.store.reporting import ReportingStore
from tests import factories as f
from tests import getting_paid as gp

T = gp.T
AS_OF = datetime(2026, 12, 31, 12, tzinfo=UTC)


def seed(db: firestore.Client) -> None:
    gp.seed_tenant(db)
    for name, country in (("alice", "GB"), ("bernd", "DE"), ("carla", "GB")):
        f.customer(db, T, name, country, name=f"{name.title()} Ltd")
    # due 2026-12-31 (current), 12-01 (30 days), 11-15 (46), 10-15 (77), 09-01 (121)
    dues = {"a1": 0, "a2": 30, "a3": 46, "b1": 77, "b2": 121}
    for invoice_id, days in dues.items():
        customer = "alice" if invoice_id.startswith("a") else "bernd"
        gp.seed_invoice(db, invoice_id, customer, due_at=AS_OF - timedelta(days=days))
    gp.seed_invoice(db, "a4", "alice", due_at=AS_OF - timedelta(days=5), amount_due=4000, amount_paid=8000)
    gp.seed_invoice(db, "c1", "carla", status="paid", amount_due=0, amount_paid=12000)
    gp.seed_invoice(db, "c2", "carla", status="void")
    gp.seed_invoice(db, "c3", "carla", status="draft", number=None, finalized_at=None)
    db.document(f"tenants/{T}/credit_notes/cn-1").set(
        {
            "invoice_id": "c1",
            "customer_id": "carla",
            "currency": "GBP",
            "reason": "order_change",
            "status": "issued",
            "number": "ACME-CN-2026-000001",
            "lines": [{"description": "Pro plan", "invoice_line_id": "1", "amount": 2500, "tax": 500}],
            "subtotal": 2500,
            "tax": 500,
            "total": 3000,
            "created_at": datetime(2026, 12, 2, tzinfo=UTC),
        }
    )


def parse(write: object, rows: object) -> list[dict[str, str]]:
    out = io.StringIO(newline="")
    write(rows, out)  # type: ignore[operator]
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def test_the_register_sums_to_the_issued_invoices_less_the_credit_notes(db: firestore.Client) -> None:
    seed(db)
    store = ReportingStore(db)
    tenant = store.get_tenant(T)
    rows = parse(write_register, invoice_register(store, tenant, date(2000, 1, 1), date(2026, 12, 31)))
    stored = [s.to_dict() or {} for s in db.collection(f"tenants/{T}/invoices").stream()]
    issued = [d for d in stored if d["status"] != "draft"]
    invoiced = sum(Decimal(r["total"]) for r in rows if r["document_type"] == "invoice")
    assert invoiced == Decimal(sum(d["total"] for d in issued)) / 100
    credited = [r for r in rows if r["document_type"] == "credit_note"]
    assert [(r["number"], r["total"], r["tax"], r["invoice_number"]) for r in credited] == [
        (
            "ACME-CN-2026-000001",
            "-30.00",
            "-5.00",
            next(d["number"] for d in stored if d["customer"]["id"] == "carla" and d["status"] == "paid"),
        )
    ]
    assert {r["status"] for r in rows if r["document_type"] == "invoice"} == {"open", "paid", "void"}
    assert {r["country"] for r in rows if r["customer_id"] == "bernd"} == {"DE"}
    assert all(r["currency"] == "GBP" for r in rows)
    # a range that ends before anything was issued is empty but for its header
    assert parse(write_register, invoice_register(store, tenant, date(2026, 1, 1), date(2026, 1, 2))) == []


def test_the_aging_buckets_sum_to_the_amount_due_of_open_invoices(db: firestore.Client) -> None:
    seed(db)
    store = ReportingStore(db)
    rows = {r["customer_id"]: r for r in parse(write_aging, ar_aging(store, store.get_tenant(T), AS_OF))}
    assert set(rows) == {"alice", "bernd"}  # carla has nothing open
    alice, bernd = rows["alice"], rows["bernd"]
    assert (alice["current"], alice["days_1_30"], alice["days_31_60"]) == ("120.00", "160.00", "120.00")
    assert (bernd["days_61_90"], bernd["days_90_plus"], bernd["total"]) == ("120.00", "120.00", "240.00")
    assert alice["invoices"] == "4" and alice["customer_name"] == "Alice Ltd"
    open_due = sum(
        (s.to_dict() or {})["amount_due"]
        for s in db.collection(f"tenants/{T}/invoices").stream()
        if (s.to_dict() or {})["status"] == "open"
    )
    assert sum(Decimal(r["total"]) for r in rows.values()) == Decimal(open_due) / 100


def test_a_credit_note_issued_by_billing_admin_is_a_negative_row_of_the_register(
    db: firestore.Client,
) -> None:
    from billing.runs.admin_actions import dispatch

    gp.seed_tenant(db, email=False)
    f.customer(db, T, "alice", "GB", name="Alice Ltd")
    gp.seed_invoice(db, "a1", "alice", due_at=datetime(2026, 11, 15, tzinfo=UTC))
    store = ReportingStore(db)
    now = datetime(2026, 11, 20, tzinfo=UTC)
    body = {"action": "create_credit_note", "invoice_id": "a1", "reason": "order_change", "amount": 2500}
    dispatch(store, T, "finance@acme.test", {**body, "idempotency_key": "cn-a1-1"}, now=now)
    (note,) = [s.to_dict() or {} for s in db.collection(f"tenants/{T}/credit_notes").stream()]
    rows = parse(
        write_register, invoice_register(store, store.get_tenant(T), date(2026, 10, 1), date(2026, 11, 30))
    )
    credited = [r for r in rows if r["document_type"] == "credit_note"]
    assert [r["number"] for r in credited] == [note["number"]]
    assert sum(Decimal(r["total"]) for r in credited) == -Decimal(note["total"]) / 100 == Decimal("-30.00")
    assert sum(Decimal(r["total"]) for r in rows) == Decimal(12000 - note["total"]) / 100
    aging = parse(write_aging, ar_aging(store, store.get_tenant(T), now))
    assert [(r["customer_id"], r["days_1_30"], r["total"]) for r in aging] == [("alice", "90.00", "90.00")]
