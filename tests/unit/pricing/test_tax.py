"""Tax modes, exclusive and inclusive, per line with ROUND_HALF_UP (pure: no emulator needed)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.pricing.invoicing import build_invoice
from billing.pricing.periods import month_period
from billing.pricing.tax import line_tax, tax_rate_for
from billing.records import Customer, Meter, Plan, Subscription, Tenant


@pytest.mark.parametrize(
    ("amount", "rate", "tax"),
    [
        (1234, "20", 247),  # 246.8 -> 247
        (2002, "19", 380),  # 380.38 -> 380
        (1, "20", 0),  # 0.2 -> 0
        (3, "20", 1),  # 0.6 -> 1
        (5, "10", 1),  # 0.5 -> 1 (half up)
        (25, "2", 1),  # 0.5 -> 1
        (1000, "7.7", 77),  # 77
        (1000, "0", 0),
        (0, "20", 0),
    ],
)
def test_exclusive(amount: int, rate: str, tax: int) -> None:
    assert line_tax(amount, Decimal(rate), inclusive=False) == tax


@pytest.mark.parametrize(
    ("amount", "rate", "tax", "net"),
    [
        (1200, "20", 200, 1000),  # 1200 x 20/120 = 200
        (1000, "20", 167, 833),  # 166.67 -> 167
        (100, "20", 17, 83),  # 16.67 -> 17
        (3, "20", 1, 2),  # 0.5 -> 1: the tax is rounded half up (not the net 2.5 -> 3)
        (9, "20", 2, 7),  # 1.5 -> 2
        (1190, "19", 190, 1000),  # 1190 x 19/119 = 190
        (1000, "7.7", 71, 929),  # 71.49 -> 71
        (1000, "0", 0, 1000),
        (0, "20", 0, 0),
    ],
)
def test_inclusive_backs_the_tax_out(amount: int, rate: str, tax: int, net: int) -> None:
    assert line_tax(amount, Decimal(rate), inclusive=True) == tax
    assert net + tax == amount  # the net is what the tax leaves of the price


def tenant(**fields: Any) -> Tenant:
    return Tenant.parse(
        "t",
        {
            "name": "T",
            "status": "active",
            "timezone": "Europe/London",
            "currency": "GBP",
            "invoice_prefix": "T",
            "payment_terms_days": 14,
            "tax_rates": {"GB": "20", "de": "19"},
            **fields,
        },
    )


def customer(**fields: Any) -> Customer:
    return Customer.parse("c1", {"name": "C", "status": "active", **fields})


def test_rate_by_country_exemption_and_missing_country() -> None:
    t = tenant()
    assert tax_rate_for(t, customer(address={"country": "GB"})) == 20
    assert tax_rate_for(t, customer(address={"country": "de"})) == 19  # case-insensitive
    assert tax_rate_for(t, customer(address={"country": "FR"})) == 0  # not listed
    assert tax_rate_for(t, customer()) == 0  # no country
    assert tax_rate_for(t, customer(address={"country": "GB"}, tax_exempt=True)) == 0


def invoice(t: Tenant, c: Customer) -> Any:
    # fixed 1200 + 3 calls x 333 = 999
    plan = Plan.parse(
        "p",
        {
            "currency": "GBP",
            "interval": "month",
            "charges": [
                {"type": "fixed", "description": "Plan", "unit_amount_decimal": "1200"},
                {"type": "usage", "meter": "calls", "model": "standard", "unit_amount_decimal": "333"},
            ],
        },
    )
    sub = Subscription.parse(
        "s",
        {
            "customer_id": "c1",
            "plan_id": "p",
            "status": "active",
            "billing_time": "calendar",
            "started_at": month_period(2020, 1, "UTC").start,
        },
    )
    return build_invoice(
        tenant=t,
        customer=c,
        subscription=sub,
        plan=plan,
        meters={"calls": Meter.parse("calls", {"aggregation": "count"})},
        period=month_period(2026, 10, "Europe/London"),
        usage={"calls": {(): Decimal(3)}},
        usage_events=3,
    )


def test_invoice_exclusive() -> None:
    draft = invoice(tenant(), customer(address={"country": "GB"}))
    # lines 1200 and 999; tax 240 + 199.8 -> 200 = 440; total 2199 + 440 = 2639
    assert [(line.amount, line.tax) for line in draft.lines] == [(1200, 240), (999, 200)]
    assert (draft.subtotal, draft.tax, draft.total, draft.tax_inclusive) == (2199, 440, 2639, False)


def test_invoice_inclusive() -> None:
    draft = invoice(tenant(tax_inclusive=True), customer(address={"country": "GB"}))
    # the same prices include 20 %: 1200 -> tax 200; 999 -> 166.5 -> 167; total = subtotal
    assert [(line.amount, line.tax) for line in draft.lines] == [(1200, 200), (999, 167)]
    assert (draft.subtotal, draft.tax, draft.total, draft.tax_inclusive) == (2199, 367, 2199, True)
    assert draft.to_document()["tax_inclusive"] is True


def test_inclusive_tax_is_summed_per_line_not_computed_on_the_total() -> None:
    # three lines of 1000 at 20 % inclusive: 167 each = 501 (3000 x 20/120 would be 500)
    assert sum(line_tax(1000, Decimal(20), inclusive=True) for _ in range(3)) == 501


def test_inclusive_exempt_customer_pays_the_price_without_tax() -> None:
    draft = invoice(tenant(tax_inclusive=True), customer(address={"country": "GB"}, tax_exempt=True))
    assert (draft.subtotal, draft.tax, draft.total) == (2199, 0, 2199)
