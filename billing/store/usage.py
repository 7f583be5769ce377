"""The usage stream: a tenant's usage events by timestamp (billing) or by fold window (the fold).

The hourly fold (``billing.runs.fold_usage``) partitions events into windows of *fold time*
(``billing.pricing.usage.fold_time``: ``max(timestamp, ingested_at)``, or the timestamp for an
event without ``ingested_at``). A window ``[start, end)`` is read with two queries, so that each
event is read once, in the window that folds it:

- on time: ``start <= timestamp < end`` (every event written by then whose ``ingested_at`` is
  absent or before ``end``);
- late: ``start <= ingested_at < end`` and ``timestamp < start`` (two inequality fields: the
  composite index ``(ingested_at, timestamp)``, ``billing.store.indexes``).

Firestore cannot query a document's create time, so an event *without* ``ingested_at`` is folded
with the window of its timestamp: it must be written before that window is folded
(``billing.runs.fold_usage.FOLD_GRACE`` after the window's hour, when the hourly job runs). A
producer that sends events later than that (backfills, retried batches) sets ``ingested_at``
(e.g. the server timestamp at write): such an event is found by the late query, however old
its timestamp. An event without ``ingested_at`` written later (or whose ``ingested_at`` lies)
is not folded: billing finds it by counting (*completeness check*,
``billing.runs.usage_source``): every fold window records how many events it read per UTC hour of
their timestamp (``hours_read``, kept in ``billing.store.accumulators``), and billing compares
``count_events`` (a Firestore COUNT aggregation: one read per 1,000 index entries) over the hours
it bills with what the folds read plus what it reads after the watermark.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from billing.records import UsageEvent
from billing.store.base import StoreBase

_BASE_FIELDS = ("customer_id", "meter", "timestamp", "subscription_id", "ingested_at")
COUNT_BATCH = 1000
"""Index entries a COUNT aggregation reads per billed read (Firestore pricing)."""


def hour_key(moment: datetime) -> str:
    """The UTC hour of ``moment`` (aware) as ``YYYYMMDDHH``: the completeness check's bucket."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H")


