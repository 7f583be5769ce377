"""A fanned-out close reads the fold's accumulators, chunk by chunk, and each event once.

Three twins of the usage scenario (``tests.e2e.usage.scenario``: every aggregation, events late
and on time, a customer with two subscriptions): ``folded`` is folded by ``aggregate_usage``
through October and closed through ``TASKS_MODE=http`` one subscription per chunk (a
customer's two subscriptions stay in one chunk); ``fanraw`` is closed the same way unfolded;
``raw`` is closed inline from raw events. All three bill the same lines to the penny. The
folded chunks read only their customers' events after the watermark; the raw chunks read, in
sum, exactly the events the inline close reads (no chunk re-reads another's customers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore

from billing.pricing.periods import month_period
from tests import factories as f
from tests.e2e.tasks.harness import MONTH, TasksBench, call, monthly_billing_app, wait_for_run
from tests.e2e.tasks.test_fanout_http import bench_factory
from tests.e2e.usage.scenario import comparable, event_documents, seed_catalog, utc, write_events

__all__ = ["bench_factory"]  # the fixture, shared with test_fanout_http
TZ = "Asia/Kolkata"
FOLD_HOURS = [utc(2026, 10, day, hour) for day, hour in ((4, 7), (15, 2), (27, 0))] + [utc(2026, 11, 1, 3)]


def _close(app: Any, token: str, tenant: str) -> tuple[int, dict[str, Any]]:
    return call(app, token, tenant, body={"month": MONTH})


@pytest.mark.parametrize("fault", [None, "duplicate"])
def test_a_fanned_out_close_reads_accumulators_and_equals_raw(
    db: firestore.Client,
    call_function: Any,
    clock: Any,
    bench_factory: Callable[..., TasksBench],
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    fault: str | None,
) -> None:
    period = month_period(2026, 10, TZ)
    docs = event_documents(period.start, period.end)
    for tenant_id in ("folded", "fanraw", "raw"):
        seed_catalog(db, tenant_id, TZ)
        write_events(db, tenant_id, docs)
    for at in FOLD_HOURS:
        clock.set(at)
        status, body = call_function("aggregate_usage", {}, tenant="folded")
        assert status == 200 and body["errors"] == [], body
    clock.set(utc(2026, 11, 2, 6))
    bench = bench_factory(fault, chunk_size=1)
    app, audience = monthly_billing_app(), bench.proxy.url

    monkeypatch.setenv("TASKS_MODE", "inline")
    status, inline = _close(app, token(audience=audience), "raw")
    assert status == 200 and inline["errors"] == [], inline
    monkeypatch.setenv("TASKS_MODE", "http")
    records = {}
    for tenant_id in ("folded", "fanraw"):
        status, accepted = _close(app, token(audience=audience), tenant_id)
        assert status == 202, accepted
        run_id = accepted["run_id"]
        records[tenant_id] = wait_for_run(app, lambda: token(audience=audience), tenant_id, run_id)

    raw_invoices = comparable(f.invoices(db, "raw"))
    assert len(raw_invoices) == inline["generated"] == 5
    for tenant_id, record in records.items():
        assert record["status"] == "completed", record
        assert record["generated"] == 5 and record["totals"] == inline["totals"], record
        assert record["errors"] == [] and record["tenants"][0]["chunks_total"] == 4, record
        assert comparable(f.invoices(db, tenant_id)) == raw_invoices
    raw_read = inline["tenants"][0]["events_read"]
    tail = [d for _, d in docs if d["ingested_at"] >= utc(2026, 11, 1, 3)]
    assert records["fanraw"]["tenants"][0]["events_read"] == raw_read
    assert records["folded"]["tenants"][0]["events_read"] < len(tail) + 10 < raw_read
