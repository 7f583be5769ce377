"""The whole of November 2011 (Online Retail) folded in 24 runs, then closed: equal to the CSV.

64,545 events, each with an ``ingested_at`` (``devtools.retail_folds``), are folded by 24 runs of
``aggregate_usage`` spread over the month; the close then reads one accumulator per customer plus
the events ingested after the last fold, and every invoice equals the independent computation
from the CSV (``tests/retail_expectations.py``), as the raw close does
(``tests/e2e/runs/test_month_close_2011_11.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore

from billing.runs.month_close import run_month_close
from billing.runs.shell import RunContext
from billing.store.firestore_store import BillingStore
from devtools import retail_folds
from tests import factories as f
from tests.conftest import SHARED_DATA
from tests.retail_expectations import expected_invoices

CSV = SHARED_DATA / "online_retail_2010-12_2011-12.csv.gz"
TENANT = "uk-retail"


@pytest.mark.slow
def test_november_2011_folded_in_24_runs_then_closed_matches_the_csv(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    assert CSV.exists(), f"{CSV} is missing: ../shared must sit beside the repository"
    assert retail_folds.load_ingested(db, TENANT, CSV) == (64545, 1665)
    folded = 0
    for at in retail_folds.FOLD_TIMES:
        clock.set(at)
        status, body = call_function("aggregate_usage", {}, tenant=TENANT)
        assert status == 200 and body["errors"] == [], body
        folded += body["events_folded"]
    assert len(retail_folds.FOLD_TIMES) == 24
    assert 60000 < folded < 64545  # the rest arrive after the last fold

    store = BillingStore(db)
    ctx = RunContext(run_id="close-2011-11", now=retail_folds.CLOSE_AT, dry_run=False, store=store)
    report = run_month_close(ctx, TENANT, "2011-11").to_json()
    assert report["errors"] == [] and report["generated"] == 1665
    assert report["tenants"][0]["events_read"] == 64545 - folded
    assert report["stats"]["firestore_reads"] / 1665 <= 6

    expected = expected_invoices(CSV, "2011-11")
    invoices = f.invoices(db, TENANT)
    mismatches = [
        (customer_id, invoices[f"sub-{customer_id}-20111101"]["total"], want.total)
        for customer_id, want in expected.items()
        if (
            invoices[f"sub-{customer_id}-20111101"]["subtotal"],
            invoices[f"sub-{customer_id}-20111101"]["tax"],
            invoices[f"sub-{customer_id}-20111101"]["total"],
        )
        != (want.subtotal, want.tax, want.total)
    ]
    assert mismatches == []
    assert report["totals"] == {"GBP": sum(w.total for w in expected.values())}
