"""Proration of fixed charges: how much of a billing period a subscription was billable.

Convention (Stripe prorates by the second; Lago and most invoicing by calendar day; this product
uses calendar days, as the issue asks): count calendar days in the tenant's timezone; a day on
which the subscription was billable for any part counts as a whole day; the fraction is
``active_days / period_days`` (28, 29, 30 or 31 for a month). Billable means after ``started_at``,
after ``trial_end`` (no fixed fee during a trial) and before ``canceled_at``. Usage is never
prorated.
"""

from __future__ import annotations

from shared.model import Subscription
from shared.periods import BillingPeriod, local_midnight


def proration_days(subscription: Subscription, period: BillingPeriod) -> tuple[int, int]:
    """Return ``(active_days, period_days)`` for prorating fixed fees over ``period``.

    Convention (documented in the README): calendar days in the tenant's timezone; a day on which
    the subscription was active for any part counts as a whole day; the trial (``trial_end``)
    counts as inactive; the fraction is ``active_days / period_days`` (28-31 for a month).
    """
    tz = period.timezone
    start_day = period.local_start.date()
    end_day = period.local_end.date()
    period_days = (end_day - start_day).days
    active_from = max(period.start, subscription.started_at)
    if subscription.trial_end is not None:
        active_from = max(active_from, subscription.trial_end)
    active_until = period.end
    if subscription.canceled_at is not None:
        active_until = min(active_until, subscription.canceled_at)
    if active_from >= active_until:
        return 0, period_days
    first = active_from.astimezone(period.local_start.tzinfo).date()
    last_instant = active_until.astimezone(period.local_start.tzinfo)
    # End-exclusive: an end exactly at local midnight does not touch that day.
    last = last_instant.date()
    if local_midnight(last, tz) == active_until:
        last = last.fromordinal(last.toordinal() - 1)
    return (last - first).days + 1, period_days
