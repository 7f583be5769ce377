"""Where a billing run's usage comes from: the fold's accumulators plus the events after them, or raw.

``supply_usage`` feeds the watches a run registered on its ``UsageRouter`` (one per billed
(subscription, period), ``billing.runs.pipeline.price_candidates``):

- a tenant never folded (no watermark) is read raw, as before: every event of the union of
  the windows, by timestamp (``stream_usage_events``);
- otherwise each watch is *folded* when its accumulators can be trusted, else *raw*:
  - the customer's routing fingerprint (``UsageRouter.fingerprint``: its subscriptions, their
    intervals and meters) equals the one the fold recorded, since before the period started
    (no record at all: none of its events was ever folded);
  - every accumulator found has this period's bounds and no ``overflow``;
  a folded watch loads the accumulators' states and takes only the events whose fold time is at or after
  what each covers (``max(watermark, accumulator.folded_until)``: a fold that applied some
  accumulators and not yet the watermark is counted once). Those come from one query on
  ``timestamp`` and one on late ``ingested_at`` (``stream_fold_window``);
- raw watches (if any) get the timestamp stream of their windows.

Completeness check (contract: an event without ``ingested_at`` arrives at its write time, and a
late one is still billed in its own period while its invoice is not final). Firestore cannot
query a document's create time, so an event without ``ingested_at`` written after the window of
its timestamp was folded is in no accumulator and before the watermark. Before trusting any
accumulator, ``fold_is_complete`` checks, over the UTC hours ``[floor(first period start),
min(watermark, ceil(last period end)))``, that

    COUNT(events with timestamp in those hours)
      == events the finished folds read in those hours (``AccumulatorStore.folded_hours``)
       + COUNT(events with timestamp in those hours and ``ingested_at`` >= watermark)

(the last term: events still to be folded, read after the watermark). Two COUNT aggregations
and one document per UTC month: about one read per 1,000 events of the billed range for the
whole tenant, a small fraction of a read per invoice. When the two sides differ, some event was
written behind the fold's back (or deleted after it): ``unfolded_customers`` halves the range
down to the single hours that differ (two COUNTs per step), reads those hours' events, and every
customer with an event there is billed from its own raw events (``stream_customer_events``),
the others from their accumulators. Beyond ``MAX_DIFFERING_HOURS`` differing hours the whole
tenant is read raw. Either way the invoices are those of the raw computation.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.errors import DataError
from billing.pricing.periods import BillingPeriod
from billing.pricing.usage import SubscriptionUsage, UsageRouter
from billing.records import Meter, Subscription, Tenant, UsageEvent
from billing.store.accumulators import accumulator_id
from billing.store.firestore_store import BillingStore
from billing.store.usage import hour_key

HOUR = timedelta(hours=1)
MAX_DIFFERING_HOURS = 24
"""Hours whose counts differ beyond which the completeness check stops narrowing (tenant raw)."""
MAX_UNFOLDED_LISTED = 5000
"""Customers found by a fanned-out run's check beyond which its chunks read the tenant raw."""
VERIFY_SAMPLE = 20
"""Subscriptions per tenant a ``verify`` run recomputes from raw events."""
Watched = tuple[Subscription, BillingPeriod, str]
"""A billed (subscription, period) and the key of its watch on the router."""


@dataclass
class UsageSupply:
    """What ``supply_usage`` read: events streamed, watches folded and raw, watches verified."""

    events_read: int = 0
    folded: int = 0
    raw: int = 0
    malformed: int = 0
    verified: int = 0
    incomplete: bool = False
    """The completeness check found events no fold read (some or all customers read raw)."""


@dataclass(frozen=True)
class ChunkScope:
    """A fanned-out price task's share of the tenant's usage (``billing.runs.fanout``).

    ``customers``: the chunk's customer ids, a contiguous run of the tenant's ids (the plan
    sorts the candidates by customer id). ``watermark`` and ``unfolded``: the fold watermark
    and the completeness check (``unfolded_customers``) the plan read once for the whole run
    (``None`` watermark: the tenant is read raw; ``None`` unfolded: more hours differ than
    ``MAX_DIFFERING_HOURS``, read raw as well). Every chunk then reads only its own customers'
    events and accumulators, and the run's figures add up across chunks.
    """

    customers: frozenset[str]
    watermark: datetime | None
    unfolded: frozenset[str] | None


