"""Proration of fixed charges: how many of a billing period's days a subscription pays for.

Convention (issue 3: "calendar days in the tenant's timezone, partial days counted as whole
days, divided by the days in the period"; Lago prorates fixed fees by calendar day the same way,
whereas Stripe prorates by the second):

- The period's days are the local calendar dates ``d`` (tenant's IANA timezone, zoneinfo) with
  ``local_start.date() <= d < local_end.date()``: 28, 29, 30 or 31 for a calendar month,
  whatever DST does inside it (October 2026 in Europe/London lasts 31 days and one hour and has
  31 days). When a boundary is not at local midnight (an anniversary period anchored at 14:32),
  the date holding the boundary belongs to the period that *starts* there, so consecutive periods
  share no day.
- The subscription is billable on ``[max(started_at, trial_end), canceled_at)`` clipped to the
  period: after it starts, once its trial is over (no fixed fee while ``trial_end`` is in the
  future), before it is canceled. Usage is never prorated and is not affected by the trial here
  (``billing.pricing.usage`` counts events in ``[started_at, canceled_at)``).
- A date counts as a whole day when the subscription was billable for any part of it. The end is
  exclusive: canceled at exactly local midnight does not touch the day that starts then. A
  subscription started and canceled on the same day pays one day.
- Suspension (issue 8 item 5, after Kill Bill's blocking-billing state: no period is lost or
  skipped for suspension): the times the subscription *or* its customer were suspended
  (``Subscription.suspensions``, ``Customer.suspensions``: ``[from, to)``) are taken out of the
  billable window. A date counts when the subscription was billable and not suspended at some
  instant of it, the same whole-day rule as above: the day a suspension starts at 13:00 and
  the day it ends at 10:00 are both billed (there was service on each); only days suspended from
  their first to their last instant are free. Usage is billed in full, suspended or not.
- A stub anniversary period (shorter than one interval, ending on the anchored schedule, e.g.
  Jan 20 - Feb 1 of a monthly plan anchored on the 1st) counts the days of the full anchored
  period that contains it (Jan 1 - Feb 1: 31), as Stripe prorates a first period up to its
  billing cycle anchor (``full_period_days``).
- The fee is ``unit price x active_days / period_days`` (the invoice builder rounds the prorated
  unit price to 12 decimals, then the line once, ROUND_HALF_UP).

Plan change at instant ``T`` (modelled, like Stripe's subscription update, as the old
subscription canceled at ``T`` and the new one started at ``T``): each is prorated on its own
with the rule above, so when ``T`` is at local midnight every day is paid exactly once, and when
``T`` falls inside a day *that day is billed on both plans* (a partial day counts as a whole day
for each of them). Worked example, October 2026 (31 days), GBP 31.00 -> GBP 62.00 on 15 October
at 12:00 London: old plan 1-15 October = 15/31 x 3100 = 1500; new plan 15-31 October = 17/31 x
6200 = 3400; 32 day-charges for 31 days. To bill every day exactly once, make the change at the
next local midnight (16 October 00:00: 1500 + 16/31 x 6200 = 1500 + 3200).

Errors: none raised for valid records (``Subscription`` and ``BillingPeriod`` are already
checked); a window that is empty after clipping gives 0 active days.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from billing.pricing.periods import BillingPeriod, anniversary_period, local_midnight, zone
from billing.records import Customer, Plan, Subscription

_ONE_DAY = timedelta(days=1)


def billable_window(subscription: Subscription, period: BillingPeriod) -> tuple[datetime, datetime] | None:
    """Return ``[from, until)``, the part of ``period`` in which fixed fees accrue, or ``None``.

    ``from = max(period.start, started_at, trial_end)``, ``until = min(period.end, canceled_at)``.
    """
    active_from = max(period.start, subscription.started_at)
    if subscription.trial_end is not None:
        active_from = max(active_from, subscription.trial_end)
    active_until = period.end
    if subscription.canceled_at is not None:
        active_until = min(active_until, subscription.canceled_at)
    if active_from >= active_until:
        return None
    return active_from, active_until


def _last_day(until: datetime, tz: str) -> date:
    """The local date of the last instant before ``until`` (end-exclusive)."""
    day = until.astimezone(zone(tz)).date()
    if local_midnight(day, tz) == until:
        return day - _ONE_DAY
    return day


def _days(period: BillingPeriod) -> int:
    """The local calendar dates a period holds (its first date up to the next period's)."""
    return (period.local_end.date() - period.local_start.date()).days


def full_period_days(subscription: Subscription, period: BillingPeriod, plan: Plan | None) -> int:
    """The days a whole fee pays for: the period's own, or a stub's full anchored period.

    A *stub* is an anniversary period shorter than one interval that ends on the subscription's
    anchored schedule (``Subscription.cycle_anchor``), e.g. Jan 20 - Feb 1 of a monthly plan
    anchored on the 1st: its fee is prorated over the anchored period that contains it, Jan 1 -
    Feb 1 (31 days), as Stripe prorates a first period up to the billing cycle anchor. Calendar
    periods, whole periods and periods longer than an interval use their own days.
    """
    own = _days(period)
    if plan is None or subscription.billing_time != "anniversary":
        return own
    anchor = subscription.cycle_anchor(plan.interval, plan.interval_count, period.timezone)
    full = anniversary_period(anchor, plan.interval, plan.interval_count, period.timezone, period.start)
    if full.end == period.end and full.start < period.start:
        return _days(full)
    return own


def active_windows(
    subscription: Subscription, period: BillingPeriod, customer: Customer | None = None
) -> list[tuple[datetime, datetime]]:
    """The parts ``[from, until)`` of ``period`` in which fixed fees accrue, oldest first.

    The billable window (``billable_window``) minus every suspension of the subscription and of
    ``customer``. An empty list: nothing accrues.
    """
    window = billable_window(subscription, period)
    pieces = [] if window is None else [window]
    suspensions = subscription.suspensions + (customer.suspensions if customer else ())
    for suspension in suspensions:
        kept: list[tuple[datetime, datetime]] = []
        for begin, until in pieces:
            cut_from = begin if suspension.start is None else suspension.start
            cut_until = until if suspension.end is None else suspension.end
            if cut_until <= begin or cut_from >= until:
                kept.append((begin, until))
                continue
            if begin < cut_from:
                kept.append((begin, cut_from))
            if cut_until < until:
                kept.append((cut_until, until))
        pieces = kept
    return sorted(pieces)


def suspended_during(
    subscription: Subscription, period: BillingPeriod, customer: Customer | None = None
) -> bool:
    """True when a suspension of the subscription or ``customer`` overlaps ``period``."""
    for suspension in subscription.suspensions + (customer.suspensions if customer else ()):
        if (suspension.start is None or suspension.start < period.end) and (
            suspension.end is None or suspension.end > period.start
        ):
            return True
    return False


def proration_days(
    subscription: Subscription,
    period: BillingPeriod,
    plan: Plan | None = None,
    customer: Customer | None = None,
) -> tuple[int, int]:
    """Return ``(active_days, period_days)`` for prorating fixed fees over ``period``.

    ``active_days`` is in ``0..period_days``; the fee is the full one when they are equal. See
    the module docstring for the convention (local calendar days, partial days whole, trial and
    suspensions excluded, end exclusive). With ``plan``, a stub anniversary period counts the
    days of its full anchored period (``full_period_days``); with ``customer``, the customer's
    suspensions count as well as the subscription's.
    """
    tz = period.timezone
    first_day = period.local_start.date()
    end_day = period.local_end.date()  # first date of the next period
    period_days = full_period_days(subscription, period, plan)
    active = 0
    counted_until = first_day  # dates before this one are counted already
    for active_from, active_until in active_windows(subscription, period, customer):
        first = max(active_from.astimezone(zone(tz)).date(), counted_until)
        last = min(_last_day(active_until, tz), end_day - _ONE_DAY)
        if last >= first:
            active += (last - first).days + 1
            counted_until = last + _ONE_DAY
    return active, period_days
