"""Charge models: turn a charge map and a quantity into priced invoice lines.

A plan's ``charges`` are maps (``CONTRACT.md``). ``{"type": "fixed", ...}`` is a recurring fee;
``{"type": "usage", "meter", "model", ...}`` prices a meter's quantity with one of the models in
``USAGE_MODELS``. Each model returns ``Part``s (label, quantity, unit price in minor units); the
caller turns each part into a line whose amount is ``quantity x unit price`` rounded once
(ROUND_HALF_UP, ``shared.money.line_amount``), so every line satisfies the contract's equation.

Models (Stripe Billing's tiered pricing and Lago's charge models):
- ``standard``: every billable unit at ``unit_amount_decimal``.
- ``graduated``: each tier prices the units that fall inside it (``up_to`` inclusive, ``null`` =
  no limit); a tier's ``flat_amount_decimal`` is charged once the tier is entered; at zero usage
  the first tier's flat amount is still charged unless that tier's unit price is zero.
- ``volume``: all billable units at the price of the tier the total falls in, plus that tier's flat
  amount (zero usage falls in the first tier, same flat-amount rule as graduated).
- ``package``: ``ceil(billable / package_size)`` packages at ``unit_amount_decimal`` each.
``free_units`` (optional, every model) is subtracted from the quantity before pricing.

Errors: ``DataError`` for an unknown type or model, or a malformed price, tier or package size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.errors import DataError
from shared.money import ceil_div, parse_unit_amount, to_decimal


@dataclass(frozen=True)
class Part:
    """One priced piece of a charge before rounding.

    Attributes:
        label: what the piece is (``""`` for the plain line, ``"tier 2: 6-10"``, ``"flat fee"``).
        quantity: units (or packages, or 1 for a flat fee), Decimal.
        unit_amount: price per unit in minor units, Decimal.
        flat: True for a flat fee.

    """

    label: str
    quantity: Decimal
    unit_amount: Decimal
    flat: bool = False


@dataclass(frozen=True)
class Tier:
    """One tier: units up to ``up_to`` inclusive (``None`` = no limit), unit and flat prices."""

    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal


def _zero() -> Decimal:
    return Decimal(0)


def billable_quantity(charge: Mapping[str, Any], quantity: Decimal) -> Decimal:
    """Return ``max(0, quantity - free_units)``; ``DataError`` for a negative or non-numeric value."""
    free_raw = charge.get("free_units")
    if free_raw is None:
        return max(quantity, _zero())
    try:
        free = to_decimal(free_raw)
    except ValueError:
        raise DataError(f"free_units must be a number, got {free_raw!r}",
                        code="invalid_charge") from None
    if free < 0:
        raise DataError("free_units must not be negative", code="invalid_charge")
    return max(quantity - free, _zero())


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
            if up_to <= previous and not (index == 0 and up_to > 0):
                raise DataError(f"tier {index + 1}: up_to must increase", code="invalid_charge")
            previous = up_to
        tiers.append(Tier(
            up_to=up_to,
            unit_amount=parse_unit_amount(item.get("unit_amount_decimal", "0"),
                                          what=f"tier {index + 1} unit_amount_decimal"),
            flat_amount=parse_unit_amount(item.get("flat_amount_decimal", "0"),
                                          what=f"tier {index + 1} flat_amount_decimal"),
        ))
    if tiers[-1].up_to is not None:
        raise DataError("the last tier must have up_to null (no upper limit)",
                        code="invalid_charge")
    return tiers


def _tier_label(index: int, lower: Decimal, tier: Tier) -> str:
    first = _fmt(lower + 1) if index else "1"
    upper = _fmt(tier.up_to) if tier.up_to is not None else "+"
    return f"tier {index + 1}: {first}-{upper}" if tier.up_to is not None else (
        f"tier {index + 1}: {first}{upper}")


def _fmt(value: Decimal) -> str:
    normal = value.normalize()
    return format(normal, "f") if normal == normal.to_integral_value() else str(normal)


def _standard(charge: Mapping[str, Any], billable: Decimal) -> list[Part]:
    unit = parse_unit_amount(charge.get("unit_amount_decimal"))
    return [Part("", billable, unit)]


def _graduated(charge: Mapping[str, Any], billable: Decimal) -> list[Part]:
    tiers = parse_tiers(charge)
    parts: list[Part] = []
    lower = Decimal(0)
    for index, tier in enumerate(tiers):
        upper = tier.up_to
        in_tier = (min(billable, upper) if upper is not None else billable) - lower
        label = _tier_label(index, lower, tier)
        if in_tier > 0:
            parts.append(Part(label, in_tier, tier.unit_amount))
            if tier.flat_amount:
                parts.append(Part(f"{label} flat fee", Decimal(1), tier.flat_amount, flat=True))
        elif index == 0 and tier.flat_amount and tier.unit_amount != 0:
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
            label = _tier_label(index, lower, tier)
            parts = [Part(label, billable, tier.unit_amount)]
            charge_flat = billable > 0 or (index == 0 and tier.unit_amount != 0)
            if tier.flat_amount and charge_flat:
                parts.append(Part(f"{label} flat fee", Decimal(1), tier.flat_amount, flat=True))
            return parts
        lower = tier.up_to
    raise AssertionError("parse_tiers guarantees an unbounded last tier")


def _package(charge: Mapping[str, Any], billable: Decimal) -> list[Part]:
    size_raw = charge.get("package_size")
    try:
        size = to_decimal(size_raw)
    except ValueError:
        raise DataError(f"package_size must be a number, got {size_raw!r}",
                        code="invalid_charge") from None
    if size <= 0:
        raise DataError("package_size must be positive", code="invalid_charge")
    unit = parse_unit_amount(charge.get("unit_amount_decimal"))
    packages = ceil_div(billable, size)
    return [Part(f"{_fmt(packages)} x {_fmt(size)}", packages, unit)]


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
    return pricer(charge, billable_quantity(charge, quantity))


def fixed_parts(charge: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """Return ``(quantity, unit_amount)`` of a fixed charge (quantity defaults to 1).

    Raises:
        DataError: a malformed or negative quantity or price.

    """
    unit = parse_unit_amount(charge.get("unit_amount_decimal"))
    raw_quantity = charge.get("quantity", 1)
    try:
        quantity = to_decimal(raw_quantity)
    except ValueError:
        raise DataError(f"fixed charge quantity must be a number, got {raw_quantity!r}",
                        code="invalid_charge") from None
    if quantity < 0:
        raise DataError("fixed charge quantity must not be negative", code="invalid_charge")
    return quantity, unit


def charge_type(charge: Mapping[str, Any]) -> str:
    """Return ``"fixed"`` or ``"usage"``; ``DataError`` for anything else."""
    kind = charge.get("type")
    if kind not in ("fixed", "usage"):
        raise DataError(f"unknown charge type {kind!r}; expected 'fixed' or 'usage'",
                        code="invalid_charge")
    return str(kind)
