"""The render model: an invoice mapping read, checked and turned into the strings a PDF shows.

``build_model(invoice)`` reads the renderer's input (its keys are listed on
``billing.delivery.pdf.render_invoice_pdf``) and returns an ``InvoiceModel``: every block of the
document (seller, "Bill to", dates, lines, totals, notes, footer) as formatted strings, so that
the layout only measures and draws. Dates are shown in the invoice's timezone, the billing
period end being exclusive (Stripe's ``period.end``); amounts, quantities and percentages in its
Babel locale. A bad input raises ``DataError`` (code ``invalid_invoice``) before anything is drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.delivery.pdf import values as v

# Status stamps drawn under the invoice number: label and colour (RGB).
BADGES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "paid": ("PAID", (25, 125, 60)),
    "void": ("VOID", (120, 126, 134)),
    "uncollectible": ("UNCOLLECTIBLE", (176, 96, 0)),
}

# Countries whose addresses put the postal code before the city.
_POSTCODE_FIRST = frozenset(
    "AT BE BG CH CZ DE DK EE ES FI FR GR HR HU IS IT JP LI LT LU LV MC NL NO PL PT RO SE SI SK".split()
)

Row = tuple[str, str, str, str, str]  # Description | Qty | Unit price | Tax | Amount


@dataclass(frozen=True)
class TotalRow:
    """One row of the totals block; ``kind`` picks its style: "normal", "muted", "total", "due"."""

    label: str
    value: str
    kind: str = "normal"


@dataclass
class InvoiceModel:
    """Every string the document shows, already formatted."""

    number_text: str
    is_draft: bool
    watermark: str | None
    badge: tuple[str, tuple[int, int, int]] | None
    seller_name: str
    seller_lines: list[str]
    customer_name: str
    customer_lines: list[str]
    meta: list[tuple[str, str]]
    headline: str | None
    rows: list[Row]
    totals: list[TotalRow]
    inclusive_note: str | None
    notes: list[str]
    footer_left: str
    continued: str
    title: str
    creation_date: datetime
    lang: str
    header_cells: Row = ("Description", "Qty", "Unit price", "Tax", "Amount")
    labels: tuple[str, ...] = ("INVOICE", "BILL TO", "Notes", "Page 0123456789 of", "…")
    heading: str = "INVOICE"
    number_label: str = "Invoice number"
    bill_to_label: str = "BILL TO"

    def strings(self) -> Iterator[str]:
        """Yield every string that may be drawn (to choose fonts and cut font subsets)."""
        yield from (self.number_text, self.seller_name, self.customer_name, self.footer_left)
        yield from (self.continued, self.title)
        yield from self.seller_lines
        yield from self.customer_lines
        for pair in self.meta:
            yield from pair
        if self.headline:
            yield self.headline
        for row in self.rows:
            yield from row
        for total in self.totals:
            yield total.label
            yield total.value
        if self.inclusive_note:
            yield self.inclusive_note
        yield from self.notes
        yield from self.header_cells
        yield from self.labels
        yield from (self.heading, self.number_label, self.bill_to_label)
        if self.watermark:
            yield self.watermark
        if self.badge:
            yield self.badge[0]


@dataclass(frozen=True)
class _Context:
    """How this invoice formats: its currency, Babel locale and timezone."""

    currency: str
    locale: str
    zone: ZoneInfo

    def money(self, amount: int) -> str:
        return v.money(amount, self.currency, self.locale)

    def day(self, when: datetime) -> str:
        return v.format_day(v.local_date(when, self.zone), self.locale)


@dataclass(frozen=True)
class _Status:
    """The invoice's number (None for a draft), status and id."""

    number: str | None
    status: str
    invoice_id: str

    @property
    def is_draft(self) -> bool:
        return self.number is None or self.status == "draft"

    @property
    def number_text(self) -> str:
        return self.number if self.number else "DRAFT"


