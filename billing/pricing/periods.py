"""Billing periods: half-open ``[start, end)`` intervals of aware instants, computed in a tenant's timezone.

A calendar period is one calendar month *in the tenant's IANA timezone* (zoneinfo): November 2011
for a Europe/London tenant is ``[2011-11-01T00:00 GMT, 2011-12-01T00:00 GMT)``, and October 2011 is
``[2011-10-01T00:00 BST, 2011-11-01T00:00 GMT)``, which lasts 31 days and one hour because the
clocks went back inside it. Boundaries are stored as UTC instants.

Local midnight that does not exist or exists twice (a DST change at midnight, as in
America/Santiago) is resolved with zoneinfo's ``fold=0`` rule: the earliest instant of that
local day, so consecutive periods always tile time with no gap and no overlap.

Errors: ``BadRequest`` for a malformed ``YYYY-MM``; ``DataError`` for an unknown timezone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing.errors import BadRequest, DataError, echo

_MONTH_RE = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
MIN_MONTH, MAX_MONTH = (1970, 1), (9998, 12)
"""The months a request may name (``CONTRACT.md``, "Bounds on request fields"): every such month's
boundaries, in any timezone, are instants a UTC datetime and Firestore can hold."""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """Return the ``ZoneInfo`` for an IANA name.

    Raises:
        DataError: the name is not a known IANA timezone.

    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise DataError(f"unknown IANA timezone {name!r}", code="unknown_timezone") from None


def require_aware(value: datetime, what: str = "datetime") -> datetime:
    """Return ``value`` if it carries a UTC offset; raise ``ValueError`` for a naive datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value!r}")
    return value


def local_midnight(day: date, tz: str) -> datetime:
    """Return the first instant (UTC) of ``day`` in timezone ``tz`` (fold=0 for gaps and repeats)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone(tz)).astimezone(UTC)


@dataclass(frozen=True)
class BillingPeriod:
    """A billing period ``[start, end)`` as UTC instants, with the timezone that drew it.

    Attributes:
        start: first instant included (aware, UTC).
        end: first instant *not* included (aware, UTC).
        timezone: IANA name of the tenant's timezone.

    """

    start: datetime
    end: datetime
    timezone: str

    def __post_init__(self) -> None:
        """Check that both ends are aware and ``start < end``."""
        require_aware(self.start, "period start")
        require_aware(self.end, "period end")
        if not self.start < self.end:
            raise ValueError(f"empty period {self.start.isoformat()}..{self.end.isoformat()}")

    @property
    def local_start(self) -> datetime:
        """``start`` in the tenant's timezone."""
        return self.start.astimezone(zone(self.timezone))

    @property
    def local_end(self) -> datetime:
        """``end`` in the tenant's timezone."""
        return self.end.astimezone(zone(self.timezone))

    @property
    def month_label(self) -> str:
        """``YYYY-MM`` of the period's first local day (the PDF folder in Cloud Storage)."""
        return f"{self.local_start:%Y-%m}"

    @property
    def key(self) -> str:
        """``YYYYMMDD`` of the first local day: with the subscription id, the invoice's identity."""
        return f"{self.local_start:%Y%m%d}"


def parse_month(text: object) -> tuple[int, int]:
    r"""Parse ``"YYYY-MM"`` (ASCII digits, month 01-12, 1970-01..9998-12) into ``(year, month)``.

    The whole string must match (``re.fullmatch``), so ``"2026-10\n"`` and non-ASCII digits
    are refused; the error quotes at most 120 characters of the input.

    Raises:
        BadRequest: (``invalid_month``) anything else, e.g. ``"2026-13"``, ``"2026-1"``,
            ``2026``, ``"0000-01"``, ``"9999-12"``.

    """
    match = _MONTH_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise BadRequest(f"month must be YYYY-MM with a month 01-12, got {echo(text)}", code="invalid_month")
    year, month = int(match.group(1)), int(match.group(2))
    if not MIN_MONTH <= (year, month) <= MAX_MONTH:
        raise BadRequest(
            f"month must fall in {MIN_MONTH[0]}-{MIN_MONTH[1]:02d}.."
            f"{MAX_MONTH[0]}-{MAX_MONTH[1]:02d}, got {echo(text)}",
            code="invalid_month",
        )
    return year, month


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_period(year: int, month: int, tz: str) -> BillingPeriod:
    """Return calendar month ``year-month`` in timezone ``tz`` as a ``BillingPeriod``."""
    next_year, next_month = _next_month(year, month)
    return BillingPeriod(
        start=local_midnight(date(year, month, 1), tz),
        end=local_midnight(date(next_year, next_month, 1), tz),
        timezone=tz,
    )


def previous_month(now: datetime, tz: str) -> tuple[int, int]:
    """Return ``(year, month)`` of the calendar month before the one ``now`` falls in, in ``tz``."""
    local = require_aware(now, "now").astimezone(zone(tz))
    return (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)


def utc_now() -> datetime:
    """The current instant, aware, in UTC (one place to read the clock)."""
    return datetime.now(UTC)


def _days_in_month(year: int, month: int) -> int:
    next_year, next_month = _next_month(year, month)
    return (date(next_year, next_month, 1) - date(year, month, 1)).days


def add_interval(anchor: datetime, interval: str, count: int, tz: str) -> datetime:
    """Return ``anchor`` moved by ``count`` intervals on the tenant's wall clock, as UTC.

    Months and years keep the anchor's day of month, clamped to the month's length, and are
    always computed from the anchor itself, never from a clamped date, so an anchor on the 31st
    gives Jan 31 -> Feb 28 (29) -> Mar 31 (Stripe's billing-cycle-anchor rule). Days and weeks
    are calendar days in ``tz``, so a daily period across a DST change lasts 23 or 25 hours.
    ``count`` may be negative (the schedule before its anchor: a stub period's full period).

    Raises:
        ValueError: unknown interval; OverflowError: a result outside the datetime range.

    """
    local = require_aware(anchor, "anchor").astimezone(zone(tz))
    if interval in ("day", "week"):
        day = local.date() + timedelta(days=count * (7 if interval == "week" else 1))
    elif interval in ("month", "year"):
        months = local.month - 1 + count * (12 if interval == "year" else 1)
        year, month = local.year + months // 12, months % 12 + 1
        day = date(year, month, min(local.day, _days_in_month(year, month)))
    else:
        raise ValueError(f"unknown interval {interval!r}")
    wall = datetime.combine(day, local.time().replace(tzinfo=None, fold=0)).replace(tzinfo=zone(tz))
    return wall.astimezone(UTC)


def anniversary_period(
    anchor: datetime, interval: str, interval_count: int, tz: str, containing: datetime
) -> BillingPeriod:
    """Return the period of an anchored schedule that contains ``containing``.

    Periods are ``[add_interval(anchor, k*n), add_interval(anchor, (k+1)*n))`` for every
    integer k: before the anchor (k < 0) the schedule runs backwards, which gives the full
    period a stub first period belongs to (``billing.pricing.proration``).
    """
    # Jump close to the answer, then walk: months and years are irregular.
    unit_seconds = {"day": 86400, "week": 604800, "month": 2419200, "year": 31536000}[interval]
    k = int((containing - anchor).total_seconds() // (unit_seconds * interval_count)) - 1
    while add_interval(anchor, interval, k * interval_count, tz) > containing:
        k -= 1
    while add_interval(anchor, interval, (k + 1) * interval_count, tz) <= containing:
        k += 1
    return BillingPeriod(
        add_interval(anchor, interval, k * interval_count, tz),
        add_interval(anchor, interval, (k + 1) * interval_count, tz),
        tz,
    )
