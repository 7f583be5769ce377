"""Proration of fixed charges and trials, with worked numbers (pure: no emulator needed).

Convention (``billing.pricing.proration``): local calendar days in the tenant's timezone; a day on which
the subscription was billable for any part counts whole; fee = price x active days / period days;
trial days are not billable; a plan change inside a day bills that day on both plans.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing.errors import DataError
from billing.pricing.invoicing import build_invoice
from billing.pricing.periods import BillingPeriod, local_midnight, month_period
from billing.pricing.proration import billable_window, proration_days
from billing.records import Customer, Plan, Subscription, Tenant

LONDON = "Europe/London"
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def london(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    """A wall-clock time in London, as an aware UTC instant."""
    from zoneinfo import ZoneInfo

    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=ZoneInfo(LONDON)).astimezone(
        UTC
    )


def sub(
    started_at: datetime = EPOCH,
    canceled_at: datetime | None = None,
    trial_end: datetime | None = None,
    plan_id: str = "pro",
) -> Subscription:
    return Subscription(
        id="s1",
        customer_id="c1",
        plan_id=plan_id,
        status="active",
        billing_time="calendar",
        started_at=started_at,
        canceled_at=canceled_at,
        trial_end=trial_end,
    )


OCTOBER = month_period(2026, 10, LONDON)  # [2026-09-30T23:00Z, 2026-11-01T00:00Z), 31 days


def fee(subscription: Subscription, period: BillingPeriod, price: str) -> int:
    """The fixed line's amount through the real invoice builder (0 when no line)."""
    tenant = Tenant.parse(
        "t",
        {
            "name": "T",
            "status": "active",
            "timezone": period.timezone,
            "currency": "GBP",
            "invoice_prefix": "T",
            "payment_terms_days": 14,
            "tax_rates": {},
        },
    )
    customer = Customer.parse("c1", {"name": "C", "status": "active"})
    plan = Plan.parse(
        subscription.plan_id,
        {
            "currency": "GBP",
            "interval": "month",
            "interval_count": 1,
            "charges": [{"type": "fixed", "description": "Plan", "unit_amount_decimal": price}],
        },
    )
    draft = build_invoice(
        tenant=tenant,
        customer=customer,
        subscription=subscription,
        plan=plan,
        meters={},
        period=period,
        usage={},
        usage_events=0,
    )
    return sum(line.amount for line in draft.lines)


# -- month lengths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month", "days"),
    [
        (2026, 2, 28),  # February, common year
        (2028, 2, 29),  # February, leap year
        (2026, 4, 30),  # April
        (2026, 11, 30),  # November (GMT all month)
        (2026, 3, 31),  # March: BST starts on the 29th (743 hours, still 31 days)
        (2026, 10, 31),  # October: BST ends on the 25th (745 hours, still 31 days)
        (2026, 12, 31),
    ],
)
def test_period_days_are_local_calendar_days(year: int, month: int, days: int) -> None:
    period = month_period(year, month, LONDON)
    assert proration_days(sub(), period) == (days, days)
    assert fee(sub(), period, "3100") == 3100  # full month: the full price, no proration


@pytest.mark.parametrize(
    ("year", "month", "days", "price", "expected"),
    [
        # started on the 15th at 10:00 London: 15th..last day
        (2026, 2, 28, "2800", 1400),  # 14 of 28 days: 2800 x 14/28 = 1400
        (2028, 2, 29, "2900", 1500),  # 15 of 29 days: 2900 x 15/29 = 1500
        (2026, 4, 30, "3000", 1600),  # 16 of 30 days: 3000 x 16/30 = 1600
        (2026, 10, 31, "3100", 1700),  # 17 of 31 days: 3100 x 17/31 = 1700
        (2026, 10, 31, "1000", 548),  # 17 of 31 days: 1000 x 17/31 = 548.387... -> 548
        (2026, 4, 30, "999", 533),  # 16 of 30 days: 999 x 16/30 = 532.8 -> 533
    ],
)
def test_start_mid_month(year: int, month: int, days: int, price: str, expected: int) -> None:
    period = month_period(year, month, LONDON)
    subscription = sub(started_at=london(year, month, 15, 10))
    assert proration_days(subscription, period) == (days - 14, days)
    assert fee(subscription, period, price) == expected


