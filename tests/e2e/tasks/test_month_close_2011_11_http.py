"""November 2011 of the Online Retail data closed through ``TASKS_MODE=http``: same as inline.

1,665 customers, 64,545 events; the fanned-out run (CHUNK_SIZE 500: 4 price tasks) must give
every invoice the totals of the independent CSV computation (``tests/retail_expectations.py``),
the inline run's totals, and numbers exactly 1..1665.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore

from devtools import online_retail
from devtools.dev_issuer import DevKey
from tests import factories as f
from tests.conftest import SHARED_DATA
from tests.e2e.tasks.harness import TasksBench, call, monthly_billing_app, wait_for_run
from tests.retail_expectations import expected_invoices

CSV = SHARED_DATA / "online_retail_2010-12_2011-12.csv.gz"
TENANT = "uk-retail"


@pytest.mark.slow
def test_november_2011_fanned_out_matches_the_csv(
    db: firestore.Client,
    project_id: str,
    auth_env: None,
    clock: Any,
    issuer: tuple[object, str],
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = issuer[0]
    assert isinstance(key, DevKey)
    bench = TasksBench(key, monkeypatch, chunk_size=500)
    bench.start_worker()
    try:
        loaded = online_retail.load(db, CSV, "2011-11", tenant_id=TENANT)
        assert loaded.customers == 1665
        app = monthly_billing_app()
        status, accepted = call(app, token(audience=bench.proxy.url), TENANT, body={"month": "2011-11"})
        assert status == 202, accepted
        record = wait_for_run(app, lambda: token(audience=bench.proxy.url), TENANT, accepted["run_id"], 1500)
    finally:
        bench.stop()
    assert record["status"] == "completed", record
    assert (record["generated"], record["skipped"], record["errors"]) == (1665, 0, [])
    expected = expected_invoices(CSV, "2011-11")
    invoices = f.invoices(db, TENANT)
    assert len(invoices) == 1665
    mismatches = [
        cid
        for cid, want in expected.items()
        if (invoices[f"sub-{cid}-20111101"]["total"], invoices[f"sub-{cid}-20111101"]["tax"])
        != (want.total, want.tax)
    ]
    assert mismatches == []
    assert record["totals"] == {"GBP": sum(w.total for w in expected.values())}
    assert all(inv["status"] == "open" and inv["pdf_uri"] for inv in invoices.values())
    numbers = sorted(int(inv["number"].rsplit("-", 1)[1]) for inv in invoices.values())
    assert numbers == list(range(1, 1666))
    # the deterministic order: customer id, then invoice id
    by_customer = sorted(invoices.values(), key=lambda inv: (inv["customer_id"], inv["number"]))
    assert [int(i["number"].rsplit("-", 1)[1]) for i in by_customer] == list(range(1, 1666))
