"""The review actions' field validators (issue 10 item 8), directly: what passes and what is 400."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.errors import BadRequest
from billing.runs.review.common import (
    currency_field,
    description_field,
    ids_field,
    key_field,
    maps_field,
    quantity_field,
    unit_amount_field,
)
from billing.runs.review.one_off import one_off_invoice_id, parse_line


def test_good_values_are_read_exactly() -> None:
    assert quantity_field("2.5") == Decimal("2.5") and quantity_field("000001") == 1
    assert unit_amount_field("-0.000000000001") == Decimal("-1E-12")
    assert unit_amount_field("999999999999999.5") == Decimal("999999999999999.5")
    assert (currency_field("GBP"), key_field("k é"), description_field("Café ☕")) == (
        "GBP",
        "k é",
        "Café ☕",
    )
    assert ids_field(["b", "a"]) == ["b", "a"] and maps_field([{}]) == [{}]


@pytest.mark.parametrize(
    ("validator", "value", "code"),
    [
        (quantity_field, 2, "invalid_field"),
        (quantity_field, "-1", "invalid_field"),
        (quantity_field, "1.0000000000001", "invalid_field"),
        (quantity_field, "Infinity", "invalid_field"),
        (quantity_field, " 1", "invalid_field"),
        (quantity_field, "0.000", "invalid_field"),
        (unit_amount_field, 100, "invalid_field"),
        (unit_amount_field, "1.0000000000001", "too_many_decimals"),
        (unit_amount_field, "1e5", "invalid_field"),
        (unit_amount_field, "1" * 16, "invalid_field"),
        (unit_amount_field, "+1", "invalid_field"),
        (currency_field, "gbp", "invalid_field"),
        (key_field, "", "invalid_field"),
        (key_field, "k" * 256, "invalid_field"),
        (key_field, "a\nb", "invalid_field"),
        (description_field, "x" * 501, "invalid_field"),
        (description_field, "\ud83d", "invalid_field"),
        (ids_field, [], "invalid_field"),
        (ids_field, ["a", "a"], "invalid_field"),
        (ids_field, ["a b"], "invalid_field"),
        (ids_field, ["a"] * 101, "invalid_field"),
        (maps_field, [1], "invalid_field"),
        (maps_field, [{}] * 101, "invalid_field"),
    ],
)
def test_bad_values_are_400(validator: Any, value: Any, code: str) -> None:
    with pytest.raises(BadRequest) as exc:
        validator(value)
    assert exc.value.code == code


def test_one_off_lines_and_ids() -> None:
    line = parse_line(
        {"description": "x", "quantity": "1", "unit_amount_decimal": "5", "tax_exempt": True}, 0
    )
    assert line == {"description": "x", "quantity": 1, "unit_amount_decimal": 5, "tax_exempt": True}
    with pytest.raises(BadRequest, match=r"lines\[3\]\.quantity"):
        parse_line({"description": "x", "quantity": "one", "unit_amount_decimal": "5"}, 3)
    with pytest.raises(BadRequest, match=r"lines\[0\]: unit_amount_decimal is required"):
        parse_line({"description": "x", "quantity": "1"}, 0)
    assert one_off_invoice_id("k") == one_off_invoice_id("k") != one_off_invoice_id("k2")
    assert one_off_invoice_id("k").startswith("oneoff-") and len(one_off_invoice_id("k")) == 31