def plan_scope(store: BillingStore, tenant_id: str, first: datetime, last: datetime) -> dict[str, Any]:
    """The fold state a fanned-out run's plan reads once for all its chunks (``ChunkScope``).

    Returns run-record fields: ``usage_watermark`` (``None``: never folded, read raw) and
    ``usage_unfolded`` (the customers read raw, sorted; ``None``: the whole tenant raw, when
    the check gives up or finds more than ``MAX_UNFOLDED_LISTED`` customers, which would
    crowd the run record).
    """
    watermark = store.fold_watermark(tenant_id)
    if watermark is None:
        return {"usage_watermark": None, "usage_unfolded": None}
    found = unfolded_between(store, tenant_id, first, last, watermark)
    listed = None if found is None or len(found) > MAX_UNFOLDED_LISTED else sorted(found)
    return {"usage_watermark": watermark, "usage_unfolded": listed}


def chunk_scope(record: Mapping[str, Any], customers: Collection[str]) -> ChunkScope:
    """The ``ChunkScope`` of a chunk's ``customers`` from its run record (``plan_scope``'s fields)."""
    watermark = record.get("usage_watermark")
    unfolded = record.get("usage_unfolded")
    return ChunkScope(
        frozenset(customers),
        watermark if isinstance(watermark, datetime) else None,
        frozenset(unfolded) if isinstance(unfolded, list) else None,
    )


def supply_usage(
    store: BillingStore,
    tenant: Tenant,
    meters: Mapping[str, Meter | Exception],
    router: UsageRouter,
    watched: Sequence[Watched],
    *,
    verify: bool = False,
    scope: ChunkScope | None = None,
) -> UsageSupply:
    """Feed every watch from the accumulators (plus the events after them) or from raw events.

    ``verify``: then recompute a sample of the folded watches from raw events
    (``verify_sample``); a difference fails that subscription with ``usage_mismatch``.
    ``scope``: a fanned-out chunk (``ChunkScope``): the plan's watermark and check, and only
    the chunk's customers' events are read and counted.
    """
    supply = UsageSupply()
    watermark, unfolded, supply.incomplete = _fold_state(store, tenant.id, watched, scope)
    raw: list[Watched] = list(watched)
    if watermark is not None:
        raw = _load_folded(store, tenant, meters, router, watched, watermark, unfolded)
        supply.folded = len(watched) - len(raw)
        if supply.folded:
            window_end = max(period.end for _, period, _ in watched)
            tail = store.stream_fold_window(
                tenant.id, watermark, None, router.properties(), timestamps_before=window_end
            )
            if scope is not None:
                # Every chunk reads the tenant's tail: only its own customers' events count here,
                # and malformed ones (no customer) are left to the next fold's warnings.
                tail = (e for e in tail if e.customer_id in scope.customers)
            _consume(store, router, tail, supply, source="folded", malformed=scope is None)
            if verify:
                supply.verified = len(verify_sample(store, tenant, router, watched))
    supply.raw = len(raw)
    if raw:
        _supply_raw(store, tenant, router, raw, supply, chunk=scope is not None, unfolded=unfolded)
    return supply


def _fold_state(
    store: BillingStore, tenant_id: str, watched: Sequence[Watched], scope: ChunkScope | None
) -> tuple[datetime | None, set[str], bool]:
    """The watermark to trust (``None``: read raw), the customers the folds missed, and whether any.

    A chunk takes the plan's (``ChunkScope``); a run reads the watermark and makes the
    completeness check itself (``unfolded_customers``).
    """
    if scope is not None:
        if scope.watermark is None:
            return None, set(), False
        if scope.unfolded is None:
            return None, set(), True
        return scope.watermark, set(scope.unfolded), bool(scope.unfolded)
    watermark = store.fold_watermark(tenant_id)
    if watermark is None or not watched:
        return None, set(), False
    found = unfolded_customers(store, tenant_id, watched, watermark)
    return (None, set(), True) if found is None else (watermark, found, bool(found))


