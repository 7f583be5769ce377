"""Charge models: turn a charge map and a quantity into priced pieces of invoice lines.

Shapes and units
----------------
A plan's ``charges`` are maps (``CONTRACT.md``). ``{"type": "fixed", "description",
"unit_amount_decimal", "quantity"}`` is a recurring fee (prorated by ``billing.pricing.proration``, never
here); ``{"type": "usage", "meter", "model", ...}`` prices a meter's quantity with one of the
models in ``USAGE_MODELS``. Every price is a ``Decimal`` in the currency's *minor* unit
(``"700"`` = GBP 7.00; up to 12 decimals, ``billing.pricing.money.parse_unit_amount``); quantities are
``Decimal`` units of the meter. Each model returns ``Part``s (label, quantity, unit price); the
invoice builder turns each part into one line whose amount is ``quantity x unit price`` rounded
once (ROUND_HALF_UP, ``billing.pricing.money.line_amount``), so every line satisfies the contract's
equation and a tiered charge is rounded per tier line.

Models (source: Stripe Billing's tiered pricing, ``tiers_mode`` ``graduated``/``volume`` with
``up_to`` inclusive and ``flat_amount``; Lago's ``standard``, ``graduated``, ``volume`` and
``package`` charge models; the rules below are issue 3's):

- ``standard``: every billable unit at ``unit_amount_decimal``.
- ``graduated``: each tier prices the units that fall inside it; ``up_to`` is inclusive and
  ``null`` (only on the last tier, which is required) means no limit. A tier's
  ``flat_amount_decimal`` is charged once the tier is entered (it holds at least part of one
  unit). At zero usage the first tier's flat amount is still charged, unless that tier is priced
  at zero (its ``unit_amount_decimal`` is 0: a free allowance whose flat fee is an entry fee,
  charged only once usage starts). Stripe's example, tiers 1-5 at 7.00, 6-10 at 6.50, 11+ at
  6.00: 6 units = 5 x 7.00 + 1 x 6.50 = 41.50.
- ``volume``: all billable units at the unit price of the tier the total falls in, plus that
  tier's flat amount. Zero usage falls in the first tier, with the same flat-amount rule as
  graduated. Same tiers: 6 units = 6 x 6.50 = 39.00; 5 units = 35.00; 11 units = 66.00.
- ``package``: ``ceil(billable / package_size)`` packages at ``unit_amount_decimal`` each (a
  partial package is a whole one; 0 units = 0 packages). 21 units in packages of 10 at 5.00 =
  3 packages = 15.00.

``free_units`` (optional on every usage model, a non-negative number): an allowance subtracted
from the meter's quantity before the model sees it, ``billable = max(0, quantity - free_units)``
(Lago's ``free_units`` of the package model, applied uniformly). So on tiered models the free
units shift the tiers: with ``free_units`` 3, 9 units are priced as 6 units (graduated 41.50),
and the tier of a volume charge is the one the *billable* total falls in. A negative meter
result (a ``sum`` of refunds) bills 0 units. With ``group_by`` each group is priced on its own,
free units and first-tier flat fee included.

Every usage charge yields at least one part (a zero-quantity line shows a charge with no usage).
Quantities are subtracted and compared in ``billing.pricing.money.EXACT`` (100 digits), never rounded.

Errors: ``DataError`` (code ``invalid_charge`` or ``invalid_price``) for an unknown type or
model, a malformed or negative price, quantity or ``free_units``, tiers out of order, a tier with
neither price, a missing unbounded last tier, or a package size that is not positive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from billing.errors import DataError
from billing.pricing.money import EXACT, ceil_div, decimal_text, parse_unit_amount, to_decimal


@dataclass(frozen=True)
class Part:
    """One priced piece of a charge before rounding.

    Attributes:
        label: what the piece is (``""`` for the plain line, ``"tier 2: 6-10"``, ``"flat fee"``).
        quantity: units (or packages, or 1 for a flat fee), Decimal.
        unit_amount: price per unit in minor units, Decimal.
        flat: True for a flat fee.
        unit: what one unit of ``quantity`` is when it is not the meter's unit
            (``"packages of 10"``), else ``None``.

    """

    label: str
    quantity: Decimal
    unit_amount: Decimal
    flat: bool = False
    unit: str | None = None


@dataclass(frozen=True)
class Tier:
    """One tier: units up to ``up_to`` inclusive (``None`` = no limit), unit and flat prices."""

    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal


def _zero() -> Decimal:
    return Decimal(0)


def _or_zero(value: object) -> object:
    return "0" if value is None else value


def _charge_number(raw: object, what: str, *, positive: bool = False) -> Decimal:
    """Read a charge's numeric setting: >= 0 (or > 0 with ``positive``), else ``DataError``."""
    try:
        value = to_decimal(raw)
    except ValueError:
        raise DataError(f"{what} must be a number, got {raw!r}", code="invalid_charge") from None
    if value < 0 or (positive and value == 0):
        raise DataError(f"{what} must {'be positive' if positive else 'not be negative'}",
                        code="invalid_charge")
    return value


