"""The usage stream: a tenant's usage events by timestamp (billing) or by ingestion time (the fold).

An event's *ingestion time* (contract, "Usage accumulators") is its ``ingested_at`` field, or
the event document's create time when it has none (``billing.pricing.usage.ingestion_time``).
Firestore cannot query a document's create time, so events without ``ingested_at`` are found
through their ``timestamp``, looking back ``INGESTION_LOOKBACK`` before the ingestion window:
such an event must be written within that delay after its timestamp. A producer that sends
events later than that (backfills, retried batches) sets ``ingested_at`` (e.g. to the server
timestamp), which is queried directly, however old the event's timestamp.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from billing.records import UsageEvent
from billing.store.base import StoreBase

INGESTION_LOOKBACK = timedelta(hours=1)
"""How long after its timestamp an event without ``ingested_at`` may be written (see the module)."""
_BASE_FIELDS = ("customer_id", "meter", "timestamp", "subscription_id", "ingested_at")


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

    def stream_ingested_events(
        self,
        tenant_id: str,
        since: datetime,
        until: datetime | None,
        properties: Iterable[str] | None = None,
        *,
        timestamps_before: datetime | None = None,
    ) -> Iterator[UsageEvent]:
        """Yield the events ingested in ``[since, until)`` (``until`` None: no end), any order.

        Two queries: ``ingested_at`` in the window, and (events without ``ingested_at``) the
        ``timestamp`` from ``since - INGESTION_LOOKBACK`` (up to ``until`` or
        ``timestamps_before``) filtered on the document's create time. ``properties``: as in
        ``stream_usage_events``. Malformed documents are skipped and counted in
        ``self.malformed_events``.
        """
        self.malformed_events = 0
        by_field = self._collection(tenant_id, "usage_events").where(
            filter=FieldFilter("ingested_at", ">=", since)
        )
        if until is not None:
            by_field = by_field.where(filter=FieldFilter("ingested_at", "<", until))
        yield from self._events(_project(by_field.order_by("ingested_at"), properties))
        by_time = self._collection(tenant_id, "usage_events").where(
            filter=FieldFilter("timestamp", ">=", since - INGESTION_LOOKBACK)
        )
        limit = until if until is not None else timestamps_before
        if limit is not None:
            by_time = by_time.where(filter=FieldFilter("timestamp", "<", limit))
        for event in self._events(_project(by_time.order_by("timestamp"), properties)):
            created = event.created_at
            if event.ingested_at is None and created is not None and since <= created:
                if until is None or created < until:
                    yield event

    def _events(self, query: Any) -> Iterator[UsageEvent]:
        """Parse a query's event documents; malformed ones counted in ``malformed_events``."""
        for snapshot in self._stream(query):
            data = snapshot.to_dict() or {}
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
