"""The whole of November 2011 from the UCI Online Retail data, closed through the HTTP function.

64,545 usage events of 1,665 customers are loaded into the Firestore emulator; the month close
runs through ``monthly_billing`` with a token; every customer's invoice is checked against an
independent computation straight from the CSV (``tests/retail_expectations.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore

from devtools import online_retail
from tests import factories as f
from tests.conftest import SHARED_DATA
from tests.retail_expectations import expected_invoices

CSV = SHARED_DATA / "online_retail_2010-12_2011-12.csv.gz"
TENANT = "uk-retail"


@pytest.mark.slow
def test_november_2011_month_close_matches_the_csv(db: firestore.Client, call_function: Any) -> None:
    assert CSV.exists(), f"{CSV} is missing: ../shared must sit beside the repository"
    loaded = online_retail.load(db, CSV, "2011-11", tenant_id=TENANT)
    assert (loaded.events_written, loaded.customers) == (64545, 1665)

    status, body = call_function("monthly_billing", {"month": "2011-11"}, tenant=TENANT)
    assert status == 200, body
    assert body["errors"] == [] and body["skipped"] == 0
    assert body["generated"] == 1665
    assert body["tenants"][0]["events_read"] == 64545

    expected = expected_invoices(CSV, "2011-11")
    invoices = f.invoices(db, TENANT)
    assert len(invoices) == len(expected) == 1665
    mismatches = []
    for customer_id, want in expected.items():
        got = invoices[f"sub-{customer_id}-20111101"]
        if (got["subtotal"], got["tax"], got["total"]) != (want.subtotal, want.tax, want.total):
            mismatches.append((customer_id, got["total"], want.total))
        assert got["status"] == "open" and got["pdf_uri"]
    assert mismatches == []
    assert body["totals"] == {"GBP": sum(w.total for w in expected.values())}
    numbers = sorted(int(inv["number"].rsplit("-", 1)[1]) for inv in invoices.values())
    assert numbers == list(range(1, 1666))
