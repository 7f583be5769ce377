"""Invoice PDF renderer: one invoice mapping in, the bytes of an A4 PDF out.

``render_invoice_pdf(invoice)`` lays out what a company sends its customers: the seller block
and the "INVOICE" title with its number (or "DRAFT"), the dates (issue, due, billing period) in
the tenant's timezone, the "Bill to" block, a table of lines (Description | Qty | Unit price |
Tax | Amount) that flows onto further pages with its header repeated, the totals (tax by rate,
tax-inclusive wording when prices include tax), payment notes and "Page i of N" footers.

Fonts. When every string of the document is encodable in WinAnsi (cp1252: Latin-1 plus "€",
curly quotes, dashes...) the PDF uses the core Helvetica fonts, which cost nothing to embed
(a few milliseconds per invoice). Otherwise it embeds DejaVu Sans (Latin, Greek, Cyrillic...)
with Droid Sans Fallback for the characters DejaVu lacks (Chinese, Japanese, Korean). Both are
TrueType files in ``billing/delivery/fonts``; for each document this module cuts a subset holding only the
characters the document uses (``_TrueTypeFont.subset``, plain byte slicing), because handing
fpdf2 the whole fonts costs 100-500 ms of fontTools work per document. Scripts that need
shaping or right-to-left layout (Arabic, Hebrew, Indic) are drawn glyph by glyph, unshaped.

Output is deterministic: the same mapping renders to the same bytes (the PDF creation date is
``issued_at``, else ``period_end``; no clock, no random ids).
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_decimal, parse_pattern
from fpdf import FPDF

from billing.errors import DataError
from billing.pricing.money import EXACT, format_money, format_unit_amount, to_decimal

__all__ = ["render_invoice_pdf"]

FONT_DIR = Path(__file__).resolve().with_name("fonts")

# ---------------------------------------------------------------------------------------------
# Page geometry (millimetres, A4 portrait) and colours (RGB).
_PAGE_W, _PAGE_H = 210.0, 297.0
_MARGIN_X = 18.0
_TOP = 16.0
_CONTENT_W = _PAGE_W - 2 * _MARGIN_X
_RIGHT = _PAGE_W - _MARGIN_X
_FOOTER_RULE_Y = _PAGE_H - 15.0
_BOTTOM = _FOOTER_RULE_Y - 5.0  # nothing but the footer goes below this line

_INK = (33, 37, 41)
_MUTED = (98, 106, 116)
_ACCENT = (24, 56, 99)
_RULE = (214, 219, 225)
_ROW_RULE = (229, 232, 236)
_SHADE = (240, 242, 245)
_DRAFT_RED = (196, 43, 28)
_WATERMARK = (234, 236, 239)
_BADGES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "paid": ("PAID", (25, 125, 60)),
    "void": ("VOID", (120, 126, 134)),
    "uncollectible": ("UNCOLLECTIBLE", (176, 96, 0)),
}

# Lines table: Description | Qty | Unit price | Tax | Amount (widths add up to _CONTENT_W).
_COL_W = (80.0, 18.0, 30.0, 16.0, 30.0)
_COL_ALIGN = ("L", "R", "R", "R", "R")
_CELL_PAD_X = 2.0
_ROW_PAD_Y = 1.9
_LINE_H = 4.3  # one line of 9 pt text
_HEAD_H = 7.5

_TOTALS_W = 86.0
_TOTALS_LABEL_W = 52.0

# Characters some locales' number formats use that WinAnsi lacks, and harmless stand-ins.
_TEXT_FIXES = str.maketrans(
    {
        "\u202f": "\u00a0",  # narrow no-break space (fr grouping) -> no-break space
        "\u2009": " ",  # thin space
        "\u2007": "\u00a0",  # figure space
        "\u2212": "-",  # minus sign
        "\u2011": "-",  # non-breaking hyphen
        "\t": " ",
        "\r": "",
    }
)
_CONTROL = {c: " " for c in range(32) if c != 10}

# Countries whose addresses put the postal code before the city.
_POSTCODE_FIRST = frozenset(
    "AT BE BG CH CZ DE DK EE ES FI FR GR HR HU IS IT JP LI LT LU LV MC NL NO PL PT RO SE SI SK"
    .split()
)


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
    model = _build_model(invoice)
    return _render(model)


# ---------------------------------------------------------------------------------------------
# Reading and formatting the invoice (everything turned into strings before drawing).


@dataclass(frozen=True)
class _TotalRow:
    label: str
    value: str
    kind: str = "normal"  # "normal", "muted", "total" or "due"


@dataclass
class _Model:
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
    rows: list[tuple[str, str, str, str, str]]
    totals: list[_TotalRow]
    inclusive_note: str | None
    notes: list[str]
    footer_left: str
    continued: str
    title: str
    creation_date: datetime
    lang: str
    header_cells: tuple[str, str, str, str, str] = (
        "Description", "Qty", "Unit price", "Tax", "Amount",
    )
    labels: tuple[str, ...] = ("INVOICE", "BILL TO", "Notes", "Page 0123456789 of", "…")

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
        if self.watermark:
            yield self.watermark
        if self.badge:
            yield self.badge[0]


def _fail(message: str) -> DataError:
    return DataError(f"invoice PDF: {message}", code="invalid_invoice")


def _get(mapping: Mapping[str, Any], key: str, where: str = "invoice") -> Any:
    try:
        return mapping[key]
    except KeyError:
        raise _fail(f"{where} has no {key!r}") from None
    except TypeError:
        raise _fail(f"{where} is not a mapping") from None


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _text(value: object, what: str, *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise _fail(f"{what} must be a string, got {type(value).__name__}")
    return value.translate(_TEXT_FIXES).translate(_CONTROL).strip()


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{what} must be an int in minor units, got {value!r}")
    return value


def _decimal(value: object, what: str) -> Decimal:
    if isinstance(value, float):
        raise _fail(f"{what} must be a decimal string, not a float")
    try:
        return to_decimal(value)
    except ValueError as exc:
        raise _fail(f"{what}: {exc}") from None


def _datetime(value: object, what: str, *, optional: bool = False) -> datetime | None:
    if value is None and optional:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"{what} is not an RFC 3339 timestamp: {value!r}") from None
    if not isinstance(value, datetime):
        raise _fail(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _fail(f"{what} must be timezone-aware")
    return value


@lru_cache(maxsize=64)
def _locale(name: str) -> Locale:
    try:
        return Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError):
        raise _fail(f"unknown locale {name!r}") from None


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise _fail(f"unknown timezone {name!r}") from None


def _local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def _format_date(day: date, locale: str) -> str:
    return str(format_date(day, format="medium", locale=_locale(locale))).translate(_TEXT_FIXES)


def format_quantity(quantity: Decimal, locale: str = "en_GB") -> str:
    """Format a quantity for people: no trailing zeros, locale grouping (``"1,234.5"``, ``"12"``).

    Every significant decimal is kept (``Decimal("0.000001")`` -> ``"0.000001"``).
    """
    with localcontext(EXACT):  # a quantity may have more than 28 digits (never rounded)
        normalized = quantity.normalize()
        exponent = normalized.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            normalized = normalized.quantize(Decimal(1))
        text = format_decimal(
            normalized, format="#,##0.###", locale=_locale(locale), decimal_quantization=False
        )
    return str(text).translate(_TEXT_FIXES)


def format_percent(percent: Decimal, locale: str = "en_GB") -> str:
    """Format a percentage given in percent (``Decimal("5.5")`` -> ``"5.5%"``), every decimal kept."""
    pattern = parse_pattern(_percent_pattern(locale))
    pattern.frac_prec = (0, 6)
    text = pattern.apply(percent.normalize() / 100, _locale(locale), decimal_quantization=False)
    return str(text).translate(_TEXT_FIXES)


@lru_cache(maxsize=64)
def _percent_pattern(locale: str) -> str:
    return str(_locale(locale).percent_formats[None].pattern)


def _money(amount: int, currency: str, locale: str) -> str:
    return format_money(amount, currency, locale).translate(_TEXT_FIXES)


def _address_lines(address: Mapping[str, Any], locale: str) -> list[str]:
    def part(key: str) -> str:
        return _text(address.get(key), f"customer.address.{key}", optional=True)

    lines = [part("line1"), part("line2")]
    city, postal, country = part("city"), part("postal_code"), part("country").upper()
    lines.append(f"{postal} {city}" if country in _POSTCODE_FIRST else f"{city} {postal}")
    if country:
        lines.append(str(_locale(locale).territories.get(country, country)))
    return [line.strip() for line in lines if line.strip()]


def _build_model(invoice: Mapping[str, Any]) -> _Model:
    if not isinstance(invoice, Mapping):
        raise _fail("invoice must be a mapping")
    currency = _text(_get(invoice, "currency"), "currency")
    locale = _text(invoice.get("locale") or "en_GB", "locale")
    _locale(locale)
    zone = _zone(_text(_get(invoice, "timezone"), "timezone"))
    number_raw = invoice.get("number")
    number = _text(number_raw, "number") if number_raw is not None else None
    status = _text(invoice.get("status") or ("draft" if number is None else "open"), "status")
    invoice_id = _text(invoice.get("invoice_id") or "", "invoice_id")

    def money(amount: int) -> str:
        try:
            return _money(amount, currency, locale)
        except DataError as exc:
            raise _fail(exc.message) from None

    period_start = _datetime(_get(invoice, "period_start"), "period_start")
    period_end = _datetime(_get(invoice, "period_end"), "period_end")
    issued_at = _datetime(invoice.get("issued_at"), "issued_at", optional=True)
    due_at = _datetime(invoice.get("due_at"), "due_at", optional=True)
    assert period_start is not None and period_end is not None

    first_day = _local_date(period_start, zone)
    # End-exclusive: the last day billed is the one holding the last instant before the end.
    last_day = max(first_day, _local_date(period_end - timedelta(microseconds=1), zone))
    period = f"{_format_date(first_day, locale)} – {_format_date(last_day, locale)}"

    seller = _mapping(_get(invoice, "seller"), "seller")
    seller_name = _text(_get(seller, "name", "seller"), "seller.name")
    address_lines = seller.get("address_lines") or []
    if not isinstance(address_lines, Sequence) or isinstance(address_lines, str):
        raise _fail("seller.address_lines must be a list of strings")
    seller_lines = [_text(text, "seller.address_lines[]") for text in address_lines]
    if seller.get("email"):
        seller_lines.append(_text(seller["email"], "seller.email"))
    if seller.get("tax_id"):
        seller_lines.append(f"Tax ID: {_text(seller['tax_id'], 'seller.tax_id')}")

    customer = _mapping(_get(invoice, "customer"), "customer")
    customer_name = _text(_get(customer, "name", "customer"), "customer.name")
    address = _mapping(customer.get("address") or {}, "customer.address")
    customer_lines = _address_lines(address, locale)
    if customer.get("email"):
        customer_lines.append(_text(customer["email"], "customer.email"))
    if customer.get("tax_id"):
        customer_lines.append(f"Tax ID: {_text(customer['tax_id'], 'customer.tax_id')}")

    is_draft = number is None or status == "draft"
    number_text = number if number else "DRAFT"
    meta: list[tuple[str, str]] = [("Invoice number", number_text)]
    if issued_at is not None:
        meta.append(("Issue date", _format_date(_local_date(issued_at, zone), locale)))
    if due_at is not None:
        meta.append(("Due date", _format_date(_local_date(due_at, zone), locale)))
    meta.append(("Billing period", period))
    customer_id = customer.get("id")
    if customer_id:
        meta.append(("Customer ID", _text(customer_id, "customer.id")))

    rows: list[tuple[str, str, str, str, str]] = []
    tax_by_rate: dict[Decimal, int] = {}
    lines = _get(invoice, "lines")
    if not isinstance(lines, Sequence) or isinstance(lines, str):
        raise _fail("lines must be a list")
    for index, item in enumerate(lines):
        where = f"lines[{index}]"
        line = _mapping(item, where)
        description = _text(_get(line, "description", where), f"{where}.description")
        quantity = _decimal(_get(line, "quantity", where), f"{where}.quantity")
        unit = _decimal(_get(line, "unit_amount_decimal", where), f"{where}.unit_amount_decimal")
        amount = _int(_get(line, "amount", where), f"{where}.amount")
        rate_raw = line.get("tax_rate")
        rate_text = "–"
        if rate_raw is not None:
            rate = _decimal(rate_raw, f"{where}.tax_rate").normalize()
            rate_text = format_percent(rate, locale)
            tax_by_rate[rate] = tax_by_rate.get(rate, 0) + _int(
                line.get("tax", 0), f"{where}.tax"
            )
        try:
            unit_text = format_unit_amount(unit, currency, locale).translate(_TEXT_FIXES)
        except DataError as exc:
            raise _fail(exc.message) from None
        rows.append(
            (description, format_quantity(quantity, locale), unit_text, rate_text, money(amount))
        )

    subtotal = _int(_get(invoice, "subtotal"), "subtotal")
    tax = _int(_get(invoice, "tax"), "tax")
    total = _int(_get(invoice, "total"), "total")
    amount_paid = _int(invoice.get("amount_paid", 0) or 0, "amount_paid")
    amount_due_raw = invoice.get("amount_due")
    amount_due = total - amount_paid if amount_due_raw is None else _int(
        amount_due_raw, "amount_due"
    )
    inclusive = bool(invoice.get("tax_inclusive", False))

    # One tax row per rate when there are several and they add up to the invoice's tax.
    by_rate = sorted(tax_by_rate.items(), reverse=True)
    if len(by_rate) > 1 and sum(v for _, v in by_rate) == tax:
        tax_rows = [(f"({format_percent(r, locale)})", v) for r, v in by_rate]
    elif len(by_rate) == 1:
        tax_rows = [(f"({format_percent(by_rate[0][0], locale)})", tax)]
    else:
        tax_rows = [("", tax)]

    totals: list[_TotalRow] = []
    if inclusive:
        if subtotal != total:
            totals.append(_TotalRow("Subtotal", money(subtotal)))
        totals.append(_TotalRow("Total (incl. tax)", money(total), "total"))
        totals.extend(
            _TotalRow(f"of which tax {label}".strip(), money(value), "muted")
            for label, value in tax_rows
        )
    else:
        totals.append(_TotalRow("Subtotal", money(subtotal)))
        totals.extend(_TotalRow(f"Tax {label}".strip(), money(v)) for label, v in tax_rows)
        totals.append(_TotalRow("Total", money(total), "total"))
    if amount_paid:
        totals.append(_TotalRow("Amount paid", money(amount_paid)))
    totals.append(_TotalRow("Amount due", money(amount_due), "due"))

    due_text = _format_date(_local_date(due_at, zone), locale) if due_at is not None else None
    headline: str | None
    if status == "void":
        headline = "This invoice has been voided"
    elif status == "paid" or (amount_due <= 0 and status != "draft"):
        headline = f"{money(total)} paid" if status == "paid" else "Nothing to pay"
    elif due_text:
        headline = f"{money(amount_due)} due {due_text}"
    else:
        headline = f"{money(amount_due)} due"

    notes: list[str] = []
    if status in ("open", "draft") and amount_due > 0 and due_text:
        notes.append(f"Please pay {money(amount_due)} by {due_text}.")
    memo = invoice.get("memo")
    if memo:
        notes.append(_text(memo, "memo"))
    if is_draft:
        notes.append("This is a draft: it is not a request for payment and may still change.")

    created = issued_at or period_end
    title_ref = number or f"draft {invoice_id}".strip()
    return _Model(
        number_text=number_text,
        is_draft=is_draft,
        watermark="DRAFT" if is_draft else ("VOID" if status == "void" else None),
        badge=_BADGES.get(status),
        seller_name=seller_name,
        seller_lines=seller_lines,
        customer_name=customer_name,
        customer_lines=customer_lines,
        meta=meta,
        headline=headline,
        rows=rows,
        totals=totals,
        inclusive_note="Amounts include VAT/tax." if inclusive else None,
        notes=notes,
        footer_left=f"{seller_name} · Invoice {number_text}",
        continued=f"Invoice {number_text} (continued)",
        title=f"Invoice {title_ref}",
        creation_date=created.astimezone(UTC),
        lang=locale.replace("_", "-"),
    )


# ---------------------------------------------------------------------------------------------
# Fonts: core Helvetica when WinAnsi covers the text, else per-document TrueType subsets.


class _TrueTypeFont:
    """A TrueType (``glyf``) font file read once per process, cut into tiny subsets on demand.

    ``subset(chars)`` returns a complete, valid TrueType file holding only ``.notdef``, the
    glyphs of ``chars`` that the font has, and their composite components (renumbered), with
    the font's metrics and its copyright, family and full names. Hinting (instructions and
    their programs) is left out, as PDF producers commonly do: viewers scale outlines. Tables
    indexed by glyph id that are not rebuilt (kerning, OpenType layout, device metrics) are
    dropped. Fewer, smaller tables make fpdf2's own (fontTools) pass over the font cheaper.
    """

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        (num_tables,) = struct.unpack_from(">H", data, 4)
        tables: dict[str, bytes] = {}
        for i in range(num_tables):
            tag, _checksum, offset, length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
            tables[tag.decode("latin-1")] = data[offset : offset + length]
        self._tables = tables
        (loc_format,) = struct.unpack_from(">h", tables["head"], 50)
        (self._num_glyphs,) = struct.unpack_from(">H", tables["maxp"], 4)
        (num_metrics,) = struct.unpack_from(">H", tables["hhea"], 34)
        count = self._num_glyphs + 1
        if loc_format == 0:
            self._loca = [2 * x for x in struct.unpack_from(f">{count}H", tables["loca"])]
        else:
            self._loca = list(struct.unpack_from(f">{count}I", tables["loca"]))
        hmtx = tables["hmtx"]
        metrics = list(struct.iter_unpack(">Hh", hmtx[: 4 * num_metrics]))
        extra = self._num_glyphs - num_metrics
        lsbs = struct.unpack_from(f">{extra}h", hmtx, 4 * num_metrics) if extra > 0 else ()
        metrics.extend((metrics[-1][0], lsb) for lsb in lsbs)
        self._metrics = metrics
        self.cmap: dict[int, int] = _read_cmap(tables["cmap"])
        self._names = _trim_names(tables["name"])

    def _components(self, gid: int) -> tuple[list[tuple[int, int, int]], int]:
        """Return a composite glyph's ``(offset, flags, glyph id)`` records and their end offset.

        Offsets are relative to the glyph's start; a simple or empty glyph has no records.
        """
        start, end = self._loca[gid], self._loca[gid + 1]
        glyf = self._tables["glyf"]
        if end - start < 10 or struct.unpack_from(">h", glyf, start)[0] >= 0:
            return [], 0
        found: list[tuple[int, int, int]] = []
        pos = 10
        while True:
            flags, component = struct.unpack_from(">HH", glyf, start + pos)
            found.append((pos, flags, component))
            pos += 4 + (4 if flags & 0x0001 else 2)
            if flags & 0x0008:
                pos += 2
            elif flags & 0x0040:
                pos += 4
            elif flags & 0x0080:
                pos += 8
            if not flags & 0x0020:
                return found, pos

    def _glyph(self, gid: int, new_id: Mapping[int, int]) -> bytes:
        """Return glyph ``gid``'s outline without instructions, components renumbered."""
        start, end = self._loca[gid], self._loca[gid + 1]
        glyf = self._tables["glyf"]
        if end - start < 10:
            return b""
        (contours,) = struct.unpack_from(">h", glyf, start)
        if contours >= 0:
            at = start + 10 + 2 * contours
            points = struct.unpack_from(">H", glyf, at - 2)[0] + 1 if contours else 0
            (length,) = struct.unpack_from(">H", glyf, at)
            flags_at = pos = at + 2 + length
            coordinates = seen = 0
            while seen < points:  # flags (with repeats), then the x and y coordinate sizes
                flag, repeat = glyf[pos], 1
                pos += 1
                if flag & 0x08:
                    repeat += glyf[pos]
                    pos += 1
                x_size = 1 if flag & 0x02 else (0 if flag & 0x10 else 2)
                y_size = 1 if flag & 0x04 else (0 if flag & 0x20 else 2)
                coordinates += repeat * (x_size + y_size)
                seen += repeat
            return glyf[start:at] + b"\0\0" + glyf[flags_at : pos + coordinates]
        records, stop = self._components(gid)
        glyph = bytearray(glyf[start : start + stop])
        for pos, flags, component in records:
            struct.pack_into(">HH", glyph, pos, flags & ~0x0100, new_id.get(component, 0))
        return bytes(glyph)

    def subset(self, codepoints: Iterable[int]) -> bytes:
        """Return a TrueType file with the glyphs of ``codepoints`` this font has."""
        mapping = {c: self.cmap[c] for c in codepoints if c in self.cmap}
        wanted = {0, *mapping.values()}
        pending = list(wanted)
        while pending:
            for _, _, component in self._components(pending.pop())[0]:
                if component not in wanted and component < self._num_glyphs:
                    wanted.add(component)
                    pending.append(component)
        order = sorted(wanted)
        new_id = {old: new for new, old in enumerate(order)}
        glyf = bytearray()
        loca = [0]
        for old in order:
            glyf += self._glyph(old, new_id)
            glyf += b"\0" * (-len(glyf) % 4)
            loca.append(len(glyf))
        count = len(order)
        head = bytearray(self._tables["head"])
        struct.pack_into(">I", head, 8, 0)  # checkSumAdjustment, set below
        struct.pack_into(">h", head, 50, 1)  # long loca offsets
        maxp = bytearray(self._tables["maxp"])
        struct.pack_into(">H", maxp, 4, count)
        hhea = bytearray(self._tables["hhea"])
        struct.pack_into(">H", hhea, 34, count)
        post = bytearray(self._tables["post"][:32])
        struct.pack_into(">I", post, 0, 0x00030000)  # version 3: no glyph names
        tables: dict[str, bytes] = {
            "head": bytes(head),
            "hhea": bytes(hhea),
            "maxp": bytes(maxp),
            "hmtx": b"".join(struct.pack(">Hh", *self._metrics[old]) for old in order),
            "loca": struct.pack(f">{count + 1}I", *loca),
            "glyf": bytes(glyf),
            "cmap": _build_cmap({c: new_id[g] for c, g in mapping.items()}),
            "post": bytes(post),
        }
        if "OS/2" in self._tables:
            tables["OS/2"] = self._tables["OS/2"]
        tables["name"] = self._names
        return _write_sfnt(tables)


