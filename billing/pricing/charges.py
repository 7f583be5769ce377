"""Charge models: typed charges, checked once when a plan is read, then priced per quantity.

Shapes and units
----------------
A plan's ``charges`` are maps in Firestore (``CONTRACT.md``); ``parse_charge`` turns each into
one frozen record, when the plan is parsed (``billing.records.Plan.parse``), so a malformed
charge fails the plan, never the pricing. ``{"type": "fixed", "description",
"unit_amount_decimal", "quantity"}`` is a ``FixedCharge``: a recurring fee (prorated by
``billing.pricing.proration`` in the invoice builder, never here). ``{"type": "usage", "meter",
"model", ...}`` is one of the usage charges below (``USAGE_MODELS``), which price a meter's
quantity. Every price is a ``Decimal`` in the currency's *minor* unit (``"700"`` = GBP 7.00; up to
12 decimals, ``billing.pricing.money.parse_unit_amount``); quantities are ``Decimal`` units of the
meter. ``UsageCharge.price`` returns ``Part``s (label, quantity, unit price); the invoice builder
turns each part into one line whose amount is ``quantity x unit price`` rounded once
(ROUND_HALF_UP, ``billing.pricing.money.line_amount``), so every line satisfies the contract's
equation and a tiered charge is rounded per tier line.

Models (one class per model, after Lago's ``ChargeModels::StandardService``,
``GraduatedService``, ``VolumeService`` and ``PackageService``; tiers after Stripe Billing's
``tiers_mode`` ``graduated``/``volume`` with ``up_to`` inclusive and ``flat_amount``; the rules
below are issue 3's):

- ``StandardCharge`` (``standard``): every billable unit at ``unit_amount_decimal``.
- ``GraduatedCharge`` (``graduated``): each tier prices the units that fall inside it; ``up_to``
  is inclusive and ``null`` (only on the last tier, which is required) means no limit. A tier's
  ``flat_amount_decimal`` is charged once the tier is entered (it holds at least part of one
  unit). At zero usage the first tier's flat amount is still charged, unless that tier is priced
  at zero (its ``unit_amount_decimal`` is 0: a free allowance whose flat fee is an entry fee,
  charged only once usage starts). Stripe's example, tiers 1-5 at 7.00, 6-10 at 6.50, 11+ at
  6.00: 6 units = 5 x 7.00 + 1 x 6.50 = 41.50.
- ``VolumeCharge`` (``volume``): all billable units at the unit price of the tier the total falls
  in, plus that tier's flat amount. Zero usage falls in the first tier, with the same flat-amount
  rule as graduated. Same tiers: 6 units = 6 x 6.50 = 39.00; 5 units = 35.00; 11 units = 66.00.
- ``PackageCharge`` (``package``): ``ceil(billable / package_size)`` packages at
  ``unit_amount_decimal`` each (a partial package is a whole one; 0 units = 0 packages). 21 units
  in packages of 10 at 5.00 = 3 packages = 15.00.

``free_units`` (optional on every usage model, a non-negative number): an allowance subtracted
from the meter's quantity before the model sees it, ``billable = max(0, quantity - free_units)``
(Lago's ``free_units`` of the package model, applied uniformly). So on tiered models the free
units shift the tiers: with ``free_units`` 3, 9 units are priced as 6 units (graduated 41.50),
and the tier of a volume charge is the one the *billable* total falls in. A negative meter
result (a ``sum`` of refunds) bills 0 units. With ``group_by`` each group is priced on its own,
free units and first-tier flat fee included.

Every usage charge yields at least one part (a zero-quantity line shows a charge with no usage).
Quantities are subtracted and compared in ``billing.pricing.money.EXACT`` (100 digits), never rounded.

Errors (``parse_charge``, at plan parsing): ``DataError`` (code ``invalid_charge`` or
``invalid_price``) for an unknown type or model, a malformed or negative price, quantity or
``free_units``, tiers out of order, a tier with neither price, a missing unbounded last tier, or a
package size that is not positive; ``unknown_meter`` for a usage charge whose ``meter`` is not a
meter code (a string). Whether the meter exists is the invoice builder's question (meters are
documents of their own). Pricing a parsed charge raises nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, ClassVar

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
        raise DataError(
            f"{what} must {'be positive' if positive else 'not be negative'}", code="invalid_charge"
        )
    return value


def _description(data: Mapping[str, Any]) -> str | None:
    """The charge's ``description`` as text, ``None`` when absent or empty (a default applies)."""
    value = data.get("description")
    return str(value) if value else None


