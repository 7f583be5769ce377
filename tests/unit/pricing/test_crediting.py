"""Credit note amounts (billing.pricing.crediting): by line or by amount, tax pro rata per line."""

from __future__ import annotations

import pytest

from billing.errors import BadRequest, Conflict, NotFound
from billing.pricing.crediting import (
    CreditableLine,
    credit_split,
    credited_tax,
    format_credit_note_number,
)

PLAN = CreditableLine("c1", "Pro plan", 10000, 2000)
USAGE = CreditableLine("c2", "API calls", 5000, 1000)
DISCOUNT = CreditableLine("custom-1", "Discount", -1000, -200)


def test_tax_is_pro_rata_and_rounded_half_up() -> None:
    assert credited_tax(PLAN, 2500) == 500
    # 1 x 2000 / 10000 = 0.2 -> 0; 3 x 0.2 = 0.6 -> 1; 25 x 0.2 = 5.0.
    assert [credited_tax(PLAN, n) for n in (1, 3, 25)] == [0, 1, 5]
    odd = CreditableLine("x", "", 3, 1)  # 1 x 1 / 3 = 0.333 -> 0; 2 x 1 / 3 = 0.667 -> 1
    assert [credited_tax(odd, 1), credited_tax(odd, 2)] == [0, 1]
    half = CreditableLine("h", "", 2, 1)  # 1 x 1 / 2 = 0.5 -> 1 (half up)
    assert credited_tax(half, 1) == 1


def test_repeated_partial_credits_never_credit_more_or_less_tax_than_the_line() -> None:
    line = CreditableLine("h", "", 2, 1)
    first = credited_tax(line, 1)  # 0.5 -> 1: all the tax
    after = CreditableLine("h", "", 2, 1, credited_amount=1, credited_tax=first)
    assert (first, credited_tax(after, 1)) == (1, 0)  # capped: the line carried 1 in all
    third = CreditableLine("x", "", 3, 1)
    taxes = []
    credited, tax = 0, 0
    for _ in range(3):
        step = CreditableLine("x", "", 3, 1, credited_amount=credited, credited_tax=tax)
        taxes.append(credited_tax(step, 1))
        credited, tax = credited + 1, tax + taxes[-1]
    assert taxes == [0, 0, 1] and tax == third.tax  # the credit that empties the line takes the rest


def test_by_lines() -> None:
    split = credit_split([PLAN, USAGE], requested=[("c2", 1000), ("c1", 2500)])
    assert [(x.invoice_line_id, x.amount, x.tax) for x in split.lines] == [
        ("c2", 1000, 200),
        ("c1", 2500, 500),
    ]
    assert (split.subtotal, split.tax, split.total) == (3500, 700, 4200)


def test_by_amount_takes_the_lines_in_order_and_skips_discounts() -> None:
    split = credit_split([DISCOUNT, PLAN, USAGE], amount=12000)
    assert [(x.invoice_line_id, x.amount, x.tax) for x in split.lines] == [
        ("c1", 10000, 2000),
        ("c2", 2000, 400),
    ]
    assert split.total == 14400
    partly = CreditableLine("c1", "", 10000, 2000, credited_amount=9000, credited_tax=1800)
    assert [(x.invoice_line_id, x.amount) for x in credit_split([partly, USAGE], amount=1500).lines] == [
        ("c1", 1000),
        ("c2", 500),
    ]


def test_tax_inclusive_invoice_credits_gross_amounts() -> None:
    # 1200 incl. 20 % tax carries 200 of tax: crediting 600 credits 100 of it; total == subtotal.
    line = CreditableLine("c1", "Pro plan", 1200, 200)
    split = credit_split([line], amount=600, inclusive=True)
    assert (split.subtotal, split.tax, split.total) == (600, 100, 600)


def test_refusals() -> None:
    with pytest.raises(NotFound) as unknown:
        credit_split([PLAN], requested=[("nope", 1)])
    assert unknown.value.code == "unknown_line"
    with pytest.raises(Conflict) as above_line:
        credit_split([PLAN], requested=[("c1", 10001)])
    with pytest.raises(Conflict) as above_lines:
        credit_split([PLAN, USAGE], amount=15001)
    with pytest.raises(Conflict) as above_total:  # a discount line makes the total smaller
        credit_split([PLAN, DISCOUNT], amount=10000, creditable_total=9600)
    assert {e.value.code for e in (above_line, above_lines, above_total)} == {"amount_exceeds_creditable"}
    with pytest.raises(BadRequest):
        credit_split([PLAN], requested=[("c1", 1), ("c1", 1)])
    with pytest.raises(BadRequest):
        credit_split([PLAN])
    with pytest.raises(Conflict):
        credit_split([DISCOUNT], requested=[("custom-1", 1)])  # a discount line has nothing to credit


def test_number_series() -> None:
    assert format_credit_note_number("ACME", 2026, 3) == "ACME-CN-2026-000003"