def _supply_raw(
    store: BillingStore,
    tenant: Tenant,
    router: UsageRouter,
    raw: Sequence[Watched],
    supply: UsageSupply,
    *,
    chunk: bool,
    unfolded: Collection[str],
) -> None:
    """Feed the raw watches from the fewest events that hold theirs.

    A fanned-out ``chunk``: one range query over its customers. Raw watches that are all of
    customers the completeness check found (``unfolded``): one query per customer. Else the
    tenant's whole window by timestamp.
    """
    start = min(period.start for _, period, _ in raw)
    end = max(period.end for _, period, _ in raw)
    customers = sorted({sub.customer_id for sub, _, _ in raw})
    properties = router.properties()
    if chunk:
        _consume(
            store,
            router,
            store.stream_customer_range_events(tenant.id, customers, start, end, properties),
            supply,
        )
    elif unfolded and all(c in unfolded for c in customers):
        for customer_id in customers:
            periods = [period for sub, period, _ in raw if sub.customer_id == customer_id]
            first, last = min(p.start for p in periods), max(p.end for p in periods)
            events = store.stream_customer_events(tenant.id, customer_id, first, last, properties)
            _consume(store, router, events, supply)
    else:
        _consume(
            store, router, store.stream_usage_events(tenant.id, start, end, properties=properties), supply
        )


def _consume(
    store: BillingStore,
    router: UsageRouter,
    events: Iterable[UsageEvent],
    supply: UsageSupply,
    source: str = "raw",
    *,
    malformed: bool = True,
) -> None:
    """Feed ``events`` to the watches of ``source``; count what was read in ``supply``.

    ``malformed``: also count the malformed documents the read skipped.
    """
    before = router.events_seen
    router.consume(events, source=source)
    supply.events_read += router.events_seen - before
    if malformed:
        supply.malformed += store.malformed_events


def unfolded_customers(
    store: BillingStore, tenant_id: str, watched: Sequence[Watched], watermark: datetime
) -> set[str] | None:
    """The customers the folds may have missed events of in the billed hours (module docstring).

    The completeness check over the billed UTC hours before ``watermark``, then halved down to
    the single hours whose counts differ; the customers with an event in one of those hours.
    Empty when the folds read every event (or the billed periods start at the watermark);
    ``None`` when more than ``MAX_DIFFERING_HOURS`` hours differ (read the tenant raw).
    """
    first = min(period.start for _, period, _ in watched)
    return unfolded_between(store, tenant_id, first, max(period.end for _, period, _ in watched), watermark)


def unfolded_between(
    store: BillingStore, tenant_id: str, first: datetime, last: datetime, watermark: datetime
) -> set[str] | None:
    """``unfolded_customers`` for the billed periods spanning ``[first, last)`` (aware datetimes)."""
    start = _utc_hour(first)
    floor = _utc_hour(last)
    end = min(_utc_hour(watermark), floor if floor == last else floor + HOUR)
    if start >= end:
        return set()
    folded = store.folded_hours(tenant_id, start, end)
    differing: list[tuple[datetime, datetime]] = []
    pending = [(start, end)]
    while pending:
        low, high = pending.pop()
        expected = sum(n for hour, n in folded.items() if hour_key(low) <= hour < hour_key(high))
        expected += store.count_events(tenant_id, low, high, ingested_from=watermark)
        if store.count_events(tenant_id, low, high) == expected:
            continue
        hours = (high - low) // HOUR
        if hours > 1:
            middle = low + HOUR * (hours // 2)
            pending += [(middle, high), (low, middle)]
            continue
        differing.append((low, high))
        if len(differing) > MAX_DIFFERING_HOURS:
            return None
    customers: set[str] = set()
    for low, high in differing:
        customers.update(
            e.customer_id for e in store.stream_usage_events(tenant_id, low, high, properties=())
        )
    return customers


def _utc_hour(moment: datetime) -> datetime:
    """``moment`` floored to its UTC hour, as a plain ``datetime`` (Firestore's subclass is not)."""
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, utc.hour, tzinfo=UTC)


