"""Invoice numbers: ``{invoice_prefix}-{YYYY}-{sequence:06d}``, gapless per tenant and year.

Each tenant has one series per year (issue 8 item 8c): the sequence restarts each calendar year
*of the tenant's timezone*, and the year is the year of finalization (the run's clock, ``as_of``
for ``generate_invoices``), not of the billed period and not UTC's: an invoice finalized at
2026-12-31T23:30Z for a Pacific/Auckland tenant is ``{prefix}-2027-000001``. This follows how
many jurisdictions expect invoice series (e.g. EU VAT Directive art. 226(2): "a sequential number,
based on one or more series, which uniquely identifies the invoice"); the contract's "gapless per
tenant" holds per series. The store assigns sequences inside the same transaction that creates or
finalizes the invoices, one batch at a time, so a number is never skipped or reused.
"""

from __future__ import annotations

from datetime import datetime

from billing.pricing.periods import zone


def sequence_year(now: datetime, timezone: str) -> int:
    """The numbering year: the year of ``now`` (the finalization instant) in ``timezone``.

    ``sequence_year(2026-12-31T23:30Z, "Pacific/Auckland") == 2027``.
    """
    return now.astimezone(zone(timezone)).year


def format_invoice_number(prefix: str, year: int, sequence: int) -> str:
    """``format_invoice_number("UKR", 2026, 7) == "UKR-2026-000007"``."""
    return f"{prefix}-{year}-{sequence:06d}"
