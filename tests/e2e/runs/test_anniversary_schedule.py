"""Anniversary schedules: bounded intervals, daily plans across DST, the stub first period.

Pure tests call ``billing.runs.anniversary`` / ``billing.pricing.periods`` directly; the others go through the
``generate_invoices`` HTTP function against the Firestore emulator.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.cloud import firestore

from billing.errors import DataError
from billing.records import Plan, Subscription
from billing.runs.anniversary import due_periods
from tests import factories as f

T = "sched"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def wall(
    tz: str,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    """A wall-clock time in ``tz`` as an aware UTC instant."""
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def run(call_function: Any, as_of: str, **body: Any) -> dict[str, Any]:
    status, response = call_function("generate_invoices", {"as_of": as_of, **body}, tenant=T)
    assert status == 200, response
    result: dict[str, Any] = response
    return result


def anniversary(start: datetime, end: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "billing_time": "anniversary",
        "started_at": start,
        "current_period_start": start,
        "current_period_end": end,
        **fields,
    }


# -- item 7: bounded interval_count, failures caught per subscription ---------------------------------
@pytest.mark.parametrize(
    ("interval", "good", "bad"),
    [("day", 365, 366), ("week", 104, 105), ("month", 120, 121), ("year", 10, 11)],
)
def test_interval_count_is_bounded_when_parsing(interval: str, good: int, bad: int) -> None:
    def parse(count: object) -> Plan:
        return Plan.parse(
            "p", {"currency": "GBP", "interval": interval, "interval_count": count, "charges": []}
        )

    assert parse(good).interval_count == good
    assert parse(1).interval_count == 1
    for count in (bad, 0, -1, 100000):
        with pytest.raises(DataError) as caught:
            parse(count)
        assert caught.value.code == "invalid_field"


def test_absurd_interval_and_broken_schedule_fail_only_their_subscription(
    db: firestore.Client, call_function: Any
) -> None:
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
    f.subscription(
        db,
        T,
        "sub-ancient",
        "ancient",
        "monthly",
        **anniversary(start, end, billing_cycle_anchor=utc(1, 1, 1)),
    )
    body = run(call_function, "2026-02-01T01:00:00Z")
    assert body["generated"] == 1 and body["advanced"] == 1, body
    assert sorted(f.invoices(db, T)) == ["sub-ok-20260101"]
    errors = {e["subscription_id"]: e for e in body["errors"]}
    assert set(errors) == {"sub-eon", "sub-ancient"}, body["errors"]
    assert errors["sub-eon"]["code"] == "invalid_field"
    assert "interval_count" in errors["sub-eon"]["error"]
    assert errors["sub-ancient"]["code"] == "internal"


# -- item 2: a daily plan bills every local day, DST days included ---------------------------------
def daily(tz: str, first: date) -> Subscription:
    start = wall(tz, first.year, first.month, first.day)
    nxt = first + timedelta(days=1)
    return Subscription(
        id="s",
        customer_id="c",
        plan_id="p",
        status="active",
        billing_time="anniversary",
        started_at=start,
        current_period_start=start,
        current_period_end=wall(tz, nxt.year, nxt.month, nxt.day),
    )


@pytest.mark.parametrize("tz", ["Europe/London", "America/Santiago"])
@pytest.mark.parametrize("hour", [0, 14])
def test_daily_plan_gives_one_period_per_local_day_for_a_year(tz: str, hour: int) -> None:
    # 2025: London 23 h on 30 March, 25 h on 26 October; Santiago 25 h on 5 April and 23 h on
    # 7 September (local midnight does not exist that day: it starts at 01:00).
    first = date(2025, 1, 1)
    sub = daily(tz, first)
    if hour:
        sub = Subscription(
            **{
                **sub.__dict__,
                "current_period_start": wall(tz, 2025, 1, 1, hour),
                "current_period_end": wall(tz, 2025, 1, 2, hour),
            }
        )
    due, moved_to = due_periods(sub, "day", 1, tz, wall(tz, 2026, 1, 1, hour))
    assert len(due) == 365
    days = [p.local_start.date() for p in due]
    assert days == [first + timedelta(days=n) for n in range(365)]
    assert all(b.start == a.end for a, b in pairwise(due))
    assert {p.local_start.hour for p in due} <= {hour, 1}  # 1: Santiago's missing midnight
    lengths = {(p.end - p.start) for p in due}
    assert lengths == {timedelta(hours=h) for h in (23, 24, 25)}
    assert moved_to is not None and moved_to.local_start.date() == date(2026, 1, 1)
    # Weekly, the same: 52 whole weeks, each starting 7 local days after the last.
    weekly = Subscription(**{**sub.__dict__, "current_period_end": wall(tz, 2025, 1, 8, hour)})
    weeks, _ = due_periods(weekly, "week", 1, tz, wall(tz, 2026, 1, 1, hour))
    assert [p.local_start.date() for p in weeks] == [first + timedelta(weeks=n) for n in range(52)]


@pytest.mark.parametrize(
    ("tz", "first"), [("America/Santiago", date(2025, 9, 4)), ("Europe/London", date(2025, 3, 28))]
)
def test_daily_invoices_across_the_dst_change(
    db: firestore.Client, call_function: Any, tz: str, first: date
) -> None:
    f.tenant(db, T, timezone=tz, grace_period_hours=0, currency="GBP")
    f.plan(
        db,
        T,
        "daily",
        [{"type": "fixed", "description": "Day pass", "unit_amount_decimal": "100"}],
        interval="day",
    )
    f.customer(db, T, "dee")
    sub = daily(tz, first)
    assert sub.current_period_start is not None and sub.current_period_end is not None
    f.subscription(
        db, T, "sub-dee", "dee", "daily", **anniversary(sub.current_period_start, sub.current_period_end)
    )
    stop = first + timedelta(days=7)
    body = run(call_function, wall(tz, stop.year, stop.month, stop.day).isoformat())
    assert (body["generated"], body["errors"]) == (7, []), body
    invoices = f.invoices(db, T)
    assert sorted(invoices) == [f"sub-dee-{first + timedelta(days=n):%Y%m%d}" for n in range(7)]
    assert {inv["total"] for inv in invoices.values()} == {120}  # a full day's fee each, + VAT


# -- item 8a: a stub first period keeps current_period_end as the anchor and is prorated ----------
def test_stub_first_period_is_prorated_and_keeps_its_end_as_anchor(
    db: firestore.Client, call_function: Any
) -> None:
    # Stripe: a subscription created on 20 January with billing_cycle_anchor 1 February bills a
    # prorated stub 20..31 January, then whole months from the 1st. Monthly, London (GMT).
    f.tenant(db, T, grace_period_hours=0)
    f.plan(db, T, "monthly", [{"type": "fixed", "description": "Plan", "unit_amount_decimal": "3100"}])
    f.customer(db, T, "stu")
    f.subscription(db, T, "sub-stu", "stu", "monthly", **anniversary(utc(2026, 1, 20, 15), utc(2026, 2, 1)))
    body = run(call_function, "2026-03-01T00:30:00Z")
    assert (body["generated"], body["errors"]) == (2, []), body
    invoices = f.invoices(db, T)
    assert sorted(invoices) == ["sub-stu-20260120", "sub-stu-20260201"]
    stub, february = invoices["sub-stu-20260120"], invoices["sub-stu-20260201"]
    (fee,) = stub["lines"]
    # The stub is part of the anchored period 1 January .. 1 February (31 days): 20..31 = 12.
    assert fee["description"] == "Plan (12 of 31 days)" and fee["amount"] == 1200
    assert (february["period_start"], february["period_end"]) == (utc(2026, 2, 1), utc(2026, 3, 1))
    assert [line["amount"] for line in february["lines"]] == [3100]
    moved = db.document(f"tenants/{T}/subscriptions/sub-stu").get().to_dict() or {}
    assert (moved["current_period_start"], moved["current_period_end"], moved["billing_cycle_anchor"]) == (
        utc(2026, 3, 1),
        utc(2026, 3, 31, 23),
        utc(2026, 2, 1),
    )  # 1 April 00:00 BST


def test_cycle_anchor_rules() -> None:
    tz = "Europe/London"

    def anchored(start: datetime, end: datetime, anchor: datetime | None = None) -> datetime:
        s = Subscription(
            id="s",
            customer_id="c",
            plan_id="p",
            status="active",
            billing_time="anniversary",
            started_at=start,
            current_period_start=start,
            current_period_end=end,
            billing_cycle_anchor=anchor,
        )
        return s.cycle_anchor("month", 1, tz)

    # A whole period: its start (31 January keeps its day of month, Feb 28 is a clamp).
    assert anchored(utc(2026, 1, 31, 10), utc(2026, 2, 28, 10)) == utc(2026, 1, 31, 10)
    # A stub: its end, the schedule's position.
    assert anchored(utc(2026, 1, 20), utc(2026, 2, 1)) == utc(2026, 2, 1)
    # billing_cycle_anchor, when set, wins.
    assert anchored(utc(2026, 1, 20), utc(2026, 2, 1), utc(2026, 1, 5)) == utc(2026, 1, 5)
