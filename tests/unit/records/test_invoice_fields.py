"""``Invoice`` and ``InvoiceLine`` issue 10 fields ("Review and correction"): types, kinds, line ids.

Documents stored before issue 10 carry no ``type``, no ``line_id`` and may carry the ``flat``
kind: they read as ``subscription`` invoices whose lines have deterministic positional ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from billing.errors import DataError
from billing.pricing.invoicing import line_id_for
from billing.records import Invoice

START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)


def document(**changes: Any) -> dict[str, Any]:
    """A minimal invoice document as stored before issue 10, with ``changes`` applied."""
    doc: dict[str, Any] = {
        "customer_id": "alice",
        "subscription_id": "sub-alice",
        "period_start": START,
        "period_end": END,
        "status": "draft",
        "currency": "GBP",
        "lines": [
            {"description": "Pro", "quantity": "1", "unit_amount_decimal": "1000", "amount": 1000},
            {
                "description": "Tier fee",
                "quantity": "1",
                "unit_amount_decimal": "200",
                "amount": 200,
                "kind": "flat",
                "meter": "api",
            },
            {"description": "API", "quantity": "3", "unit_amount_decimal": "1", "amount": 3, "meter": "api"},
        ],
        "subtotal": 1203,
        "tax": 0,
        "total": 1203,
    }
    doc.update(changes)
    return doc


def test_an_old_document_reads_with_defaults() -> None:
    invoice = Invoice.from_document("sub-alice-20261001", document())
    assert invoice.type == "subscription" and invoice.subscription_id == "sub-alice"
    assert (invoice.amount_credited, invoice.credit_note_ids, invoice.replaces, invoice.memo) == (
        0,
        (),
        None,
        None,
    )
    assert [(line.line_id, line.kind, line.flat) for line in invoice.lines] == [
        ("line-0", "fixed", False),
        ("line-1", "flat", True),
        ("line-2", "usage", False),
    ]
    assert all(line.generated for line in invoice.lines)


def test_line_ids_are_read_from_the_document_and_stay_put() -> None:
    doc = document()
    doc["lines"] = [{**doc["lines"][2], "line_id": "custom-x", "kind": "custom", "tax_exempt": True}]
    (line,) = Invoice.from_document("i", doc).lines
    assert (line.line_id, line.kind, line.tax_exempt, line.generated) == ("custom-x", "custom", True, False)


def test_a_one_off_invoice_needs_no_subscription() -> None:
    invoice = Invoice.from_document(
        "oneoff-1",
        document(
            type="one_off", subscription_id=None, memo="Prepaid", amount_credited=5, credit_note_ids=["cn"]
        ),
    )
    assert (invoice.type, invoice.subscription_id, invoice.memo) == ("one_off", None, "Prepaid")
    assert (invoice.amount_credited, invoice.credit_note_ids) == (5, ("cn",))


@pytest.mark.parametrize(
    "changes",
    [
        {"subscription_id": None},  # a subscription invoice must name it
        {"type": "prepaid"},
        {"amount_credited": "5"},
        {
            "lines": [
                {"description": "x", "quantity": "1", "unit_amount_decimal": "1", "amount": 1, "kind": "odd"}
            ]
        },
    ],
)
def test_invalid_fields_are_data_errors(changes: dict[str, Any]) -> None:
    with pytest.raises(DataError):
        Invoice.from_document("i", document(**changes))


def test_generated_line_ids_are_deterministic_and_distinct() -> None:
    assert line_id_for(1) == "c1" and line_id_for(2, (), 0) == "c2-p0"
    grouped = {line_id_for(2, (g,), 0) for g in ("eu", "us", "\u00e9")}
    assert len(grouped) == 3 and line_id_for(2, ("eu",), 0) == line_id_for(2, ("eu",), 0)
