"""Benchmark: the month close of November 2011 (UCI Online Retail) through the HTTP function.

Prints, in one run on one emulator:
- the emulator's floor, measured in this process: one streamed read of the month's events
  plus one batched write of as many documents as there are invoices;
- the month close through ``monthly_billing`` (functions-framework test client, real token),
  once without PDFs and once with PDFs (two fresh copies of the data): wall time, invoices/s,
  events/s, Firestore document reads and writes per invoice, PDF render time per invoice;
- peak memory (resident set of this process, which does nothing but the runs and the floor).

Targets (issue 2): the run without PDFs within 2x the floor; PDF rendering at most 15 ms per
one-page invoice. Usage::

    .venv/bin/python -m bench.bench_month_close [--csv PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import functions_framework
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from bench.common import bench_environment
from devtools.dev_issuer import mint_token

REPO = Path(__file__).resolve().parent.parent
CSV = REPO.parent / "shared" / "data" / "online_retail_2010-12_2011-12.csv.gz"
TENANT = "uk-retail"
AUDIENCE = "https://bench.local/monthly_billing"
START = datetime(2011, 11, 1, tzinfo=UTC)
END = datetime(2011, 12, 1, tzinfo=UTC)


def load(project: str, csv: Path) -> None:
    """Load the month in a separate process, so this process's memory is the run's."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.online_retail",
            "--csv",
            str(csv),
            "--month",
            "2011-11",
            "--project",
            project,
        ],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def floor(project: str, documents: int, sample: dict[str, Any]) -> tuple[float, float, int]:
    """Seconds for one streamed read of the month's events and one batched write of N docs."""
    db = firestore.Client(project=project)
    started = time.perf_counter()
    query = (
        db.collection(f"tenants/{TENANT}/usage_events")
        .where(filter=FieldFilter("timestamp", ">=", START))
        .where(filter=FieldFilter("timestamp", "<", END))
    )
    count = sum(1 for snapshot in query.stream() if snapshot.to_dict() is not None)
    read = time.perf_counter() - started
    started = time.perf_counter()
    collection = db.collection(f"tenants/{TENANT}/floor_writes")
    for start in range(0, documents, 500):
        batch = db.batch()
        for i in range(start, min(start + 500, documents)):
            batch.set(collection.document(f"doc-{i}"), sample)
        batch.commit()
    write = time.perf_counter() - started
    return read, write, count


def close_month(app: Any, key: Any, project: str, *, pdfs: bool) -> tuple[float, dict[str, Any]]:
    """Run the month close through the HTTP function; return wall seconds and the response."""
    import billing.http.handlers as handlers

    os.environ["GOOGLE_CLOUD_PROJECT"] = project
    original = handlers.publish_to_bucket
    if not pdfs:
        handlers.publish_to_bucket = None  # type: ignore[assignment]
    try:
        token = mint_token(key, audience=AUDIENCE)
        started = time.perf_counter()
        response = app.test_client().post(
            "/",
            json={"month": "2011-11"},
            headers={"Authorization": f"Bearer {token}", "X-Tenant-ID": TENANT},
        )
        seconds = time.perf_counter() - started
    finally:
        handlers.publish_to_bucket = original
    body: dict[str, Any] = response.get_json()
    assert response.status_code == 200 and not body["errors"], body
    return seconds, body


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_month_close")
    parser.add_argument("--csv", type=Path, default=CSV)
    args = parser.parse_args()
    with bench_environment(AUDIENCE) as key:
        return _run(args.csv, key)


def _run(csv: Path, key: Any) -> int:
    """Load two copies of the month, close one without and one with PDFs, measure the floor."""
    projects = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for project in projects:
        load(project, csv)
    app = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="monthly_billing", source=str(REPO / "functions/monthly_billing/main.py")
    )

    bare_seconds, bare = close_month(app, key, projects[0], pdfs=False)
    invoices = bare["generated"]
    sample = (
        firestore.Client(project=projects[0])
        .collection(f"tenants/{TENANT}/invoices")
        .limit(1)
        .get()[0]
        .to_dict()
    )
    read_s, write_s, events = floor(projects[0], invoices, sample or {})
    full_seconds, full = close_month(app, key, projects[1], pdfs=True)
    floor_s = read_s + write_s
    stats = bare["stats"]
    pdf_ms = 1000 * full["stats"]["pdf_render_seconds"] / max(1, full["stats"]["pdfs_rendered"])
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"month close 2011-11: {invoices} invoices, {events} events")
    print(f"emulator floor: read {read_s:.2f} s + write {write_s:.2f} s = {floor_s:.2f} s")
    print(
        f"run without PDFs: {bare_seconds:.2f} s = {bare_seconds / floor_s:.2f}x floor "
        f"(target <= 2x); {invoices / bare_seconds:.0f} invoices/s, "
        f"{events / bare_seconds:.0f} events/s"
    )
    print(
        f"Firestore per invoice: {stats['firestore_reads'] / invoices:.1f} reads "
        f"(of which {events / invoices:.1f} events), "
        f"{stats['firestore_writes'] / invoices:.2f} writes"
    )
    print(
        f"run with PDFs: {full_seconds:.2f} s; PDF render {pdf_ms:.1f} ms/invoice "
        f"(target <= 15 ms); {full['stats']['firestore_writes'] / invoices:.2f} writes/invoice"
    )
    print(
        f"peak memory: {rss_mb:.0f} MB resident (the whole benchmark process: both runs, "
        "the floor, the clients)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