def test_days_are_counted_in_the_tenants_timezone_not_utc() -> None:
    # 15 October 00:00 BST is 14 October 23:00 UTC: the 14th is not touched in London.
    assert proration_days(sub(started_at=utc(2026, 10, 14, 23)), OCTOBER) == (17, 31)
    # One minute earlier is 14 October 23:59 BST: the 14th counts (a partial day is whole).
    assert proration_days(sub(started_at=utc(2026, 10, 14, 22, 59)), OCTOBER) == (18, 31)
    # The first instant of the month in London (30 September 23:00 UTC): the whole month.
    assert proration_days(sub(started_at=utc(2026, 9, 30, 23)), OCTOBER) == (31, 31)


def test_partial_days_count_as_whole_days() -> None:
    # Started on 31 October at 23:59:59 London: 1 of 31 days; 3100 x 1/31 = 100
    last_second = sub(started_at=london(2026, 10, 31, 23, 59, 59))
    assert proration_days(last_second, OCTOBER) == (1, 31)
    assert fee(last_second, OCTOBER, "3100") == 100


def test_cancel_mid_month_and_at_midnight() -> None:
    # Canceled on 10 October at 00:00 London: active on the 1st..9th only (end exclusive): 9 days
    at_midnight = sub(canceled_at=london(2026, 10, 10))
    assert proration_days(at_midnight, OCTOBER) == (9, 31)
    assert fee(at_midnight, OCTOBER, "3100") == 900
    # One second later the 10th is touched: 10 days, 3100 x 10/31 = 1000
    assert proration_days(sub(canceled_at=london(2026, 10, 10, 0, 0, 1)), OCTOBER) == (10, 31)
    # Canceled on 26 October at 12:00 (after BST ended on the 25th): 1st..26th = 26 days
    assert proration_days(sub(canceled_at=london(2026, 10, 26, 12)), OCTOBER) == (26, 31)


def test_start_and_cancel_in_the_same_period() -> None:
    # 5 October 10:00 -> 12 October 09:00: 5th..12th = 8 days; 3100 x 8/31 = 800
    s = sub(started_at=london(2026, 10, 5, 10), canceled_at=london(2026, 10, 12, 9))
    assert proration_days(s, OCTOBER) == (8, 31)
    assert fee(s, OCTOBER, "3100") == 800
    # Started and canceled on the same day (one hour): 1 day = 100
    same_day = sub(started_at=london(2026, 10, 5, 10), canceled_at=london(2026, 10, 5, 11))
    assert proration_days(same_day, OCTOBER) == (1, 31)
    assert fee(same_day, OCTOBER, "3100") == 100


def test_outside_the_period_pays_nothing() -> None:
    assert proration_days(sub(started_at=utc(2026, 11, 1)), OCTOBER) == (0, 31)
    assert proration_days(sub(canceled_at=utc(2026, 9, 30, 23)), OCTOBER) == (0, 31)
    assert fee(sub(started_at=utc(2026, 11, 1)), OCTOBER, "3100") == 0
    assert billable_window(sub(canceled_at=utc(2026, 9, 30, 23)), OCTOBER) is None


# -- trials ----------------------------------------------------------------------------------------------


def test_trial_ending_mid_period() -> None:
    # Trial until 10 October 12:00 London: billable 10th (partial, whole)..31st = 22 days;
    # 3100 x 22/31 = 2200
    s = sub(trial_end=london(2026, 10, 10, 12))
    assert proration_days(s, OCTOBER) == (22, 31)
    assert fee(s, OCTOBER, "3100") == 2200
    # Trial until 10 October 00:00 exactly: the trial covered the 1st..9th; 22 days too
    assert proration_days(sub(trial_end=london(2026, 10, 10)), OCTOBER) == (22, 31)


def test_no_fixed_fee_while_the_trial_lasts() -> None:
    # Trial ends after the period: nothing to pay for October (no fixed line at all)
    s = sub(started_at=london(2026, 10, 20), trial_end=london(2026, 11, 3))
    assert proration_days(s, OCTOBER) == (0, 31)
    assert fee(s, OCTOBER, "3100") == 0
    # Trial ended before the period: the full month
    assert proration_days(sub(trial_end=london(2026, 9, 15)), OCTOBER) == (31, 31)
    # Started on the 20th with a 7-day trial: billable from 27 October 00:00 = 27th..31st = 5
    week = sub(started_at=london(2026, 10, 20), trial_end=london(2026, 10, 27))
    assert proration_days(week, OCTOBER) == (5, 31)
    assert fee(week, OCTOBER, "3100") == 500