@dataclass(frozen=True)
class _Dates:
    """The billing period (end exclusive), issue and due dates: aware datetimes."""

    period_start: datetime
    period_end: datetime
    issued_at: datetime | None
    due_at: datetime | None


@dataclass(frozen=True)
class _Amounts:
    """The invoice's totals in minor units, and whether line prices include tax."""

    subtotal: int
    tax: int
    total: int
    paid: int
    due: int
    inclusive: bool


def build_model(invoice: Mapping[str, Any]) -> InvoiceModel:
    """Read ``invoice`` (see ``render_invoice_pdf``) into the strings of its PDF.

    Raises:
        DataError: a key is missing or has the wrong type, a currency, locale or timezone is
            unknown, a datetime is naive, or a decimal string does not parse.

    """
    if not isinstance(invoice, Mapping):
        raise v.fail("invoice must be a mapping")
    ctx = _context(invoice)
    state = _status(invoice)
    dates = _dates(invoice)
    seller_name, seller_lines = _seller(invoice)
    customer_name, customer_lines, customer_id = _customer(invoice, ctx.locale)
    rows, tax_by_rate = _rows(invoice, ctx)
    amounts = _amounts(invoice)
    due_text = ctx.day(dates.due_at) if dates.due_at is not None else None
    number_text = state.number_text
    title_ref = state.number or f"draft {state.invoice_id}".strip()
    return InvoiceModel(
        number_text=number_text,
        is_draft=state.is_draft,
        watermark="DRAFT" if state.is_draft else ("VOID" if state.status == "void" else None),
        badge=BADGES.get(state.status),
        seller_name=seller_name,
        seller_lines=seller_lines,
        customer_name=customer_name,
        customer_lines=customer_lines,
        meta=_meta(number_text, dates, customer_id, ctx),
        headline=_headline(state.status, amounts, due_text, ctx),
        rows=rows,
        totals=_totals(amounts, _tax_rows(tax_by_rate, amounts.tax, ctx.locale), ctx),
        inclusive_note="Amounts include VAT/tax." if amounts.inclusive else None,
        notes=_notes(invoice, state, amounts, due_text, ctx),
        footer_left=f"{seller_name} · Invoice {number_text}",
        continued=f"Invoice {number_text} (continued)",
        title=f"Invoice {title_ref}",
        creation_date=(dates.issued_at or dates.period_end).astimezone(UTC),
        lang=ctx.locale.replace("_", "-"),
    )


def _context(invoice: Mapping[str, Any]) -> _Context:
    currency = v.text(v.get(invoice, "currency"), "currency")
    locale = v.text(invoice.get("locale") or "en_GB", "locale")
    v.babel_locale(locale)
    tz = v.zone(v.text(v.get(invoice, "timezone"), "timezone"))
    return _Context(currency, locale, tz)


def _status(invoice: Mapping[str, Any]) -> _Status:
    raw = invoice.get("number")
    number = v.text(raw, "number") if raw is not None else None
    status = v.text(invoice.get("status") or ("draft" if number is None else "open"), "status")
    return _Status(number, status, v.text(invoice.get("invoice_id") or "", "invoice_id"))


def _dates(invoice: Mapping[str, Any]) -> _Dates:
    start = v.moment(v.get(invoice, "period_start"), "period_start")
    end = v.moment(v.get(invoice, "period_end"), "period_end")
    assert start is not None and end is not None
    return _Dates(
        start,
        end,
        v.moment(invoice.get("issued_at"), "issued_at", optional=True),
        v.moment(invoice.get("due_at"), "due_at", optional=True),
    )


