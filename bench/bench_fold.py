"""Benchmark: the month close of November 2011 (Online Retail) after the hourly usage fold, against raw.

In one run on one emulator, two copies of the month (each event with ``ingested_at``,
``devtools.retail_folds``):
- copy A is folded by the 24 runs of ``devtools.retail_folds.FOLD_TIMES`` (``aggregate_usage``'s
  use case), then closed: the close reads one accumulator per customer plus the events ingested
  after the last fold;
- copy B is closed from raw events (no fold), as before issue 13.
Prints the fold's events/s and Firestore reads/writes per event, and for both closes (no PDFs,
``billing.runs.month_close`` directly) the wall time and Firestore reads and writes per invoice
(the store's counters, ``billing.store.base``). Target (issue 13): <= 6 reads per invoice after
the fold, whatever the number of events, with the same totals. The folded close includes
billing's completeness check (COUNT aggregations, ``billing.runs.usage_source``).

``--late N``: after the fold, copy N events of 2011-11-05 into both copies again *without*
``ingested_at`` (written behind the fold, as a producer that resends a batch late): the folded
close finds them by counting and reads only their customers raw; totals stay equal. Usage::

    .venv/bin/python -m bench.bench_fold [--csv PATH] [--late N]
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from bench.common import bench_environment
from billing.runs.fold_usage import run_fold_usage
from billing.runs.month_close import run_month_close
from billing.runs.shell import RunContext
from billing.store.firestore_store import BillingStore
from devtools import retail_folds

REPO = Path(__file__).resolve().parent.parent
CSV = REPO.parent / "shared" / "data" / "online_retail_2010-12_2011-12.csv.gz"
TENANT = "uk-retail"
AUDIENCE = "https://bench.local/aggregate_usage"


def fold_month(project: str) -> dict[str, Any]:
    """Run the 24 folds; return their seconds, events folded, reads and writes."""
    store = BillingStore(firestore.Client(project=project))
    seconds = 0.0
    events = 0
    for n, at in enumerate(retail_folds.FOLD_TIMES):
        ctx = RunContext(run_id=f"fold-{n}", now=at, dry_run=False, store=store)
        started = time.perf_counter()
        report = run_fold_usage(ctx, TENANT).to_json()
        seconds += time.perf_counter() - started
        assert not report["errors"], report["errors"]
        events += report["events_folded"]
    return {"seconds": seconds, "events": events, "reads": store.reads, "writes": store.writes}


def close(project: str) -> tuple[float, dict[str, Any]]:
    """The month close without PDFs; return wall seconds and the report."""
    store = BillingStore(firestore.Client(project=project))
    ctx = RunContext(run_id="close", now=retail_folds.CLOSE_AT, dry_run=False, store=store)
    started = time.perf_counter()
    report = run_month_close(ctx, TENANT, "2011-11").to_json()
    seconds = time.perf_counter() - started
    assert not report["errors"], report["errors"]
    return seconds, report


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fold")
    parser.add_argument("--csv", type=Path, default=CSV)
    parser.add_argument(
        "--late", type=int, default=0, help="events resent without ingested_at after the fold"
    )
    args = parser.parse_args()
    with bench_environment(AUDIENCE):
        return _run(args.csv, args.late)


def resend_late(project: str, count: int) -> int:
    """Copy ``count`` events of 2011-11-05 as new documents without ``ingested_at``; return how many."""
    events = (
        firestore.Client(project=project).collection("tenants").document(TENANT).collection("usage_events")
    )
    start = datetime(2011, 11, 5, tzinfo=UTC)
    query = events.where(filter=FieldFilter("timestamp", ">=", start)).order_by("timestamp").limit(count)
    written = 0
    for snapshot in query.stream():
        data = {k: v for k, v in (snapshot.to_dict() or {}).items() if k != "ingested_at"}
        events.document(f"late-{snapshot.id}").set(data)
        written += 1
    return written


def _run(csv: Path, late: int) -> int:
    """Load two copies, fold one, close both, print."""
    folded_project, raw_project = (f"bench-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for project in (folded_project, raw_project):
        events, customers = retail_folds.load_ingested(firestore.Client(project=project), TENANT, csv)
    fold = fold_month(folded_project)
    if late:
        events += resend_late(folded_project, late)
        resend_late(raw_project, late)
        print(f"{late} events resent after the fold without ingested_at")
    folded_s, folded = close(folded_project)
    raw_s, raw = close(raw_project)
    invoices = folded["generated"]
    assert folded["totals"] == raw["totals"] and invoices == raw["generated"], (
        folded["totals"],
        raw["totals"],
    )
    print(f"month close 2011-11: {invoices} invoices, {events} events, {customers} customers")
    print(
        f"fold: 24 runs, {fold['events']} events in {fold['seconds']:.1f} s = "
        f"{fold['events'] / fold['seconds']:.0f} events/s; "
        f"per event {fold['reads'] / fold['events']:.2f} reads, "
        f"{fold['writes'] / fold['events']:.2f} writes"
    )
    for name, seconds, report in (("after the fold", folded_s, folded), ("raw events", raw_s, raw)):
        stats = report["stats"]
        print(
            f"close {name}: {seconds:.2f} s, {report['tenants'][0]['events_read']} events read, "
            f"{stats['firestore_reads'] / invoices:.2f} reads and {stats['firestore_writes'] / invoices:.2f} "
            f"writes per invoice"
        )
    print(f"same totals: {folded['totals']} (target <= 6 reads per invoice after the fold)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
