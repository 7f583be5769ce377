"""Reading and formatting the values of an invoice mapping for the PDF.

Readers (``text``, ``integer``, ``decimal``, ``moment``, ``mapping``, ``get``) check one value of
the renderer's input and raise ``DataError`` (code ``invalid_invoice``) naming the field when it
is missing or of the wrong type. Formatters turn amounts, quantities, percentages and dates into
the strings a person reads, in the invoice's Babel locale (CLDR patterns), with the few
characters WinAnsi lacks replaced by look-alikes so that most invoices stay on core fonts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, localcontext
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.numbers import format_decimal, parse_pattern

from billing.errors import DataError
from billing.pricing.money import EXACT, format_money, format_unit_amount, to_decimal

# Characters some locales' number formats use that WinAnsi lacks, and harmless stand-ins.
TEXT_FIXES = str.maketrans(
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


def fail(message: str) -> DataError:
    """The error for a bad renderer input: ``DataError("invoice PDF: ...", "invalid_invoice")``."""
    return DataError(f"invoice PDF: {message}", code="invalid_invoice")


def get(mapping: Mapping[str, Any], key: str, where: str = "invoice") -> Any:
    """Return ``mapping[key]``; raise ``DataError`` naming ``where`` when it is absent."""
    try:
        return mapping[key]
    except KeyError:
        raise fail(f"{where} has no {key!r}") from None
    except TypeError:
        raise fail(f"{where} is not a mapping") from None


def mapping(value: object, what: str) -> Mapping[str, Any]:
    """Return ``value`` if it is a mapping; else raise ``DataError``."""
    if not isinstance(value, Mapping):
        raise fail(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def text(value: object, what: str, *, optional: bool = False) -> str:
    """Return a string value stripped, control characters as spaces; ``""`` for an optional None."""
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise fail(f"{what} must be a string, got {type(value).__name__}")
    return value.translate(TEXT_FIXES).translate(_CONTROL).strip()


def integer(value: object, what: str) -> int:
    """Return an int amount in minor units (a bool or a float is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"{what} must be an int in minor units, got {value!r}")
    return value


def decimal(value: object, what: str) -> Decimal:
    """Return a decimal string (or int, or Decimal) as a Decimal; a float is refused."""
    if isinstance(value, float):
        raise fail(f"{what} must be a decimal string, not a float")
    try:
        return to_decimal(value)
    except ValueError as exc:
        raise fail(f"{what}: {exc}") from None


def moment(value: object, what: str, *, optional: bool = False) -> datetime | None:
    """Return an aware datetime (or an RFC 3339 string parsed); None only when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise fail(f"{what} is not an RFC 3339 timestamp: {value!r}") from None
    if not isinstance(value, datetime):
        raise fail(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise fail(f"{what} must be timezone-aware")
    return value


@lru_cache(maxsize=64)
def babel_locale(name: str) -> Locale:
    """The Babel locale ``name`` (``"en_GB"``); ``DataError`` when Babel does not know it."""
    try:
        return Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError):
        raise fail(f"unknown locale {name!r}") from None


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; ``DataError`` when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise fail(f"unknown timezone {name!r}") from None


def local_date(when: datetime, tz: ZoneInfo) -> date:
    """The calendar day holding ``when`` in ``tz``."""
    return when.astimezone(tz).date()


def format_day(day: date, locale_name: str) -> str:
    """A day in the locale's medium format (``"1 Dec 2011"`` in en_GB)."""
    shown = babel_format_date(day, format="medium", locale=babel_locale(locale_name))
    return str(shown).translate(TEXT_FIXES)


def format_quantity(quantity: Decimal, locale: str = "en_GB") -> str:
    """Format a quantity for people: no trailing zeros, locale grouping (``"1,234.5"``, ``"12"``).

    Every significant decimal is kept (``Decimal("0.000001")`` -> ``"0.000001"``).
    """
    with localcontext(EXACT):  # a quantity may have more than 28 digits (never rounded)
        normalized = quantity.normalize()
        exponent = normalized.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            normalized = normalized.quantize(Decimal(1))
        shown = format_decimal(
            normalized, format="#,##0.###", locale=babel_locale(locale), decimal_quantization=False
        )
    return str(shown).translate(TEXT_FIXES)


def format_percent(percent: Decimal, locale: str = "en_GB") -> str:
    """Format a percentage given in percent (``Decimal("5.5")`` -> ``"5.5%"``), every decimal kept."""
    pattern = parse_pattern(_percent_pattern(locale))
    pattern.frac_prec = (0, 6)
    shown = pattern.apply(percent.normalize() / 100, babel_locale(locale), decimal_quantization=False)
    return str(shown).translate(TEXT_FIXES)


@lru_cache(maxsize=64)
def _percent_pattern(locale: str) -> str:
    return str(babel_locale(locale).percent_formats[None].pattern)


def money(amount: int, currency: str, locale: str) -> str:
    """An amount in minor units for people (``"£1,530.00"``); ``DataError`` on a bad currency."""
    try:
        return format_money(amount, currency, locale).translate(TEXT_FIXES)
    except DataError as exc:
        raise fail(exc.message) from None


def unit_price(unit: Decimal, currency: str, locale: str) -> str:
    """A unit price given in minor units, every decimal kept (``"GBP 0.0005"``)."""
    try:
        return format_unit_amount(unit, currency, locale).translate(TEXT_FIXES)
    except DataError as exc:
        raise fail(exc.message) from None
