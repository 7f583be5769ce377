"""``admin.invoice_text``: a review action's answer printed for a person (issue 10 item 6)."""

from __future__ import annotations

from typing import Any

from admin.invoice_text import money, render_answer

INVOICE: dict[str, Any] = {
    "invoice_id": "sub-1-20261001",
    "type": "subscription",
    "status": "open",
    "number": "ACME-2026-000007",
    "customer_id": "alice",
    "subscription_id": "sub-1",
    "currency": "GBP",
    "period_start": "2026-10-01T00:00:00+01:00",
    "period_end": "2026-11-01T00:00:00+00:00",
    "lines": [
        {
            "line_id": "c1",
            "kind": "fixed",
            "description": "Pro plan",
            "quantity": "1",
            "unit_amount_decimal": "1000",
            "amount": 1000,
            "tax": 200,
            "tax_exempt": False,
        },
        {
            "line_id": "custom-ab",
            "kind": "custom",
            "description": "Loyalty discount",
            "quantity": "1",
            "unit_amount_decimal": "-100",
            "amount": -100,
            "tax": 0,
            "tax_exempt": True,
        },
    ],
    "subtotal": 900,
    "tax": 200,
    "total": 1100,
    "amount_due": 1100,
    "pdf_uri": "gs://b/acme/2026-10/ACME-2026-000007.pdf",
}


def test_an_invoice_answer_reads_as_text() -> None:
    text = render_answer(
        {"action": "finalize", "changed": True, "run_id": "r1", "invoice": INVOICE, "errors": []}
    )
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == "finalize: changed (run r1)"
    assert lines[1] == "Invoice ACME-2026-000007 [open] subscription"
    assert any("Loyalty discount" in row and "-1.00" in row and "(tax exempt)" in row for row in lines)
    assert lines[-1].split() == [
        "subtotal",
        "9.00",
        "tax",
        "2.00",
        "total",
        "11.00",
        "amount",
        "due",
        "11.00",
    ]


def test_many_invoices_and_errors() -> None:
    draft = {**INVOICE, "number": None, "status": "draft", "lines": []}
    text = render_answer({"action": "finalize", "invoices": [INVOICE, draft], "errors": [{"error": "pdf"}]})
    assert (
        text is not None
        and "Invoice draft sub-1-20261001 [draft]" in text
        and "error: {'error': 'pdf'}" in text
    )


def test_answers_without_an_invoice_stay_json() -> None:
    assert render_answer({"action": "mark_paid", "status": "paid"}) is None
    assert render_answer([1, 2]) is None


def test_money_uses_the_currency_exponent() -> None:
    assert (money(150000, "JPY"), money(123456, "GBP"), money(5, "KWD"), money("x", "GBP")) == (
        "150,000",
        "1,234.56",
        "0.005",
        "x",
    )
