"""Benchmark: ``generate_invoices`` for 10,000 anniversary subscriptions all due at once.

Data: the first 10,000 customers of the CDNOW purchase log (``../shared/data/CDNOW_master.txt``;
31,034 purchases, 1997-01..1998-06), tenant ``cdnow`` (USD, America/New_York, grace period 0 so
drafts are finalized in the same run). Each customer has one ``anniversary`` subscription,
anchored on the day of month of its first purchase, whose period ``[1998-05-DD, 1998-06-DD)``
ends before ``as_of = 1998-07-01``. The plan has a fixed fee and three usage charges over three
meters: ``purchases`` (count), ``cds`` (sum of CDs, graduated) and ``spend`` (sum of dollars, a
2 % fee). Every purchase is a usage event of each meter (3 events per purchase).

Prints invoices/s, Firestore reads and writes per invoice and peak memory, beside the emulator's
floor measured in the same run (one streamed read of the events of the billing window plus one
batched write of as many documents as there are invoices). PDFs are not rendered here (their
cost is ``bench.bench_pdf``'s). Usage::

    .venv/bin/python -m bench.bench_generate_invoices [--customers 10000]
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import functions_framework
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from bench.common import bench_environment
from billing.pricing.periods import add_interval
from devtools.dev_issuer import mint_token

REPO = Path(__file__).resolve().parent.parent
CDNOW = REPO.parent / "shared" / "data" / "CDNOW_master.txt"
TENANT = "cdnow"
TZ = "America/New_York"
AUDIENCE = "https://bench.local/generate_invoices"
AS_OF = datetime(1998, 7, 1, tzinfo=UTC)


def read_cdnow(customers: int) -> dict[str, list[tuple[datetime, int, str]]]:
    """Purchases by customer id for the first ``customers`` ids: (noon local, CDs, dollars)."""
    out: dict[str, list[tuple[datetime, int, str]]] = {}
    zone = ZoneInfo(TZ)
    with open(CDNOW, encoding="ascii") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) != 4 or not parts[0].isdigit() or int(parts[0]) > customers:
                continue
            day = datetime.strptime(parts[1], "%Y%m%d").replace(hour=12, tzinfo=zone)
            out.setdefault(parts[0], []).append((day.astimezone(UTC), int(parts[2]), parts[3]))
    return out


def commit_all(db: firestore.Client, writes: list[tuple[Any, dict[str, Any]]]) -> None:
    """Write ``(reference, data)`` pairs in batches of 500, eight batches at a time."""

    def commit(chunk: list[tuple[Any, dict[str, Any]]]) -> None:
        batch = db.batch()
        for ref, data in chunk:
            batch.set(ref, data)
        batch.commit()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(commit, [writes[i : i + 500] for i in range(0, len(writes), 500)]))


def seed(db: firestore.Client, purchases: dict[str, list[tuple[datetime, int, str]]]) -> int:
    """Write tenant, meters, plan, customers, subscriptions and events; return event count."""
    root = db.collection("tenants").document(TENANT)
    root.set(
        {
            "name": "CDNOW",
            "status": "active",
            "timezone": TZ,
            "currency": "USD",
            "invoice_prefix": "CD",
            "payment_terms_days": 14,
            "tax_rates": {},
            "grace_period_hours": 0,
        }
    )
    root.collection("meters").document("purchases").set({"aggregation": "count"})
    root.collection("meters").document("cds").set({"aggregation": "sum", "field": "cds", "unit": "CDs"})
    root.collection("meters").document("spend").set({"aggregation": "sum", "field": "usd", "unit": "USD"})
    root.collection("plans").document("club").set(
        {
            "currency": "USD",
            "interval": "month",
            "interval_count": 1,
            "charges": [
                {"type": "fixed", "description": "Club membership", "unit_amount_decimal": "499"},
                {"type": "usage", "meter": "purchases", "model": "standard", "unit_amount_decimal": "25"},
                {
                    "type": "usage",
                    "meter": "cds",
                    "model": "graduated",
                    "tiers": [
                        {"up_to": 2, "unit_amount_decimal": "0"},
                        {"up_to": None, "unit_amount_decimal": "50"},
                    ],
                },
                {"type": "usage", "meter": "spend", "model": "standard", "unit_amount_decimal": "2"},
            ],
        }
    )
    writes: list[tuple[Any, dict[str, Any]]] = []
    events = 0
    zone = ZoneInfo(TZ)
    for customer_id, rows in purchases.items():
        first = rows[0][0].astimezone(zone)
        anchor = first.replace(hour=0).astimezone(UTC)
        months = (1998 - first.year) * 12 + 5 - first.month  # period starting in May 1998
        start = add_interval(anchor, "month", months, TZ)
        end = add_interval(anchor, "month", months + 1, TZ)
        writes.append(
            (
                root.collection("customers").document(customer_id),
                {
                    "name": f"Customer {customer_id}",
                    "email": f"c{customer_id}@example.com",
                    "address": {"country": "US"},
                    "status": "active",
                },
            )
        )
        writes.append(
            (
                root.collection("subscriptions").document(f"sub-{customer_id}"),
                {
                    "customer_id": customer_id,
                    "plan_id": "club",
                    "status": "active",
                    "billing_time": "anniversary",
                    "started_at": anchor,
                    "billing_cycle_anchor": anchor,
                    "current_period_start": start,
                    "current_period_end": end,
                },
            )
        )
        for n, (at, cds, usd) in enumerate(rows):
            for meter, properties in (("purchases", {}), ("cds", {"cds": cds}), ("spend", {"usd": usd})):
                writes.append(
                    (
                        root.collection("usage_events").document(f"cd-{customer_id}-{n}-{meter}"),
                        {
                            "customer_id": customer_id,
                            "meter": meter,
                            "timestamp": at,
                            "properties": properties,
                        },
                    )
                )
                events += 1
    commit_all(db, writes)
    return events


def main() -> int:
    """Seed, measure the floor, run generate_invoices, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_generate_invoices")
    parser.add_argument("--customers", type=int, default=10000)
    args = parser.parse_args()
    with bench_environment(AUDIENCE, "bench-anniversary") as key:
        return _run(args.customers, key)