def _trim_names(table: bytes) -> bytes:
    """Keep the Windows-platform name records 0-6 of a ``name`` table; drop the rest.

    Those are the copyright, family, style, unique id, full name, version and PostScript name.
    """
    count, storage = struct.unpack_from(">HH", table, 2)
    kept: list[tuple[int, int, int, int, bytes]] = []
    for i in range(count):
        platform, encoding, language, name_id, length, offset = struct.unpack_from(
            ">6H", table, 6 + 12 * i
        )
        if platform == 3 and name_id <= 6 and (language == 0x409 or name_id == 0):
            start = storage + offset
            kept.append((platform, encoding, language, name_id, table[start : start + length]))
    kept.sort()
    records, strings = b"", b""
    for platform, encoding, language, name_id, text in kept:
        records += struct.pack(">6H", platform, encoding, language, name_id, len(text),
                               len(strings))
        strings += text
    return struct.pack(">3H", 0, len(kept), 6 + 12 * len(kept)) + records + strings


def _read_cmap(table: bytes) -> dict[int, int]:
    """Read the best Unicode subtable (format 12, else format 4) as ``{codepoint: glyph id}``."""
    (count,) = struct.unpack_from(">H", table, 2)
    offsets: dict[tuple[int, int], int] = {}
    for i in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", table, 4 + 8 * i)
        offsets[(platform, encoding)] = offset
    for key in ((3, 10), (0, 6), (0, 4)):
        if key in offsets and struct.unpack_from(">H", table, offsets[key])[0] == 12:
            return _read_cmap12(table, offsets[key])
    for key in ((3, 1), (0, 3), (0, 2), (0, 1), (0, 0)):
        if key in offsets and struct.unpack_from(">H", table, offsets[key])[0] == 4:
            return _read_cmap4(table, offsets[key])
    raise ValueError("font has no Unicode cmap of format 4 or 12")


