"""``current_usage``: the open period's usage, priced by the billing engine, on the emulator.

The answer on October 31 (folded tenant: accumulators plus the events after the watermark)
equals the usage lines of the invoice the month close makes for the raw twin tenant.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from google.cloud import firestore

from tests import factories as f
from tests.e2e.usage.scenario import utc
from tests.e2e.usage.test_fold_usage import FOLD_HOURS, FOLDED, RAW, close, fold, seed_twins


def usage(
    call_function: Any, body: dict[str, Any], tenant: str | None = FOLDED
) -> tuple[int, dict[str, Any]]:
    status, answer = call_function("current_usage", body, tenant=tenant)
    return status, answer


@pytest.mark.parametrize("customer_id, subscription_id", [("c1", None), ("c4", None), ("c3", "s3b")])
def test_current_usage_equals_the_draft_the_close_makes(
    db: firestore.Client, call_function: Any, clock: Any, customer_id: str, subscription_id: str | None
) -> None:
    seed_twins(db, "Europe/London")
    for at in FOLD_HOURS:
        fold(call_function, clock, at)
    clock.set(utc(2026, 10, 31, 23, 30))
    body: dict[str, Any] = {"customer_id": customer_id}
    if subscription_id:
        body["subscription_id"] = subscription_id
    status, answer = usage(call_function, body)
    assert status == 200, answer
    assert answer["from_datetime"] == "2026-09-30T23:00:00+00:00"
    assert answer["to_datetime"] == "2026-11-01T00:00:00+00:00"
    assert answer["as_of"] == "2026-10-31T23:30:00+00:00" and answer["currency"] == "GBP"

    close(call_function, clock, utc(2026, 11, 2, 6), RAW)
    sub = subscription_id or {"c1": "s1", "c4": "s4"}[customer_id]
    invoice = f.invoices(db, RAW)[f"{sub}-20261001"]
    usage_lines = [line for line in invoice["lines"] if line.get("meter")]
    by_meter = {c["meter"]: c for c in answer["charges"]}
    for meter, charge in by_meter.items():
        lines = [line for line in usage_lines if line["meter"] == meter]
        assert charge["amount"] == sum(line["amount"] for line in lines), meter
    assert answer["amount"] == sum(line["amount"] for line in usage_lines) > 0
    assert answer["tax"] == sum(line["tax"] for line in usage_lines)
    assert answer["total"] == answer["amount"] + answer["tax"]
    calls = [line for line in usage_lines if line["meter"] == "calls"]
    assert Decimal(by_meter["calls"]["units"]) == sum(Decimal(line["quantity"]) for line in calls)
    assert by_meter["calls"]["events_count"] == int(by_meter["calls"]["units"])


BAD: list[tuple[dict[str, Any], str | None, int, str | None]] = [
    ({"customer_id": "c1"}, None, 400, "missing_tenant"),
    ({}, FOLDED, 400, "missing_field"),
    ({"customer_id": "c/1"}, FOLDED, 400, "invalid_field"),
    ({"customer_id": "\ud800"}, FOLDED, 400, "invalid_field"),
    ({"customer_id": 12}, FOLDED, 400, "invalid_field"),
    ({"customer_id": "c1", "extra": 1}, FOLDED, 400, None),
    ({"customer_id": "nobody"}, FOLDED, 404, "unknown_customer"),
    ({"customer_id": "c1", "subscription_id": "s4"}, FOLDED, 404, "unknown_subscription"),
    ({"customer_id": "c3"}, FOLDED, 400, "subscription_required"),
    ({"customer_id": "c1"}, "no-such-tenant", 404, None),
    ({"customer_id": "c1", "as_of": "2026-10-20T12:06:00Z"}, FOLDED, 400, "as_of_in_future"),
    ({"customer_id": "c1", "as_of": "10000-01-01T00:00:00Z"}, FOLDED, 400, None),
    ({"customer_id": "c1", "as_of": "yesterday"}, FOLDED, 400, None),
]


def test_bad_requests_get_a_clear_4xx_and_write_nothing(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    seed_twins(db, "Europe/London")
    clock.set(utc(2026, 10, 20, 12))
    before = f.all_documents(db, FOLDED)
    for body, tenant, status, code in BAD:
        got, answer = usage(call_function, body, tenant)
        assert got == status, (body, answer)
        assert set(answer) == {"error"} or "error" in answer, answer
        if code:
            assert answer["error"]["code"] == code, (body, answer)
    assert f.all_documents(db, FOLDED) == before


def test_as_of_answers_the_period_that_contains_it(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    seed_twins(db, "Asia/Kathmandu")
    clock.set(utc(2026, 11, 20, 12))
    status, answer = usage(call_function, {"customer_id": "c1", "as_of": "2026-10-15T00:00:00Z"})
    assert status == 200, answer
    # October in Kathmandu (+05:45): from Sep 30 18:15Z to Oct 31 18:15Z.
    assert (answer["from_datetime"], answer["to_datetime"]) == (
        "2026-09-30T18:15:00+00:00",
        "2026-10-31T18:15:00+00:00",
    )
    assert answer["amount"] > 0
    status, november = usage(call_function, {"customer_id": "c1"})
    assert status == 200 and november["from_datetime"] == "2026-10-31T18:15:00+00:00"


def test_a_customer_without_an_active_subscription_is_404(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    seed_twins(db, "Europe/London")
    clock.set(utc(2026, 10, 20, 12))
    status, answer = usage(call_function, {"customer_id": "c2"})  # s2 was canceled on Oct 17
    assert status == 404 and answer["error"]["code"] == "no_active_subscription"