def _parse_tier(item: object, index: int, last: bool, previous: Decimal) -> Tier:
    """One tier map; ``previous`` is the bound of the tier before (0 for the first)."""
    if not isinstance(item, Mapping):
        raise DataError(f"tier {index + 1} must be a map", code="invalid_charge")
    up_raw = item.get("up_to")
    up_to: Decimal | None = None
    if up_raw is None:
        if not last:
            raise DataError("only the last tier may have up_to null", code="invalid_charge")
    else:
        try:
            up_to = to_decimal(up_raw)
        except ValueError:
            raise DataError(f"tier {index + 1}: up_to is not a number", code="invalid_charge") from None
        if up_to <= previous:
            raise DataError(f"tier {index + 1}: up_to must be positive and increase", code="invalid_charge")
    if item.get("unit_amount_decimal") is None and item.get("flat_amount_decimal") is None:
        raise DataError(
            f"tier {index + 1} needs unit_amount_decimal or flat_amount_decimal", code="invalid_charge"
        )
    return Tier(
        up_to=up_to,
        unit_amount=parse_unit_amount(
            _or_zero(item.get("unit_amount_decimal")), what=f"tier {index + 1} unit_amount_decimal"
        ),
        flat_amount=parse_unit_amount(
            _or_zero(item.get("flat_amount_decimal")), what=f"tier {index + 1} flat_amount_decimal"
        ),
    )


def parse_tiers(charge: Mapping[str, Any]) -> tuple[Tier, ...]:
    """Parse and check ``tiers``: strictly increasing ``up_to``, only the last one ``null``.

    Raises:
        DataError: (``invalid_charge``, ``invalid_price``) missing or empty tiers, bad numbers,
            or bounds out of order.

    """
    raw = charge.get("tiers")
    if not isinstance(raw, list) or not raw:
        raise DataError("tiered charge needs a non-empty 'tiers' list", code="invalid_charge")
    tiers: list[Tier] = []
    previous = Decimal(0)
    for index, item in enumerate(raw):
        tier = _parse_tier(item, index, index == len(raw) - 1, previous)
        previous = tier.up_to if tier.up_to is not None else previous
        tiers.append(tier)
    if tiers[-1].up_to is not None:
        raise DataError("the last tier must have up_to null (no upper limit)", code="invalid_charge")
    return tuple(tiers)


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


@dataclass(frozen=True, kw_only=True)
class FixedCharge:
    """``{"type": "fixed"}``: a recurring fee of ``quantity`` x ``unit_amount`` minor units.

    ``quantity`` defaults to 1; ``description`` ``None`` prints "Subscription fee". The invoice
    builder prorates it over the period's active days (``billing.pricing.proration``).
    """

    description: str | None
    unit_amount: Decimal
    quantity: Decimal = Decimal(1)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> FixedCharge:
        """Parse a fixed charge map.

        Raises:
            DataError: (``invalid_price``, ``invalid_charge``) a malformed or negative price or
                quantity.

        """
        unit = parse_unit_amount(data.get("unit_amount_decimal"))
        quantity = _charge_number(data.get("quantity", 1), "fixed charge quantity")
        return cls(description=_description(data), unit_amount=unit, quantity=quantity)


@dataclass(frozen=True, kw_only=True)
class UsageCharge(ABC):
    """``{"type": "usage", "meter", "model", ...}``: prices the quantity ``meter`` measured.

    ``description`` ``None`` prints the meter's name; ``free_units`` (``None``: none) is taken off
    the quantity first. Subclasses (one per ``model``) implement ``price_billable``.
    """

    model: ClassVar[str]
    meter: str
    description: str | None = None
    free_units: Decimal | None = None

    def billable(self, quantity: Decimal) -> Decimal:
        """``max(0, quantity - free_units)``, exactly (``EXACT``)."""
        if self.free_units is None:
            return max(quantity, _zero())
        return max(EXACT.subtract(quantity, self.free_units), _zero())

    def price(self, quantity: Decimal) -> list[Part]:
        """Price ``quantity`` (the meter's result, Decimal units) after ``free_units``."""
        with localcontext(EXACT):  # tier arithmetic on quantities of any length, never rounded
            return self.price_billable(self.billable(quantity))

    @abstractmethod
    def price_billable(self, billable: Decimal) -> list[Part]:
        """The parts for ``billable`` (>= 0) units; every model gives at least one part."""


@dataclass(frozen=True, kw_only=True)
class StandardCharge(UsageCharge):
    """``standard`` (Lago's ``StandardService``): every billable unit at ``unit_amount``."""

    model: ClassVar[str] = "standard"
    unit_amount: Decimal

    def price_billable(self, billable: Decimal) -> list[Part]:
        """One part: ``billable`` units at ``unit_amount``."""
        return [Part("", billable, self.unit_amount)]


@dataclass(frozen=True, kw_only=True)
class GraduatedCharge(UsageCharge):
    """``graduated`` (Lago's ``GraduatedService``): each tier prices the units inside it."""

    model: ClassVar[str] = "graduated"
    tiers: tuple[Tier, ...]

    def price_billable(self, billable: Decimal) -> list[Part]:
        """One part per tier entered (tier 1 always), plus each flat fee due."""
        whole = _whole_bounds(self.tiers)
        parts: list[Part] = []
        lower = Decimal(0)
        for index, tier in enumerate(self.tiers):
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


