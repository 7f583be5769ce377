"""Invoice numbers: ``{invoice_prefix}-{YYYY}-{sequence:06d}``, gapless per tenant and year.

The sequence restarts each calendar year of the tenant's timezone (the year of finalization),
the way many jurisdictions expect invoice series (e.g. EU VAT Directive art. 226(2): "a sequential
number, based on one or more series, which uniquely identifies the invoice"). The store assigns
sequences inside the same transaction that creates or finalizes the invoices, one batch at a time,
so a number is never skipped or reused.
"""

from __future__ import annotations

from datetime import datetime

from shared.periods import zone


def sequence_year(now: datetime, timezone: str) -> int:
    """The numbering year: the year of ``now`` in the tenant's timezone."""
    return now.astimezone(zone(timezone)).year


def format_invoice_number(prefix: str, year: int, sequence: int) -> str:
    """``format_invoice_number("UKR", 2026, 7) == "UKR-2026-000007"``."""
    return f"{prefix}-{year}-{sequence:06d}"
