"""The seller block of an invoice PDF, month close and re-render alike, on the real emulators."""

from __future__ import annotations

from typing import Any

from tests.unit.delivery.test_pdf import pdf_text


def seller_lines(data: bytes, number: str) -> list[str]:
    """The seller block: the lines pdftotext reads between the "INVOICE" title and the number."""
    block = pdf_text(data).split("INVOICE", 1)[1].split(number, 1)[0]
    return [line for line in block.split("\n") if line]


def test_month_close_and_render_pdf_print_the_same_seller_lines(
    db: Any, gcs: Any, call_function: Any, token: Any
) -> None:
    """Issue 9, item 6: one seller rule for every PDF, whatever renders it.

    The tenant's ``email`` is the contract's settings map, its addresses with display names:
    the month close printed ``reply_to`` as stored, a re-rendered PDF its bare address.
    """
    from tests import factories as f
    from tests.conftest import TEST_BUCKET

    f.tenant(
        db,
        "acme",
        email={
            "enabled": False,
            "from": "Acme Billing <billing@acme.test>",
            "reply_to": "Accounts <accounts@acme.test>",
        },
    )
    f.customer(db, "acme", "alice", "GB")
    f.plan(db, "acme", "pro", [{"type": "fixed", "description": "Pro plan", "unit_amount_decimal": "1000"}])
    f.subscription(db, "acme", "sub-alice", "alice", "pro")
    status, body = call_function("monthly_billing", {"month": "2026-10"}, tenant="acme")
    assert status == 200 and body["generated"] == 1, body
    ((invoice_id, invoice),) = f.invoices(db, "acme").items()
    blob = gcs.bucket(TEST_BUCKET).blob(invoice["pdf_uri"].split("/", 3)[3])
    month_close = blob.download_as_bytes()

    status, body = call_function(
        "billing_admin",
        {"action": "render_pdf", "invoice_id": invoice_id},
        tenant="acme",
        headers={"Authorization": f"Bearer {token(email='admin@example.com')}"},
    )
    assert status == 200 and body["pdf_uri"] == invoice["pdf_uri"], body
    rendered = blob.download_as_bytes()

    expected = [
        "Acme Analytics Ltd",
        "1 Main Street",
        "London EC1A 1BB",
        "United Kingdom",
        "accounts@acme.test",
        "Tax ID: GB123456789",
    ]
    assert seller_lines(month_close, invoice["number"]) == expected
    assert seller_lines(rendered, invoice["number"]) == expected