def test_trial_and_cancel_in_the_same_period() -> None:
    # Trial to 10 October 00:00, canceled 20 October 15:00: 10th..20th = 11 days = 1100
    s = sub(trial_end=london(2026, 10, 10), canceled_at=london(2026, 10, 20, 15))
    assert proration_days(s, OCTOBER) == (11, 31)
    assert fee(s, OCTOBER, "3100") == 1100
    # Canceled during the trial: nothing
    assert proration_days(sub(trial_end=london(2026, 10, 10), canceled_at=london(2026, 10, 5)), OCTOBER) == (
        0,
        31,
    )


# -- plan change: old canceled at T, new started at T ----------------------------------------------------


def test_plan_change_inside_a_day_bills_that_day_on_both_plans() -> None:
    # GBP 31.00 -> GBP 62.00 on 15 October at 12:00 London.
    t = london(2026, 10, 15, 12)
    old, new = sub(canceled_at=t), sub(started_at=t, plan_id="pro2")
    # old: 1st..15th = 15 days, 3100 x 15/31 = 1500; new: 15th..31st = 17 days, 6200 x 17/31 = 3400
    assert proration_days(old, OCTOBER) == (15, 31)
    assert proration_days(new, OCTOBER) == (17, 31)
    assert fee(old, OCTOBER, "3100") == 1500
    assert fee(new, OCTOBER, "6200") == 3400
    # 15 + 17 = 32 day-charges for 31 days: the 15th is billed on both plans (documented).


@pytest.mark.parametrize(
    ("year", "month", "days"), [(2026, 2, 28), (2028, 2, 29), (2026, 4, 30), (2026, 10, 31), (2026, 3, 31)]
)
def test_plan_change_at_local_midnight_pays_every_day_exactly_once(year: int, month: int, days: int) -> None:
    # Changed at 00:00 London on the 16th: old 1st..15th = 15 days, new 16th..end = days - 15
    period = month_period(year, month, LONDON)
    t = london(year, month, 16)
    old_days, _ = proration_days(sub(canceled_at=t), period)
    new_days, _ = proration_days(sub(started_at=t), period)
    assert (old_days, new_days) == (15, days - 15)
    assert old_days + new_days == days


def test_plan_change_at_midnight_october_amounts() -> None:
    # 3100 x 15/31 = 1500 and 6200 x 16/31 = 3200: 4700 for October, every day once
    t = london(2026, 10, 16)
    assert fee(sub(canceled_at=t), OCTOBER, "3100") + fee(sub(started_at=t), OCTOBER, "6200") == 4700


# -- DST and timezones --------------------------------------------------------------------------------------


def test_dst_start_day_in_london() -> None:
    # 29 March 2026: 01:00 GMT -> 02:00 BST. Started at 00:30 local (00:30 UTC): 29th..31st = 3
    march = month_period(2026, 3, LONDON)
    assert proration_days(sub(started_at=utc(2026, 3, 29, 0, 30)), march) == (3, 31)
    # Started at 03:00 BST (02:00 UTC) the same day: still 3 days
    assert proration_days(sub(started_at=utc(2026, 3, 29, 2)), march) == (3, 31)


def test_midnight_dst_change_in_santiago() -> None:
    # Chile: on 6 September 2026 local midnight does not exist (00:00 -04 -> 01:00 -03); the
    # local day starts at 04:00 UTC and lasts 23 hours. September has 30 local days.
    tz = "America/Santiago"
    september = month_period(2026, 9, tz)
    assert proration_days(sub(), september) == (30, 30)
    first_of_sixth = local_midnight(date(2026, 9, 6), tz)
    assert first_of_sixth == utc(2026, 9, 6, 4)
    # Canceled at the first instant of the 6th: 1st..5th = 5 days; a second later: 6 days
    assert proration_days(sub(canceled_at=first_of_sixth), september) == (5, 30)
    assert proration_days(sub(canceled_at=first_of_sixth + timedelta(seconds=1)), september) == (6, 30)
    # Started at 23:30 -04 on the 5th (03:30 UTC on the 6th): the 5th counts: 5th..30th = 26
    assert proration_days(sub(started_at=utc(2026, 9, 6, 3, 30)), september) == (26, 30)


