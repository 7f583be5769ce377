"""Due periods of an anniversary subscription directly (issue 9, item 7): ``billing.runs.anniversary``.

``due_periods(sub, interval, count, tz, as_of)``: the periods to invoice now, oldest first, and
the period the subscription moves to. A period is due once it has ended; a subscription canceled
inside a period gets that period as its final invoice once the cancellation has passed; at most
``MAX_PERIODS_PER_RUN`` per run. ``next_period`` follows the anchored schedule (Stripe's
``billing_cycle_anchor``). Europe/London in winter is UTC, which keeps the instants readable;
the DST cases are in ``tests/e2e/runs/test_anniversary_schedule.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

from billing.pricing.periods import BillingPeriod
from billing.records import Subscription
from billing.runs.anniversary import MAX_PERIODS_PER_RUN, due_periods, next_period

TZ = "Europe/London"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def sub(start: datetime, end: datetime, **fields: object) -> Subscription:
    """An active anniversary subscription whose current period is ``[start, end)``."""
    values: dict[str, object] = {
        "id": "s",
        "customer_id": "c",
        "plan_id": "p",
        "status": "active",
        "billing_time": "anniversary",
        "started_at": start,
        "current_period_start": start,
        "current_period_end": end,
    }
    values.update(fields)
    return Subscription(**values)  # type: ignore[arg-type]


JAN = sub(utc(2026, 1, 10, 9), utc(2026, 2, 10, 9))


def spans(periods: list[BillingPeriod]) -> list[tuple[datetime, datetime]]:
    return [(p.start, p.end) for p in periods]


def test_nothing_is_due_before_the_period_ends() -> None:
    assert due_periods(JAN, "month", 1, TZ, utc(2026, 2, 10, 8, 59, 59)) == ([], None)


def test_a_period_is_due_at_its_end_and_the_subscription_moves_to_the_next() -> None:
    due, moved_to = due_periods(JAN, "month", 1, TZ, utc(2026, 2, 10, 9))
    assert spans(due) == [(utc(2026, 1, 10, 9), utc(2026, 2, 10, 9))]
    assert moved_to is not None and (moved_to.start, moved_to.end) == (
        utc(2026, 2, 10, 9),
        utc(2026, 3, 10, 9),
    )


def test_missed_periods_are_due_oldest_first_and_contiguous() -> None:
    due, moved_to = due_periods(JAN, "month", 1, TZ, utc(2026, 5, 1))
    assert [p.start for p in due] == [utc(2026, m, 10, 9) for m in (1, 2, 3)]
    assert all(a.end == b.start for a, b in pairwise(due))
    # 10 April is in BST: the schedule keeps 09:00 local time, 08:00 UTC.
    assert moved_to is not None and moved_to.start == utc(2026, 4, 10, 8)
    assert moved_to.local_start.strftime("%Y-%m-%d %H") == "2026-04-10 09"


def test_a_cancellation_inside_the_period_makes_it_due_once_passed() -> None:
    canceled = JAN.__class__(**{**JAN.__dict__, "canceled_at": utc(2026, 1, 20)})
    assert due_periods(canceled, "month", 1, TZ, utc(2026, 1, 19)) == ([], None)
    due, _ = due_periods(canceled, "month", 1, TZ, utc(2026, 1, 20))
    assert spans(due) == [(utc(2026, 1, 10, 9), utc(2026, 2, 10, 9))]  # the final invoice, prorated later
    due, _ = due_periods(canceled, "month", 1, TZ, utc(2026, 6, 1))
    assert len(due) == 1  # nothing after the cancellation


def test_a_cancellation_at_or_before_the_period_start_bills_nothing() -> None:
    for at in (utc(2026, 1, 10, 9), utc(2026, 1, 1)):
        canceled = JAN.__class__(**{**JAN.__dict__, "canceled_at": at})
        assert due_periods(canceled, "month", 1, TZ, utc(2026, 6, 1)) == ([], None)


def test_a_cancellation_at_the_period_end_bills_that_period_only() -> None:
    canceled = JAN.__class__(**{**JAN.__dict__, "canceled_at": utc(2026, 2, 10, 9)})
    due, _ = due_periods(canceled, "month", 1, TZ, utc(2026, 6, 1))
    assert spans(due) == [(utc(2026, 1, 10, 9), utc(2026, 2, 10, 9))]


def test_one_run_invoices_at_most_max_periods_per_run() -> None:
    daily = sub(utc(2020, 1, 1), utc(2020, 1, 2))
    due, moved_to = due_periods(daily, "day", 1, TZ, utc(2026, 1, 1))
    assert len(due) == MAX_PERIODS_PER_RUN
    assert moved_to is not None and moved_to.start == due[-1].end  # the next run goes on from here


def test_interval_count_steps_over_several_intervals() -> None:
    quarterly = sub(utc(2026, 1, 10, 9), utc(2026, 4, 10, 8))  # 09:00 BST is 08:00 UTC
    due, moved_to = due_periods(quarterly, "month", 3, TZ, utc(2027, 1, 1))
    assert [p.local_start.strftime("%Y-%m-%d %H") for p in due] == [
        "2026-01-10 09",
        "2026-04-10 09",
        "2026-07-10 09",
    ]
    assert moved_to is not None and moved_to.local_start.strftime("%Y-%m-%d %H") == "2026-10-10 09"


def test_next_period_realigns_an_off_schedule_period_on_the_anchor() -> None:
    anchored = sub(utc(2026, 1, 10, 9), utc(2026, 2, 10, 9), billing_cycle_anchor=utc(2026, 1, 10, 9))
    after_odd_end = next_period(anchored, utc(2026, 2, 3), "month", 1, TZ)
    assert (after_odd_end.start, after_odd_end.end) == (utc(2026, 2, 3), utc(2026, 2, 10, 9))


def test_a_sliver_on_the_same_local_day_joins_the_following_period() -> None:
    anchored = sub(utc(2026, 1, 10, 9), utc(2026, 2, 10, 9), billing_cycle_anchor=utc(2026, 1, 10, 9))
    # A period stored to end at 02:00 on 10 February: the boundary at 09:00 that day would make
    # a 7-hour period starting the same local day; it is folded into the next one.
    folded = next_period(anchored, utc(2026, 2, 10, 2), "month", 1, TZ)
    assert (folded.start, folded.end) == (utc(2026, 2, 10, 2), utc(2026, 3, 10, 9))


def test_before_the_anchor_the_period_is_one_interval_long() -> None:
    later_anchor = sub(utc(2026, 1, 10, 9), utc(2026, 2, 10, 9), billing_cycle_anchor=utc(2026, 6, 1))
    early = next_period(later_anchor, utc(2026, 2, 10, 9), "month", 1, TZ)
    assert (early.start, early.end) == (utc(2026, 2, 10, 9), utc(2026, 3, 10, 9))
