"""Money: integer minor units, ISO 4217 exponents, one rounding rule, currency formatting.

Every stored amount is an ``int`` in the currency's minor unit (pence for GBP, cents for USD, yen
for JPY which has none, fils for KWD which has three). Unit prices are ``Decimal`` values *in minor
units* (``unit_amount_decimal``, Stripe's convention, up to 12 decimals). A line amount is
``quantity x unit price`` rounded once to a whole minor unit with ROUND_HALF_UP (the contract's
rule); tax is rounded the same way per line. No float ever becomes money: floats that arrive in
event properties are converted through their shortest ``repr`` so ``0.1`` reads as ``Decimal("0.1")``.

Sources: ISO 4217 (list one, minor unit column) for exponents; CLDR via Babel for formatting.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Context, Decimal, InvalidOperation, localcontext
from functools import lru_cache

from babel.numbers import format_decimal, list_currencies, parse_pattern

from billing.errors import DataError

# ISO 4217 minor-unit exponents that are not 2 (every other active code has 2).
_EXPONENT_EXCEPTIONS: dict[str, int] = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}
# Codes in Babel's list that have no minor unit in ISO 4217 (precious metals, testing, SDR...).
_NOT_MONEY = frozenset("XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XTS XUA XXX".split())

EXACT = Context(prec=100)
"""The context of every sum, difference and product of quantities and prices (issue 8 item 6).

Event values are bounded (``to_quantity``: at most 30 integer digits and 30 decimals, so 60
significant digits); a sum of up to 10**18 of them has at most 78, a time-weighted area 92, and
a product with a unit price (12 decimals) whose amount fits Firestore's 64-bit integer at most
61: all exact at 100 digits. Python's default context (28 digits) would round them.
"""
_EXACT = EXACT
_MAX_UNIT_DECIMALS = 12
QUANTITY_INTEGER_DIGITS = 30
QUANTITY_DECIMALS = 30
_QUANTITY_QUANTUM = Decimal(1).scaleb(-QUANTITY_DECIMALS)
_QUANTITY_LIMIT = 10**QUANTITY_INTEGER_DIGITS
MAX_STORED_INTEGER = 2**63 - 1
"""The largest integer Firestore stores (signed 64-bit): no amount in minor units may exceed it."""


@lru_cache(maxsize=1)
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies()) - _NOT_MONEY


def minor_unit_exponent(currency: str) -> int:
    """Return the ISO 4217 exponent of ``currency`` (GBP -> 2, JPY -> 0, KWD -> 3).

    Raises:
        DataError: ``currency`` is not an ISO 4217 code of a currency with a minor unit.

    """
    code = validate_currency(currency)
    return _EXPONENT_EXCEPTIONS.get(code, 2)


def validate_currency(currency: object) -> str:
    """Return ``currency`` if it is a known ISO 4217 code (upper case), else raise ``DataError``."""
    if not isinstance(currency, str) or currency not in _known_currencies():
        raise DataError(f"unknown ISO 4217 currency code {currency!r}", code="unknown_currency")
    return currency


def to_decimal(value: object) -> Decimal:
    """Read an int, float or decimal string as a finite ``Decimal``.

    Floats go through ``repr`` (shortest round-trip form), never through binary expansion.
    Booleans are refused: ``True`` is not a quantity.

    Raises:
        ValueError: the value is not numeric, or is NaN or infinite.

    """
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise ValueError(f"not a number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def to_quantity(value: object) -> Decimal:
    """Read an event value as a quantity: finite, ``|value| < 10**30``, at most 30 decimals.

    The bounds keep every aggregation exact in ``EXACT`` (issue 8 items 3 and 6): a value out of
    them (``"1e1000000"``, ``10**30``, ``1e-31``) is refused as bad data, as a non-numeric one
    is. Trailing zeros do not count as decimals (``"1.500...0"`` reads as ``1.5``).

    Raises:
        ValueError: not numeric (see ``to_decimal``), or out of range (the message says which).

    """
    if type(value) is int and -_QUANTITY_LIMIT < value < _QUANTITY_LIMIT:
        return Decimal(value)  # the common case, already in range
    number = to_decimal(value)
    if not number:
        return Decimal(0)
    if number.adjusted() >= QUANTITY_INTEGER_DIGITS:
        raise ValueError(f"out of range: {short_repr(value)} (|value| must be below 10^30)")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -QUANTITY_DECIMALS:
        exact = number.quantize(_QUANTITY_QUANTUM, context=EXACT)
        if exact != number:
            raise ValueError(f"out of range: {short_repr(value)} (more than 30 decimal places)")
        number = exact
    return number


def short_repr(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages quoting bad data."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_unit_amount(value: object, *, what: str = "unit_amount_decimal") -> Decimal:
    """Parse a unit price in minor units: a decimal string (or int) with at most 12 decimals.

    Raises:
        DataError: not a finite decimal, negative, or more than 12 decimal places.

    """
    if isinstance(value, float):
        raise DataError(f"{what} must be a decimal string, not a float", code="invalid_price")
    try:
        amount = to_decimal(value)
    except ValueError as exc:
        raise DataError(f"{what}: {exc}", code="invalid_price") from None
    if amount < 0:
        raise DataError(f"{what} must not be negative, got {value!r}", code="invalid_price")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > _MAX_UNIT_DECIMALS:
        raise DataError(f"{what} has more than 12 decimals: {value!r}", code="invalid_price")
    return amount


def round_minor(value: Decimal) -> int:
    """Round an exact amount in minor units to a whole minor unit, ROUND_HALF_UP (the contract)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=_EXACT))