def test_other_timezone_month() -> None:
    # Tokyo, September 2026 (30 days): started 2026-09-10T15:00Z = 11 September 00:00 JST:
    # 11th..30th = 20 days; 3000 x 20/30 = 2000
    september = month_period(2026, 9, "Asia/Tokyo")
    s = sub(started_at=utc(2026, 9, 10, 15))
    assert proration_days(s, september) == (20, 30)
    assert fee(s, september, "3000") == 2000


# -- periods whose boundaries are not at local midnight (anniversary) ------------------------------------

ANNIVERSARY = BillingPeriod(
    start=london(2026, 1, 15, 14, 32), end=london(2026, 2, 15, 14, 32), timezone=LONDON
)  # 15 January .. 14 February: 31 days


def test_anniversary_period_full() -> None:
    # The 15 February date belongs to the next period (it starts there): 31 days, not 32.
    assert proration_days(sub(), ANNIVERSARY) == (31, 31)


def test_anniversary_period_partial() -> None:
    # Canceled 10 February 09:00: 15 January..10 February = 27 of 31 days; 3100 -> 2700
    canceled = sub(canceled_at=london(2026, 2, 10, 9))
    assert proration_days(canceled, ANNIVERSARY) == (27, 31)
    assert fee(canceled, ANNIVERSARY, "3100") == 2700
    # Started 20 January 08:00 (plan change into this period): 20 January..14 February = 26
    assert proration_days(sub(started_at=london(2026, 1, 20, 8)), ANNIVERSARY) == (26, 31)
    # Canceled 15 February 10:00, before the period's end at 14:32: the full 31 days
    assert proration_days(sub(canceled_at=london(2026, 2, 15, 10)), ANNIVERSARY) == (31, 31)


def test_anniversary_consecutive_periods_share_no_day() -> None:
    # A subscription canceled on 20 February 12:00 pays 15 Jan..14 Feb (31) in the first period
    # and 15..20 February (6 of 28) in the next one: every day once.
    nxt = BillingPeriod(start=ANNIVERSARY.end, end=london(2026, 3, 15, 14, 32), timezone=LONDON)
    s = sub(started_at=ANNIVERSARY.start, canceled_at=london(2026, 2, 20, 12))
    assert proration_days(s, ANNIVERSARY) == (31, 31)
    assert proration_days(s, nxt) == (6, 28)


def test_daily_and_weekly_periods() -> None:
    day = BillingPeriod(start=london(2026, 10, 5), end=london(2026, 10, 6), timezone=LONDON)
    assert proration_days(sub(started_at=london(2026, 10, 5, 18)), day) == (1, 1)
    week = BillingPeriod(start=london(2026, 10, 5), end=london(2026, 10, 12), timezone=LONDON)
    # started Thursday 8 October 09:00: Thursday..Sunday = 4 of 7; 700 x 4/7 = 400
    s = sub(started_at=london(2026, 10, 8, 9))
    assert proration_days(s, week) == (4, 7)
    assert fee(s, week, "700") == 400


def test_prorated_line_shape() -> None:
    # The builder shows the prorated unit price (12 decimals) and the days in the description.
    s = sub(started_at=london(2026, 10, 15, 10))
    tenant = Tenant.parse(
        "t",
        {
            "name": "T",
            "status": "active",
            "timezone": LONDON,
            "currency": "GBP",
            "invoice_prefix": "T",
            "payment_terms_days": 14,
            "tax_rates": {},
        },
    )
    plan = Plan.parse(
        "pro",
        {
            "currency": "GBP",
            "interval": "month",
            "charges": [{"type": "fixed", "description": "Pro plan", "unit_amount_decimal": "1000"}],
        },
    )
    draft = build_invoice(
        tenant=tenant,
        customer=Customer.parse("c1", {"name": "C", "status": "active"}),
        subscription=s,
        plan=plan,
        meters={},
        period=OCTOBER,
        usage={},
        usage_events=0,
    )
    (line,) = draft.lines
    # 1000 x 17/31 = 548.387096774193548... -> unit 548.387096774194 (12 places), amount 548
    assert line.description == "Pro plan (17 of 31 days)"
    assert line.unit_amount_decimal == Decimal("548.387096774194")
    assert (line.quantity, line.amount) == (Decimal(1), 548)


