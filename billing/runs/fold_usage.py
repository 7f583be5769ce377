"""The hourly usage fold (``aggregate_usage``): new events into per-period accumulators, per tenant.

Each run folds, for each tenant, the events *ingested* in one window ``[watermark, until)``
(``until`` = the run's clock less ``FOLD_GRACE``, floored to the UTC hour; fold time =
``max(timestamp, ingested_at)``, or the timestamp without ``ingested_at``: ``billing.store.usage``)
into one accumulator per (subscription, meter, billing period) (layout:
``billing.store.accumulators``), then moves the watermark to ``until``. Steps (``fold_tenant``):

1. ``begin_fold``: the window, fixed once in a transaction: a run that died, a retry and a
   concurrent run all fold the same window of the same events;
2. route: every subscription of the tenant claims its meters, and ``UsageRouter`` (the rule
   billing uses, ``billing.pricing.usage``) names each event's owner; the event goes to the
   owner's billing period that contains its timestamp (calendar month in the tenant's
   timezone, or the anniversary schedule), late events included: a late event (its timestamp
   in an interval folded already) simply lands in its own period's accumulator;
3. fold: the events of each (subscription, period) go through the same ``Accumulator`` classes
   billing uses, exported as state (``Accumulator.export``);
4. apply: each state is merged into its document once (marker ``folded_until`` >= window end,
   checked in the transaction that writes it), so repeated or concurrent folds change nothing
   twice;
5. finish: the watermark moves to the window's end, and the window's count of event documents
   read per UTC hour of their timestamp is added to the tenant's ``hours`` record in the same
   transaction (billing's completeness check, ``billing.runs.usage_source``).

Late events after finalization (policy; Stripe refuses meter events older than 35 days and
never edits a finalized invoice; Lago bills only the open period; Kill Bill re-reads past
periods but then issues a new invoice a person reviews): an event whose period's invoice is
final (any status but ``draft``) and was priced before the event arrived (``ingested_at``,
else its write time) is **not billed automatically**. It is still recorded in its period's
accumulator (so a ``regenerate`` of a voided invoice bills it), counted in the accumulator's
``late_unbilled``, and reported as a warning of the fold run (``warnings``,
``warnings_count``) naming the invoice, for finance to bill by hand (``add_line_item`` on the
next draft) or to leave. While the invoice is a ``draft`` the event is billed in its own
period (drafts are priced again from the accumulators when finalized or refreshed).

An event without ``ingested_at`` written after the window of its timestamp was folded (more
than ``FOLD_GRACE`` after its hour) is never read by a fold (Firestore cannot query create
times). Billing still bills it in its own period while the invoice is not final: its
completeness check counts the billed hours' events against the ``hours`` the folds read and
reads the tenant raw when they differ (``billing.runs.usage_source``). Such an event is not
flagged by the fold once the invoice is final.

A customer one of whose subscriptions has an unreadable plan is not folded (the raw rule holds
its events as ambiguous); its routing record says so and billing reads it raw.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.errors import DataError
from billing.pricing.aggregation import make_accumulator
from billing.pricing.invoicing import invoice_id_for
from billing.pricing.periods import BillingPeriod, anniversary_period, month_period, zone
from billing.pricing.usage import (
    SubscriptionUsage,
    UsageRouter,
    arrival_time,
    plan_meter_codes,
)
from billing.records import Meter, Plan, Subscription, Tenant, UsageEvent
from billing.runs.pipeline import Catalog, watch_candidate
from billing.runs.shell import RunContext, RunKind, RunReport, no_description, resolve_tenants, run_per_tenant
from billing.store.accumulators import AccumulatorUpdate, FoldWindow, accumulator_id
from billing.store.firestore_store import BillingStore

AGGREGATE_USAGE = RunKind(
    "aggregate_usage", ("events_folded", "accumulators"), frozenset({"warnings", "stats"})
)
"""The fold's report: ``events_folded``, ``accumulators`` (documents written), warnings, stats."""
UNKNOWN_ROUTING = "unknown"
"""The routing record of a customer that cannot be folded (a plan of its cannot be read)."""


FOLD_GRACE = timedelta(minutes=10)
"""How long after an hour ends its window waits: events without ``ingested_at`` written that
late are still folded on time (``billing.store.usage``); later ones are billed through billing's
completeness check (raw reads). The hourly job runs a few minutes later."""


