"""Online Retail 2011-11 with ingestion times, for the hourly usage fold (issue 13): tests and bench.

``load_ingested(db, tenant_id, csv)`` writes the tenant, customers, subscriptions and the month's
64,545 events like ``devtools.online_retail.load``, each event also carrying ``ingested_at``: its
timestamp plus a lag fixed by its id (most within 2 hours, one in fifty 2 to 6 days late, capped
at ``CLOSE_AT - 1 h`` so every event exists before the close). ``FOLD_TIMES``: 24 instants, every
30 hours from 2011-11-02 06:00Z to 2011-12-01 00:00Z, which fold the whole month in 24 runs;
events ingested after the last one (the month's last hours and late ones) are read raw at the
close, at ``CLOSE_AT``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devtools import online_retail

MONTH = "2011-11"
FOLD_TIMES = tuple(datetime(2011, 11, 1, tzinfo=UTC) + timedelta(hours=30 * k) for k in range(1, 25))
CLOSE_AT = datetime(2011, 12, 1, 6, tzinfo=UTC)


def ingestion_lag(event_id: str) -> timedelta:
    """The event's lag between its timestamp and its ingestion, fixed by its id."""
    draw = int(hashlib.sha256(event_id.encode()).hexdigest()[:8], 16)
    if draw % 50 == 0:
        return timedelta(days=2 + draw % 5, minutes=draw % 60)
    return timedelta(seconds=draw % 7200)


def load_ingested(db: Any, tenant_id: str, csv_path: str | Path) -> tuple[int, int]:
    """Write the month's tenant data with ``ingested_at``; return (events, customers)."""
    rows, read = online_retail.read_usage_events(csv_path, MONTH)
    online_retail.write_retail_tenant(db, tenant_id)
    customers = online_retail.write_customers_and_subscriptions(db, tenant_id, rows, read.customer_countries)
    events = db.collection("tenants").document(tenant_id).collection("usage_events")
    latest = CLOSE_AT - timedelta(hours=1)

    def document(row: online_retail.UsageEventRow) -> dict[str, Any]:
        data = row.to_document()
        data["ingested_at"] = min(row.timestamp + ingestion_lag(row.event_id), latest)
        return data

    written = online_retail._commit_in_parallel(
        db, ((events.document(row.event_id), document(row)) for row in rows)
    )
    return written, customers
