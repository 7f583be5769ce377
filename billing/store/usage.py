"""The usage stream: a tenant's usage events of a time window, oldest first, in one query."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from billing.records import UsageEvent
from billing.store.base import StoreBase


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
        if properties is not None:
            query = query.select(
                [
                    "customer_id",
                    "meter",
                    "timestamp",
                    "subscription_id",
                    *(FieldPath("properties", name).to_api_repr() for name in sorted(set(properties))),
                ]
            )
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
            yield UsageEvent(
                snapshot.id,
                customer_id,
                meter,
                timestamp,
                event_properties,
                snapshot.create_time,
                pinned if isinstance(pinned, str) else None,
            )