def billable_quantity(charge: Mapping[str, Any], quantity: Decimal) -> Decimal:
    """Return ``max(0, quantity - free_units)``; ``DataError`` for a negative or non-numeric value."""
    free_raw = charge.get("free_units")
    if free_raw is None:
        return max(quantity, _zero())
    return max(EXACT.subtract(quantity, _charge_number(free_raw, "free_units")), _zero())


def parse_tiers(charge: Mapping[str, Any]) -> list[Tier]:
    """Parse and check ``tiers``: strictly increasing ``up_to``, only the last one ``null``.

    Raises:
        DataError: missing or empty tiers, bad numbers, or bounds out of order.

    """
    raw = charge.get("tiers")
    if not isinstance(raw, list) or not raw:
        raise DataError("tiered charge needs a non-empty 'tiers' list", code="invalid_charge")
    tiers: list[Tier] = []
    previous: Decimal = Decimal(0)
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise DataError(f"tier {index + 1} must be a map", code="invalid_charge")
        up_raw = item.get("up_to")
        up_to: Decimal | None
        if up_raw is None:
            if index != len(raw) - 1:
                raise DataError("only the last tier may have up_to null", code="invalid_charge")
            up_to = None
        else:
            try:
                up_to = to_decimal(up_raw)
            except ValueError:
                raise DataError(f"tier {index + 1}: up_to is not a number",
                                code="invalid_charge") from None
            if up_to <= previous:
                raise DataError(f"tier {index + 1}: up_to must be positive and increase",
                                code="invalid_charge")
            previous = up_to
        if item.get("unit_amount_decimal") is None and item.get("flat_amount_decimal") is None:
            raise DataError(f"tier {index + 1} needs unit_amount_decimal or flat_amount_decimal",
                            code="invalid_charge")
        tiers.append(Tier(
            up_to=up_to,
            unit_amount=parse_unit_amount(_or_zero(item.get("unit_amount_decimal")),
                                          what=f"tier {index + 1} unit_amount_decimal"),
            flat_amount=parse_unit_amount(_or_zero(item.get("flat_amount_decimal")),
                                          what=f"tier {index + 1} flat_amount_decimal"),
        ))
    if tiers[-1].up_to is not None:
        raise DataError("the last tier must have up_to null (no upper limit)",
                        code="invalid_charge")
    return tiers


def _whole_bounds(tiers: list[Tier]) -> bool:
    return all(t.up_to is None or t.up_to == t.up_to.to_integral_value() for t in tiers)


def _tier_label(index: int, lower: Decimal, tier: Tier, whole: bool) -> str:
    """``"tier 2: 6-10"``, ``"tier 3: 11+"``; with a fractional bound ``"tier 2: over 0.5 up to 2"``."""
    upper = tier.up_to
    if whole:
        first = decimal_text(lower + 1)
        span = f"{first}-{decimal_text(upper)}" if upper is not None else f"{first}+"
    elif upper is None:
        span = f"over {decimal_text(lower)}"
    elif index == 0:
        span = f"up to {decimal_text(upper)}"
    else:
        span = f"over {decimal_text(lower)} up to {decimal_text(upper)}"
    return f"tier {index + 1}: {span}"