def _read_cmap12(table: bytes, offset: int) -> dict[int, int]:
    (groups,) = struct.unpack_from(">I", table, offset + 12)
    result: dict[int, int] = {}
    for start, end, glyph in struct.iter_unpack(
        ">III", table[offset + 16 : offset + 16 + 12 * groups]
    ):
        for code in range(start, end + 1):
            result[code] = glyph + code - start
    return result


def _read_cmap4(table: bytes, offset: int) -> dict[int, int]:
    seg_count = struct.unpack_from(">H", table, offset + 6)[0] // 2
    ends = struct.unpack_from(f">{seg_count}H", table, offset + 14)
    starts_at = offset + 16 + 2 * seg_count
    starts = struct.unpack_from(f">{seg_count}H", table, starts_at)
    deltas = struct.unpack_from(f">{seg_count}h", table, starts_at + 2 * seg_count)
    ranges_at = starts_at + 4 * seg_count
    ranges = struct.unpack_from(f">{seg_count}H", table, ranges_at)
    result: dict[int, int] = {}
    for i in range(seg_count):
        for code in range(starts[i], ends[i] + 1):
            if code == 0xFFFF:
                continue
            if ranges[i] == 0:
                glyph = (code + deltas[i]) & 0xFFFF
            else:
                at = ranges_at + 2 * i + ranges[i] + 2 * (code - starts[i])
                glyph = struct.unpack_from(">H", table, at)[0]
                glyph = (glyph + deltas[i]) & 0xFFFF if glyph else 0
            if glyph:
                result[code] = glyph
    return result


