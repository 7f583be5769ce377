"""Route a stream of usage events to per-subscription meter accumulators in one pass.

A run reads the tenant's events once, ordered by timestamp, over the union of the windows it
bills, and feeds each event to the accumulators of the subscriptions it belongs to: the event's
customer owns the subscription, the subscription's plan charges the event's meter, and the event's
timestamp lies in the subscription's window (its billing period clipped to ``[started_at,
canceled_at)``). Memory is one small state per (subscription, meter, group), not the events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.aggregation import Accumulator, GroupKey, make_accumulator
from shared.model import Meter, UsageEvent


@dataclass
class SubscriptionUsage:
    """The accumulators of one subscription, by meter code, and what they counted."""

    subscription_id: str
    accumulators: dict[str, Accumulator[Any]] = field(default_factory=dict)

    @property
    def events_counted(self) -> int:
        """Events that counted towards any meter of this subscription."""
        return sum(acc.events_counted for acc in self.accumulators.values())

    def quantities(self) -> dict[str, dict[GroupKey, Decimal]]:
        """``{meter_code: {group_key: quantity}}``."""
        return {code: acc.results() for code, acc in self.accumulators.items()}

    def warnings(self) -> tuple[str, ...]:
        """Warnings of every accumulator (non-numeric or missing values), capped per meter."""
        return tuple(f"meter {code}: {w}" for code, acc in self.accumulators.items()
                     for w in acc.warnings)

    def warning_count(self) -> int:
        """Total number of ignored events (uncapped)."""
        return sum(acc.warning_count for acc in self.accumulators.values())


@dataclass
class _Watch:
    owner: str
    rank: tuple[datetime, str]
    start: datetime
    end: datetime
    accumulators: dict[str, Accumulator[Any]]


class UsageRouter:
    """Collects usage for many subscriptions from one event stream.

    Register each (subscription, period) with ``watch`` before ``consume``; then read
    ``usage[key]``. Each event counts for at most one subscription: the one its
    ``subscription_id`` names when the event carries one (Lago's ``external_subscription_id``),
    otherwise, among the customer's watched subscriptions whose plan charges the event's meter
    and whose window holds its timestamp, the most recently started (ties: the greatest id). So
    two subscriptions of one customer that charge the same meter never both bill an event.
    ``unrouted`` counts events that matched no watched subscription (other customers, meters no
    plan charges, or times outside every window).
    """

    def __init__(self) -> None:
        self._by_customer: dict[str, list[_Watch]] = defaultdict(list)
        self.usage: dict[str, SubscriptionUsage] = {}
        self.unrouted = 0
        self.events_seen = 0

    def watch(self, key: str, customer_id: str, meters: Iterable[Meter],
              start: datetime, end: datetime, *, subscription_id: str | None = None,
              started_at: datetime | None = None, period_start: datetime | None = None,
              period_end: datetime | None = None) -> None:
        """Count events of ``customer_id`` for ``meters`` with ``start <= timestamp < end``.

        ``key`` names the result in ``usage``; ``subscription_id`` (default ``key``) and
        ``started_at`` (default ``start``) decide which subscription an event belongs to.
        ``period_start``/``period_end``: the whole billing period when ``[start, end)`` is
        clipped to the subscription's active time (``weighted_sum`` averages over the period).
        """
        entry = SubscriptionUsage(key)
        for meter in meters:
            entry.accumulators[meter.code] = make_accumulator(
                meter, start, end, period_start=period_start, period_end=period_end)
        self.usage[key] = entry
        owner = subscription_id or key
        self._by_customer[customer_id].append(
            _Watch(owner, (started_at or start, owner), start, end, entry.accumulators))

    def properties(self) -> set[str]:
        """Every event property a watched meter reads (its ``field`` and ``group_by``)."""
        names: set[str] = set()
        for watches in self._by_customer.values():
            for watch in watches:
                for accumulator in watch.accumulators.values():
                    names.update(accumulator.meter.group_by)
                    if accumulator.meter.field:
                        names.add(accumulator.meter.field)
        return names

    def consume(self, events: Iterable[UsageEvent]) -> None:
        """Feed every event to the accumulator of the one subscription it belongs to."""
        by_customer = self._by_customer
        for event in events:
            self.events_seen += 1
            best: _Watch | None = None
            for watch in by_customer.get(event.customer_id, ()):
                if (event.meter not in watch.accumulators
                        or not watch.start <= event.timestamp < watch.end
                        or (event.subscription_id is not None
                            and event.subscription_id != watch.owner)):
                    continue
                if best is None or watch.rank > best.rank:
                    best = watch
            if best is None:
                self.unrouted += 1
            else:
                best.accumulators[event.meter].add(event)


def meters_of_plan(charges: Iterable[Mapping[str, Any]],
                   meters: Mapping[str, Meter | Exception]) -> list[Meter]:
    """Return the parsed meters a plan's usage charges name.

    Missing or invalid meters are left out here; the invoice builder reports them.
    """
    found: dict[str, Meter] = {}
    for charge in charges:
        code = charge.get("meter")
        meter = meters.get(code) if isinstance(code, str) else None
        if isinstance(meter, Meter):
            found[meter.code] = meter
    return list(found.values())