@dataclass(frozen=True, kw_only=True)
class VolumeCharge(UsageCharge):
    """``volume`` (Lago's ``VolumeService``): every unit at the price of the tier reached."""

    model: ClassVar[str] = "volume"
    tiers: tuple[Tier, ...]

    def price_billable(self, billable: Decimal) -> list[Part]:
        """One part for all units at the reached tier's price, plus its flat fee when due."""
        lower = Decimal(0)
        for index, tier in enumerate(self.tiers):
            if tier.up_to is None or billable <= tier.up_to:
                label = _tier_label(index, lower, tier, _whole_bounds(self.tiers))
                parts = [Part(label, billable, tier.unit_amount)]
                if _flat_due(index, tier, billable):
                    parts.append(Part(f"{label} flat fee", Decimal(1), tier.flat_amount, flat=True))
                return parts
            lower = tier.up_to
        raise AssertionError("parse_tiers guarantees an unbounded last tier")


@dataclass(frozen=True, kw_only=True)
class PackageCharge(UsageCharge):
    """``package`` (Lago's ``PackageService``): whole packages of ``package_size`` units."""

    model: ClassVar[str] = "package"
    package_size: Decimal
    unit_amount: Decimal

    def price_billable(self, billable: Decimal) -> list[Part]:
        """One part: ``ceil(billable / package_size)`` packages at ``unit_amount``."""
        size = decimal_text(self.package_size)
        return [
            Part(
                f"{decimal_text(billable)} units in packages of {size}",
                ceil_div(billable, self.package_size),
                self.unit_amount,
                unit=f"packages of {size}",
            )
        ]


def _whole_bounds(tiers: tuple[Tier, ...]) -> bool:
    return all(t.up_to is None or t.up_to == t.up_to.to_integral_value() for t in tiers)


UsageModelCharge = StandardCharge | GraduatedCharge | VolumeCharge | PackageCharge
"""A parsed usage charge, one class per model."""

Charge = FixedCharge | UsageModelCharge
"""A parsed charge of a plan (``billing.records.Plan.charges``)."""

USAGE_MODELS: dict[str, type[UsageCharge]] = {
    "standard": StandardCharge,
    "graduated": GraduatedCharge,
    "volume": VolumeCharge,
    "package": PackageCharge,
}


def parse_usage_charge(data: Mapping[str, Any]) -> UsageModelCharge:
    """Parse a ``{"type": "usage"}`` charge map into its model's class.

    Checks run in this order: ``meter``, ``model``, ``free_units``, then the model's settings.

    Raises:
        DataError: ``unknown_meter`` when ``meter`` is not a string; ``invalid_charge`` or
            ``invalid_price`` for an unknown model or a malformed setting (module docstring).

    """
    meter = data.get("meter")
    if not isinstance(meter, str):
        raise DataError(f"charges meter {meter!r}, which does not exist", code="unknown_meter")
    model = data.get("model")
    if not isinstance(model, str) or model not in USAGE_MODELS:
        raise DataError(
            f"unknown usage charge model {model!r}; expected one of {', '.join(USAGE_MODELS)}",
            code="invalid_charge",
        )
    free_raw = data.get("free_units")
    free = None if free_raw is None else _charge_number(free_raw, "free_units")
    description = _description(data)
    if model == "graduated":
        return GraduatedCharge(meter=meter, description=description, free_units=free, tiers=parse_tiers(data))
    if model == "volume":
        return VolumeCharge(meter=meter, description=description, free_units=free, tiers=parse_tiers(data))
    if model == "package":
        size = _charge_number(data.get("package_size"), "package_size", positive=True)
        return PackageCharge(
            meter=meter,
            description=description,
            free_units=free,
            package_size=size,
            unit_amount=parse_unit_amount(data.get("unit_amount_decimal")),
        )
    return StandardCharge(
        meter=meter,
        description=description,
        free_units=free,
        unit_amount=parse_unit_amount(data.get("unit_amount_decimal")),
    )


def parse_charge(data: Mapping[str, Any]) -> Charge:
    """Parse one charge map of a plan (``CONTRACT.md``) into its typed record.

    Raises:
        DataError: an unknown ``type`` (``invalid_charge``), or see ``FixedCharge.parse`` and
            ``parse_usage_charge``.

    """
    kind = data.get("type")
    if kind == "fixed":
        return FixedCharge.parse(data)
    if kind != "usage":
        raise DataError(f"unknown charge type {kind!r}; expected 'fixed' or 'usage'", code="invalid_charge")
    return parse_usage_charge(data)
