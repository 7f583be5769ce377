"""The credit note PDF: titled "CREDIT NOTE", referencing the invoice's number and date."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from billing.delivery.documents import credit_note_object_name, render_credit_note
from billing.errors import DataError
from billing.records import CreditNote, CreditNoteLine, CustomerSnapshot, Tenant

TENANT = Tenant.parse(
    "acme",
    {
        "name": "Acme",
        "legal_name": "Acme Analytics Ltd",
        "status": "active",
        "timezone": "Europe/London",
        "currency": "GBP",
        "invoice_prefix": "ACME",
        "payment_terms_days": 14,
        "tax_rates": {"GB": "20"},
    },
)
NOTE = CreditNote(
    id="cn_1",
    invoice_id="inv-1",
    customer_id="alice",
    currency="GBP",
    reason="product_unsatisfactory",
    status="issued",
    number="ACME-CN-2026-000001",
    lines=(CreditNoteLine("Pro plan", "c1", 2500, 500),),
    subtotal=2500,
    tax=500,
    total=3000,
    created_at=datetime(2026, 11, 25, 12, tzinfo=UTC),
    idempotency_key="k",
    memo="Three days of outage",
    invoice_number="ACME-2026-000042",
    invoice_issued_at=datetime(2026, 11, 1, 9, tzinfo=UTC),
    customer=CustomerSnapshot("alice", "Alice Ltd", "alice@example.com", {"city": "Leeds", "country": "GB"}),
    pre_payment_amount=1000,
    credited_to_balance=2000,
)


def text(data: bytes) -> str:
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True
    )
    return done.stdout.decode("utf-8")


def test_credit_note_pdf_names_the_invoice_and_where_the_money_went() -> None:
    data = render_credit_note(TENANT, NOTE)
    assert data == render_credit_note(TENANT, NOTE)  # deterministic
    shown = text(data)
    for expected in (
        "CREDIT NOTE",
        "ACME-CN-2026-000001",
        "Invoice",
        "ACME-2026-000042",
        "1 Nov 2026",
        "Alice Ltd",
        "Acme Analytics Ltd",
        "£30.00",
        "Deducted from amount due",
        "£10.00",
        "Credited to your balance",
        "£20.00",
        "Reason: Product unsatisfactory.",
        "Three days of outage",
        "No refund is made.",
    ):
        assert expected in shown, expected
    assert "INVOICE" not in shown.replace("CREDIT NOTE", "")
    assert credit_note_object_name("acme", NOTE.number) == "acme/credit_notes/ACME-CN-2026-000001.pdf"


def test_void_credit_note_says_so() -> None:
    assert "This credit note has been voided." in text(
        render_credit_note(TENANT, replace(NOTE, status="void"))
    )


def test_record_refuses_totals_that_do_not_add_up() -> None:
    with pytest.raises(DataError):
        replace(NOTE, total=2999)
    with pytest.raises(DataError):
        replace(NOTE, reason="changed_mind")
    with pytest.raises(DataError):
        replace(NOTE, pre_payment_amount=0)  # 0 + 2000 != 3000
    stored = CreditNote.from_document(NOTE.id, NOTE.to_document())
    assert stored.lines == NOTE.lines and stored.customer == NOTE.customer and stored.total == 3000