def _flat_due(index: int, tier: Tier, units_in_tier: Decimal) -> bool:
    """Whether a tier's flat amount is charged.

    Once the tier is entered, and for the first tier even at zero usage unless that tier is
    priced at zero (unit price 0).
    """
    if not tier.flat_amount:
        return False
    return units_in_tier > 0 or (index == 0 and tier.unit_amount != 0)


def _standard(charge: Mapping[str, Any], billable: Decimal) -> list[Part]:
    unit = parse_unit_amount(charge.get("unit_amount_decimal"))
    return [Part("", billable, unit)]


def _graduated(charge: Mapping[str, Any], billable: Decimal) -> list[Part]:
    tiers = parse_tiers(charge)
    whole = _whole_bounds(tiers)
    parts: list[Part] = []
    lower = Decimal(0)
    for index, tier in enumerate(tiers):
        upper = tier.up_to
        in_tier = max((billable if upper is None else min(billable, upper)) - lower, _zero())
        label = _tier_label(index, lower, tier, whole)
        if in_tier > 0 or index == 0:
            parts.append(Part(label, in_tier, tier.unit_amount))
        if _flat_due(index, tier, in_tier):
            parts.append(Part(f"{label} flat fee", Decimal(1), tier.flat_amount, flat=True))
        if upper is None or billable <= upper:
            break
        lower = upper
    return parts


def _volume(charge: Mapping[str, Any], billable: Decimal) -> list[Part]:
    tiers = parse_tiers(charge)
    lower = Decimal(0)
    for index, tier in enumerate(tiers):
        if tier.up_to is None or billable <= tier.up_to:
            label = _tier_label(index, lower, tier, _whole_bounds(tiers))
            parts = [Part(label, billable, tier.unit_amount)]
            if _flat_due(index, tier, billable):
                parts.append(Part(f"{label} flat fee", Decimal(1), tier.flat_amount, flat=True))
            return parts
        lower = tier.up_to
    raise AssertionError("parse_tiers guarantees an unbounded last tier")


def _package(charge: Mapping[str, Any], billable: Decimal) -> list[Part]:
    size = _charge_number(charge.get("package_size"), "package_size", positive=True)
    unit = parse_unit_amount(charge.get("unit_amount_decimal"))
    packages = ceil_div(billable, size)
    return [Part(f"{decimal_text(billable)} units in packages of {decimal_text(size)}", packages, unit,
                 unit=f"packages of {decimal_text(size)}")]


USAGE_MODELS: dict[str, Callable[[Mapping[str, Any], Decimal], list[Part]]] = {
    "standard": _standard,
    "graduated": _graduated,
    "volume": _volume,
    "package": _package,
}


def price_usage(charge: Mapping[str, Any], quantity: Decimal) -> list[Part]:
    """Price ``quantity`` (the meter's result) with the charge's model, after ``free_units``.

    Raises:
        DataError: unknown model or malformed charge.

    """
    model = charge.get("model")
    pricer = USAGE_MODELS.get(model) if isinstance(model, str) else None
    if pricer is None:
        raise DataError(f"unknown usage charge model {model!r}; expected one of "
                        f"{', '.join(USAGE_MODELS)}", code="invalid_charge")
    with localcontext(EXACT):  # tier arithmetic on quantities of any length, never rounded
        return pricer(charge, billable_quantity(charge, quantity))


def fixed_parts(charge: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """Return ``(quantity, unit_amount)`` of a fixed charge (quantity defaults to 1).

    Raises:
        DataError: a malformed or negative quantity or price.

    """
    unit = parse_unit_amount(charge.get("unit_amount_decimal"))
    return _charge_number(charge.get("quantity", 1), "fixed charge quantity"), unit


def charge_type(charge: Mapping[str, Any]) -> str:
    """Return ``"fixed"`` or ``"usage"``; ``DataError`` for anything else."""
    kind = charge.get("type")
    if kind not in ("fixed", "usage"):
        raise DataError(f"unknown charge type {kind!r}; expected 'fixed' or 'usage'",
                        code="invalid_charge")
    return str(kind)
