"""Every charge model with worked numbers (pure: no emulator needed).

Charges are parsed into their typed records (``parse_charge``, as ``Plan.parse`` does), then
priced (``UsageCharge.price``); a malformed charge fails when it is parsed.

Prices are in minor units, as in the contract: "700" is GBP 7.00. Each part becomes one invoice
line whose amount is quantity x unit price rounded once (ROUND_HALF_UP), so a charge's total is
the sum of its rounded lines.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.errors import DataError
from billing.pricing.charges import (
    FixedCharge,
    GraduatedCharge,
    PackageCharge,
    Part,
    StandardCharge,
    Tier,
    UsageCharge,
    VolumeCharge,
    parse_charge,
)
from billing.pricing.money import line_amount
from billing.records import Plan, PlanChargeError

# Stripe's documented tiers: 1-5 at 7.00, 6-10 at 6.50, 11+ at 6.00.
STRIPE_TIERS = [
    {"up_to": 5, "unit_amount_decimal": "700"},
    {"up_to": 10, "unit_amount_decimal": "650"},
    {"up_to": None, "unit_amount_decimal": "600"},
]
# The same with flat fees: tier 1 GBP 2.00, tier 2 GBP 1.00, tier 3 none.
FLAT_TIERS = [
    {"up_to": 5, "unit_amount_decimal": "700", "flat_amount_decimal": "200"},
    {"up_to": 10, "unit_amount_decimal": "650", "flat_amount_decimal": "100"},
    {"up_to": None, "unit_amount_decimal": "600", "flat_amount_decimal": "0"},
]


def charge(model: str, **fields: Any) -> dict[str, Any]:
    return {"type": "usage", "meter": "m", "model": model, **fields}


def price_usage(data: dict[str, Any], quantity: Decimal) -> list[Part]:
    """Parse a usage charge map, then price ``quantity`` with it."""
    parsed = parse_charge(data)
    assert isinstance(parsed, UsageCharge)
    return parsed.price(quantity)


def amounts(parts: list[Part]) -> list[int]:
    return [line_amount(p.quantity, p.unit_amount) for p in parts]


def total(model: str, quantity: Any, **fields: Any) -> int:
    return sum(amounts(price_usage(charge(model, **fields), Decimal(quantity))))


def shape(parts: list[Part]) -> list[tuple[str, str, str, int]]:
    return [
        (p.label, str(p.quantity), str(p.unit_amount), line_amount(p.quantity, p.unit_amount)) for p in parts
    ]


# -- standard ----------------------------------------------------------------------------------------


def test_standard_prices_every_unit() -> None:
    # 1,001 calls at 2p = 2,002p; 12 h at 8,000p = 96,000p; 0 units = one 0 line
    assert total("standard", 1001, unit_amount_decimal="2") == 2002
    assert total("standard", "12", unit_amount_decimal="8000") == 96000
    assert shape(price_usage(charge("standard", unit_amount_decimal="2"), Decimal(0))) == [("", "0", "2", 0)]


def test_standard_rounds_the_line_once_half_up() -> None:
    # 3 x 0.5p = 1.5p -> 2p; 1 x 0.5p = 0.5 -> 1; 1 x 0.49999 -> 0; 7 x 0.123456789012 = 0.86 -> 1
    assert total("standard", 3, unit_amount_decimal="0.5") == 2
    assert total("standard", 1, unit_amount_decimal="0.5") == 1
    assert total("standard", 1, unit_amount_decimal="0.49999") == 0
    assert total("standard", 7, unit_amount_decimal="0.123456789012") == 1


# -- graduated ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        (0, 0),  # tier 1 entered with 0 units, no flat fee: 0
        (5, 3500),  # 5 x 7.00 = 35.00
        (6, 4150),  # 5 x 7.00 + 1 x 6.50 = 41.50 (Stripe's documented example)
        (10, 6750),  # 35.00 + 5 x 6.50 = 67.50
        (11, 7350),  # 67.50 + 1 x 6.00 = 73.50
    ],
)
def test_graduated_stripe_example(units: int, expected: int) -> None:
    assert total("graduated", units, tiers=STRIPE_TIERS) == expected


def test_graduated_lines_per_tier() -> None:
    # 11 units: tier 1 5 x 700 = 3500, tier 2 5 x 650 = 3250, tier 3 1 x 600 = 600
    parts = price_usage(charge("graduated", tiers=STRIPE_TIERS), Decimal(11))
    assert shape(parts) == [
        ("tier 1: 1-5", "5", "700", 3500),
        ("tier 2: 6-10", "5", "650", 3250),
        ("tier 3: 11+", "1", "600", 600),
    ]
    # 5 units stop at the boundary: tier 2 is not entered (up_to is inclusive)
    assert [p.label for p in price_usage(charge("graduated", tiers=STRIPE_TIERS), Decimal(5))] == [
        "tier 1: 1-5"
    ]


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        (0, 200),  # zero usage: tier 1's flat fee still applies (tier 1 is not priced at zero)
        (1, 900),  # 1 x 7.00 + 2.00
        (5, 3700),  # 35.00 + 2.00 (tier 2 not entered: no 1.00)
        (6, 4450),  # 35.00 + 2.00 + 6.50 + 1.00 = 44.50
        (10, 7050),  # 35.00 + 2.00 + 32.50 + 1.00 = 70.50
        (11, 7650),  # 70.50 + 6.00 (+ tier 3 flat 0) = 76.50
    ],
)
def test_graduated_flat_fees_once_each_tier_is_entered(units: int, expected: int) -> None:
    assert total("graduated", units, tiers=FLAT_TIERS) == expected


def test_graduated_zero_usage_lines() -> None:
    # A 0-unit tier 1 line and tier 1's flat fee (2.00)
    parts = price_usage(charge("graduated", tiers=FLAT_TIERS), Decimal(0))
    assert shape(parts) == [("tier 1: 1-5", "0", "700", 0), ("tier 1: 1-5 flat fee", "1", "200", 200)]
    assert [p.flat for p in parts] == [False, True]


def test_graduated_first_tier_priced_at_zero_charges_its_flat_fee_only_once_used() -> None:
    # Tier 1: 1-100 free (0p per unit) with an entry fee of 10.00, then 5p per unit.
    tiers = [
        {"up_to": 100, "unit_amount_decimal": "0", "flat_amount_decimal": "1000"},
        {"up_to": None, "unit_amount_decimal": "5"},
    ]
    assert total("graduated", 0, tiers=tiers) == 0  # priced at zero: no fee without usage
    assert total("graduated", 1, tiers=tiers) == 1000  # 1 x 0 + 10.00
    assert total("graduated", 100, tiers=tiers) == 1000  # 100 x 0 + 10.00
    assert total("graduated", 150, tiers=tiers) == 1250  # 10.00 + 50 x 5p


def test_graduated_fractional_units() -> None:
    # 5.5 GB: 5 x 7.00 + 0.5 x 6.50 = 35.00 + 3.25 = 38.25
    parts = price_usage(charge("graduated", tiers=STRIPE_TIERS), Decimal("5.5"))
    assert shape(parts) == [("tier 1: 1-5", "5", "700", 3500), ("tier 2: 6-10", "0.5", "650", 325)]
    # fractional bounds are labelled as ranges: up to 0.5, over 0.5 up to 2, over 2
    tiers = [
        {"up_to": "0.5", "unit_amount_decimal": "10"},
        {"up_to": 2, "unit_amount_decimal": "8"},
        {"up_to": None, "unit_amount_decimal": "6"},
    ]
    parts = price_usage(charge("graduated", tiers=tiers), Decimal(3))
    # 0.5 x 10 + 1.5 x 8 + 1 x 6 = 5 + 12 + 6 = 23
    assert shape(parts) == [
        ("tier 1: up to 0.5", "0.5", "10", 5),
        ("tier 2: over 0.5 up to 2", "1.5", "8", 12),
        ("tier 3: over 2", "1", "6", 6),
    ]


def test_graduated_rounds_each_tier_line() -> None:
    # tiers 1-3 at 0.5p, 4+ at 0.25p; 5 units: 3 x 0.5 = 1.5 -> 2, 2 x 0.25 = 0.5 -> 1: 3p
    # (rounding the exact 2.0 once would give 2p; the contract rounds per line)
    tiers = [{"up_to": 3, "unit_amount_decimal": "0.5"}, {"up_to": None, "unit_amount_decimal": "0.25"}]
    assert amounts(price_usage(charge("graduated", tiers=tiers), Decimal(5))) == [2, 1]


# -- volume ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        (0, 0),  # 0 x 7.00
        (5, 3500),  # 5 x 7.00 = 35.00 (5 is still tier 1: up_to inclusive)
        (6, 3900),  # 6 x 6.50 = 39.00 (Stripe's documented example)
        (10, 6500),  # 10 x 6.50 = 65.00
        (11, 6600),  # 11 x 6.00 = 66.00 (cheaper than 10 units: that is volume pricing)
    ],
)
def test_volume_stripe_example(units: int, expected: int) -> None:
    assert total("volume", units, tiers=STRIPE_TIERS) == expected


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        (0, 200),  # zero usage falls in tier 1: 0 x 7.00 + flat 2.00
        (5, 3700),  # 35.00 + 2.00
        (6, 4000),  # 39.00 + tier 2's flat 1.00 only
        (11, 6600),  # 66.00 + tier 3's flat 0
    ],
)
def test_volume_adds_the_flat_fee_of_the_tier_reached(units: int, expected: int) -> None:
    assert total("volume", units, tiers=FLAT_TIERS) == expected


def test_volume_lines() -> None:
    parts = price_usage(charge("volume", tiers=FLAT_TIERS), Decimal(6))
    assert shape(parts) == [("tier 2: 6-10", "6", "650", 3900), ("tier 2: 6-10 flat fee", "1", "100", 100)]
    # 10.5 units are above tier 2's inclusive bound: tier 3, 10.5 x 6.00 = 63.00
    assert total("volume", "10.5", tiers=STRIPE_TIERS) == 6300


def test_volume_first_tier_priced_at_zero_has_no_flat_fee_at_zero_usage() -> None:
    tiers = [
        {"up_to": 100, "unit_amount_decimal": "0", "flat_amount_decimal": "1000"},
        {"up_to": None, "unit_amount_decimal": "5", "flat_amount_decimal": "500"},
    ]
    assert total("volume", 0, tiers=tiers) == 0
    assert total("volume", 100, tiers=tiers) == 1000  # 100 x 0 + 10.00
    assert total("volume", 101, tiers=tiers) == 1005  # 101 x 5p + 5.00


# -- package -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "packages", "expected"),
    [
        (0, 0, 0),
        (1, 1, 500),  # a started package is a whole one
        (10, 1, 500),
        (20, 2, 1000),
        (21, 3, 1500),  # 21 units in packages of 10 at 5.00 = 3 x 5.00 = 15.00
        ("10.5", 2, 1000),
    ],
)
def test_package_rounds_partial_packages_up(units: Any, packages: int, expected: int) -> None:
    parts = price_usage(charge("package", package_size=10, unit_amount_decimal="500"), Decimal(units))
    assert len(parts) == 1
    assert parts[0].quantity == packages and parts[0].unit == "packages of 10"
    assert amounts(parts) == [expected]


def test_package_label() -> None:
    parts = price_usage(charge("package", package_size=10, unit_amount_decimal="500"), Decimal(21))
    assert parts[0].label == "21 units in packages of 10"


# -- free_units ----------------------------------------------------------------------------------------


def test_free_units_on_standard() -> None:
    # 100 calls, 30 free: 70 x 2p = 140p; 20 calls, 30 free: 0 (never negative)
    assert total("standard", 100, unit_amount_decimal="2", free_units=30) == 140
    assert total("standard", 20, unit_amount_decimal="2", free_units=30) == 0
    assert total("standard", "30.5", unit_amount_decimal="2", free_units="0.5") == 60


def test_free_units_on_package() -> None:
    # 21 units, 1 free: 20 billable = 2 packages = 10.00; 31 units, 10 free: 21 = 3 = 15.00
    fields = {"package_size": 10, "unit_amount_decimal": "500"}
    assert total("package", 21, free_units=1, **fields) == 1000
    assert total("package", 31, free_units=10, **fields) == 1500
    assert total("package", 5, free_units=10, **fields) == 0


def test_free_units_shift_graduated_tiers() -> None:
    # 9 units, 3 free: 6 billable priced from tier 1: 5 x 7.00 + 1 x 6.50 = 41.50
    assert total("graduated", 9, tiers=STRIPE_TIERS, free_units=3) == 4150
    # 3 units, 3 free: 0 billable; tier 1's flat fee still applies (zero-usage rule): 2.00
    assert total("graduated", 3, tiers=FLAT_TIERS, free_units=3) == 200


def test_free_units_pick_the_volume_tier_of_the_billable_total() -> None:
    # 14 units, 3 free: 11 billable -> tier 3: 11 x 6.00 = 66.00
    assert total("volume", 14, tiers=STRIPE_TIERS, free_units=3) == 6600
    # 8 units, 3 free: 5 billable -> tier 1: 5 x 7.00 = 35.00
    assert total("volume", 8, tiers=STRIPE_TIERS, free_units=3) == 3500


def test_negative_meter_result_bills_zero_units() -> None:
    assert total("standard", -5, unit_amount_decimal="100") == 0
    assert total("graduated", -5, tiers=STRIPE_TIERS) == 0


def test_quantities_beyond_28_significant_digits_are_priced_exactly() -> None:
    # Issue 8 item 6: free units and tier bounds are subtracted without rounding the quantity.
    quantity = Decimal("123456789012345678901234567890.000000000000000000000000000001")
    (part,) = price_usage(charge("standard", unit_amount_decimal="0", free_units="0.5"), quantity)
    assert part.quantity == Decimal("123456789012345678901234567889.500000000000000000000000000001")
    parts = price_usage(charge("graduated", tiers=STRIPE_TIERS), quantity)
    assert parts[-1].quantity == Decimal("123456789012345678901234567880.000000000000000000000000000001")
    assert parts[-1].label == "tier 3: 11+"


# -- fixed and types ---------------------------------------------------------------------------------


def test_fixed_parts() -> None:
    assert parse_charge({"type": "fixed", "unit_amount_decimal": "1000"}) == FixedCharge(
        description=None, unit_amount=Decimal(1000), quantity=Decimal(1)
    )
    assert parse_charge(
        {"type": "fixed", "unit_amount_decimal": "2500", "quantity": 3, "description": "Seats"}
    ) == FixedCharge(description="Seats", unit_amount=Decimal(2500), quantity=Decimal(3))


def test_each_model_parses_into_its_own_class() -> None:
    assert parse_charge(
        charge("standard", unit_amount_decimal="2", free_units="0.5", description="API")
    ) == StandardCharge(meter="m", description="API", free_units=Decimal("0.5"), unit_amount=Decimal(2))
    assert parse_charge(charge("graduated", tiers=STRIPE_TIERS)) == GraduatedCharge(
        meter="m",
        tiers=(
            Tier(Decimal(5), Decimal(700), Decimal(0)),
            Tier(Decimal(10), Decimal(650), Decimal(0)),
            Tier(None, Decimal(600), Decimal(0)),
        ),
    )
    volume = parse_charge(charge("volume", tiers=FLAT_TIERS))
    assert isinstance(volume, VolumeCharge) and volume.tiers[0].flat_amount == Decimal(200)
    assert parse_charge(charge("package", package_size=10, unit_amount_decimal="500")) == (
        PackageCharge(meter="m", package_size=Decimal(10), unit_amount=Decimal(500))
    )


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (charge("median", unit_amount_decimal="1"), "unknown usage charge model"),
        (charge("standard"), "unit_amount_decimal"),
        (charge("standard", unit_amount_decimal=0.5), "not a float"),
        (charge("standard", unit_amount_decimal="-1"), "negative"),
        (charge("standard", unit_amount_decimal="0.0000000000001"), "more than 12 decimals"),
        (charge("standard", unit_amount_decimal="1", free_units=-1), "free_units must not be negative"),
        (charge("standard", unit_amount_decimal="1", free_units="some"), "free_units must be a number"),
        (charge("graduated"), "non-empty 'tiers'"),
        (charge("graduated", tiers=[]), "non-empty 'tiers'"),
        (charge("graduated", tiers=[{"up_to": 5, "unit_amount_decimal": "1"}]), "last tier"),
        (
            charge(
                "volume",
                tiers=[
                    {"up_to": None, "unit_amount_decimal": "1"},
                    {"up_to": None, "unit_amount_decimal": "1"},
                ],
            ),
            "only the last tier",
        ),
        (
            charge(
                "graduated",
                tiers=[
                    {"up_to": 10, "unit_amount_decimal": "1"},
                    {"up_to": 10, "unit_amount_decimal": "1"},
                    {"up_to": None, "unit_amount_decimal": "1"},
                ],
            ),
            "must be positive and increase",
        ),
        (
            charge(
                "graduated",
                tiers=[{"up_to": 0, "unit_amount_decimal": "1"}, {"up_to": None, "unit_amount_decimal": "1"}],
            ),
            "must be positive",
        ),
        (
            charge(
                "graduated",
                tiers=[
                    {"up_to": "five", "unit_amount_decimal": "1"},
                    {"up_to": None, "unit_amount_decimal": "1"},
                ],
            ),
            "not a number",
        ),
        (charge("volume", tiers=[{"up_to": None}]), "needs unit_amount_decimal or flat_amount_decimal"),
        (charge("volume", tiers=["x"]), "must be a map"),
        (charge("package", unit_amount_decimal="500"), "package_size must be a number"),
        (charge("package", package_size=0, unit_amount_decimal="500"), "package_size must be positive"),
    ],
)
def test_malformed_charges_raise_data_error(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        parse_charge(bad)
    assert info.value.code in ("invalid_charge", "invalid_price")


def test_malformed_fixed_and_type() -> None:
    with pytest.raises(DataError, match="quantity must not be negative"):
        parse_charge({"type": "fixed", "unit_amount_decimal": "1", "quantity": -1})
    with pytest.raises(DataError, match="quantity must be a number"):
        parse_charge({"type": "fixed", "unit_amount_decimal": "1", "quantity": "two"})
    with pytest.raises(DataError, match="unknown charge type"):
        parse_charge({"type": "credit"})
    with pytest.raises(DataError, match="charges meter None") as info:
        parse_charge({"type": "usage", "model": "standard", "unit_amount_decimal": "1"})
    assert info.value.code == "unknown_meter"


# -- plans: charges are checked when the plan is parsed --------------------------------------------


def plan_data(*charges: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"currency": "GBP", "interval": "month", "interval_count": 1, "charges": list(charges), **fields}


def test_a_plan_holds_typed_charges() -> None:
    plan = Plan.parse(
        "pro",
        plan_data(
            {"type": "fixed", "description": "Pro", "unit_amount_decimal": "3100"},
            charge("graduated", tiers=STRIPE_TIERS),
            {**charge("package", package_size=10, unit_amount_decimal="500"), "meter": "seats"},
        ),
    )
    assert [type(c) for c in plan.charges] == [FixedCharge, GraduatedCharge, PackageCharge]
    assert plan.meter_codes == {"m", "seats"}
    (_, graduated, _) = plan.charges
    assert isinstance(graduated, GraduatedCharge)
    assert sum(amounts(graduated.price(Decimal(6)))) == 4150  # Stripe's example


def test_a_malformed_charge_fails_the_plan_when_it_is_parsed() -> None:
    # The run reports this error for each subscription of the plan, as the invoice builder
    # used to when it priced the charge: same message, same code.
    data = plan_data(
        {"type": "fixed", "unit_amount_decimal": "3100"},
        charge("graduated", tiers=[{"up_to": 5, "unit_amount_decimal": "1"}]),
        {"type": "usage", "meter": "other", "model": "median"},
    )
    with pytest.raises(PlanChargeError) as info:
        Plan.parse("pro", data)
    assert info.value.message == ("plan 'pro' charge 2: the last tier must have up_to null (no upper limit)")
    assert info.value.code == "invalid_charge"
    # the meters its charges name, valid or not: its subscriptions still claim their events
    assert info.value.meter_codes == {"m", "other"}
    with pytest.raises(PlanChargeError, match="plan 'pro' charge 1: unit_amount_decimal") as bad:
        Plan.parse("pro", plan_data({"type": "fixed", "unit_amount_decimal": "-1"}))
    assert bad.value.code == "invalid_price"


def test_the_plan_fields_are_checked_before_its_charges() -> None:
    with pytest.raises(DataError, match="interval") as info:
        Plan.parse("pro", plan_data(charge("median"), interval="fortnight"))
    assert info.value.code == "invalid_field" and not isinstance(info.value, PlanChargeError)
