"""Event values at the edges (issue 8 items 3 and 6), through ``monthly_billing`` on the emulators.

- A value the aggregation cannot hold (``"1e1000000"``, ``|value| >= 10**30``, more than 30
  decimals) is ignored and counted in ``warnings``, like a non-numeric one: it used to raise
  ``decimal.Overflow`` and fail the tenant's whole run.
- A quantity of more than 28 significant digits is stored, priced and printed exactly.
- An amount that Firestore cannot store (above a signed 64-bit integer) fails that subscription
  only, with ``amount_too_large``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore, storage

from tests import factories as f

T = "edgeco"
MONTH = "2026-10"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def seed(db: firestore.Client, price: str = "100") -> None:
    f.tenant(db, T, invoice_prefix="ED")
    f.meter(db, T, "gb", "sum", field="gb", unit="GB")
    f.plan(
        db,
        T,
        "storage",
        [{"type": "usage", "meter": "gb", "model": "standard", "unit_amount_decimal": price}],
    )
    f.customer(db, T, "normal")
    f.subscription(db, T, "sub-normal", "normal", "storage")
    f.event(db, T, "n1", "normal", "gb", utc(2026, 10, 3), gb=3)


def close(call_function: Any) -> dict[str, Any]:
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def test_a_huge_event_value_is_a_warning_not_a_failed_run(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    f.customer(db, T, "huge")
    f.subscription(db, T, "sub-huge", "huge", "storage")
    f.event(db, T, "h1", "huge", "gb", utc(2026, 10, 2), gb="1e1000000")
    f.event(db, T, "h2", "huge", "gb", utc(2026, 10, 4), gb="-1000000000000000000000000000000")
    f.event(db, T, "h3", "huge", "gb", utc(2026, 10, 5), gb="5")
    body = close(call_function)
    assert body["errors"] == [] and body["generated"] == 2
    assert body["warnings_count"] == 2
    assert any("sub-huge" in w and "out of range: '1e1000000'" in w for w in body["warnings"])
    invoices = f.invoices(db, T)
    assert invoices["sub-huge-20261001"]["subtotal"] == 500
    assert invoices["sub-normal-20261001"]["subtotal"] == 300


def test_quantities_beyond_28_digits_are_stored_and_printed_exactly(
    db: firestore.Client, gcs: storage.Client, call_function: Any
) -> None:
    seed(db, price="0.000000000001")
    f.customer(db, T, "vast")
    f.subscription(db, T, "sub-vast", "vast", "storage")
    f.event(db, T, "v1", "vast", "gb", utc(2026, 10, 2), gb="123456789012345678901234567890")
    f.event(db, T, "v2", "vast", "gb", utc(2026, 10, 3), gb="0.000000000000000000000000000001")
    f.event(
        db,
        T,
        "v3",
        "vast",
        "gb",
        utc(2026, 10, 4),  # 31 decimals: refused, warned
        gb="0.0000000000000000000000000000001",
    )
    body = close(call_function)
    assert body["errors"] == [], body["errors"]
    assert body["warnings_count"] == 1 and "out of range" in body["warnings"][0]
    invoice = f.invoices(db, T)["sub-vast-20261001"]
    (line,) = invoice["lines"]
    assert line["quantity"] == "123456789012345678901234567890.000000000000000000000000000001"
    # 123456789012345678901234567890 x 0.000000000001 = 123456789012345678.90... -> ...679
    assert line["amount"] == invoice["subtotal"] == 123456789012345679
    assert f"{line['quantity']} GB" in line["description"]
    assert invoice["pdf_uri"]  # the PDF printed it (it used to fail on such a quantity)


def test_an_amount_firestore_cannot_store_fails_that_subscription_only(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db)
    f.customer(db, T, "rich")
    f.subscription(db, T, "sub-rich", "rich", "storage")
    f.event(db, T, "r1", "rich", "gb", utc(2026, 10, 2), gb="100000000000000000000")  # 10**20
    body = close(call_function)
    assert [(e["subscription_id"], e["code"]) for e in body["errors"]] == [("sub-rich", "amount_too_large")]
    assert sorted(f.invoices(db, T)) == ["sub-normal-20261001"]