def _run(customers: int, key: Any) -> int:
    """Seed, run generate_invoices through the HTTP function, measure the floor."""
    db = firestore.Client(project="bench-anniversary")
    purchases = read_cdnow(customers)
    started = time.perf_counter()
    events = seed(db, purchases)
    print(
        f"seeded {len(purchases)} subscriptions and {events} events in {time.perf_counter() - started:.1f} s"
    )

    import billing.http.handlers as handlers

    handlers.publish_to_bucket = None  # type: ignore[assignment]
    app = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="generate_invoices", source=str(REPO / "functions/generate_invoices/main.py")
    )
    token = mint_token(key, audience=AUDIENCE)
    started = time.perf_counter()
    response = app.test_client().post(
        "/",
        json={"as_of": AS_OF.isoformat()},
        headers={"Authorization": f"Bearer {token}", "X-Tenant-ID": TENANT},
    )
    run_seconds = time.perf_counter() - started
    body = response.get_json()
    assert response.status_code == 200 and not body["errors"], body
    invoices = body["finalized"]
    assert body["generated"] == invoices == len(purchases), body

    window = (min(s["period_start"] for s in _subs(db)), AS_OF)
    started = time.perf_counter()
    query = (
        db.collection(f"tenants/{TENANT}/usage_events")
        .where(filter=FieldFilter("timestamp", ">=", window[0]))
        .where(filter=FieldFilter("timestamp", "<", window[1]))
    )
    window_events = sum(1 for s in query.stream() if s.to_dict() is not None)
    read_s = time.perf_counter() - started
    sample = db.collection(f"tenants/{TENANT}/invoices").limit(1).get()[0].to_dict() or {}
    started = time.perf_counter()
    commit_all(
        db, [(db.collection(f"tenants/{TENANT}/floor").document(str(i)), sample) for i in range(invoices)]
    )
    write_s = time.perf_counter() - started
    floor_s = read_s + write_s
    stats = body["stats"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"generate_invoices as_of {AS_OF:%Y-%m-%d}: {body['generated']} invoices created, "
        f"{invoices} finalized, {body['advanced']} subscriptions advanced; "
        f"{window_events} events in the billing window"
    )
    print(f"emulator floor: read {read_s:.2f} s + write {write_s:.2f} s = {floor_s:.2f} s")
    print(
        f"run: {run_seconds:.2f} s = {run_seconds / floor_s:.2f}x floor; "
        f"{invoices / run_seconds:.0f} invoices/s"
    )
    print(
        f"Firestore per invoice: {stats['firestore_reads'] / invoices:.2f} reads, "
        f"{stats['firestore_writes'] / invoices:.2f} writes"
    )
    print(f"peak memory: {rss_mb:.0f} MB resident (whole process, seeding included)")
    print(f"totals: {body['totals']}")
    return 0


def _subs(db: firestore.Client) -> list[dict[str, Any]]:
    return [
        {"period_start": (s.to_dict() or {})["period_start"]}
        for s in db.collection(f"tenants/{TENANT}/invoices").select(["period_start"]).stream()
    ]


if __name__ == "__main__":
    raise SystemExit(main())
