"""A failed fanned-out run's unnumbered invoices are numbered by the next run of the month.

The first run prices every chunk, but its numbering task never reaches the worker (the proxy
drops it, as a task past its attempts); the sweeper, with a clock past ``RUN_BUDGET``, fails the
run. Its 20 invoices wait as drafts of that run. A second call of the month close starts a new
run (the first has ended), which adopts them (``ChunkStore.owned_invoices``), numbers them 1..20
in the inline order, renders and delivers them: the same invoices and numbers as an inline
close of the twin tenant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from google.cloud import firestore

from billing.http.handlers import make_worker
from billing.pricing.periods import utc_now
from billing.runs.fanout.sweeper import RUN_BUDGET, sweep
from billing.store.firestore_store import BillingStore
from tests import factories as f
from tests.e2e.tasks.harness import (
    MONTH,
    TasksBench,
    assert_same,
    call,
    close_inline_twin,
    wait_for_run,
)
from tests.e2e.tasks.test_fanout_http import bench_factory

__all__ = ["bench_factory"]  # the fixture, shared with test_fanout_http


def _start(app: Any, token: str) -> str:
    status, accepted = call(app, token, "fan", body={"month": MONTH})
    assert status == 202, accepted
    return str(accepted["run_id"])


def _wait_for_stage(db: firestore.Client, run_id: str, stage: str) -> dict[str, Any]:
    ref = db.document(f"tenants/fan/billing_runs/{run_id}")
    for _ in range(600):
        record = ref.get().to_dict() or {}
        if record.get("stage") == stage:
            return record
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached {stage}: {record}")


def test_the_next_run_numbers_a_failed_runs_invoices(
    db: firestore.Client,
    bench_factory: Callable[..., TasksBench],
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = bench_factory()
    app, audience, inline = close_inline_twin(db, bench, token, monkeypatch)

    bench.proxy.drop = lambda body: body.get("stage") == "number"
    first = _start(app, token(audience=audience))
    _wait_for_stage(db, first, "number")
    worker = make_worker(BillingStore(db))
    worker.clock = lambda: utc_now() + RUN_BUDGET + timedelta(minutes=1)
    assert sweep(worker, "fan")["failed"] == 1
    waiting = f.invoices(db, "fan")
    assert len(waiting) == 20
    assert {(d["status"], d.get("number"), d["numbering_run"]) for d in waiting.values()} == {
        ("draft", None, first)
    }

    bench.proxy.drop = None
    second = _start(app, token(audience=audience))
    assert second != first
    record = wait_for_run(app, lambda: token(audience=audience), "fan", second)
    assert_same(db, inline, record)
    invoices = f.invoices(db, "fan")
    assert {d["numbering_run"] for d in invoices.values()} == {second}
    assert {d.get("adopted_from") for d in invoices.values()} == {first}
    assert all(d["pdf_uri"] for d in invoices.values())
    status, old = call(app, token(audience=audience), "fan", method="GET", query=f"?run_id={first}")
    assert status == 200 and old["status"] == "failed", old