def _seller(invoice: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The seller's name, then its lines: address, email, "Tax ID: ..."."""
    seller = v.mapping(v.get(invoice, "seller"), "seller")
    name = v.text(v.get(seller, "name", "seller"), "seller.name")
    address_lines = seller.get("address_lines") or []
    if not isinstance(address_lines, Sequence) or isinstance(address_lines, str):
        raise v.fail("seller.address_lines must be a list of strings")
    lines = [v.text(line, "seller.address_lines[]") for line in address_lines]
    if seller.get("email"):
        lines.append(v.text(seller["email"], "seller.email"))
    if seller.get("tax_id"):
        lines.append(f"Tax ID: {v.text(seller['tax_id'], 'seller.tax_id')}")
    return name, lines


def _customer(invoice: Mapping[str, Any], locale: str) -> tuple[str, list[str], object]:
    """The customer's name, its lines (address, email, "Tax ID: ...") and its raw ``id``."""
    customer = v.mapping(v.get(invoice, "customer"), "customer")
    name = v.text(v.get(customer, "name", "customer"), "customer.name")
    address = v.mapping(customer.get("address") or {}, "customer.address")
    lines = _address_lines(address, locale)
    if customer.get("email"):
        lines.append(v.text(customer["email"], "customer.email"))
    if customer.get("tax_id"):
        lines.append(f"Tax ID: {v.text(customer['tax_id'], 'customer.tax_id')}")
    return name, lines, customer.get("id")


def _address_lines(address: Mapping[str, Any], locale: str) -> list[str]:
    def part(key: str) -> str:
        return v.text(address.get(key), f"customer.address.{key}", optional=True)

    lines = [part("line1"), part("line2")]
    city, postal, country = part("city"), part("postal_code"), part("country").upper()
    lines.append(f"{postal} {city}" if country in _POSTCODE_FIRST else f"{city} {postal}")
    if country:
        lines.append(str(v.babel_locale(locale).territories.get(country, country)))
    return [line.strip() for line in lines if line.strip()]


def _meta(number_text: str, dates: _Dates, customer_id: object, ctx: _Context) -> list[tuple[str, str]]:
    """The labelled values beside "Bill to": number, dates, billing period, customer id."""
    meta = [("Invoice number", number_text)]
    if dates.issued_at is not None:
        meta.append(("Issue date", ctx.day(dates.issued_at)))
    if dates.due_at is not None:
        meta.append(("Due date", ctx.day(dates.due_at)))
    first_day = v.local_date(dates.period_start, ctx.zone)
    # End-exclusive: the last day billed is the one holding the last instant before the end.
    last_day = max(first_day, v.local_date(dates.period_end - timedelta(microseconds=1), ctx.zone))
    period = f"{v.format_day(first_day, ctx.locale)} – {v.format_day(last_day, ctx.locale)}"
    meta.append(("Billing period", period))
    if customer_id:
        meta.append(("Customer ID", v.text(customer_id, "customer.id")))
    return meta


def _rows(invoice: Mapping[str, Any], ctx: _Context) -> tuple[list[Row], dict[Decimal, int]]:
    """The table's rows, and the tax of the lines per rate (percent -> minor units)."""
    lines = v.get(invoice, "lines")
    if not isinstance(lines, Sequence) or isinstance(lines, str):
        raise v.fail("lines must be a list")
    tax_by_rate: dict[Decimal, int] = {}
    rows = [_row(item, f"lines[{index}]", ctx, tax_by_rate) for index, item in enumerate(lines)]
    return rows, tax_by_rate


def _row(item: object, where: str, ctx: _Context, tax_by_rate: dict[Decimal, int]) -> Row:
    """One line's cells; adds the line's tax to ``tax_by_rate`` under its rate."""
    line = v.mapping(item, where)
    description = v.text(v.get(line, "description", where), f"{where}.description")
    quantity = v.decimal(v.get(line, "quantity", where), f"{where}.quantity")
    unit = v.decimal(v.get(line, "unit_amount_decimal", where), f"{where}.unit_amount_decimal")
    amount = v.integer(v.get(line, "amount", where), f"{where}.amount")
    rate_raw = line.get("tax_rate")
    rate_text = "–"
    if rate_raw is not None:
        rate = v.decimal(rate_raw, f"{where}.tax_rate").normalize()
        rate_text = v.format_percent(rate, ctx.locale)
        tax = v.integer(line.get("tax", 0), f"{where}.tax")
        tax_by_rate[rate] = tax_by_rate.get(rate, 0) + tax
    unit_text = v.unit_price(unit, ctx.currency, ctx.locale)
    return (description, v.format_quantity(quantity, ctx.locale), unit_text, rate_text, ctx.money(amount))


def _amounts(invoice: Mapping[str, Any]) -> _Amounts:
    total = v.integer(v.get(invoice, "total"), "total")
    paid = v.integer(invoice.get("amount_paid", 0) or 0, "amount_paid")
    due_raw = invoice.get("amount_due")
    due = total - paid if due_raw is None else v.integer(due_raw, "amount_due")
    return _Amounts(
        subtotal=v.integer(v.get(invoice, "subtotal"), "subtotal"),
        tax=v.integer(v.get(invoice, "tax"), "tax"),
        total=total,
        paid=paid,
        due=due,
        inclusive=bool(invoice.get("tax_inclusive", False)),
    )


def _tax_rows(tax_by_rate: Mapping[Decimal, int], tax: int, locale: str) -> list[tuple[str, int]]:
    """Tax rows as ``(rate label, minor units)``.

    One row per rate when there are several and they add up to the invoice's tax; else one.
    """
    by_rate = sorted(tax_by_rate.items(), reverse=True)
    if len(by_rate) > 1 and sum(value for _, value in by_rate) == tax:
        return [(f"({v.format_percent(rate, locale)})", value) for rate, value in by_rate]
    if len(by_rate) == 1:
        return [(f"({v.format_percent(by_rate[0][0], locale)})", tax)]
    return [("", tax)]


def _totals(amounts: _Amounts, tax_rows: list[tuple[str, int]], ctx: _Context) -> list[TotalRow]:
    """The totals block: tax-inclusive wording when line prices include tax."""
    money = ctx.money
    totals: list[TotalRow] = []
    if amounts.inclusive:
        if amounts.subtotal != amounts.total:
            totals.append(TotalRow("Subtotal", money(amounts.subtotal)))
        totals.append(TotalRow("Total (incl. tax)", money(amounts.total), "total"))
        totals.extend(
            TotalRow(f"of which tax {label}".strip(), money(value), "muted") for label, value in tax_rows
        )
    else:
        totals.append(TotalRow("Subtotal", money(amounts.subtotal)))
        totals.extend(TotalRow(f"Tax {label}".strip(), money(value)) for label, value in tax_rows)
        totals.append(TotalRow("Total", money(amounts.total), "total"))
    if amounts.paid:
        totals.append(TotalRow("Amount paid", money(amounts.paid)))
    totals.append(TotalRow("Amount due", money(amounts.due), "due"))
    return totals


def _headline(status: str, amounts: _Amounts, due_text: str | None, ctx: _Context) -> str:
    """The line above the table: what is due and when, or that nothing is."""
    if status == "void":
        return "This invoice has been voided"
    if status == "paid":
        return f"{ctx.money(amounts.total)} paid"
    if amounts.due <= 0 and status != "draft":
        return "Nothing to pay"
    if due_text:
        return f"{ctx.money(amounts.due)} due {due_text}"
    return f"{ctx.money(amounts.due)} due"


def _notes(
    invoice: Mapping[str, Any], state: _Status, amounts: _Amounts, due_text: str | None, ctx: _Context
) -> list[str]:
    """The notes: the payment request, the memo, the draft warning."""
    notes: list[str] = []
    if state.status in ("open", "draft") and amounts.due > 0 and due_text:
        notes.append(f"Please pay {ctx.money(amounts.due)} by {due_text}.")
    memo = invoice.get("memo")
    if memo:
        notes.append(v.text(memo, "memo"))
    if state.is_draft:
        notes.append("This is a draft: it is not a request for payment and may still change.")
    return notes
