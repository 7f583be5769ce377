"""Expected invoices for the UCI Online Retail tenant, computed straight from the CSV.

Deliberately independent of ``devtools.online_retail`` (nothing imported from it): the CSV is
re-read with the csv module and ``Decimal``, the month is taken from the ``InvoiceDate`` text
(it is UK local time, so its ``YYYY-MM`` prefix *is* the Europe/London calendar month), and the
country table is written out again.

The tenant ``uk-retail`` bills each customer one line per month: the meter sums
``amount = quantity x unit price`` (GBP) over the customer's qualifying rows and the plan charges
100 pence per GBP. This mirrors the contract's rounding: the line amount is
``quantity x unit price`` rounded once to the penny (ROUND_HALF_UP), so
``subtotal = ROUND_HALF_UP(sum(quantity x unit_price) x 100)`` pence; tax is computed per line and
rounded the same way, ``tax = ROUND_HALF_UP(subtotal x 20 / 100)`` for GB customers (tenant
``tax_rates {"GB": "20"}``, exclusive) and 0 elsewhere; ``total = subtotal + tax``.

A row qualifies when its InvoiceNo does not start with ``C``, its Quantity is > 0, its UnitPrice is
>= 0 and it has a CustomerID. Skipped rows are counted under the first reason that applies, in the
order ``cancelled_invoice``, ``non_positive_quantity``, ``negative_unit_price``,
``missing_customer_id`` (the loader's documented order). A customer's country is the CSV
``Country`` of the first row of the file carrying its CustomerID (any row, any month).

Numbers found in the full file (2010-12..2011-12, 541,909 rows): 2011-11 has 64,545 events for
1,665 customers; the whole file skips 9,288 cancelled, 1,336 non-positive quantity, 2 negative
price and 133,359 missing-customer rows, leaving 397,924 events.
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import IO

# ISO 3166-1 alpha-2 -> the names the file uses; None collects the names that are no country.
_NAMES_BY_CODE: dict[str | None, tuple[str, ...]] = {
    "GB": ("United Kingdom",),
    "IE": ("EIRE",),
    "ZA": ("RSA",),
    "US": ("USA",),
    "JE": ("Channel Islands",),
    None: ("European Community", "Unspecified"),
    "AE": ("United Arab Emirates",),
    "AT": ("Austria",),
    "AU": ("Australia",),
    "BE": ("Belgium",),
    "BH": ("Bahrain",),
    "BR": ("Brazil",),
    "CA": ("Canada",),
    "CH": ("Switzerland",),
    "CY": ("Cyprus",),
    "CZ": ("Czech Republic",),
    "DE": ("Germany",),
    "DK": ("Denmark",),
    "ES": ("Spain",),
    "FI": ("Finland",),
    "FR": ("France",),
    "GR": ("Greece",),
    "HK": ("Hong Kong",),
    "IL": ("Israel",),
    "IS": ("Iceland",),
    "IT": ("Italy",),
    "JP": ("Japan",),
    "LB": ("Lebanon",),
    "LT": ("Lithuania",),
    "MT": ("Malta",),
    "NL": ("Netherlands",),
    "NO": ("Norway",),
    "PL": ("Poland",),
    "PT": ("Portugal",),
    "SA": ("Saudi Arabia",),
    "SE": ("Sweden",),
    "SG": ("Singapore",),
}
ISO_COUNTRY: dict[str, str | None] = {name: code for code, names in _NAMES_BY_CODE.items() for name in names}
TAX_PERCENT = {"GB": Decimal(20)}


@dataclass(frozen=True)
class Expected:
    """One customer's expected invoice for the month: pence (GBP), and its ISO country."""

    subtotal: int
    tax: int
    total: int
    country: str | None
    events: int
    amount: Decimal  # GBP, exact sum of quantity x unit price (before rounding)


@dataclass
class Summary:
    """Everything one pass over the CSV finds.

    ``invoices``, ``skipped`` and ``out_of_month`` are about the month asked for; ``file_skipped``
    and ``file_events`` about the whole file.
    """

    invoices: dict[str, Expected] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    out_of_month: int = 0
    rows: int = 0
    file_skipped: Counter[str] = field(default_factory=Counter)
    file_events: int = 0

    @property
    def events(self) -> int:
        """Qualifying rows in scope."""
        return sum(expected.events for expected in self.invoices.values())


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def summarize(csv_path: str | Path, month: str | None = "2011-11") -> Summary:
    """Read the CSV once; return expected invoices and skip counts for ``month`` (None: all)."""
    first_country: dict[str, str] = {}
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    events: Counter[str] = Counter()
    summary = Summary()
    with _open(Path(csv_path)) as handle:
        reader = csv.reader(handle)
        columns = next(reader)
        invoice_at, quantity_at, date_at, price_at, customer_at, country_at = (
            columns.index(name)
            for name in ("InvoiceNo", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
        )
        for row in reader:
            summary.rows += 1
            customer = row[customer_at].strip()
            if customer:
                customer = str(int(Decimal(customer)))
                first_country.setdefault(customer, row[country_at])
            quantity = Decimal(row[quantity_at])
            price = Decimal(row[price_at])
            reason = _skip_reason(row[invoice_at], quantity, price, customer)
            if reason:
                summary.file_skipped[reason] += 1
            else:
                summary.file_events += 1
            if month is not None and not row[date_at].startswith(month + "-"):
                summary.out_of_month += 1
            elif reason:
                summary.skipped[reason] += 1
            else:
                amounts[customer] += quantity * price
                events[customer] += 1
    for customer, amount in amounts.items():
        summary.invoices[customer] = _expected(amount, events[customer], ISO_COUNTRY[first_country[customer]])
    return summary


def _skip_reason(invoice_no: str, quantity: Decimal, price: Decimal, customer: str) -> str:
    """The first skip reason that applies, in the loader's documented order; "" when none does."""
    if invoice_no.startswith("C"):
        return "cancelled_invoice"
    if quantity <= 0:
        return "non_positive_quantity"
    if price < 0:
        return "negative_unit_price"
    if not customer:
        return "missing_customer_id"
    return ""


def _expected(amount: Decimal, events: int, country: str | None) -> Expected:
    """One invoice line of ``amount`` GBP: subtotal and tax in pence, each rounded once HALF_UP."""
    subtotal = _half_up(amount * 100)
    tax = _half_up(subtotal * TAX_PERCENT.get(country or "", Decimal(0)) / 100)
    return Expected(
        subtotal=subtotal, tax=tax, total=subtotal + tax, country=country, events=events, amount=amount
    )


def expected_invoices(csv_path: str | Path, month: str = "2011-11") -> dict[str, Expected]:
    """CustomerID (``"17850"``) -> expected invoice of ``month`` (``YYYY-MM``, UK local time)."""
    return summarize(csv_path, month).invoices


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def month_counts(csv_path: str | Path, month: str = "2011-11") -> tuple[int, int]:
    """Return ``(customers, events)`` of ``month``: 2011-11 of the full file is (1665, 64545)."""
    summary = summarize(csv_path, month)
    return len(summary.invoices), summary.events