class UsageStore(StoreBase):
    """Reads of ``tenants/{t}/usage_events``."""

    def stream_usage_events(
        self, tenant_id: str, start: datetime, end: datetime, properties: Iterable[str] | None = None
    ) -> Iterator[UsageEvent]:
        """Yield the tenant's events with ``start <= timestamp < end``, oldest first.

        One streamed query; the client library resumes it after the last document received if
        the stream breaks (``Query.stream`` retries with a cursor). ``properties`` names the event
        properties the caller aggregates (meter fields and ``group_by``): when given, the query
        projects the documents onto those fields, so a month of events carrying descriptions
        and other payload is not transferred and decoded for nothing. An event document missing
        ``customer_id``/``meter``/``timestamp`` can belong to no one and is skipped; its count
        is in ``self.malformed_events``.
        """
        self.malformed_events = 0
        query = (
            self._collection(tenant_id, "usage_events")
            .where(filter=FieldFilter("timestamp", ">=", start))
            .where(filter=FieldFilter("timestamp", "<", end))
            .order_by("timestamp")
        )
        yield from self._events(_project(query, properties))

    def stream_customer_events(
        self,
        tenant_id: str,
        customer_id: str,
        start: datetime,
        end: datetime,
        properties: Iterable[str] | None = None,
    ) -> Iterator[UsageEvent]:
        """Yield one customer's events with ``start <= timestamp < end``, oldest first.

        As ``stream_usage_events`` for the documents whose ``customer_id`` is ``customer_id``
        (composite index ``(customer_id, timestamp)``); malformed ones in ``malformed_events``.
        """
        self.malformed_events = 0
        query = (
            self._collection(tenant_id, "usage_events")
            .where(filter=FieldFilter("customer_id", "==", customer_id))
            .where(filter=FieldFilter("timestamp", ">=", start))
            .where(filter=FieldFilter("timestamp", "<", end))
            .order_by("timestamp")
        )
        yield from self._events(_project(query, properties))

    def stream_customer_range_events(
        self,
        tenant_id: str,
        customers: Collection[str],
        start: datetime,
        end: datetime,
        properties: Iterable[str] | None = None,
    ) -> Iterator[UsageEvent]:
        """Yield the events of ``customers`` with ``start <= timestamp < end``: each customer's oldest first.

        A fanned-out chunk's customers are a contiguous run of the tenant's customer ids (the
        plan cuts the candidates sorted by customer id), so one query with two ranges,
        ``min <= customer_id <= max`` and the timestamp window, ordered by (customer_id,
        timestamp) (composite index ``(customer_id, timestamp)``), reads them; events of other
        customers in that range are dropped. The order is per customer, not global: a
        subscription's events all belong to one customer, so each aggregation sees its events
        in the order of ``stream_usage_events``. Malformed documents as there.
        """
        self.malformed_events = 0
        wanted = set(customers)
        if not wanted:
            return
        query = (
            self._collection(tenant_id, "usage_events")
            .where(filter=FieldFilter("customer_id", ">=", min(wanted)))
            .where(filter=FieldFilter("customer_id", "<=", max(wanted)))
            .where(filter=FieldFilter("timestamp", ">=", start))
            .where(filter=FieldFilter("timestamp", "<", end))
            .order_by("customer_id")
            .order_by("timestamp")
        )
        yield from self._events(_project(query, properties), lambda data: data.get("customer_id") in wanted)

    def stream_fold_window(
        self,
        tenant_id: str,
        start: datetime,
        end: datetime | None,
        properties: Iterable[str] | None = None,
        *,
        timestamps_before: datetime | None = None,
    ) -> Iterator[UsageEvent]:
        """Yield the events whose fold time is in ``[start, end)`` (``end`` None: no end).

        The two queries of the module docstring; ``timestamps_before`` bounds the on-time query
        when ``end`` is None (billing reads only its windows). ``properties``: as in
        ``stream_usage_events``. Malformed documents are skipped and counted in
        ``self.malformed_events``; every document read, per UTC hour of its timestamp, in
        ``self.hours_read`` (the completeness check, module docstring).
        """
        self.malformed_events = 0
        self.hours_read: Counter[str] = Counter()
        events = self._collection(tenant_id, "usage_events")
        on_time = events.where(filter=FieldFilter("timestamp", ">=", start))
        limit = end if end is not None else timestamps_before
        if limit is not None:
            on_time = on_time.where(filter=FieldFilter("timestamp", "<", limit))

        def in_window(data: dict[str, Any]) -> bool:
            ingested = data.get("ingested_at")
            return end is None or not isinstance(ingested, datetime) or ingested < end

        yield from self._events(
            _project(on_time.order_by("timestamp"), properties), in_window, self.hours_read
        )
        late = events.where(filter=FieldFilter("ingested_at", ">=", start))
        if end is not None:
            late = late.where(filter=FieldFilter("ingested_at", "<", end))
        late = late.where(filter=FieldFilter("timestamp", "<", start))
        late = _project(late.order_by("ingested_at").order_by("timestamp"), properties)
        yield from self._events(late, None, self.hours_read)

    def count_events(
        self, tenant_id: str, start: datetime, end: datetime, *, ingested_from: datetime | None = None
    ) -> int:
        """The number of event documents with ``start <= timestamp < end`` (malformed ones included).

        ``ingested_from``: only those with ``ingested_at >= ingested_from`` (a timestamp). One
        COUNT aggregation; counted as one read per ``COUNT_BATCH`` index entries (at least one).
        """
        query = (
            self._collection(tenant_id, "usage_events")
            .where(filter=FieldFilter("timestamp", ">=", start))
            .where(filter=FieldFilter("timestamp", "<", end))
        )
        if ingested_from is not None:
            query = query.where(filter=FieldFilter("ingested_at", ">=", ingested_from))
        aggregation: Any = query.count(alias="n")
        results = aggregation.get()
        total = int(results[0][0].value) if results and results[0] else 0
        self._count(reads=max(1, -(-total // COUNT_BATCH)))
        return total

    def _events(
        self, query: Any, keep: Any = None, hours: Counter[str] | None = None
    ) -> Iterator[UsageEvent]:
        """Parse a query's event documents; malformed ones counted in ``malformed_events``.

        ``keep(data) -> bool``: documents it rejects are skipped silently. Every document kept
        whose ``timestamp`` is a timestamp, malformed or not, counts in ``hours`` (its UTC hour,
        ``hour_key``) when given.
        """
        for snapshot in self._stream(query):
            data = snapshot.to_dict() or {}
            if keep is not None and not keep(data):
                continue
            if hours is not None and isinstance(data.get("timestamp"), datetime):
                hours[hour_key(data["timestamp"])] += 1
            customer_id = data.get("customer_id")
            meter = data.get("meter")
            timestamp = data.get("timestamp")
            event_properties = data.get("properties") or {}
            if not (
                isinstance(customer_id, str)
                and isinstance(meter, str)
                and isinstance(timestamp, datetime)
                and isinstance(event_properties, dict)
            ):
                self.malformed_events += 1
                continue
            pinned = data.get("subscription_id")
            ingested = data.get("ingested_at")
            yield UsageEvent(
                snapshot.id,
                customer_id,
                meter,
                timestamp,
                event_properties,
                snapshot.create_time,
                pinned if isinstance(pinned, str) else None,
                ingested if isinstance(ingested, datetime) else None,
            )


def _project(query: Any, properties: Iterable[str] | None) -> Any:
    """``query`` projected on the event's fixed fields and ``properties`` (None: every field)."""
    if properties is None:
        return query
    return query.select(
        [*_BASE_FIELDS, *(FieldPath("properties", name).to_api_repr() for name in sorted(set(properties)))]
    )
