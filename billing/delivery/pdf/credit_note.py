"""The render model of a credit note: the invoice layout's blocks, titled "CREDIT NOTE".

``build_credit_note_model(note)`` reads the renderer's input (keys listed on
``billing.delivery.pdf.render_credit_note_pdf``) into the ``InvoiceModel`` the invoice layout
draws (``billing.delivery.pdf.layout``): the seller block, "CREDIT NOTE" and its number, the
customer, the credit note's dates beside the number and date of the invoice it credits, one row
per credited line (description, tax, amount), the totals (what lowered the invoice's amount due,
what is held on the customer's balance) and the notes (reason, memo). Amounts are minor units
of the invoice's currency formatted in the tenant's Babel locale; dates in its timezone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from billing.delivery.pdf import values as v
from billing.delivery.pdf.model import (
    InvoiceModel,
    Row,
    TotalRow,
    _Context,
    _context,
    _customer,
    _seller,
)

REASON_TEXTS = {
    "duplicate": "Duplicate charge",
    "product_unsatisfactory": "Product unsatisfactory",
    "order_change": "Order change",
    "order_cancellation": "Order cancellation",
    "fraudulent": "Fraudulent charge",
    "other": "Other",
}
"""How the PDF names each ``reason`` (``billing.records.CREDIT_NOTE_REASONS``)."""


def _rows(note: Mapping[str, Any], ctx: _Context) -> list[Row]:
    lines = v.get(note, "lines")
    if not isinstance(lines, Sequence) or isinstance(lines, str):
        raise v.fail("lines must be a list")
    rows: list[Row] = []
    for index, item in enumerate(lines):
        where = f"lines[{index}]"
        line = v.mapping(item, where)
        description = v.text(v.get(line, "description", where), f"{where}.description")
        amount = v.integer(v.get(line, "amount", where), f"{where}.amount")
        tax = v.integer(line.get("tax", 0), f"{where}.tax")
        rows.append((description or "Credit", "", ctx.money(tax), "", ctx.money(amount)))
    return rows


def _totals(note: Mapping[str, Any], ctx: _Context) -> list[TotalRow]:
    subtotal = v.integer(v.get(note, "subtotal"), "subtotal")
    tax = v.integer(v.get(note, "tax"), "tax")
    total = v.integer(v.get(note, "total"), "total")
    pre = v.integer(note.get("pre_payment_amount", 0) or 0, "pre_payment_amount")
    balance = v.integer(note.get("credited_to_balance", 0) or 0, "credited_to_balance")
    money = ctx.money
    if note.get("tax_inclusive"):
        rows = [
            TotalRow("Total credited (incl. tax)", money(total), "total"),
            TotalRow("of which tax", money(tax), "muted"),
        ]
    else:
        rows = [
            TotalRow("Subtotal", money(subtotal)),
            TotalRow("Tax", money(tax)),
            TotalRow("Total credited", money(total), "total"),
        ]
    if pre:
        rows.append(TotalRow("Deducted from amount due", money(pre)))
    if balance:
        rows.append(TotalRow("Credited to your balance", money(balance), "due"))
    return rows


def _notes(note: Mapping[str, Any], invoice_ref: str) -> list[str]:
    reason = REASON_TEXTS.get(str(note.get("reason")), str(note.get("reason") or ""))
    notes = [f"This credit note credits invoice {invoice_ref}.", f"Reason: {reason}."]
    memo = note.get("memo")
    if memo:
        notes.append(v.text(memo, "memo"))
    if note.get("credited_to_balance"):
        notes.append(
            "The amount credited to your balance is owed to you and held on your account. No refund is made."
        )
    if note.get("status") == "void":
        notes.append("This credit note has been voided.")
    return notes


def build_credit_note_model(note: Mapping[str, Any]) -> InvoiceModel:
    """Read the credit note mapping ``note`` into the strings of its PDF.

    Raises:
        DataError: (``invalid_invoice``) a key is missing or has the wrong type, or a currency,
            locale or timezone is unknown.

    """
    if not isinstance(note, Mapping):
        raise v.fail("credit note must be a mapping")
    ctx = _context(note)
    number = v.text(v.get(note, "number"), "number")
    created = v.moment(v.get(note, "created_at"), "created_at")
    assert created is not None
    invoice_number = v.text(note.get("invoice_number") or note.get("invoice_id") or "", "invoice_number")
    invoice_date = v.moment(note.get("invoice_issued_at"), "invoice_issued_at", optional=True)
    seller_name, seller_lines = _seller(note)
    customer_name, customer_lines, customer_id = _customer(note, ctx.locale)
    meta = [("Credit note number", number), ("Issue date", ctx.day(created)), ("Invoice", invoice_number)]
    if invoice_date is not None:
        meta.append(("Invoice date", ctx.day(invoice_date)))
    if customer_id:
        meta.append(("Customer ID", v.text(customer_id, "customer.id")))
    invoice_ref = f"{invoice_number} of {ctx.day(invoice_date)}" if invoice_date else invoice_number
    total = v.integer(v.get(note, "total"), "total")
    void = note.get("status") == "void"
    return InvoiceModel(
        number_text=number,
        is_draft=False,
        watermark="VOID" if void else None,
        badge=None,
        seller_name=seller_name,
        seller_lines=seller_lines,
        customer_name=customer_name,
        customer_lines=customer_lines,
        meta=meta,
        headline=f"{ctx.money(total)} credited on invoice {invoice_number}",
        rows=_rows(note, ctx),
        totals=_totals(note, ctx),
        inclusive_note="Amounts include VAT/tax." if note.get("tax_inclusive") else None,
        notes=_notes(note, invoice_ref),
        footer_left=f"{seller_name} · Credit note {number}",
        continued=f"Credit note {number} (continued)",
        title=f"Credit note {number}",
        creation_date=created.astimezone(UTC),
        lang=ctx.locale.replace("_", "-"),
        header_cells=("Description", "", "Tax", "", "Amount"),
        heading="CREDIT NOTE",
        number_label="Credit note number",
        bill_to_label="CREDIT TO",
    )
