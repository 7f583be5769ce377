"""Invoice PDF renderer: one invoice mapping in, the bytes of an A4 PDF out.

``render_invoice_pdf(invoice)`` reads the mapping into a render model (``model``: every string
the document shows, formatted by ``values`` with Babel in the invoice's locale and timezone),
chooses the fonts (``fonts``: core Helvetica when WinAnsi covers the text, else per-document
TrueType subsets of DejaVu Sans and Droid Sans Fallback) and draws it with fpdf2 (``layout``).

Output is deterministic: the same mapping renders to the same bytes (the PDF creation date is
``issued_at``, else ``period_end``; no clock, no random ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from billing.delivery.pdf.credit_note import build_credit_note_model
from billing.delivery.pdf.layout import render
from billing.delivery.pdf.model import build_model
from billing.delivery.pdf.values import format_percent, format_quantity

__all__ = ["format_percent", "format_quantity", "render_credit_note_pdf", "render_invoice_pdf"]


def render_invoice_pdf(invoice: Mapping[str, Any]) -> bytes:
    """Render one invoice as the bytes of an A4 portrait PDF.

    Args:
        invoice: the invoice mapping. Keys (``*`` = optional):
            ``invoice_id`` str; ``number`` str or None (None prints "DRAFT" and a watermark);
            ``status`` ("draft", "open", "paid", "void", "uncollectible"); ``currency`` ISO 4217;
            ``locale``* babel locale, default "en_GB"; ``timezone`` IANA name: every date is
            shown in that zone; ``period_start``, ``period_end`` aware datetimes (or RFC 3339
            strings), the end exclusive: the last day printed is the day before a midnight end;
            ``issued_at``, ``due_at`` aware datetimes or None;
            ``seller`` {``name``, ``address_lines``* list[str], ``email``*, ``tax_id``*};
            ``customer`` {``id``, ``name``, ``email``*, ``address``* {``line1``, ``line2``,
            ``city``, ``postal_code``, ``country`` (ISO 3166 alpha-2)}, ``tax_id``*};
            ``lines`` list of {``description``, ``quantity`` decimal string,
            ``unit_amount_decimal`` decimal string in MINOR units, ``amount`` int minor units,
            ``tax_rate``* percent decimal string ("20"), ``tax``* int minor units};
            ``subtotal``, ``tax``, ``total`` ints in minor units; ``tax_inclusive``* bool (line
            prices include tax: "Total (incl. tax)", "of which tax");
            ``amount_paid``* int minor units, default 0; ``amount_due``* default ``total``;
            ``memo``* str printed in the notes (payment instructions...).

    Returns:
        The PDF file's bytes; identical for identical input.

    Raises:
        DataError: a key is missing or has the wrong type, a currency, locale or timezone is
            unknown, a datetime is naive, or a decimal string does not parse.

    """
    return render(build_model(invoice))


def render_credit_note_pdf(note: Mapping[str, Any]) -> bytes:
    """Render one credit note as the bytes of an A4 portrait PDF titled "CREDIT NOTE".

    Args:
        note: ``number`` str; ``status`` ("issued" or "void": a "VOID" watermark);
            ``currency``, ``locale``*, ``timezone`` as for an invoice; ``created_at`` aware
            datetime (the issue date, and the PDF's creation date); ``invoice_number`` and
            ``invoice_issued_at``* (the invoice it credits); ``reason`` (one of
            ``billing.records.CREDIT_NOTE_REASONS``); ``memo``*; ``seller`` and ``customer`` as
            for an invoice; ``lines`` list of {``description``, ``amount``, ``tax``} in minor
            units; ``subtotal``, ``tax``, ``total`` ints in minor units; ``tax_inclusive``*;
            ``pre_payment_amount``* and ``credited_to_balance``* ints in minor units.

    Returns:
        The PDF file's bytes; identical for identical input.

    Raises:
        DataError: (``invalid_invoice``) a key is missing or has the wrong type, or a currency,
            locale or timezone is unknown.

    """
    return render(build_credit_note_model(note))