def _build_cmap(mapping: dict[int, int]) -> bytes:
    """Build a cmap table: format 4 (3,1) for the BMP, plus format 12 (3,10) beyond it."""
    bmp = sorted((c, g) for c, g in mapping.items() if c < 0xFFFF)
    segments = [(c, c, (g - c) & 0xFFFF) for c, g in bmp] + [(0xFFFF, 0xFFFF, 1)]
    seg_count = len(segments)
    power = 1 << (seg_count.bit_length() - 1)
    fmt4 = struct.pack(
        ">7H", 4, 16 + 8 * seg_count, 0, 2 * seg_count, 2 * power,
        power.bit_length() - 1, 2 * seg_count - 2 * power,
    )
    fmt4 += struct.pack(f">{seg_count}H", *(s[1] for s in segments)) + b"\0\0"
    fmt4 += struct.pack(f">{seg_count}H", *(s[0] for s in segments))
    fmt4 += struct.pack(f">{seg_count}H", *(s[2] for s in segments))
    fmt4 += b"\0\0" * seg_count
    subtables = [(3, 1, fmt4)]
    if any(c > 0xFFFF for c in mapping):
        groups = sorted(mapping.items())
        fmt12 = struct.pack(">HHIII", 12, 0, 16 + 12 * len(groups), 0, len(groups))
        fmt12 += b"".join(struct.pack(">III", c, c, g) for c, g in groups)
        subtables.append((3, 10, fmt12))
    header = struct.pack(">HH", 0, len(subtables))
    offset = 4 + 8 * len(subtables)
    body = b""
    for platform, encoding, data in subtables:
        header += struct.pack(">HHI", platform, encoding, offset + len(body))
        body += data
    return header + body


