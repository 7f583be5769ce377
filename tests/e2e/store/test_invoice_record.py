"""The typed invoice (issue 9 item 2): parsed once by the store, unknown fields kept on write-back.

Also the store's own read and write counters (issue 9 item 3) and the invoice status machine
as pure rules (item 7 asks for direct tests of it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from google.cloud import firestore

from billing.errors import Conflict, DataError
from billing.records import Invoice, Payment
from billing.runs.payments import ManualPayment, can_move, change_status, status_change
from billing.runs.payments.status import payment_change
from billing.store.firestore_store import BillingStore, InvoiceChange, history_entry
from tests import getting_paid as gp
from tests.e2e.store.test_store import NOW, TENANT, drafts

PAID_AT = datetime(2026, 11, 20, 10, tzinfo=UTC)


def stored(**fields: Any) -> dict[str, Any]:
    """An invoice document as the month close stores it (``tests.getting_paid`` shape)."""
    document: dict[str, Any] = {
        "tenant_id": "acme",
        "customer_id": "alice",
        "subscription_id": "sub-alice",
        "plan_id": "pro",
        "billing_time": "calendar",
        "period_start": datetime(2026, 9, 30, 23, tzinfo=UTC),
        "period_end": datetime(2026, 11, 1, tzinfo=UTC),
        "currency": "GBP",
        "lines": [
            {
                "description": "Pro plan",
                "quantity": "1.5",
                "unit_amount_decimal": "10000",
                "amount": 15000,
                "tax_rate": "20",
                "tax": 3000,
                "kind": "fixed",
            }
        ],
        "subtotal": 15000,
        "tax": 3000,
        "total": 18000,
        "tax_inclusive": False,
        "amount_paid": 0,
        "amount_due": 18000,
        "customer": {
            "id": "alice",
            "name": "Alice Ltd",
            "email": "alice@example.com",
            "address": {"country": "GB"},
            "tax_id": None,
        },
        "status": "open",
        "number": "ACME-2026-000001",
        "sequence": 1,
        "sequence_year": 2026,
        "issued_at": gp.ISSUED,
        "finalized_at": gp.ISSUED,
        "due_at": gp.DUE,
        "finalize_at": None,
        "pdf_uri": None,
        "created_at": gp.ISSUED,
        "run_id": "close",
    }
    document.update(fields)
    return document


def test_an_invoice_document_parses_into_typed_fields() -> None:
    invoice = Invoice.from_document(
        "inv-1",
        stored(
            payments=[
                {
                    "amount": 500,
                    "paid_at": PAID_AT,
                    "source": "stripe",
                    "reference": "evt_1",
                    "by": "stripe",
                    "at": PAID_AT,
                }
            ],
            stripe_invoice_id="in_1",
            stripe_event_ids=["evt_1"],
            dunning={"reminder_1": {}},
            delivery_pending=True,
            delivery_errors=["email: down"],
            extension={"kept": True},
        ),
    )
    assert (invoice.id, invoice.status, invoice.label) == ("inv-1", "open", "ACME-2026-000001")
    assert (invoice.subtotal, invoice.tax, invoice.total, invoice.amount_due) == (15000, 3000, 18000, 18000)
    (line,) = invoice.lines
    assert (line.quantity, line.unit_amount_decimal, line.amount, line.tax_rate) == (
        Decimal("1.5"),
        Decimal(10000),
        15000,
        Decimal(20),
    )
    assert invoice.customer is not None and invoice.customer.email == "alice@example.com"
    assert invoice.due_at == gp.DUE and invoice.paid_at is None
    assert invoice.payments == (Payment(500, PAID_AT, "stripe", "evt_1", "stripe", PAID_AT),)
    assert invoice.stripe_paid() == 500 and invoice.paid_by("evt_1")
    assert not invoice.paid_by(None) and not invoice.paid_by("other")
    assert invoice.delivery_pending and invoice.delivery_errors == ("email: down",)
    assert invoice.as_document()["extension"] == {"kept": True}
    assert invoice.as_document()["invoice_id"] == "inv-1"


def test_defaults_follow_the_stored_fields() -> None:
    document = stored(status="draft", number=None)
    for key in ("amount_due", "amount_paid", "customer", "sequence", "due_at"):
        document.pop(key)
    invoice = Invoice.from_document("d-1", document)
    assert (invoice.amount_due, invoice.amount_paid) == (18000, 0)  # due: the total
    assert invoice.label == "d-1" and invoice.customer is None and invoice.due_at is None
    assert invoice.payments == () and invoice.history == () and invoice.dunning == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"customer_id": None}, "missing required field 'customer_id'"),
        ({"total": "18000"}, "'total' must be an integer"),
        ({"due_at": "2026-11-15"}, "'due_at' must be a timestamp"),
        ({"payments": {"amount": 1}}, "'payments' must be a list of maps"),
        (
            {"lines": [{"description": "x", "quantity": "many", "unit_amount_decimal": "1", "amount": 1}]},
            "'quantity' must be a decimal number",
        ),
    ],
)
def test_a_broken_invoice_document_is_a_data_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        Invoice.from_document("inv-1", stored(**fields))
    assert "invoices/inv-1" in caught.value.message


# -- the status machine, as pure rules --------------------------------------------------------
def test_the_status_machine_moves_forward_only() -> None:
    assert can_move("open", "paid") and can_move("uncollectible", "paid")
    assert can_move("open", "void") and can_move("uncollectible", "void")
    assert can_move("open", "uncollectible")
    for final in ("paid", "void"):
        assert not any(can_move(final, target) for target in ("paid", "void", "uncollectible"))
    assert not can_move("draft", "paid") and not can_move(None, "void")


def test_status_changes_and_payments() -> None:
    invoice = Invoice.from_document("inv-1", stored(amount_paid=3000, amount_due=15000))
    paid = status_change("paid", PAID_AT, invoice)
    assert (paid.status, paid.amount_due, paid.amount_paid, paid.paid_at) == ("paid", 0, 18000, PAID_AT)
    assert status_change("void", PAID_AT, invoice).amount_due == 0
    assert status_change("uncollectible", PAID_AT, invoice).amount_due is None
    with pytest.raises(ValueError, match="unknown target"):
        status_change("refunded", PAID_AT, invoice)
    part, action = payment_change(invoice, ManualPayment(5000, PAID_AT, "r1"), "ops@x.test", NOW)
    assert (action, part.status, part.amount_paid, part.amount_due) == ("partial_payment", None, 8000, 10000)
    assert part.payment == Payment(5000, PAID_AT, "admin", "r1", "ops@x.test", NOW)
    rest, action = payment_change(invoice, ManualPayment(15000, PAID_AT), "ops@x.test", NOW)
    assert (action, rest.status, rest.amount_due) == ("mark_paid", "paid", 0)
    with pytest.raises(Conflict, match="exceeds"):
        payment_change(invoice, ManualPayment(15001, PAID_AT), "ops@x.test", NOW)


# -- on the emulator -------------------------------------------------------------------------
def test_fields_the_code_does_not_know_survive_every_write(db: firestore.Client) -> None:
    extension = {"po_number": "PO-7", "notes": ["a", "b"]}
    db.document("tenants/t1/invoices/inv-1").set(stored(extension=extension, status="open"))
    store = BillingStore(db)
    store.update_invoice(
        "t1",
        "inv-1",
        InvoiceChange(
            delivery_pending=True,
            dunning={"reminder_1": {"at": NOW}},
            history=(history_entry("email_sent", "system", NOW),),
        ),
    )
    result = change_status(
        store, "t1", "inv-1", "paid", "ops@x.test", NOW, "r", payment=ManualPayment(18000, PAID_AT, "wire-1")
    )
    assert result.changed and result.invoice.status == "paid"
    assert result.invoice.raw["extension"] == extension
    document = db.document("tenants/t1/invoices/inv-1").get().to_dict() or {}
    assert document["extension"] == extension and document["dunning"] == {"reminder_1": {"at": NOW}}
    assert [h["action"] for h in document["history"]] == ["email_sent", "mark_paid"]
    assert document["payments"][0]["reference"] == "wire-1"
    # The invoice after the change, as the store returned it, is the stored document.
    assert result.invoice == Invoice.from_document("inv-1", document)
    again = change_status(
        store, "t1", "inv-1", "paid", "ops@x.test", NOW, "r", payment=ManualPayment(18000, PAID_AT, "wire-1")
    )
    assert not again.changed and (db.document("tenants/t1/invoices/inv-1").get().to_dict() == document)


def test_the_store_counts_what_it_reads_and_writes(db: firestore.Client) -> None:
    store = BillingStore(db)
    assert store.due_drafts("t1", NOW) == [] and (store.reads, store.writes) == (1, 0)
    created = store.create_invoices(TENANT, drafts(3), now=NOW, run_id="r", finalize=True)
    assert len(created.created) == 3
    # Three create-if-absent reads and the sequence; three invoices and the sequence written.
    assert (store.reads, store.writes) == (1 + 4, 4)
    assert len(store.get_invoices("t1", [i.id for i in created.created] + ["missing"])) == 3
    assert store.reads == 5 + 4
    with pytest.raises(Conflict):
        change_status(
            store, "t1", created.created[0].id, "paid", "x", NOW, "r", payment=ManualPayment(10**9, NOW)
        )
    assert (store.reads, store.writes) == (10, 4)  # read in the transaction, nothing written
    store.record_pdfs(
        "t1", [(i.id, f"gs://b/{i.id}.pdf") for i in created.created], NOW + timedelta(seconds=1)
    )
    assert store.writes == 7
