"""Console forms -> billing_admin bodies (billing.console.forms): major units in, contract shapes out."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.console.forms import (
    add_line_body,
    bulk_finalize_body,
    credit_note_body,
    major_to_minor,
    mark_paid_body,
    simple_body,
)
from billing.errors import BadRequest


def test_amounts_convert_with_the_currency_exponent() -> None:
    assert major_to_minor("12.50", "GBP", "Amount") == Decimal(1250)
    assert major_to_minor("1500", "JPY", "Amount") == Decimal(1500)
    assert major_to_minor("1.234", "KWD", "Amount") == Decimal(1234)
    assert major_to_minor("-0.005", "GBP", "Unit", exact=False) == Decimal("-0.5")
    for bad, currency in (("12.345", "GBP"), ("1.5", "JPY"), ("1e3", "GBP"), ("١٢", "GBP"), ("12,50", "GBP")):
        with pytest.raises(BadRequest):
            major_to_minor(bad, currency, "Amount")


def test_mark_paid_body() -> None:
    body = mark_paid_body(
        {"amount": "120.00", "paid_on": "2026-11-03", "reference": " BACS 1 "},
        "inv-1",
        "GBP",
        "Europe/London",
    )
    assert body == {
        "action": "mark_paid",
        "invoice_id": "inv-1",
        "amount": 12000,
        "paid_at": "2026-11-03T12:00:00+00:00",
        "reference": "BACS 1",
    }
    for form in ({}, {"amount": "0"}, {"amount": "-5"}, {"amount": "5", "paid_on": "03/11/2026"}):
        with pytest.raises(BadRequest):
            mark_paid_body(form, "inv-1", "GBP", "Europe/London")


def test_add_line_body_is_the_contracts_add_line_item() -> None:
    body = add_line_body(
        {"description": "Loyalty discount", "quantity": "1", "unit_amount": "-10.00"}, "d-1", "GBP"
    )
    assert body == {
        "action": "add_line_item",
        "invoice_id": "d-1",
        "description": "Loyalty discount",
        "quantity": "1",
        "unit_amount_decimal": "-1000",
    }
    assert (
        add_line_body(
            {"description": "x", "quantity": "2.5", "unit_amount": "0.001", "tax_exempt": "on"}, "d-1", "GBP"
        )["unit_amount_decimal"]
        == "0.1"
    )
    for form in (
        {"quantity": "1", "unit_amount": "1"},
        {"description": "x", "quantity": "0", "unit_amount": "1"},
    ):
        with pytest.raises(BadRequest):
            add_line_body(form, "d-1", "GBP")


def test_credit_note_body_carries_the_forms_idempotency_key() -> None:
    form = {
        "reason": "order_change",
        "amount": "6.00",
        "idempotency_key": "console-inv-1-0-2",
        "memo": "late",
    }
    assert credit_note_body(form, "inv-1", "GBP") == {
        "action": "create_credit_note",
        "invoice_id": "inv-1",
        "reason": "order_change",
        "amount": 600,
        "idempotency_key": "console-inv-1-0-2",
        "memo": "late",
    }
    for broken in ({**form, "reason": "because"}, {**form, "amount": "0"}, {**form, "idempotency_key": ""}):
        with pytest.raises(BadRequest):
            credit_note_body(broken, "inv-1", "GBP")


def test_simple_and_bulk_bodies() -> None:
    assert simple_body("void", "inv-1", {"reason": " duplicate "}) == {
        "action": "void",
        "invoice_id": "inv-1",
        "reason": "duplicate",
    }
    assert simple_body("refresh_draft", "d-1", {}) == {"action": "refresh_draft", "invoice_id": "d-1"}
    assert bulk_finalize_body(["d-2", "d-1", "d-2", ""]) == {
        "action": "finalize",
        "invoice_ids": ["d-2", "d-1"],
    }
    with pytest.raises(BadRequest):
        bulk_finalize_body([])
