"""CSV exports for finance (contract, "Operator visibility"): the invoice register and AR aging.

Both are written with the standard ``csv`` module (RFC 4180, CRLF line ends, UTF-8) and
read through ``billing.store.reporting.ReportingStore``. Amounts are decimal strings in *major*
units (``"15.30"`` for 1530 pence, ``"1500"`` for 1500 yen: the currency's ISO 4217 exponent,
``billing.pricing.money.minor_to_major``), always with a ``currency`` column; dates are ISO
8601 in the tenant's timezone.

- ``billing.exports.invoice_register``: one row per invoice line, and per credit-note line as
  a negative row, for a date range (``REGISTER_COLUMNS``).
- ``billing.exports.ar_aging``: the open amounts due by customer and currency, in the buckets
  current, 1-30, 31-60, 61-90, 90+ days past due (``AGING_COLUMNS``).
"""

from billing.exports.ar_aging import AGING_COLUMNS, AgingRow, ar_aging, write_aging
from billing.exports.invoice_register import (
    REGISTER_COLUMNS,
    RegisterRow,
    invoice_register,
    parse_date_range,
    write_register,
)

__all__ = [
    "AGING_COLUMNS",
    "REGISTER_COLUMNS",
    "AgingRow",
    "RegisterRow",
    "ar_aging",
    "invoice_register",
    "parse_date_range",
    "write_aging",
    "write_register",
]
