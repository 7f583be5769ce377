"""Load the UCI Online Retail data set into Firestore as one tenant's usage events.

Source: UCI Online Retail (Chen, 2015; CC BY 4.0), ``InvoiceNo, StockCode, Description, Quantity,
InvoiceDate, UnitPrice, CustomerID, Country``; 541,909 rows from 2010-12-01 to 2011-12-09. Prices
are GBP (major units, decimal strings such as ``"2.55"``), dates are UK local wall-clock time
``YYYY-MM-DD HH:MM:SS``, customer ids are float-formatted (``"17850.0"``) or blank.

What becomes what (layout per the public contract, everything under ``tenants/{tenant_id}``):

* every qualifying row (see *Skipped rows*) is one usage event
  ``usage_events/ort-{InvoiceNo}-{n}`` on the meter ``retail_amount``, where ``n`` is the 1-based
  ordinal of the row among all rows of the file carrying that ``InvoiceNo``, in file order (all
  rows count, skipped or out of the month, so an id depends only on the file, never on the month
  asked for). The file has exact duplicate rows which are separate real sales, so a content hash
  would merge them; the ordinal keeps them apart and is stable, so loading twice writes the same
  documents (``set()`` on the same ids) and changes nothing;
* the event ``timestamp`` is ``InvoiceDate`` read as Europe/London wall-clock time with
  :mod:`zoneinfo`, ``fold=0``, converted to UTC (GMT rows: UTC = local; BST rows: UTC = local - 1 h).
  For a wall-clock time that does not exist (the skipped hour 01:00-02:00 on the last Sunday of
  March) ``fold=0`` applies the offset in force *before* the change (GMT), so ``01:30`` becomes
  ``01:30Z``; for an ambiguous one (the repeated hour on the last Sunday of October) ``fold=0``
  picks the first occurrence (BST), so ``01:30`` becomes ``00:30Z``. The real file has no row in
  either hour (none before 06:00 on any day);
* ``properties`` = ``{"quantity": int, "unit_price": str (GBP, exactly as in the file),
  "amount": str (GBP, quantity x unit price computed exactly in Decimal), "stock_code",
  "description"}`` (strings as in the file). The meter sums ``amount`` in GBP and the plan charges
  ``unit_amount_decimal`` "100" pence per GBP, so an invoice line passes the sales amount through
  (rounded once to the penny, ROUND_HALF_UP, by the billing engine);
* one customer ``customers/{id}`` (``id`` = CustomerID without ``.0``) and one calendar
  subscription ``subscriptions/sub-{id}`` on the plan ``retail-passthrough`` per CustomerID.

Skipped rows: each row is counted under the *first* reason that applies, checked in this order:
``malformed_row`` (not 8 columns), ``unparseable`` (a date, quantity, price or customer id that
does not parse), ``cancelled_invoice`` (InvoiceNo starts with ``C``), ``non_positive_quantity``,
``negative_unit_price`` (the ``A...`` "Adjust bad debt" rows), ``missing_customer_id``. Rows
outside the requested month are not skipped but out of scope, counted in ``out_of_month``.
Rows with a zero unit price are kept (real free items; amount ``"0.00"``).

Country: a customer's ``address.country`` is the ISO 3166-1 alpha-2 code of the CSV ``Country`` of
the *first row in file order carrying that CustomerID* (whatever that row's status or month;
eight customers appear under two countries). See :data:`COUNTRY_CODES` for the mapping.

Command line (writes to the Firestore emulator named by ``FIRESTORE_EMULATOR_HOST``, in the
project ``--project`` or ``GOOGLE_CLOUD_PROJECT``; refuses to run without an emulator unless
``--allow-real-firestore``)::

    python -m devtools.online_retail --csv PATH [--month YYYY-MM] [--project P] [--tenant T]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
TENANT_ID = "uk-retail"
METER_CODE = "retail_amount"
PLAN_ID = "retail-passthrough"
EVENT_ID_PREFIX = "ort"
HEADER = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Subscriptions start at the first day of the data set, midnight UK time (GMT then: 00:00Z).
SUBSCRIPTION_START = datetime(2010, 12, 1, tzinfo=LONDON)
#: Firestore accepts at most 500 writes per batch.
BATCH_SIZE = 500
WRITE_THREADS = 8

#: Skip reasons, in the order they are checked (a row is counted under the first that applies).
SKIP_REASONS = (
    "malformed_row",
    "unparseable",
    "cancelled_invoice",
    "non_positive_quantity",
    "negative_unit_price",
    "missing_customer_id",
)

#: Every ``Country`` value of the file -> ISO 3166-1 alpha-2, or ``None`` when the value names no
#: country. ``None`` is stored as ``address.country: null``, so no tax rate applies (the contract:
#: a missing country means 0 %). Choices: ``EIRE`` is Ireland (IE), ``RSA`` South Africa (ZA),
#: ``USA`` US; ``Channel Islands`` is Jersey and Guernsey, which share no code: JE is used (both
#: are outside the UK VAT area, so with ``tax_rates {"GB": "20"}`` the choice changes no tax);
#: ``European Community`` (a union, not a country) and ``Unspecified`` map to ``None``.
COUNTRY_CODES: dict[str, str | None] = {
    "Australia": "AU",
    "Austria": "AT",
    "Bahrain": "BH",
    "Belgium": "BE",
    "Brazil": "BR",
    "Canada": "CA",
    "Channel Islands": "JE",
    "Cyprus": "CY",
    "Czech Republic": "CZ",
    "Denmark": "DK",
    "EIRE": "IE",
    "European Community": None,
    "Finland": "FI",
    "France": "FR",
    "Germany": "DE",
    "Greece": "GR",
    "Hong Kong": "HK",
    "Iceland": "IS",
    "Israel": "IL",
    "Italy": "IT",
    "Japan": "JP",
    "Lebanon": "LB",
    "Lithuania": "LT",
    "Malta": "MT",
    "Netherlands": "NL",
    "Norway": "NO",
    "Poland": "PL",
    "Portugal": "PT",
    "RSA": "ZA",
    "Saudi Arabia": "SA",
    "Singapore": "SG",
    "Spain": "ES",
    "Sweden": "SE",
    "Switzerland": "CH",
    "USA": "US",
    "United Arab Emirates": "AE",
    "United Kingdom": "GB",
    "Unspecified": None,
}

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
#: Wide enough that quantity x unit price never loses a digit (as ``billing.pricing.money``).
_EXACT = Context(prec=60)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_CUSTOMER_ID = re.compile(r"^(\d+)(?:\.0+)?$")


class RetailDataError(ValueError):
    """The CSV cannot be used at all (wrong header, unknown country) or an argument is invalid."""


@dataclass(frozen=True)
class UsageEventRow:
    """One qualifying CSV row, ready to become ``tenants/{t}/usage_events/{event_id}``.

    Attributes:
        event_id: ``ort-{InvoiceNo}-{n}``, ``n`` the 1-based ordinal of the row in its invoice.
        invoice_no: ``InvoiceNo`` as in the file.
        customer_id: CustomerID without the float suffix (``"17850.0"`` -> ``"17850"``).
        local_time: ``InvoiceDate`` as an aware Europe/London datetime (``fold=0``).
        quantity: units sold, always > 0.
        unit_price: GBP per unit, the file's decimal string (``"2.55"``, never a float).
        amount: GBP, ``quantity x unit_price`` exactly (``Decimal``; not rounded).
        stock_code, description, country: as in the file (``country`` is this row's CSV name).
        line: 1-based line number in the file (the header is line 1), for error messages.

    """

    event_id: str
    invoice_no: str
    customer_id: str
    local_time: datetime
    quantity: int
    unit_price: str
    amount: Decimal
    stock_code: str
    description: str
    country: str
    line: int

    @property
    def timestamp(self) -> datetime:
        """The event time as an aware UTC datetime (what Firestore stores)."""
        return self.local_time.astimezone(UTC)

    def to_document(self) -> dict[str, Any]:
        """Return the usage event document (contract fields only).

        ``customer_id``, ``meter``, ``timestamp`` (aware UTC datetime), ``properties`` (quantity
        an int; unit price and amount GBP decimal strings).
        """
        return {
            "customer_id": self.customer_id,
            "meter": METER_CODE,
            "timestamp": self.timestamp,
            "properties": {
                "quantity": self.quantity,
                "unit_price": self.unit_price,
                "amount": format(self.amount, "f"),
                "stock_code": self.stock_code,
                "description": self.description,
            },
        }


@dataclass
class SkipReport:
    """What reading the CSV found besides the events.

    Attributes:
        rows_read: data rows read (header excluded).
        events: rows that became events (in the month, when one was asked for).
        skipped: reason -> rows, for rows in scope (see ``SKIP_REASONS`` for the order of checks).
        out_of_month: rows whose date falls outside the requested month (0 without a month).
        customer_countries: CustomerID -> CSV ``Country`` of the first row in the whole file that
            carries it (any status, any month); drives ``address.country``.

    """

    rows_read: int = 0
    events: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    out_of_month: int = 0
    customer_countries: dict[str, str] = field(default_factory=dict)

    def skipped_total(self) -> int:
        """Return the number of rows skipped for any reason."""
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary (every reason listed, zero included)."""
        return {
            "rows_read": self.rows_read,
            "events": self.events,
            "skipped": {reason: self.skipped.get(reason, 0) for reason in SKIP_REASONS},
            "out_of_month": self.out_of_month,
            "customers_in_file": len(self.customer_countries),
        }


@dataclass
class LoadReport:
    """Counts from :func:`load`.

    Attributes:
        events_written: usage event documents written (``set()``, so reloading rewrites them).
        customers: customer documents written (one subscription each).
        subscriptions: subscription documents written.
        read: the reading report (rows read, skipped by reason, out of month).
        write_seconds: wall time spent writing events.

    """

    events_written: int
    customers: int
    subscriptions: int
    read: SkipReport
    write_seconds: float

    @property
    def events_per_second(self) -> float:
        """Event write rate (events / s); 0 when nothing was written."""
        return self.events_written / self.write_seconds if self.write_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {
            "events_written": self.events_written,
            "customers": self.customers,
            "subscriptions": self.subscriptions,
            "write_seconds": round(self.write_seconds, 2),
            "events_per_second": round(self.events_per_second),
            **self.read.as_dict(),
        }


def parse_month(month: str) -> tuple[int, int]:
    """Return ``(year, month)`` from ``"YYYY-MM"``.

    Raises:
        RetailDataError: not of the form ``YYYY-MM`` with a month 01..12.

    """
    match = _MONTH.match(month)
    if match is None:
        raise RetailDataError(f"month must be YYYY-MM, got {month!r}")
    return int(match.group(1)), int(match.group(2))


def parse_local_time(text: str) -> datetime:
    """Read ``"YYYY-MM-DD HH:MM:SS"`` UK wall-clock time as an aware Europe/London datetime.

    ``fold=0``: a non-existent time (spring-forward gap) takes the pre-change offset (GMT), an
    ambiguous one (autumn repeat) its first occurrence (BST).

    Raises:
        ValueError: the text does not match the format.

    """
    text = text.strip()
    if _DATE.match(text) is None:  # fromisoformat alone would also take other ISO forms
        raise ValueError(f"InvoiceDate {text!r} is not {DATE_FORMAT}")
    return datetime.fromisoformat(text).replace(tzinfo=LONDON, fold=0)


def parse_customer_id(text: str) -> str | None:
    """Return the CustomerID without its float suffix (``"17850.0"`` -> ``"17850"``).

    ``None`` when blank.

    Raises:
        ValueError: neither blank nor a whole number.

    """
    text = text.strip()
    if not text:
        return None
    match = _CUSTOMER_ID.match(text)
    if match is None:
        raise ValueError(f"bad CustomerID {text!r}")
    return match.group(1)


def country_code(csv_country: str) -> str | None:
    """Map a CSV ``Country`` to ISO 3166-1 alpha-2 (``None``: no country, see ``COUNTRY_CODES``).

    Raises:
        RetailDataError: a country name the mapping does not know.

    """
    try:
        return COUNTRY_CODES[csv_country.strip()]
    except KeyError:
        raise RetailDataError(f"no ISO 3166 code for Country {csv_country!r}") from None


def open_csv(csv_path: str | Path) -> IO[str]:
    """Open the CSV (gzip when the name ends in ``.gz``) as UTF-8 text for the csv module."""
    path = Path(csv_path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


#: What :meth:`_RowClassifier.classify` returns for a row outside the requested month (not a skip).
_OUT_OF_MONTH = "out_of_month"


def iter_usage_events(csv_path: str | Path, month: str | None, report: SkipReport) -> Iterator[UsageEventRow]:
    """Yield the qualifying rows of the CSV as events, in file order, filling ``report``.

    ``month`` (``"YYYY-MM"``, UK local time) keeps only rows of that calendar month; ``None`` keeps
    every month. ``report`` is complete once the iterator is exhausted. Each row goes through
    :meth:`_RowClassifier.classify`, which returns its event or the reason it is left out.

    Raises:
        RetailDataError: bad ``month``, or the header is not the data set's.

    """
    classifier = _RowClassifier(parse_month(month) if month is not None else None, report.customer_countries)
    skipped = report.skipped
    with open_csv(csv_path) as handle:
        reader = csv.reader(handle)
        _check_header(csv_path, next(reader, None))
        for line, row in enumerate(reader, start=2):
            report.rows_read += 1
            outcome = classifier.classify(line, row)
            if isinstance(outcome, UsageEventRow):
                report.events += 1
                yield outcome
            elif outcome == _OUT_OF_MONTH:
                report.out_of_month += 1
            else:
                skipped[outcome] += 1


def _check_header(csv_path: str | Path, header: list[str] | None) -> None:
    """Raise :class:`RetailDataError` unless ``header`` is the data set's (``None``: empty file)."""
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise RetailDataError(f"{csv_path}: header {header!r} is not {list(HEADER)!r}")


class _RowClassifier:
    """Turn one CSV row into its event or the reason it is left out (the order of ``SKIP_REASONS``).

    Holds what spans rows: the ordinal of each InvoiceNo (every row with 8 columns counts, in or
    out of scope), the first CSV country of each CustomerID (written into ``countries``), and
    caches of parsed text: an invoice's rows repeat the same date, customer and prices, so each
    distinct text is parsed once (this loop runs over 541,909 rows in ``make demo`` and the tests).
    """

    __slots__ = ("_customers", "_dates", "_prices", "countries", "ordinals", "wanted")

    def __init__(self, wanted: tuple[int, int] | None, countries: dict[str, str]) -> None:
        self.wanted = wanted
        self.countries = countries
        self.ordinals: Counter[str] = Counter()
        self._dates: dict[str, datetime | None] = {}
        self._customers: dict[str, str | ValueError | None] = {}
        self._prices: dict[str, Decimal | None] = {}

    def classify(self, line: int, row: list[str]) -> UsageEventRow | str:
        """Return the row's event, a reason from ``SKIP_REASONS``, or ``_OUT_OF_MONTH``.

        ``line`` is the row's 1-based line number (kept on the event for error messages).
        """
        if len(row) != len(HEADER):
            return "malformed_row"
        invoice_no, stock_code, description, qty_text, date_text, price_text, cid_text, country = row
        invoice_no = invoice_no.strip()
        self.ordinals[invoice_no] += 1
        customer_id = self._customer(cid_text, country)
        local_time = self._local_time(date_text)
        if local_time is None:
            return "unparseable"
        if self.wanted is not None and (local_time.year, local_time.month) != self.wanted:
            return _OUT_OF_MONTH
        unit_price = self._price(price_text)
        quantity = _parse_quantity(qty_text)
        if quantity is None or unit_price is None or isinstance(customer_id, ValueError) or not invoice_no:
            return "unparseable"
        reason = _rule_skip_reason(invoice_no, quantity, unit_price)
        if reason is not None:
            return reason
        if customer_id is None:
            return "missing_customer_id"
        return UsageEventRow(
            event_id=f"{EVENT_ID_PREFIX}-{invoice_no}-{self.ordinals[invoice_no]}",
            invoice_no=invoice_no,
            customer_id=customer_id,
            local_time=local_time,
            quantity=quantity,
            unit_price=price_text.strip(),
            amount=_EXACT.multiply(Decimal(quantity), unit_price),
            stock_code=stock_code,
            description=description,
            country=country.strip(),
            line=line,
        )

    def _customer(self, text: str, country: str) -> str | ValueError | None:
        """Return the CustomerID of ``text`` (``None``: blank; the error: unparseable), cached.

        A CustomerID seen for the first time records ``country`` as its first country. Doing this
        on a cache miss only is enough: the first row carrying an id has a text not seen before.
        """
        try:
            return self._customers[text]
        except KeyError:
            pass
        customer_id: str | ValueError | None
        try:
            customer_id = parse_customer_id(text)
        except ValueError as exc:
            customer_id = exc
        self._customers[text] = customer_id
        if isinstance(customer_id, str) and customer_id not in self.countries:
            self.countries[customer_id] = country.strip()
        return customer_id

    def _local_time(self, text: str) -> datetime | None:
        """Return ``InvoiceDate`` as Europe/London time (``None``: unparseable), cached."""
        try:
            return self._dates[text]
        except KeyError:
            pass
        local_time: datetime | None
        try:
            local_time = parse_local_time(text)
        except ValueError:
            local_time = None
        self._dates[text] = local_time
        return local_time

    def _price(self, text: str) -> Decimal | None:
        """Return the unit price (``None``: unparseable), cached."""
        try:
            return self._prices[text]
        except KeyError:
            unit_price = self._prices[text] = _parse_price(text)
            return unit_price


def _parse_quantity(text: str) -> int | None:
    """Return the Quantity as an int, or ``None`` when it does not parse."""
    try:
        return int(text.strip())
    except ValueError:
        return None


def _rule_skip_reason(invoice_no: str, quantity: int, unit_price: Decimal) -> str | None:
    """Return the first skip reason of a parsed row's own values, or ``None``.

    Checked in the order of ``SKIP_REASONS``: ``cancelled_invoice``, ``non_positive_quantity``,
    ``negative_unit_price`` (``missing_customer_id``, last, is checked by the caller).
    """
    if invoice_no[0] in "Cc":
        return "cancelled_invoice"
    if quantity <= 0:
        return "non_positive_quantity"
    if unit_price < 0:
        return "negative_unit_price"
    return None


def _parse_price(text: str) -> Decimal | None:
    """Return the unit price as a finite ``Decimal``, or ``None`` when it does not parse."""
    try:
        price = Decimal(text.strip())
    except InvalidOperation:
        return None
    return price if price.is_finite() else None


def read_usage_events(
    csv_path: str | Path, month: str | None = None
) -> tuple[list[UsageEventRow], SkipReport]:
    """Read the whole CSV; return its qualifying rows (in file order) and the report.

    Raises:
        RetailDataError: bad ``month``, or the header is not the data set's.

    """
    report = SkipReport()
    events = list(iter_usage_events(csv_path, month, report))
    return events, report


def write_retail_tenant(db: Any, tenant_id: str = TENANT_ID) -> None:
    """Write the tenant, its meter ``retail_amount`` and its plan ``retail-passthrough``.

    GBP, Europe/London, 20 % VAT for GB customers (exclusive), 30-day terms; the plan charges
    100 pence per GBP of summed ``amount`` (the sales amount passes through). ``set()``: rerunning
    rewrites the same documents.
    """
    tenant = db.collection("tenants").document(tenant_id)
    tenant.set(
        {
            "name": "UK Online Retail Ltd",
            "status": "active",
            "timezone": "Europe/London",
            "currency": "GBP",
            "invoice_prefix": "UKR",
            "payment_terms_days": 30,
            "tax_rates": {"GB": "20"},
            "tax_inclusive": False,
            "legal_name": "UK Online Retail Ltd",
            "address_lines": [
                "Unit 4, Riverside Trading Estate",
                "Brentford",
                "London TW8 9AA",
                "United Kingdom",
            ],
            "email": "billing@uk-online-retail.example.com",
            "tax_id": "GB 123 4567 89",
        }
    )
    tenant.collection("meters").document(METER_CODE).set(
        {
            "name": "Retail sales amount",
            "aggregation": "sum",
            "field": "amount",
            "unit": "GBP",
        }
    )
    tenant.collection("plans").document(PLAN_ID).set(
        {
            "name": "Retail pass-through",
            "currency": "GBP",
            "interval": "month",
            "interval_count": 1,
            "charges": [
                {
                    "type": "usage",
                    "meter": METER_CODE,
                    "model": "standard",
                    "unit_amount_decimal": "100",
                    "description": "Retail sales",
                }
            ],
        }
    )


def _commit_in_parallel(db: Any, writes: Iterable[tuple[Any, dict[str, Any]]]) -> int:
    """``set()`` every (document reference, data) in batches of 500 committed by 8 threads."""
    batches: list[list[tuple[Any, dict[str, Any]]]] = [[]]
    for write in writes:
        if len(batches[-1]) == BATCH_SIZE:
            batches.append([])
        batches[-1].append(write)

    def commit(chunk: list[tuple[Any, dict[str, Any]]]) -> int:
        batch = db.batch()
        for ref, data in chunk:
            batch.set(ref, data)
        batch.commit()
        return len(chunk)

    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        return sum(pool.map(commit, [chunk for chunk in batches if chunk]))


def customer_documents(
    rows: Iterable[UsageEventRow], countries: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Return CustomerID -> customer document for every customer of ``rows``.

    ``countries`` (CustomerID -> CSV ``Country``, e.g. ``SkipReport.customer_countries``) decides
    the country; a customer it lacks (or every one, when ``None``) takes the country of its first
    row in ``rows``.

    Raises:
        RetailDataError: a country name missing from ``COUNTRY_CODES``.

    """
    first: dict[str, str] = {}
    for row in rows:
        first.setdefault(row.customer_id, row.country)
    documents: dict[str, dict[str, Any]] = {}
    for customer_id, row_country in first.items():
        csv_country = (countries or {}).get(customer_id, row_country)
        documents[customer_id] = {
            "name": f"Customer {customer_id}",
            "email": f"customer-{customer_id}@example.com",
            "address": {"country": country_code(csv_country)},
            "status": "active",
            "source": {"dataset": "uci-online-retail", "country": csv_country},
        }
    return documents


def write_customers_and_subscriptions(
    db: Any,
    tenant_id: str,
    rows: Iterable[UsageEventRow],
    countries: Mapping[str, str] | None = None,
) -> int:
    """Write one customer and one calendar subscription ``sub-{id}`` per customer of ``rows``.

    Subscriptions are active on ``retail-passthrough`` from 2010-12-01 00:00 Europe/London.
    See :func:`customer_documents` for ``countries``. Returns the number of customers.

    Raises:
        RetailDataError: a country name missing from ``COUNTRY_CODES``.

    """
    tenant = db.collection("tenants").document(tenant_id)
    documents = customer_documents(rows, countries)
    writes: list[tuple[Any, dict[str, Any]]] = []
    for customer_id, document in documents.items():
        writes.append((tenant.collection("customers").document(customer_id), document))
        writes.append(
            (
                tenant.collection("subscriptions").document(f"sub-{customer_id}"),
                {
                    "customer_id": customer_id,
                    "plan_id": PLAN_ID,
                    "status": "active",
                    "billing_time": "calendar",
                    "started_at": SUBSCRIPTION_START,
                },
            )
        )
    _commit_in_parallel(db, writes)
    return len(documents)


def write_usage_events(db: Any, tenant_id: str, events: Iterable[UsageEventRow]) -> int:
    """``set()`` every event at ``usage_events/{event_id}``; returns the number written.

    Batches of 500 writes committed by 8 threads; the deterministic ids make a reload idempotent.
    """
    events_ref = db.collection("tenants").document(tenant_id).collection("usage_events")
    return _commit_in_parallel(
        db, ((events_ref.document(event.event_id), event.to_document()) for event in events)
    )


def load(db: Any, csv_path: str | Path, month: str | None, tenant_id: str = TENANT_ID) -> LoadReport:
    """Read the CSV and write tenant, meter, plan, customers, subscriptions and usage events.

    Customers are those with at least one event in scope (the month, or the whole file).

    Raises:
        RetailDataError: bad ``month``, unexpected header or an unknown country.

    """
    events, read = read_usage_events(csv_path, month)
    write_retail_tenant(db, tenant_id)
    customers = write_customers_and_subscriptions(db, tenant_id, events, read.customer_countries)
    started = time.monotonic()
    written = write_usage_events(db, tenant_id, events)
    return LoadReport(
        events_written=written,
        customers=customers,
        subscriptions=customers,
        read=read,
        write_seconds=time.monotonic() - started,
    )


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.online_retail",
        description="Load UCI Online Retail rows into Firestore as usage events of one tenant.",
    )
    parser.add_argument("--csv", required=True, help="the CSV, optionally gzipped")
    parser.add_argument("--month", help="YYYY-MM (UK local time); default: every month")
    parser.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT"))
    parser.add_argument("--tenant", default=TENANT_ID)
    parser.add_argument("--parse-only", action="store_true", help="only read the CSV and print the report")
    parser.add_argument(
        "--allow-real-firestore",
        action="store_true",
        help="write even though FIRESTORE_EMULATOR_HOST is not set",
    )
    args = parser.parse_args(argv)
    try:
        if args.parse_only:
            _, read = read_usage_events(args.csv, args.month)
            print(json.dumps(read.as_dict(), indent=2))
            return 0
        if not os.environ.get("FIRESTORE_EMULATOR_HOST") and not args.allow_real_firestore:
            parser.error(
                "FIRESTORE_EMULATOR_HOST is not set (use --allow-real-firestore to write to a real database)"
            )
        if not args.project:
            parser.error("no project: pass --project or set GOOGLE_CLOUD_PROJECT")
        from google.cloud import firestore

        report = load(firestore.Client(project=args.project), args.csv, args.month, args.tenant)
    except (RetailDataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2))
    print(
        f"wrote {report.events_written} events in {report.write_seconds:.1f}s "
        f"({report.events_per_second:.0f} events/s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