def _checksum(data: bytes) -> int:
    padded = data + b"\0" * (-len(data) % 4)
    return int(sum(struct.unpack(f">{len(padded) // 4}I", padded))) & 0xFFFFFFFF


def _write_sfnt(tables: dict[str, bytes]) -> bytes:
    tags = sorted(tables)
    count = len(tags)
    power = 1 << (count.bit_length() - 1)
    out = bytearray(struct.pack(">IHHHH", 0x00010000, count, 16 * power,
                                power.bit_length() - 1, 16 * count - 16 * power))
    offset = 12 + 16 * count
    body = bytearray()
    for tag in tags:
        data = tables[tag]
        out += struct.pack(">4sIII", tag.encode("latin-1"), _checksum(data),
                           offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    font = out + body
    head_at = offset + sum(len(tables[t]) + (-len(tables[t]) % 4) for t in tags[: tags.index("head")])
    struct.pack_into(">I", font, head_at + 8, (0xB1B0AFBA - _checksum(bytes(font))) & 0xFFFFFFFF)
    return bytes(font)


@cache
def _font(file_name: str) -> _TrueTypeFont:
    return _TrueTypeFont(FONT_DIR / file_name)


_REGULAR = "DejaVuSans.ttf"
_BOLD = "DejaVuSans-Bold.ttf"
_FALLBACK = "DroidSansFallbackFull.ttf"


def _core_encodable(text: str) -> bool:
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _keep_bounds(pdf: FPDF, fontkey: str) -> None:
    """Tell fontTools not to recompute glyph bounds when fpdf2 saves the subset.

    Our subsets keep each glyph's original (correct) bounds; recomputing them decodes and
    re-encodes every glyph in pure Python, which is most of the cost of a TrueType document.
    """
    ttfont = getattr(pdf.fonts.get(fontkey), "ttfont", None)
    if ttfont is not None:
        ttfont.recalcBBoxes = False


@contextmanager
def _fonts_for(pdf: FPDF, text: str) -> Iterator[str]:
    """Set up the fonts that can draw ``text`` on ``pdf``; yield the family to use.

    Core Helvetica (WinAnsi) when it covers everything; otherwise subsets of DejaVu Sans
    regular and bold, plus Droid Sans Fallback for what DejaVu lacks, written to a temporary
    directory that is removed on exit.
    """
    if _core_encodable(text):
        pdf.core_fonts_encoding = "cp1252"
        yield "helvetica"
        return
    codepoints = {ord(c) for c in text} | set(range(0x20, 0x7F))
    regular = _font(_REGULAR)
    missing = {c for c in codepoints if c not in regular.cmap and c > 0x20}
    with tempfile.TemporaryDirectory(prefix="invoice-fonts-") as folder:
        files = {"": (_REGULAR, codepoints), "B": (_BOLD, codepoints)}
        for style, (name, wanted) in files.items():
            path = os.path.join(folder, f"dejavu{style}.ttf")
            Path(path).write_bytes(_font(name).subset(wanted))
            pdf.add_font("dejavu", style, path)
            _keep_bounds(pdf, f"dejavu{style}")
        fallback = _font(_FALLBACK) if missing else None
        if fallback is not None and any(c in fallback.cmap for c in missing):
            path = os.path.join(folder, "cjk.ttf")
            Path(path).write_bytes(fallback.subset(missing))
            pdf.add_font("cjk", "", path)
            _keep_bounds(pdf, "cjk")
            pdf.set_fallback_fonts(["cjk"], exact_match=False)
        try:
            yield "dejavu"
        finally:
            for font in pdf.fonts.values():
                ttfont = getattr(font, "ttfont", None)
                if ttfont is not None:
                    ttfont.close()


# ---------------------------------------------------------------------------------------------
# Drawing.


@dataclass
class _Row:
    cells: list[list[str]]
    lines: int

    @property
    def height(self) -> float:
        return self.lines * _LINE_H + 2 * _ROW_PAD_Y


@dataclass
class _Layout:
    """Measured blocks and the page flow, run once to count pages and once to draw."""

    pdf: FPDF
    model: _Model
    family: str
    draw: bool = False
    page: int = 0
    pages: int = 0
    y: float = 0.0
    rows: list[_Row] = field(default_factory=list)
    fallback: Any = None  # the fpdf2 font drawing what the main font lacks (CJK), if any
    state: dict[str, Any] = field(default_factory=dict)  # colours and line width last set

    # -- primitives -------------------------------------------------------------------------
    def font(self, style: str = "", size: float = 9.0, color: tuple[int, int, int] = _INK) -> None:
        self.pdf.set_font(self.family, style, size)
        self.text_color(color)

    # fpdf2 turns every colour into an object (slow when done hundreds of times per page):
    # these setters skip calls that would not change anything.
    def text_color(self, color: tuple[int, int, int]) -> None:
        if color != self.state.get("text"):
            self.pdf.set_text_color(*color)
            self.state["text"] = color

    def stroke(self, color: tuple[int, int, int], width: float) -> None:
        if self.draw and color != self.state.get("draw"):
            self.pdf.set_draw_color(*color)
            self.state["draw"] = color
        if self.draw and width != self.state.get("width"):
            self.pdf.set_line_width(width)
            self.state["width"] = width

    def width(self, text: str) -> float:
        """Return the width of ``text`` in mm in the current font (fallback glyphs included)."""
        pdf = self.pdf
        scale = pdf.font_size_pt / 1000 / pdf.k
        if self.family == "helvetica":
            core: Any = pdf.current_font
            widths: Any = core.cw
            return float(sum(widths[c] for c in text.encode("cp1252").decode("latin-1"))) * scale
        units = 0
        for font, run in self.runs(text):
            widths = font.cw
            units += sum(widths[ord(c)] for c in run)
        return float(units) * scale

    def runs(self, text: str) -> list[tuple[Any, str]]:
        """Split ``text`` into ``(fpdf2 font, substring)`` runs.

        Each run uses the current font, or the fallback font for characters it lacks.
        """
        pdf = self.pdf
        primary: Any = pdf.current_font
        fallback = self.fallback
        if fallback is None:
            return [(primary, text)]
        runs: list[tuple[Any, str]] = []
        cmap, backup = primary.cmap, fallback.cmap
        for char in text:
            code = ord(char)
            font = fallback if code not in cmap and code in backup else primary
            if runs and runs[-1][0] is font:
                runs[-1] = (font, runs[-1][1] + char)
            else:
                runs.append((font, char))
        return runs

    def text(self, x: float, baseline: float, text: str) -> None:
        """Draw ``text`` with its left end at ``x`` and its baseline at ``baseline`` (mm)."""
        pdf = self.pdf
        runs = self.runs(text)
        if len(runs) == 1 and runs[0][0] is not self.fallback:
            pdf.text(x, baseline, text)
            return
        family, style, size = pdf.font_family, pdf.font_style, pdf.font_size_pt
        for font, run in runs:
            if font is self.fallback:
                pdf.set_font("cjk", "", size)
            else:
                pdf.set_font(family, style, size)
            pdf.text(x, baseline, run)
            x += self.width(run)
        pdf.set_font(family, style, size)

    def wrap(self, text: str, width: float) -> list[str]:
        """Split ``text`` into lines no wider than ``width`` mm in the current font."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            if self.width(paragraph) <= width:
                lines.append(paragraph)
                continue
            current = ""
            for word in paragraph.split(" "):
                candidate = f"{current} {word}" if current else word
                if self.width(candidate) <= width:
                    current = candidate
                    continue
                if current:
                    lines.append(current)
                current = word
                if self.width(word) > width:  # a word wider than the column: cut it
                    *pieces, current = self.split_word(word, width)
                    lines.extend(pieces)
            lines.append(current)
        return lines or [""]

    def split_word(self, word: str, width: float) -> list[str]:
        """Cut ``word`` into pieces no wider than ``width`` mm (at least one character each)."""
        pieces: list[str] = []
        current, used = "", 0.0
        for char in word:
            char_w = self.width(char)
            if current and used + char_w > width:
                pieces.append(current)
                current, used = "", 0.0
            current += char
            used += char_w
        pieces.append(current)
        return pieces

    def fit(self, text: str, width: float) -> str:
        """Return ``text``, shortened with an ellipsis if it is wider than ``width`` mm."""
        if self.width(text) <= width:
            return text
        while text and self.width(text + "…") > width:
            text = text[:-1]
        return text.rstrip() + "…"

    def put(self, x: float, y: float, w: float, h: float, text: str, align: str = "L") -> None:
        """Draw one line of ``text`` in the box ``(x, y, w, h)``, vertically centred."""
        if not (self.draw and text):
            return
        if align == "R":
            x += w - self.width(text)
        elif align == "C":
            x += (w - self.width(text)) / 2
        self.text(x, y + 0.5 * h + 0.3 * self.pdf.font_size, text)

    def rule(self, y: float, x1: float = _MARGIN_X, x2: float = _RIGHT,
             color: tuple[int, int, int] = _RULE, width: float = 0.2) -> None:
        if self.draw:
            self.stroke(color, width)
            self.pdf.line(x1, y, x2, y)

    def fill(self, x: float, y: float, w: float, h: float,
             color: tuple[int, int, int] = _SHADE) -> None:
        if self.draw:
            if color != self.state.get("fill"):
                self.pdf.set_fill_color(*color)
                self.state["fill"] = color
            self.pdf.rect(x, y, w, h, style="F")

    # -- flow -------------------------------------------------------------------------------
    def run(self, draw: bool) -> None:
        self.draw, self.page = draw, 0
        self.new_page()
        self.first_page_header()
        self.table()
        self.totals()
        self.notes()
        self.footer()
        self.pages = self.page

    def new_page(self) -> None:
        if self.page:
            self.footer()
        self.page += 1
        if self.draw:
            self.pdf.add_page()
            if self.model.watermark:
                self.watermark(self.model.watermark)
        self.y = _TOP
        if self.page > 1:
            half = _CONTENT_W / 2 - 2
            self.font("B", 9.5)
            self.put(_MARGIN_X, self.y, half, 5, self.fit(self.model.seller_name, half))
            self.font("", 8.5, _MUTED)
            self.put(_RIGHT - half, self.y, half, 5, self.fit(self.model.continued, half), "R")
            self.rule(self.y + 7.5)
            self.y += 12

    def ensure(self, height: float) -> bool:
        """Start a new page unless ``height`` mm fit; return whether a page was started."""
        if self.y + height <= _BOTTOM:
            return False
        self.new_page()
        return True

    def watermark(self, text: str) -> None:
        pdf = self.pdf
        pdf.set_font(self.family, "B", 110)
        self.text_color(_WATERMARK)
        width = self.width(text)
        with pdf.rotation(35, _PAGE_W / 2, _PAGE_H / 2):
            pdf.text(_PAGE_W / 2 - width / 2, _PAGE_H / 2 + 14, text)

    def footer(self) -> None:
        y = _FOOTER_RULE_Y
        self.rule(y)
        self.font("", 7.5, _MUTED)
        left_w = _CONTENT_W - 34
        self.put(_MARGIN_X, y + 1.5, left_w, 5, self.fit(self.model.footer_left, left_w))
        self.put(_RIGHT - 40, y + 1.5, 40, 5, f"Page {self.page} of {self.pages}", "R")

    # -- blocks -----------------------------------------------------------------------------
    def first_page_header(self) -> None:
        m = self.model
        left_w = 104.0
        y = _TOP
        self.font("B", 15)
        for line in self.wrap(m.seller_name, left_w):
            self.put(_MARGIN_X, y, left_w, 7, line)
            y += 7
        y += 0.5
        self.font("", 8.5, _MUTED)
        for text in m.seller_lines:
            for line in self.wrap(text, left_w):
                self.put(_MARGIN_X, y, left_w, 4, line)
                y += 4
        # Title, number and status on the right.
        right_w = _CONTENT_W - left_w - 4
        right_x = _RIGHT - right_w
        ry = _TOP - 1.5
        self.font("B", 24, _ACCENT)
        self.put(right_x, ry, right_w, 10, "INVOICE", "R")
        ry += 11
        if m.is_draft:
            self.font("B", 12, _DRAFT_RED)
        else:
            self.font("", 11, _INK)
        for line in self.wrap(m.number_text, right_w):
            self.put(right_x, ry, right_w, 5.5, line, "R")
            ry += 5.5
        if m.badge:
            label, color = m.badge
            self.font("B", 8.5, color)
            badge_w = self.width(label) + 6
            ry += 1.5
            if self.draw:
                self.stroke(color, 0.4)
                self.pdf.rect(_RIGHT - badge_w, ry, badge_w, 6, style="D",
                              round_corners=True, corner_radius=1.2)
            self.put(_RIGHT - badge_w, ry, badge_w, 6, label, "C")
            ry += 6
        y = max(y, ry) + 5
        self.rule(y, color=_ACCENT, width=0.5)
        y += 6

        # Bill to (left) and the dates (right).
        bill_w = 84.0
        self.font("B", 7.5, _MUTED)
        self.put(_MARGIN_X, y, bill_w, 4, "BILL TO")
        by = y + 5
        self.font("B", 10)
        for line in self.wrap(m.customer_name, bill_w):
            self.put(_MARGIN_X, by, bill_w, 5, line)
            by += 5
        self.font("", 8.5)
        for text in m.customer_lines:
            for line in self.wrap(text, bill_w):
                self.put(_MARGIN_X, by, bill_w, 4.2, line)
                by += 4.2
        meta_x, meta_label_w = _MARGIN_X + bill_w + 8, 28.0
        meta_value_w = _RIGHT - meta_x - meta_label_w
        my = y
        for label, value in m.meta:
            self.font("", 8.5, _MUTED)
            self.put(meta_x, my, meta_label_w, 4.8, label)
            self.font("B" if label == "Invoice number" else "", 8.5,
                      _DRAFT_RED if label == "Invoice number" and m.is_draft else _INK)
            for line in self.wrap(value, meta_value_w):
                self.put(meta_x + meta_label_w, my, meta_value_w, 4.8, line, "R")
                my += 4.8
        self.y = max(by, my) + 6
        if m.headline:
            self.font("B", 13)
            for line in self.wrap(m.headline, _CONTENT_W):
                self.put(_MARGIN_X, self.y, _CONTENT_W, 6.5, line)
                self.y += 6.5
            self.y += 4

    def table_header(self) -> None:
        y = self.y
        self.fill(_MARGIN_X, y, _CONTENT_W, _HEAD_H)
        self.font("B", 8, _MUTED)
        x = _MARGIN_X
        for label, width, align in zip(self.model.header_cells, _COL_W, _COL_ALIGN, strict=True):
            self.put(x + _CELL_PAD_X, y, width - 2 * _CELL_PAD_X, _HEAD_H, label, align)
            x += width
        self.rule(y + _HEAD_H, color=_RULE, width=0.3)
        self.y += _HEAD_H

    def measure_rows(self) -> None:
        self.font("", 9)
        self.rows = []
        for row in self.model.rows:
            cells = [
                self.wrap(text, width - 2 * _CELL_PAD_X)
                for text, width in zip(row, _COL_W, strict=True)
            ]
            self.rows.append(_Row(cells, max(len(c) for c in cells)))

    def table(self) -> None:
        self.ensure(_HEAD_H + _LINE_H + 2 * _ROW_PAD_Y)
        self.table_header()
        self.font("", 9)
        for row in self.rows:
            first = 0
            while first < row.lines:
                room = int((_BOTTOM - self.y - 2 * _ROW_PAD_Y) // _LINE_H)
                fits_whole = first == 0 and row.lines <= room
                fresh_room = int((_BOTTOM - _TOP - 12 - _HEAD_H - 2 * _ROW_PAD_Y) // _LINE_H)
                if not fits_whole and (room < 1 or (first == 0 and row.lines <= fresh_room)):
                    self.new_page()
                    self.table_header()
                    self.font("", 9)
                    continue
                last = min(row.lines, first + max(room, 1))
                self.draw_row(row, first, last)
                first = last

    def draw_row(self, row: _Row, first: int, last: int) -> None:
        y = self.y + _ROW_PAD_Y
        x = _MARGIN_X
        for lines, width, align in zip(row.cells, _COL_W, _COL_ALIGN, strict=True):
            for i, line in enumerate(lines[first:last]):
                self.put(x + _CELL_PAD_X, y + i * _LINE_H, width - 2 * _CELL_PAD_X, _LINE_H,
                         line, align)
            x += width
        self.y += (last - first) * _LINE_H + 2 * _ROW_PAD_Y
        self.rule(self.y, color=_ROW_RULE, width=0.2)

    def totals(self) -> None:
        m = self.model
        heights = {"normal": 6.0, "muted": 5.5, "total": 7.0, "due": 8.5}
        height = sum(heights[t.kind] for t in m.totals) + 4
        self.ensure(height + 2)
        x = _RIGHT - _TOTALS_W
        value_w = _TOTALS_W - _TOTALS_LABEL_W
        y = self.y + 3
        if m.inclusive_note:
            self.font("", 8, _MUTED)
            self.put(_MARGIN_X, y, x - _MARGIN_X - 4, 6, m.inclusive_note)
        for t in m.totals:
            h = heights[t.kind]
            if t.kind == "total":
                self.rule(y, x, _RIGHT, _INK, 0.3)
                self.font("B", 9.5)
            elif t.kind == "due":
                y += 1
                self.fill(x, y, _TOTALS_W, h)
                self.font("B", 10.5)
            elif t.kind == "muted":
                self.font("", 8.5, _MUTED)
            else:
                self.font("", 9)
            self.put(x + _CELL_PAD_X, y, _TOTALS_LABEL_W - _CELL_PAD_X, h, t.label)
            self.put(x + _TOTALS_LABEL_W, y, value_w - _CELL_PAD_X, h, t.value, "R")
            y += h
        self.y = y + 6

    def notes(self) -> None:
        m = self.model
        if not m.notes:
            return
        self.font("", 8.5)
        lines: list[str] = []
        for note in m.notes:
            lines.extend(self.wrap(note, _CONTENT_W))
            lines.append("")
        lines.pop()
        # Keep the heading with the first lines (all of them when the notes are short).
        self.ensure(6 + sum(4.2 if line else 2.0 for line in lines[:4]))
        self.font("B", 9)
        self.put(_MARGIN_X, self.y, _CONTENT_W, 5, "Notes")
        self.y += 6
        self.font("", 8.5)
        for line in lines:
            if self.ensure(4.2):
                self.font("", 8.5)
            self.put(_MARGIN_X, self.y, _CONTENT_W, 4.2, line)
            self.y += 4.2 if line else 2.0


def _render(model: _Model) -> bytes:
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.alias_nb_pages(None)  # type: ignore[arg-type]  # we count pages ourselves
    pdf.set_margins(_MARGIN_X, _TOP, _MARGIN_X)
    pdf.c_margin = 0
    pdf.set_creation_date(model.creation_date)
    pdf.set_title(model.title)
    pdf.set_author(model.seller_name)
    pdf.set_creator("gcp-billing-automation")
    pdf.set_lang(model.lang)
    with _fonts_for(pdf, "".join(model.strings())) as family:
        layout = _Layout(pdf, model, family, fallback=pdf.fonts.get("cjk"))
        layout.measure_rows()
        layout.run(draw=False)
        layout.run(draw=True)
        return bytes(pdf.output())