def fold_until(now: datetime) -> datetime:
    """The end of the window a run at ``now`` folds: ``now - FOLD_GRACE`` floored to the UTC hour."""
    return (now - FOLD_GRACE).astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def period_containing(sub: Subscription, plan: Plan, tz: str, moment: datetime) -> BillingPeriod:
    """The billing period of ``sub`` that contains ``moment``.

    Calendar: the month of ``moment`` in ``tz``. Anniversary: the stored current period when it
    holds ``moment``, else the period of the plan's anchored schedule
    (``billing.pricing.periods.anniversary_period``). Billing checks an accumulator's period
    against the one it bills and reads raw events when they differ (a stub period).
    """
    if sub.billing_time == "calendar":
        local = moment.astimezone(zone(tz))
        return month_period(local.year, local.month, tz)
    start, end = sub.current_period_start, sub.current_period_end
    if start is not None and end is not None and start <= moment < end:
        return BillingPeriod(start, end, tz)
    anchor = sub.cycle_anchor(plan.interval, plan.interval_count, tz)
    return anniversary_period(anchor, plan.interval, plan.interval_count, tz, moment)


@dataclass
class Routing:
    """A tenant's subscriptions registered on a ``UsageRouter``, and who can be folded.

    ``foldable``: customer id -> fingerprint, for customers whose every subscription and plan
    can be read; ``unknown``: the other customers with readable subscriptions.
    """

    router: UsageRouter
    subscriptions: dict[str, tuple[Subscription, Plan]]
    foldable: dict[str, str] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)


def build_routing(catalog: Catalog, subscriptions: Iterable[Subscription | tuple[str, DataError]]) -> Routing:
    """Claim every readable subscription's meters (as billing does) and sort out its customers."""
    router = UsageRouter()
    routing = Routing(router, {})
    unreadable: set[str] = set()
    for sub in subscriptions:
        if isinstance(sub, tuple):
            continue
        router.claim(
            sub.id,
            sub.customer_id,
            plan_meter_codes(catalog.plans.get(sub.plan_id)),
            sub.started_at,
            sub.canceled_at,
        )
        try:
            routing.subscriptions[sub.id] = (sub, catalog.plan(sub.plan_id))
        except DataError:
            unreadable.add(sub.customer_id)
    for customer_id in {sub.customer_id for sub, _ in routing.subscriptions.values()} | unreadable:
        fingerprint = router.fingerprint(customer_id, catalog.meters)
        if fingerprint is None or customer_id in unreadable:
            routing.unknown.add(customer_id)
        else:
            routing.foldable[customer_id] = fingerprint
    return routing


@dataclass
class Folded:
    """One window's events folded per (subscription, period): the usage and arrival times.

    ``customers``: every customer with an event in the window (owned by a subscription or not).
    """

    usage: dict[str, tuple[Subscription, BillingPeriod, SubscriptionUsage]] = field(default_factory=dict)
    arrivals: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    customers: set[str] = field(default_factory=set)
    events: int = 0


def fold_events(tenant: Tenant, catalog: Catalog, routing: Routing, events: Sequence[UsageEvent]) -> Folded:
    """Watch each (subscription, period) the events belong to, then fold them in one pass."""
    folded = Folded()
    router = routing.router
    for event in events:
        folded.customers.add(event.customer_id)
        owner = router.owner_of(event)
        if owner is None or owner not in routing.subscriptions:
            continue
        sub, plan = routing.subscriptions[owner]
        if sub.customer_id not in routing.foldable:
            continue
        period = period_containing(sub, plan, tenant.timezone, event.timestamp)
        key = f"{sub.id}@{period.key}"
        if key not in folded.usage:
            watch_candidate(router, key, sub, period, plan, catalog)
            folded.usage[key] = (sub, period, router.usage[key])
        folded.arrivals[accumulator_id(sub.id, period.key, event.meter)].append(arrival_time(event))
    router.consume(events)
    folded.events = sum(usage.events_counted for _, _, usage in folded.usage.values())
    return folded


def accumulator_updates(folded: Folded, now: datetime) -> list[AccumulatorUpdate]:
    """One update per (subscription, period, meter) that received events in the window.

    The period's invoice is read (late-event policy) only when it may exist at ``now``: the
    period has ended, or the subscription was canceled (its final invoice comes early).
    """
    updates: list[AccumulatorUpdate] = []
    for sub, period, usage in folded.usage.values():
        for code, acc in usage.accumulators.items():
            doc_id = accumulator_id(sub.id, period.key, code)
            if doc_id not in folded.arrivals:
                continue
            updates.append(
                AccumulatorUpdate(
                    doc_id=doc_id,
                    invoice_id=invoice_id_for(sub.id, period)
                    if period.end <= now or (sub.canceled_at is not None and sub.canceled_at <= now)
                    else None,
                    identity={
                        "subscription_id": sub.id,
                        "customer_id": sub.customer_id,
                        "meter": code,
                        "aggregation": acc.meter.aggregation,
                        "period_start": period.start,
                        "period_end": period.end,
                    },
                    merge=_merger(acc.meter, acc.start, acc.end, period, acc.export()),
                    arrivals=tuple(folded.arrivals[doc_id]),
                )
            )
    return updates


