"""The admin CLI's readable answer of create_credit_note: the invoice and the credit note."""

from __future__ import annotations

from admin.invoice_text import render_answer


def test_admin_cli_prints_the_credit_note_with_its_number() -> None:
    answer = {
        "action": "create_credit_note",
        "changed": True,
        "run_id": "r1",
        "invoice": {"invoice_id": "inv-1", "number": "ACME-2026-000042", "status": "open", "currency": "GBP"},
        "credit_note": {
            "credit_note_id": "cn_1",
            "number": "ACME-CN-2026-000001",
            "status": "issued",
            "reason": "duplicate",
            "currency": "GBP",
            "lines": [{"invoice_line_id": "c1", "description": "Pro plan", "amount": 2500, "tax": 500}],
            "subtotal": 2500,
            "tax": 500,
            "total": 3000,
            "pre_payment_amount": 3000,
            "credited_to_balance": 0,
        },
        "errors": [],
    }
    text = render_answer(answer) or ""
    assert "Invoice ACME-2026-000042" in text and "Credit note ACME-CN-2026-000001 [issued]" in text
    assert "total 30.00" in text and "Pro plan" in text