def _load_folded(
    store: BillingStore,
    tenant: Tenant,
    meters: Mapping[str, Meter | Exception],
    router: UsageRouter,
    watched: Sequence[Watched],
    watermark: datetime,
    unfolded: Collection[str] = (),
) -> list[Watched]:
    """Load the trustworthy accumulators into their watches; return the watches left raw.

    ``unfolded``: customers read raw whatever their accumulators (``unfolded_customers``).
    """
    customers = sorted({sub.customer_id for sub, _, _ in watched} - set(unfolded))
    routing = store.read_routing(tenant.id, customers)
    fingerprints: dict[str, str | None] = {c: router.fingerprint(c, meters) for c in customers}
    fingerprints.update((c, None) for c in unfolded)
    ids = [
        accumulator_id(sub.id, period.key, code)
        for sub, period, key in watched
        for code in router.usage[key].accumulators
        if _routing_holds(routing.get(sub.customer_id), fingerprints[sub.customer_id], period)
    ]
    stored = store.read_accumulators(tenant.id, ids)
    raw: list[Watched] = []
    for sub, period, key in watched:
        usage = router.usage[key]
        docs = {code: stored.get(accumulator_id(sub.id, period.key, code)) for code in usage.accumulators}
        holds = _routing_holds(routing.get(sub.customer_id), fingerprints[sub.customer_id], period)
        if not holds or not all(_usable(doc, period) for doc in docs.values() if doc is not None):
            raw.append((sub, period, key))
            continue
        router.set_source(key, "folded")
        for code, doc in docs.items():
            usage.covered[code] = watermark
            if doc is not None:
                usage.accumulators[code].absorb(doc["state"])
                usage.covered[code] = max(watermark, doc["folded_until"])
    return raw


def verify_sample(
    store: BillingStore,
    tenant: Tenant,
    router: UsageRouter,
    watched: Sequence[Watched],
    sample: int = VERIFY_SAMPLE,
) -> list[str]:
    """Recompute up to ``sample`` folded watches from raw events; mark and list the differing ones.

    The sample is spread over the watches fed from accumulators (every k-th, by key). A watch
    whose quantities or event count differ gets ``failure`` = ``DataError`` (``usage_mismatch``):
    the run reports it in ``errors`` and does not bill it. Returns the keys checked.
    """
    folded = sorted(key for _, _, key in watched if router.source_of(key) == "folded")
    if not folded or sample <= 0:
        return []
    step = max(1, len(folded) // sample)
    keys = folded[::step][:sample]
    periods = {key: period for _, period, key in watched}
    replica = router.replica(keys)
    start = min(periods[key].start for key in keys)
    end = max(periods[key].end for key in keys)
    replica.consume(store.stream_usage_events(tenant.id, start, end, properties=replica.properties()))
    for key in keys:
        mine, raw = router.usage[key], replica.usage[key]
        if mine.quantities() != raw.quantities() or mine.events_counted != raw.events_counted:
            mine.failure = DataError(
                f"verify: the accumulators give {_describe(mine)} but the raw events {_describe(raw)}; "
                "not billed: fold again or investigate",
                code="usage_mismatch",
            )
    return keys


def _describe(usage: SubscriptionUsage) -> str:
    """Quantities and events of one watch, briefly, for ``usage_mismatch``."""
    shown = {
        code: {"/".join(k): str(v) for k, v in groups.items()} for code, groups in usage.quantities().items()
    }
    return f"{shown} from {usage.events_counted} events"


def _routing_holds(record: Mapping[str, Any] | None, fingerprint: str | None, period: BillingPeriod) -> bool:
    """Whether the fold routed this customer's events of ``period`` as billing does now."""
    if fingerprint is None:
        return False
    if record is None:
        return True
    since = record.get("since")
    return record.get("routing") == fingerprint and isinstance(since, datetime) and since <= period.start


def _usable(doc: Mapping[str, Any], period: BillingPeriod) -> bool:
    """An accumulator of exactly ``period`` that kept its state."""
    return (
        not doc.get("overflow")
        and isinstance(doc.get("state"), Mapping)
        and doc.get("period_start") == period.start
        and doc.get("period_end") == period.end
    )