def test_stub_period_is_prorated_over_its_full_anchored_period() -> None:
    # Issue 8 item 8a (Stripe's stub): a monthly plan anchored on 1 February bills the stub
    # 20 January 15:00 .. 1 February as 12 of the 31 days of 1 January .. 1 February, both when
    # the stub is the stored period and after the advance (the draft re-priced at finalization).
    monthly = Plan.parse("pro", {"currency": "GBP", "interval": "month", "charges": []})
    stub = BillingPeriod(london(2026, 1, 20, 15), london(2026, 2, 1), LONDON)

    def anniversary(start: datetime, end: datetime, anchor: datetime | None = None) -> Subscription:
        return Subscription(
            id="s1",
            customer_id="c1",
            plan_id="pro",
            status="active",
            billing_time="anniversary",
            started_at=stub.start,
            current_period_start=start,
            current_period_end=end,
            billing_cycle_anchor=anchor,
        )

    stored = anniversary(stub.start, stub.end)
    advanced = anniversary(stub.end, london(2026, 3, 1), stub.end)
    assert proration_days(stored, stub, monthly) == (12, 31)
    assert proration_days(advanced, stub, monthly) == (12, 31)
    # A whole period, and any period of a calendar subscription, count their own days.
    february = BillingPeriod(london(2026, 2, 1), london(2026, 3, 1), LONDON)
    assert proration_days(advanced, february, monthly) == (28, 28)
    assert proration_days(sub(started_at=stub.start), stub, monthly) == (12, 12)


def test_suspended_days_are_taken_out_of_fixed_fees() -> None:
    # Issue 8 item 5. October 2026, London. A day counts when billable and not suspended at some
    # instant of it: the days a suspension starts (13:00) and ends (10:00) are billed.
    from billing.records import SuspensionInterval, parse_suspensions

    def suspended(*spans: tuple[datetime | None, datetime | None]) -> Subscription:
        s = sub()
        return Subscription(
            **{**s.__dict__, "suspensions": tuple(SuspensionInterval(a, b) for a, b in spans)}
        )

    middle = suspended((london(2026, 10, 11, 13), london(2026, 10, 21, 10)))
    assert proration_days(middle, OCTOBER) == (22, 31)  # 1..11 and 21..31
    # Midnight to midnight: 12..20 October free, the rest billed.
    exact = suspended((london(2026, 10, 12), london(2026, 10, 21)))
    assert proration_days(exact, OCTOBER) == (22, 31)
    assert proration_days(suspended((None, None)), OCTOBER) == (0, 31)
    assert proration_days(suspended((london(2026, 10, 30, 1), None)), OCTOBER) == (30, 31)
    # The customer's suspensions count too, overlapping ones once; cancellation still clips.
    customer = Customer.parse(
        "c1",
        {
            "name": "C",
            "status": "active",
            "suspensions": [{"from": london(2026, 10, 15), "to": london(2026, 10, 26)}],
        },
    )
    assert proration_days(middle, OCTOBER, customer=customer) == (17, 31)  # 1..11, 26..31
    canceled = Subscription(**{**middle.__dict__, "canceled_at": london(2026, 10, 25, 12)})
    assert proration_days(canceled, OCTOBER) == (16, 31)  # 1..11 and 21..25
    assert fee(middle, OCTOBER, "3100") == 2200

    # Data written by hand (the status read with the list).
    where = "subscriptions/x"
    t0, t1 = london(2026, 10, 5), london(2026, 10, 9)
    assert parse_suspensions({"status": "suspended", "suspended_at": t0}, where) == (
        SuspensionInterval(t0, None),
    )
    assert parse_suspensions({"status": "suspended"}, where) == (SuspensionInterval(None, None),)
    reopened = {"status": "active", "suspensions": [{"from": t0, "to": None}]}
    assert parse_suspensions(reopened, where) == ()
    assert parse_suspensions({**reopened, "reactivated_at": t1}, where) == (SuspensionInterval(t0, t1),)
    assert parse_suspensions({"status": "canceled", "suspensions": [{"from": t0}]}, where) == (
        SuspensionInterval(t0, None),
    )
    for bad in (
        {"suspensions": "2026-10-05"},
        {"suspensions": [{"from": "yesterday"}]},
        {"suspensions": [{"from": t1, "to": t0}]},
    ):
        with pytest.raises(DataError):
            parse_suspensions(bad, where)
