"""Route a stream of usage events to per-subscription meter accumulators in one pass.

Routing rule (issue 8 item 1; Lago's ``external_subscription_id`` for the pinned case): an event
belongs to exactly one subscription,

1. the one its ``subscription_id`` names, when it carries one (it must be a subscription of the
   event's customer, else the event belongs to no one);
2. else the customer's subscription whose plan charges the event's meter and that was active at
   the event's timestamp (``started_at <= timestamp < canceled_at``), the most recently started
   winning (ties: the greatest id).

This holds whatever the subscriptions' billing times (``calendar``, ``anniversary``), statuses
(a ``suspended`` subscription keeps its events) and whether they are billed in this run: a run
registers every subscription of the customers it bills as a *claimer* (``claim``) and *watches*
only those it bills (``watch``); an event whose owner is not watched, or whose owner's watched
period does not hold it, is billed by no one in this run (``unrouted``). A subscription whose
plan cannot be read claims with unknown meters: an event it may own (it is the most recent
active claimer) is billed by no one, and the subscription that would otherwise own it is marked
``ambiguous_events`` so the run reports it instead of billing it without those events.

The same ``UsageRouter`` decides ownership in the hourly fold (``billing.runs.fold_usage``) and
in billing (``billing.runs.usage_source``), so an event lands in the same (subscription, period)
whether it is folded into an accumulator or read raw. A watch is fed by one *source*: ``raw``
(the whole window streamed by timestamp) or ``folded`` (accumulators loaded from the fold, then
only the events whose ``fold_time`` is after what each accumulator covers,
``SubscriptionUsage.covered``).

A run reads the tenant's events once, ordered by timestamp, over the union of the windows it
bills. Memory is one small state per claimer and per (subscription, meter, group), not the
events; the cost per event is two dictionary lookups and a scan of the few claimers of the
customer's meter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from billing.errors import DataError
from billing.pricing.aggregation import Accumulator, GroupKey, make_accumulator
from billing.pricing.charges import Charge, UsageCharge
from billing.records import Meter, Plan, PlanChargeError, UsageEvent

_FOREVER = datetime.max.replace(tzinfo=UTC)


@dataclass
class SubscriptionUsage:
    """The accumulators of one watched (subscription, period), by meter code, and what they counted.

    ``failure``: an unexpected exception raised while folding one of its events (the
    subscription is reported in ``errors``; its other events are not folded any more).
    ``ambiguous_events``: events that may belong to a sibling subscription whose plan cannot be
    read (see the module's rule); when non-zero the subscription must not be billed.
    ``ambiguous_with``: the ids of those siblings. ``covered``: per meter code, the fold time
    (``fold_time``) before which the meter's accumulator already holds the events (loaded from
    the fold); such events are not folded again.
    """

    subscription_id: str
    accumulators: dict[str, Accumulator[Any]] = field(default_factory=dict)
    failure: Exception | None = None
    ambiguous_events: int = 0
    ambiguous_with: set[str] = field(default_factory=set)
    covered: dict[str, datetime] = field(default_factory=dict)

    @property
    def events_counted(self) -> int:
        """Events that counted towards any meter of this subscription."""
        return sum(acc.events_counted for acc in self.accumulators.values())

    def quantities(self) -> dict[str, dict[GroupKey, Decimal]]:
        """``{meter_code: {group_key: quantity}}``."""
        return {code: acc.results() for code, acc in self.accumulators.items()}

    def warnings(self) -> tuple[str, ...]:
        """Warnings of every accumulator (non-numeric or missing values), capped per meter."""
        return tuple(f"meter {code}: {w}" for code, acc in self.accumulators.items() for w in acc.warnings)

    def warning_count(self) -> int:
        """Total number of ignored events (uncapped)."""
        return sum(acc.warning_count for acc in self.accumulators.values())


@dataclass
class _Watch:
    start: datetime
    end: datetime
    usage: SubscriptionUsage
    source: str = "raw"


def fold_time(event: UsageEvent) -> datetime:
    """The instant that puts ``event`` in one fold window: ``max(timestamp, ingested_at)``.

    Without ``ingested_at``: its ``timestamp`` (such an event is folded with the window of its
    timestamp, so it must be written before that window is folded: ``billing.store.usage``).
    """
    ingested = event.ingested_at
    return event.timestamp if ingested is None or ingested < event.timestamp else ingested


def arrival_time(event: UsageEvent) -> datetime:
    """When ``event`` reached the system: ``ingested_at``, else the producer's write time.

    The producer's write time is the document's create time (``created_at``); an event built in
    memory without either arrives at its timestamp. The late-event policy compares it with the
    time the period's invoice was priced (``billing.runs.fold_usage``).
    """
    return event.ingested_at or event.created_at or event.timestamp


@dataclass
class _Claim:
    subscription_id: str
    customer_id: str
    rank: tuple[datetime, str]
    start: datetime
    end: datetime
    meters: frozenset[str] | None  # None: the plan is unreadable, the meters unknown
    watches: list[_Watch] = field(default_factory=list)


class UsageRouter:
    """Collects usage for many subscriptions of one tenant from one event stream.

    Register every subscription of the customers billed with ``claim``, then each billed
    (subscription, period) with ``watch``, then ``consume`` the events once; read
    ``usage[key]``. ``unrouted`` counts events folded nowhere (other customers, meters no
    claimer charges, times outside every claimer, or owners not billed in this run).
    """

    def __init__(self) -> None:
        self._claims: dict[str, _Claim] = {}
        self._routes: dict[str, dict[str, tuple[_Claim, ...]]] | None = None
        self.usage: dict[str, SubscriptionUsage] = {}
        self._watches: dict[str, _Watch] = {}
        self.unrouted = 0
        self.events_seen = 0

    def claim(
        self,
        subscription_id: str,
        customer_id: str,
        meters: Iterable[str] | None,
        started_at: datetime,
        canceled_at: datetime | None = None,
    ) -> None:
        """Register a subscription of ``customer_id`` that owns events of ``meters`` (codes).

        Active on ``[started_at, canceled_at)``; ``meters`` is ``None`` when its plan cannot be
        read. Claiming an id again replaces the earlier claim (its watches are kept).
        """
        previous = self._claims.get(subscription_id)
        self._claims[subscription_id] = _Claim(
            subscription_id,
            customer_id,
            (started_at, subscription_id),
            started_at,
            canceled_at or _FOREVER,
            None if meters is None else frozenset(meters),
            previous.watches if previous else [],
        )
        self._routes = None

    def watch(
        self,
        key: str,
        subscription_id: str,
        meters: Iterable[Meter],
        start: datetime,
        end: datetime,
        *,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
        source: str = "raw",
    ) -> None:
        """Fold the events of ``subscription_id`` for ``meters`` with ``start <= ts < end``.

        ``key`` names the result in ``usage``. ``period_start``/``period_end``: the whole
        billing period when ``[start, end)`` is clipped to the subscription's active time
        (``weighted_sum`` averages over the period). ``source``: the stream that feeds this
        watch (``consume(events, source)``; see the module docstring).

        Raises:
            KeyError: ``subscription_id`` was not claimed first.

        """
        claim = self._claims[subscription_id]
        entry = SubscriptionUsage(subscription_id)
        for meter in meters:
            entry.accumulators[meter.code] = make_accumulator(
                meter, start, end, period_start=period_start, period_end=period_end
            )
        self.usage[key] = entry
        self._watches[key] = _Watch(start, end, entry, source)
        claim.watches.append(self._watches[key])

    def replica(self, keys: Iterable[str]) -> UsageRouter:
        """A router with the same claims and, for each of ``keys``, an empty raw watch like it.

        Same meters, window and period: fed the raw events, it recomputes those watches from
        scratch (``verify``, ``billing.runs.usage_source.verify_sample``).

        Raises:
            KeyError: an unknown key.

        """
        other = UsageRouter()
        for claim in self._claims.values():
            other.claim(claim.subscription_id, claim.customer_id, claim.meters, claim.start, claim.end)
        for key in keys:
            watch = self._watches[key]
            accumulators = watch.usage.accumulators.values()
            first = next(iter(accumulators), None)
            other.watch(
                key,
                watch.usage.subscription_id,
                [acc.meter for acc in accumulators],
                watch.start,
                watch.end,
                period_start=first.period_start if first else None,
                period_end=first.period_end if first else None,
            )
        return other

    def source_of(self, key: str) -> str:
        """The stream that feeds the watch ``key`` (``KeyError`` if none)."""
        return self._watches[key].source

    def set_source(self, key: str, source: str) -> None:
        """Feed the watch ``key`` from the stream ``source`` from now on (``consume``).

        Raises:
            KeyError: no watch ``key``.

        """
        self._watches[key].source = source

    def properties(self) -> set[str]:
        """Every event property a watched meter reads (its ``field`` and ``group_by``)."""
        names: set[str] = set()
        for entry in self.usage.values():
            for accumulator in entry.accumulators.values():
                names.update(accumulator.meter.group_by)
                if accumulator.meter.field:
                    names.add(accumulator.meter.field)
        return names

    def _build_routes(self) -> dict[str, dict[str, tuple[_Claim, ...]]]:
        """``{customer: {meter: claimers, most recent first}}``.

        A claimer whose meters are unknown joins every meter its customer's others charge.
        """
        by_customer: dict[str, list[_Claim]] = {}
        for claim in self._claims.values():
            by_customer.setdefault(claim.customer_id, []).append(claim)
        routes: dict[str, dict[str, tuple[_Claim, ...]]] = {}
        for customer_id, claims in by_customer.items():
            codes = {code for claim in claims for code in claim.meters or ()}
            routes[customer_id] = {
                code: tuple(
                    sorted(
                        (c for c in claims if c.meters is None or code in c.meters),
                        key=lambda c: c.rank,
                        reverse=True,
                    )
                )
                for code in codes
            }
        return routes

    def fingerprint(self, customer_id: str, meters: Mapping[str, Meter | Exception]) -> str | None:
        """The routing fingerprint of ``customer_id``: what decides where its events go.

        A SHA-256 over its claims (subscription id, active interval, meter codes) and the
        definitions of those meters (aggregation, field, group_by). The fold records it per
        customer and billing recomputes it (``billing.runs.usage_source``): accumulators are used
        only while it is unchanged. ``None`` when a claimer's plan is unreadable (meters
        unknown): such a customer is never folded, always billed from raw events.
        """
        claims = sorted(
            (c for c in self._claims.values() if c.customer_id == customer_id),
            key=lambda c: c.subscription_id,
        )
        if any(c.meters is None for c in claims):
            return None
        parts: list[str] = []
        codes: set[str] = set()
        for c in claims:
            codes.update(c.meters or ())
            parts.append(
                f"{c.subscription_id}|{c.start.isoformat()}|{c.end.isoformat()}|{sorted(c.meters or ())}"
            )
        for code in sorted(codes):
            meter = meters.get(code)
            parts.append(
                f"{code}|{meter.aggregation}|{meter.field}|{list(meter.group_by)}"
                if isinstance(meter, Meter)
                else f"{code}|invalid"
            )
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def owner_of(self, event: UsageEvent) -> str | None:
        """The id of the subscription ``event`` belongs to (the module's rule), or ``None``.

        ``None`` also when the owner would be a claimer whose plan cannot be read.
        """
        owner, _ = self._owner(event)
        return None if owner is None or owner.meters is None else owner.subscription_id

    def _owner(self, event: UsageEvent) -> tuple[_Claim | None, Sequence[_Claim]]:
        """The claimer of ``event`` and the candidates it was chosen from."""
        if self._routes is None:
            self._routes = self._build_routes()
        if event.subscription_id is not None:
            owner = self._claims.get(event.subscription_id)
            if owner is not None and owner.customer_id != event.customer_id:
                owner = None
            return owner, ()
        candidates = self._routes.get(event.customer_id, {}).get(event.meter, ())
        for claim in candidates:
            if claim.start <= event.timestamp < claim.end:
                return claim, candidates
        return None, candidates

    def consume(self, events: Iterable[UsageEvent], source: str = "raw") -> None:
        """Fold every event into the watch of the one subscription it belongs to.

        Only watches fed by ``source`` take events from this stream.
        """
        seen = unrouted = 0
        for event in events:
            seen += 1
            owner, candidates = self._owner(event)
            if owner is not None and owner.meters is None:
                self._hold(event, candidates)
                owner = None
            if owner is None or not _fold(owner, event, source):
                unrouted += 1
        self.events_seen += seen
        self.unrouted += unrouted

    def _hold(self, event: UsageEvent, candidates: Sequence[_Claim]) -> None:
        """An unknown-plan claimer may own ``event``: mark the watch that would get it else."""
        timestamp = event.timestamp
        unknown: list[str] = []
        for claim in candidates:
            if not claim.start <= timestamp < claim.end:
                continue
            if claim.meters is None:
                unknown.append(claim.subscription_id)
                continue
            for watch in claim.watches:
                if watch.start <= timestamp < watch.end:
                    watch.usage.ambiguous_events += 1
                    watch.usage.ambiguous_with.update(unknown)
            return


def _fold(owner: _Claim, event: UsageEvent, source: str = "raw") -> bool:
    """Fold ``event`` into ``owner``'s watch that holds it; False when there is none.

    A watch fed by another source takes nothing from this stream; an event its accumulator
    already covers (``SubscriptionUsage.covered``) counts as routed without being folded again.
    An exception raised by the accumulator is kept on that watch's ``failure`` (the run reports
    that subscription); its later events are not folded.
    """
    for watch in owner.watches:
        if watch.start <= event.timestamp < watch.end:
            usage = watch.usage
            accumulator = usage.accumulators.get(event.meter)
            if watch.source != source or accumulator is None or usage.failure is not None:
                return False
            covered = usage.covered.get(event.meter)
            if covered is not None and fold_time(event) < covered:
                return True
            try:
                accumulator.add(event)
            except Exception as exc:  # one subscription's failure must not stop the run
                usage.failure = exc
                return False
            return True
    return False


def plan_meter_codes(plan: Plan | DataError | None) -> frozenset[str] | None:
    """The meter codes a subscription on ``plan`` claims (``UsageRouter.claim``).

    A parsed plan: its usage charges' meters. A plan with a malformed charge
    (``billing.records.PlanChargeError``): the meters its charge maps name, valid or not. A
    missing or otherwise unreadable plan: ``None`` (unknown meters).
    """
    if isinstance(plan, Plan):
        return plan.meter_codes
    if isinstance(plan, PlanChargeError):
        return plan.meter_codes
    return None


def meters_of_plan(charges: Iterable[Charge], meters: Mapping[str, Meter | Exception]) -> list[Meter]:
    """Return the parsed meters a plan's usage charges name.

    Missing or invalid meters are left out here; the invoice builder reports them.
    """
    found: dict[str, Meter] = {}
    for charge in charges:
        meter = meters.get(charge.meter) if isinstance(charge, UsageCharge) else None
        if isinstance(meter, Meter):
            found[meter.code] = meter
    return list(found.values())