def _merger(
    meter: Meter, start: datetime, end: datetime, period: BillingPeriod, fresh: Mapping[str, Any]
) -> Any:
    """``merge(stored_state) -> (state, stored_values)`` for one accumulator (pure)."""

    def merge(stored: Mapping[str, Any] | None) -> tuple[dict[str, Any], int]:
        acc = make_accumulator(meter, start, end, period_start=period.start, period_end=period.end)
        if stored:
            acc.absorb(stored)
        acc.absorb(fresh)
        return acc.export(), acc.stored_values()

    return merge


def fold_tenant(ctx: RunContext, report: RunReport, tenant: Tenant) -> dict[str, Any]:
    """Fold one tenant's window (module steps 1-5); returns the tenant's summary."""
    store = ctx.store
    window = _window(store, tenant, ctx)
    summary: dict[str, Any] = {"tenant_id": tenant.id}
    if window is None:
        summary["folded_until"] = _iso(store.fold_watermark(tenant.id))
        return summary
    catalog = Catalog.load(store, tenant.id)
    events = list(store.stream_fold_window(tenant.id, window.start, window.end, _properties(catalog.meters)))
    hours = dict(store.hours_read)  # every document read, by UTC hour of its timestamp
    # Only the customers with events in the window: their every subscription, as billing reads them.
    routing = build_routing(
        catalog, store.subscriptions_of_customers(tenant.id, {e.customer_id for e in events})
    )
    folded = fold_events(tenant, catalog, routing, events)
    updates = accumulator_updates(folded, ctx.now)
    _warn_values(report, tenant, folded)
    report.count("events_folded", folded.events)
    summary.update(window=[_iso(window.start), _iso(window.end)], events_read=len(events))
    if ctx.dry_run:
        return summary
    records = {c: _fingerprint(routing, c, catalog) for c in folded.customers | routing.unknown}
    store.record_routing(tenant.id, window, records)
    applied = store.apply_accumulators(tenant.id, window, updates, ctx.now)
    report.count("accumulators", applied.applied)
    if applied.late_unbilled:
        report.warnings_count += applied.late_unbilled
        report.warnings.append(
            f"{tenant.id}: {applied.late_unbilled} late usage events arrived after their period's invoice "
            f"was final and are not billed: {', '.join(sorted(set(applied.late_invoices))[:20])}"
        )
    summary.update(late_unbilled=applied.late_unbilled, already_applied=applied.already)
    store.finish_fold(tenant.id, window, {"events": folded.events, "accumulators": applied.applied}, hours)
    return summary


def _fingerprint(routing: Routing, customer_id: str, catalog: Catalog) -> str:
    """The routing record of a customer whose events the window holds (or that cannot be folded).

    A customer without a subscription gets the fingerprint of no claim, so one created later
    (even backdated) changes it and billing reads that customer raw.
    """
    if customer_id in routing.unknown:
        return UNKNOWN_ROUTING
    known = routing.foldable.get(customer_id)
    return (
        known
        if known is not None
        else routing.router.fingerprint(customer_id, catalog.meters) or UNKNOWN_ROUTING
    )


def _window(store: BillingStore, tenant: Tenant, ctx: RunContext) -> FoldWindow | None:
    """The window to fold (a dry run computes it without creating it)."""
    until = fold_until(ctx.now)
    if not ctx.dry_run:
        return store.begin_fold(tenant.id, until, ctx.run_id)
    start = store.fold_watermark(tenant.id) or datetime(1970, 1, 1, tzinfo=UTC)
    return FoldWindow("dry-run", start, until) if until > start else None


def _properties(meters: Mapping[str, Meter | DataError]) -> set[str]:
    """Every property a meter of the tenant reads (projection of the event queries)."""
    names: set[str] = set()
    for meter in meters.values():
        if isinstance(meter, Meter):
            names.update(meter.group_by)
            if meter.field:
                names.add(meter.field)
    return names


def _warn_values(report: RunReport, tenant: Tenant, folded: Folded) -> None:
    """Events ignored by an aggregation (non-numeric or missing values) are the run's warnings."""
    for sub, _, usage in folded.usage.values():
        report.warnings_count += usage.warning_count()
        report.warnings.extend(f"{tenant.id}/{sub.id}: {w}" for w in usage.warnings())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def run_fold_usage(ctx: RunContext, tenant_id: str | None) -> RunReport:
    """``aggregate_usage``: fold every active tenant (or ``tenant_id``) through the run shell.

    Raises:
        NotFound, PermissionDenied: ``tenant_id`` unknown or not allowed, before any write.

    """
    report = RunReport(AGGREGATE_USAGE, ctx.run_id, ctx.dry_run)
    tenants = resolve_tenants(ctx.store, tenant_id)
    run_per_tenant(ctx, report, tenants, no_description, lambda tenant: fold_tenant(ctx, report, tenant))
    report.firestore_reads, report.firestore_writes = ctx.store.reads, ctx.store.writes
    return report
