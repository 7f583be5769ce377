"""Anniversary schedules: bounded intervals, daily plans across DST, the stub first period.

Pure tests call ``shared.anniversary`` / ``shared.periods`` directly; the others go through the
``generate_invoices`` HTTP function against the Firestore emulator.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.cloud import firestore

from shared.anniversary import due_periods
from shared.errors import DataError
from shared.model import Plan, Subscription
from tests import factories as f

T = "sched"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def wall(tz: str, *args: int) -> datetime:
    """A wall-clock time in ``tz`` as an aware UTC instant."""
    return datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def run(call_function: Any, as_of: str, **body: Any) -> dict[str, Any]:
    status, response = call_function("generate_invoices", {"as_of": as_of, **body}, tenant=T)
    assert status == 200, response
    result: dict[str, Any] = response
    return result


def anniversary(start: datetime, end: datetime, **fields: Any) -> dict[str, Any]:
    return {"billing_time": "anniversary", "started_at": start, "current_period_start": start,
            "current_period_end": end, **fields}


# -- item 7: bounded interval_count, failures caught per subscription ---------------------------------
@pytest.mark.parametrize(("interval", "good", "bad"), [
    ("day", 365, 366), ("week", 104, 105), ("month", 120, 121), ("year", 10, 11)])
def test_interval_count_is_bounded_when_parsing(interval: str, good: int, bad: int) -> None:
    def parse(count: object) -> Plan:
        return Plan.parse("p", {"currency": "GBP", "interval": interval, "interval_count": count,
                                "charges": []})

    assert parse(good).interval_count == good
    assert parse(1).interval_count == 1
    for count in (bad, 0, -1, 100000):
        with pytest.raises(DataError) as caught:
            parse(count)
        assert caught.value.code == "invalid_field"


def test_absurd_interval_and_broken_schedule_fail_only_their_subscription(
        db: firestore.Client, call_function: Any) -> None:
    f.tenant(db, T, grace_period_hours=0)
    fee = [{"type": "fixed", "description": "Fee", "unit_amount_decimal": "1000"}]
    f.plan(db, T, "monthly", fee)
    f.plan(db, T, "eon", fee, interval="year", interval_count=100000)
    for name in ("ok", "eon", "ancient"):
        f.customer(db, T, name)
    start, end = utc(2026, 1, 1), utc(2026, 2, 1)
    f.subscription(db, T, "sub-ok", "ok", "monthly", **anniversary(start, end))
    f.subscription(db, T, "sub-eon", "eon", "eon", **anniversary(start, end))
    # An anchor in year 1 cannot be shown in London time (OverflowError inside the schedule).
    f.subscription(db, T, "sub-ancient", "ancient", "monthly",
                   **anniversary(start, end, billing_cycle_anchor=utc(1, 1, 1)))
    body = run(call_function, "2026-02-01T01:00:00Z")
    assert body["generated"] == 1 and body["advanced"] == 1, body
    assert sorted(f.invoices(db, T)) == ["sub-ok-20260101"]
    errors = {e["subscription_id"]: e for e in body["errors"]}
    assert set(errors) == {"sub-eon", "sub-ancient"}, body["errors"]
    assert errors["sub-eon"]["code"] == "invalid_field"
    assert "interval_count" in errors["sub-eon"]["error"]
    assert errors["sub-ancient"]["code"] == "internal"