def multiply(quantity: Decimal, unit_amount: Decimal) -> Decimal:
    """Return ``quantity x unit_amount`` exactly (no rounding; 100 significant digits)."""
    with localcontext(_EXACT):
        return quantity * unit_amount


def line_amount(quantity: Decimal, unit_amount: Decimal) -> int:
    """Return a line's amount in minor units: ``quantity x unit_amount`` rounded once, HALF_UP."""
    return round_minor(multiply(quantity, unit_amount))


def ceil_div(numerator: Decimal, denominator: Decimal) -> Decimal:
    """Return the smallest integer >= ``numerator / denominator`` (e.g. packages started)."""
    with localcontext(_EXACT):
        return (numerator / denominator).to_integral_value(rounding=ROUND_CEILING)


def minor_to_major(amount: int, currency: str) -> Decimal:
    """Convert minor units to major units exactly: ``1530`` GBP -> ``Decimal("15.30")``."""
    return Decimal(amount).scaleb(-minor_unit_exponent(currency), context=_EXACT)


def format_money(amount: int, currency: str, locale: str = "en_GB") -> str:
    """Format an amount in minor units for people, with the currency's ISO decimals.

    ``format_money(153000, "GBP") == "£1,530.00"``, ``format_money(1500, "JPY") == "¥1,500"``,
    ``format_money(1234, "KWD", "en_GB") == "KWD 1.234"`` (CLDR placement and symbols via Babel).
    """
    exponent = minor_unit_exponent(currency)
    pattern = parse_pattern(_currency_pattern(locale))
    pattern.frac_prec = (exponent, exponent)
    return str(
        pattern.apply(minor_to_major(amount, currency), locale, currency=currency, currency_digits=False)
    ).replace("\xa0", " ")


@lru_cache(maxsize=32)
def _currency_pattern(locale: str) -> str:
    from babel import Locale

    return str(Locale.parse(locale).currency_formats["standard"].pattern)


def format_unit_amount(unit_amount: Decimal, currency: str, locale: str = "en_GB") -> str:
    """Format a unit price in minor units as ``"GBP 80.00"``: code, then major units.

    Shows at least the currency's ISO decimals and more when the price has them
    (``Decimal("0.5")`` pence -> ``"GBP 0.005"``), so the printed price is the one charged.
    """
    exponent = minor_unit_exponent(currency)
    major = unit_amount.scaleb(-exponent, context=_EXACT).normalize(_EXACT)
    tail = major.as_tuple().exponent
    decimals = max(exponent, -tail if isinstance(tail, int) else 0)
    number = format_decimal(
        major,
        format="#,##0." + "0" * decimals if decimals else "#,##0",
        locale=locale,
        decimal_quantization=False,
    )
    return f"{currency} {number}"


TWELVE_PLACES = Decimal(1).scaleb(-12)
"""The finest unit price the contract allows (``unit_amount_decimal``: up to 12 decimals)."""


def decimal_text(value: Decimal) -> str:
    """Plain decimal text, no exponent and no trailing zeros: ``"12"``, ``"0.5"``, ``"0.0000001"``.

    Exact up to 100 significant digits (``EXACT``), so a quantity is stored as it was counted.
    """
    normal = value.normalize(EXACT)
    if normal == normal.to_integral_value(context=EXACT):
        return format(normal.quantize(Decimal(1), context=EXACT), "f")
    return format(normal, "f")
