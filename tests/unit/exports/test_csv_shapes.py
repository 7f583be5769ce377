"""Pure parts of the exports: aging buckets, date ranges, rows of one invoice (billing.exports)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest

from billing.errors import BadRequest
from billing.exports import REGISTER_COLUMNS, parse_date_range, write_register
from billing.exports.ar_aging import bucket
from billing.exports.invoice_register import credit_note_rows, invoice_rows
from billing.records import Invoice, Tenant

TENANT = Tenant.parse(
    "acme",
    {
        "name": "Acme",
        "status": "active",
        "timezone": "Europe/London",
        "currency": "GBP",
        "invoice_prefix": "ACME",
        "payment_terms_days": 14,
        "tax_rates": {"GB": "20"},
    },
)
INVOICE = Invoice.from_document(
    "inv-1",
    {
        "customer_id": "alice",
        "subscription_id": "sub-1",
        "period_start": datetime(2026, 10, 1, tzinfo=UTC),
        "period_end": datetime(2026, 11, 1, tzinfo=UTC),
        "status": "open",
        "number": "ACME-2026-000001",
        "currency": "GBP",
        "lines": [
            {
                "line_id": "l1",
                "description": "Pro",
                "quantity": "1",
                "unit_amount_decimal": "1000",
                "amount": 1000,
                "tax": 200,
            },
            {
                "description": "Discount",
                "quantity": "1",
                "unit_amount_decimal": "-150",
                "amount": -150,
                "tax": -30,
            },
        ],
        "subtotal": 850,
        "tax": 170,
        "total": 1020,
        "finalized_at": datetime(2026, 10, 31, 23, 30, tzinfo=UTC),  # GMT: still 31 Oct in London
        "customer": {"id": "alice", "name": "Alice Ltd", "address": {"country": "GB"}},
    },
)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (-3, "current"),
        (0, "current"),
        (1, "days_1_30"),
        (30, "days_1_30"),
        (31, "days_31_60"),
        (60, "days_31_60"),
        (61, "days_61_90"),
        (90, "days_61_90"),
        (91, "days_90_plus"),
    ],
)
def test_aging_buckets_have_inclusive_upper_bounds(days: int, expected: str) -> None:
    assert bucket(days) == expected


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-13-01", "2026-12-01"),
        ("2026-11-02", "2026-11-01"),
        (None, "2026-11-01"),
        ("1969-12-31", "2026-01-01"),
        ("2026-1-1", "2026-01-02"),
        ("2000-01-01", "2026-01-01"),
    ],
)
def test_bad_ranges_are_refused(start: object, end: object) -> None:
    with pytest.raises(BadRequest):
        parse_date_range(start, end)


def test_a_range_is_two_days_both_included() -> None:
    assert parse_date_range("2026-11-01", "2026-11-30") == (date(2026, 11, 1), date(2026, 11, 30))


def test_an_invoice_gives_one_row_per_line_in_major_units_with_tax() -> None:
    rows = invoice_rows(TENANT, INVOICE)
    assert [(r.line_id, r.amount, r.tax, r.total) for r in rows] == [
        ("l1", "10.00", "2.00", "12.00"),
        ("2", "-1.50", "-0.30", "-1.80"),
    ]
    assert {(r.number, r.country, r.currency, r.status, r.customer_name) for r in rows} == {
        ("ACME-2026-000001", "GB", "GBP", "open", "Alice Ltd")
    }
    assert rows[0].issued_on == "2026-10-31"


def test_a_credit_note_gives_negative_rows_with_its_number() -> None:
    note = {
        "credit_note_id": "cn-1",
        "number": "ACME-CN-2026-000001",
        "invoice_id": "inv-1",
        "customer_id": "alice",
        "currency": "GBP",
        "reason": "order_change",
        "status": "issued",
        "created_at": datetime(2026, 11, 3, tzinfo=UTC),
        "lines": [{"description": "Pro", "invoice_line_id": "l1", "amount": 500, "tax": 100}],
    }
    (row,) = credit_note_rows(TENANT, note, INVOICE)
    assert (row.document_type, row.number, row.invoice_number, row.amount, row.tax, row.total) == (
        "credit_note",
        "ACME-CN-2026-000001",
        "ACME-2026-000001",
        "-5.00",
        "-1.00",
        "-6.00",
    )


def test_the_csv_has_the_documented_header() -> None:
    out = io.StringIO(newline="")
    write_register(invoice_rows(TENANT, INVOICE), out)
    parsed = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(parsed[0]) == REGISTER_COLUMNS and len(parsed) == 3
