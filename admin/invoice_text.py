"""Readable text for ``billing_admin`` answers that carry invoices (issue 10 review actions).

``render_answer(document)`` turns a response body with ``invoice`` (or ``invoices``) into lines a
person reads in a terminal: the invoice's number or id, status and type, customer and period,
one row per line (id, kind, description, quantity, unit price in minor units, amount and tax in
major units) and the totals (subtotal, tax, total, amount due), then any ``errors``. A body
without an invoice gives ``None``: the caller prints JSON. Amounts in the answer are minor units
of the invoice's currency (ISO 4217 exponent, ``billing.pricing.money.minor_to_major``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from billing.pricing.money import minor_to_major


def money(amount: Any, currency: str) -> str:
    """``1530`` GBP -> ``"15.30"``; anything not an int is shown as it is."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        return str(amount)
    try:
        return f"{minor_to_major(amount, currency):,}"
    except ValueError:  # an unknown currency: minor units as they are
        return str(amount)


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def line_rows(lines: Sequence[Mapping[str, Any]], currency: str) -> list[str]:
    """The table of an invoice's lines: a header row and one row per line."""
    header = f"{'line_id':<18} {'kind':<7} {'description':<36} {'qty':>8} {'unit':>12}"
    rows = [f"  {header} {'amount':>12} {'tax':>10}"]
    for line in lines:
        rows.append(
            f"  {_cell(line.get('line_id'), 18):<18} {_cell(line.get('kind'), 7):<7} "
            f"{_cell(line.get('description'), 36):<36} {_cell(line.get('quantity'), 8):>8} "
            f"{_cell(line.get('unit_amount_decimal'), 12):>12} "
            f"{money(line.get('amount'), currency):>12} {money(line.get('tax'), currency):>10}"
            + ("  (tax exempt)" if line.get("tax_exempt") else "")
        )
    return rows


def render_invoice(invoice: Mapping[str, Any]) -> list[str]:
    """One invoice as text lines (see the module docstring)."""
    currency = str(invoice.get("currency") or "")
    name = invoice.get("number") or f"draft {invoice.get('invoice_id')}"
    head = f"Invoice {name} [{invoice.get('status')}] {invoice.get('type') or ''}".rstrip()
    out = [
        head,
        f"  id {invoice.get('invoice_id')}  customer {invoice.get('customer_id')}  currency {currency}",
    ]
    if invoice.get("subscription_id"):
        out.append(
            f"  subscription {invoice.get('subscription_id')}  period "
            f"{invoice.get('period_start')} .. {invoice.get('period_end')}"
        )
    for key in ("memo", "replaces", "replaced_by", "due_at", "pdf_uri"):
        if invoice.get(key):
            out.append(f"  {key.replace('_', ' ')}: {invoice[key]}")
    out.extend(line_rows(invoice.get("lines") or [], currency))
    figures = ("subtotal", "tax", "total", "amount_due")
    out.append(
        "  " + "  ".join(f"{name.replace('_', ' ')} {money(invoice.get(name), currency)}" for name in figures)
    )
    return out


def render_credit_note(note: Mapping[str, Any]) -> list[str]:
    """A credit note (``create_credit_note``'s answer) as text: number, lines, where it went."""
    currency = str(note.get("currency") or "")
    out = [
        f"Credit note {note.get('number')} [{note.get('status')}] reason {note.get('reason')}",
        f"  id {note.get('credit_note_id')}  pdf {note.get('pdf_uri')}",
    ]
    for line in note.get("lines") or []:
        out.append(
            f"  {_cell(line.get('invoice_line_id'), 18):<18} {_cell(line.get('description'), 36):<36} "
            f"{money(line.get('amount'), currency):>12} {money(line.get('tax'), currency):>10}"
        )
    figures = ("subtotal", "tax", "total", "pre_payment_amount", "credited_to_balance")
    out.append("  " + "  ".join(f"{n.replace('_', ' ')} {money(note.get(n), currency)}" for n in figures))
    return out


def render_answer(document: Any) -> str | None:
    """The readable form of a ``billing_admin`` answer with invoices; ``None`` without one."""
    if not isinstance(document, Mapping):
        return None
    invoices = document.get("invoices")
    if not isinstance(invoices, list):
        invoices = [document["invoice"]] if isinstance(document.get("invoice"), Mapping) else None
    if not invoices:
        return None
    out = [
        f"{document.get('action')}: {'changed' if document.get('changed') else 'no change'}"
        f" (run {document.get('run_id')})"
    ]
    for invoice in invoices:
        out.extend(render_invoice(invoice))
    if isinstance(document.get("credit_note"), Mapping):
        out.extend(render_credit_note(document["credit_note"]))
    for error in document.get("errors") or []:
        out.append(f"error: {error}")
    return "\n".join(out)
