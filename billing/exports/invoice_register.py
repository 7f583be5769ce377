"""The invoice register: every issued invoice line, and credit notes as negative rows, for a range.

Rows (``REGISTER_COLUMNS``, in this order):

``document_type`` (``invoice`` or ``credit_note``), ``number`` (the invoice's or the credit
note's number), ``invoice_id``, ``credit_note_id`` (credit notes), ``invoice_number`` (the
credited invoice's number, credit notes), ``issued_on`` (the finalization date of the invoice, the
creation date of the credit note, tenant timezone), ``tenant_id``, ``customer_id``,
``customer_name``, ``country`` (ISO 3166, of the invoice's customer snapshot), ``currency``,
``status`` (the document's status now: ``open``, ``paid``, ``void``, ``uncollectible``;
``issued`` or ``void`` for credit notes), ``line_id``, ``description``, ``quantity``,
``amount`` (the line net of tax), ``tax`` (the line's tax), ``total`` (``amount`` + ``tax``),
``reason`` (credit notes).

An invoice is in the register when its ``finalized_at`` falls in the range (drafts and
deleted drafts never are); a void invoice keeps its rows with ``status`` ``void``. A credit
note is in it when its ``created_at`` falls in the range; its amounts are negative. So the sum
of ``total`` is what was invoiced minus what was credited in the range, and per invoice the
sum of its rows equals its stored ``total`` (``subtotal`` + ``tax``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass
from datetime import date, datetime, time, timedelta
from typing import IO, Any

from billing.errors import BadRequest, DataError
from billing.pricing.money import minor_to_major
from billing.pricing.periods import zone
from billing.records import Invoice, Tenant
from billing.store.reporting import ReportingStore

REGISTER_COLUMNS = (
    "document_type",
    "number",
    "invoice_id",
    "credit_note_id",
    "invoice_number",
    "issued_on",
    "tenant_id",
    "customer_id",
    "customer_name",
    "country",
    "currency",
    "status",
    "line_id",
    "description",
    "quantity",
    "amount",
    "tax",
    "total",
    "reason",
)
MAX_RANGE_DAYS = 3660


@dataclass(frozen=True)
class RegisterRow:
    """One row of the register (see the module docstring); amounts are major-unit strings."""

    document_type: str
    number: str
    invoice_id: str
    credit_note_id: str
    invoice_number: str
    issued_on: str
    tenant_id: str
    customer_id: str
    customer_name: str
    country: str
    currency: str
    status: str
    line_id: str
    description: str
    quantity: str
    amount: str
    tax: str
    total: str
    reason: str


def parse_date_range(start: object, end: object) -> tuple[date, date]:
    """``(first day, last day)`` from two ``YYYY-MM-DD`` strings, both days included.

    Raises:
        BadRequest: (``invalid_field``) not ISO dates, out of 1970..9998, the end before the
            start, or more than ``MAX_RANGE_DAYS`` days.

    """
    days: list[date] = []
    for name, value in (("from", start), ("to", end)):
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError
            days.append(date.fromisoformat(value))
        except ValueError:
            raise BadRequest(f"'{name}' must be a date YYYY-MM-DD", code="invalid_field") from None
        if not 1970 <= days[-1].year <= 9998:
            raise BadRequest(f"'{name}' must fall in 1970..9998", code="invalid_field")
    if days[1] < days[0]:
        raise BadRequest("'to' is before 'from'", code="invalid_field")
    if (days[1] - days[0]).days > MAX_RANGE_DAYS:
        raise BadRequest(f"the range is longer than {MAX_RANGE_DAYS} days", code="invalid_field")
    return days[0], days[1]


def _major(amount: int, currency: str) -> str:
    return str(minor_to_major(amount, currency))


def _local_day(value: Any, tenant: Tenant) -> str:
    return value.astimezone(zone(tenant.timezone)).date().isoformat() if isinstance(value, datetime) else ""


def invoice_rows(tenant: Tenant, invoice: Invoice) -> list[RegisterRow]:
    """The rows of one issued invoice: one per line."""
    customer = invoice.customer
    raw_lines = list(invoice.raw.get("lines") or [])
    rows = []
    for n, line in enumerate(invoice.lines):
        raw = raw_lines[n] if n < len(raw_lines) and isinstance(raw_lines[n], Mapping) else {}
        rows.append(
            RegisterRow(
                "invoice",
                invoice.number or "",
                invoice.id,
                "",
                "",
                _local_day(invoice.finalized_at, tenant),
                tenant.id,
                invoice.customer_id,
                (customer.name if customer else None) or "",
                str((customer.address.get("country") if customer else None) or ""),
                invoice.currency,
                invoice.status,
                str(raw.get("line_id") or n + 1),
                line.description,
                str(line.quantity),
                _major(line.amount, invoice.currency),
                _major(line.tax, invoice.currency),
                _major(line.amount + line.tax, invoice.currency),
                "",
            )
        )
    return rows


def credit_note_rows(tenant: Tenant, note: Mapping[str, Any], invoice: Invoice | None) -> list[RegisterRow]:
    """The rows of one credit note: one per line, amounts negative.

    Raises:
        DataError: (``invalid_field``) a line's ``amount`` or ``tax`` is not an integer.

    """
    currency = str(note.get("currency") or (invoice.currency if invoice else ""))
    customer = invoice.customer if invoice else None
    rows = []
    for line in note.get("lines") or []:
        amount, tax = line.get("amount"), line.get("tax", 0)
        if type(amount) is not int or type(tax) is not int:
            raise DataError(
                f"credit_notes/{note.get('credit_note_id')}: line amounts must be integers",
                code="invalid_field",
            )
        rows.append(
            RegisterRow(
                "credit_note",
                str(note.get("number") or ""),
                str(note.get("invoice_id") or ""),
                str(note.get("credit_note_id") or ""),
                (invoice.number if invoice else None) or "",
                _local_day(note.get("created_at"), tenant),
                tenant.id,
                str(note.get("customer_id") or ""),
                (customer.name if customer else None) or "",
                str((customer.address.get("country") if customer else None) or ""),
                currency,
                str(note.get("status") or ""),
                str(line.get("invoice_line_id") or ""),
                str(line.get("description") or ""),
                "",
                _major(-amount, currency),
                _major(-tax, currency),
                _major(-(amount + tax), currency),
                str(note.get("reason") or ""),
            )
        )
    return rows


def invoice_register(store: ReportingStore, tenant: Tenant, first: date, last: date) -> list[RegisterRow]:
    """The register of ``tenant`` for the days ``first``..``last`` (tenant timezone, inclusive).

    Rows are sorted by day, then document number. An invoice or credit note that cannot be read
    fails the export (``DataError``): a register with a silent hole would be wrong.

    Raises:
        DataError: a stored invoice or credit note in the range cannot be read.

    """
    tz = zone(tenant.timezone)
    start = datetime.combine(first, time(), tz)
    end = datetime.combine(last + timedelta(days=1), time(), tz)
    rows: list[RegisterRow] = []
    by_id: dict[str, Invoice] = {}
    for invoice in store.invoices_finalized_between(tenant.id, start, end):
        if isinstance(invoice, tuple):
            raise invoice[1]
        by_id[invoice.id] = invoice
        rows.extend(invoice_rows(tenant, invoice))
    notes = store.credit_notes_created_between(tenant.id, start, end)
    missing = [
        str(n.get("invoice_id")) for n in notes if n.get("invoice_id") and n.get("invoice_id") not in by_id
    ]
    for invoice_id, found in store.get_invoices(tenant.id, list(dict.fromkeys(missing))).items():
        if isinstance(found, Invoice):
            by_id[invoice_id] = found
    for note in notes:
        rows.extend(credit_note_rows(tenant, note, by_id.get(str(note.get("invoice_id")))))
    rows.sort(key=lambda r: (r.issued_on, r.document_type, r.number, r.invoice_id))
    return rows


def write_register(rows: Iterable[RegisterRow], out: IO[str]) -> None:
    """Write the header and ``rows`` as CSV to ``out`` (opened with ``newline=""``)."""
    writer = csv.writer(out)
    writer.writerow(REGISTER_COLUMNS)
    writer.writerows(astuple(row) for row in rows)


__all__ = [
    "MAX_RANGE_DAYS",
    "REGISTER_COLUMNS",
    "RegisterRow",
    "credit_note_rows",
    "invoice_register",
    "invoice_rows",
    "parse_date_range",
    "write_register",
]
