"""The UCI Online Retail loader: parsing, skip counts, time zones, ids, Firestore documents.

Fast tests use the shipped sample (demo/data) and small hand-written CSVs; the Firestore ones run
against the real emulator (``db`` fixture). The ``slow`` ones parse the full file once (when
``../shared/data`` exists) and check it against ``tests.retail_expectations``, which recomputes
everything straight from the CSV without the loader.
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from devtools import make_sample
from devtools import online_retail as ort
from tests.conftest import REPO, SHARED_DATA
from tests.retail_expectations import ISO_COUNTRY, expected_invoices, month_counts, summarize

SAMPLE = REPO / "demo" / "data" / "online_retail_2011-11_sample.csv.gz"
FULL = SHARED_DATA / "online_retail_2010-12_2011-12.csv.gz"
needs_full = pytest.mark.skipif(not FULL.exists(), reason=f"{FULL} not present")

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def write_csv(path: Path, *lines: str) -> Path:
    path.write_text("\n".join((HEADER, *lines)) + "\n", encoding="utf-8")
    return path


# --- the shipped sample ----------------------------------------------------------------------


def test_sample_is_small_and_in_the_file_format() -> None:
    assert SAMPLE.stat().st_size < 100_000
    with gzip.open(SAMPLE, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert ",".join(rows[0]) == HEADER
    assert len(rows) - 1 == 3124
    assert all(row[4].startswith("2011-11-") for row in rows[1:])


def test_sample_skip_counts_and_events() -> None:
    events, report = ort.read_usage_events(SAMPLE, "2011-11")
    assert report.rows_read == 3124
    assert report.events == len(events) == 3097
    assert report.as_dict()["skipped"] == {
        "malformed_row": 0,
        "unparseable": 0,
        "cancelled_invoice": 25,
        "non_positive_quantity": 1,
        "negative_unit_price": 0,
        "missing_customer_id": 1,
    }
    assert report.out_of_month == 0
    customers = {event.customer_id for event in events}
    assert len(customers) == 40
    codes = Counter(ort.country_code(report.customer_countries[c]) for c in customers)
    assert codes["GB"] == 20
    # Same events and amounts as the independent computation.
    expected = summarize(SAMPLE, "2011-11")
    assert dict(expected.skipped) == {k: v for k, v in report.skipped.items() if v}
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for event in events:
        amounts[event.customer_id] += event.amount
    assert amounts == {c: e.amount for c, e in expected.invoices.items()}


def test_expected_invoices_on_the_sample() -> None:
    invoices = expected_invoices(SAMPLE, "2011-11")
    assert month_counts(SAMPLE, "2011-11") == (40, 3097)
    for expected in invoices.values():
        assert expected.subtotal == int((expected.amount * 100).to_integral_value(ROUND_HALF_UP))
        rate = Decimal("0.2") if expected.country == "GB" else Decimal(0)
        assert expected.tax == int((expected.subtotal * rate).to_integral_value(ROUND_HALF_UP))
        assert expected.total == expected.subtotal + expected.tax
    assert invoices["12748"].country == "GB" and invoices["12748"].tax > 0
    assert invoices["12349"].country == "IT" and invoices["12349"].tax == 0


def test_month_filter_counts_out_of_scope_rows_separately() -> None:
    events, report = ort.read_usage_events(SAMPLE, "2011-10")
    assert events == []
    assert report.out_of_month == 3124
    assert report.skipped_total() == 0
    _, all_months = ort.read_usage_events(SAMPLE, None)
    assert all_months.events == 3097 and all_months.out_of_month == 0
    with pytest.raises(ort.RetailDataError):
        ort.read_usage_events(SAMPLE, "2011-13")


def test_event_ids_are_stable_unique_and_keep_duplicate_rows() -> None:
    first, _ = ort.read_usage_events(SAMPLE, "2011-11")
    second, _ = ort.read_usage_events(SAMPLE, "2011-11")
    assert [e.event_id for e in first] == [e.event_id for e in second]
    assert [e.to_document() for e in first] == [e.to_document() for e in second]
    assert len({e.event_id for e in first}) == len(first)
    # 574025 has two identical rows (GARDENERS KNEELING PAD KEEP CALM, 12748): two events.
    twins = [
        e for e in first if e.invoice_no == "574025" and e.description == "GARDENERS KNEELING PAD KEEP CALM "
    ]
    assert len(twins) == 2
    assert twins[0].to_document() == twins[1].to_document()
    assert twins[0].event_id != twins[1].event_id


def test_event_document_shape() -> None:
    events, _ = ort.read_usage_events(SAMPLE, "2011-11")
    event = next(e for e in events if e.invoice_no == "574025")
    document = event.to_document()
    assert set(document) == {"customer_id", "meter", "timestamp", "properties"}
    assert document["customer_id"] == "12748"
    assert document["meter"] == "retail_amount"
    assert document["timestamp"] == datetime(2011, 11, 2, 12, 26, tzinfo=UTC)
    props = document["properties"]
    assert set(props) == {"quantity", "unit_price", "amount", "stock_code", "description"}
    assert isinstance(props["quantity"], int)
    assert Decimal(props["amount"]) == props["quantity"] * Decimal(props["unit_price"])
    assert event.event_id.startswith("ort-574025-")


# --- hand-written rows: time zones, skip reasons, countries -----------------------------------


def test_timestamps_are_london_time_across_the_bst_changes(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "tz.csv",
        "600001,A,winter,1,2011-11-15 10:00:00,1.00,1.0,United Kingdom",
        "600002,A,summer,1,2011-07-01 08:16:00,1.00,1.0,United Kingdom",
        "600003,A,last GMT minute,1,2011-03-27 00:59:00,1.00,1.0,United Kingdom",
        "600004,A,in the spring gap,1,2011-03-27 01:30:00,1.00,1.0,United Kingdom",
        "600005,A,first BST minute,1,2011-03-27 02:00:00,1.00,1.0,United Kingdom",
        "600006,A,repeated hour,1,2011-10-30 01:30:00,1.00,1.0,United Kingdom",
        "600007,A,back to GMT,1,2011-10-30 02:00:00,1.00,1.0,United Kingdom",
        "600008,A,December,1,2010-12-01 08:26:00,1.00,1.0,United Kingdom",
    )
    events, report = ort.read_usage_events(path)
    assert report.events == 8
    utc = {e.invoice_no: e.timestamp for e in events}
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in utc.values())
    assert utc["600001"] == datetime(2011, 11, 15, 10, 0, tzinfo=UTC)  # GMT: UTC = local
    assert utc["600002"] == datetime(2011, 7, 1, 7, 16, tzinfo=UTC)  # BST: UTC = local - 1 h
    assert utc["600003"] == datetime(2011, 3, 27, 0, 59, tzinfo=UTC)
    assert utc["600004"] == datetime(2011, 3, 27, 1, 30, tzinfo=UTC)  # gap: fold=0 -> GMT offset
    assert utc["600005"] == datetime(2011, 3, 27, 1, 0, tzinfo=UTC)
    assert utc["600006"] == datetime(2011, 10, 30, 0, 30, tzinfo=UTC)  # ambiguous: first (BST)
    assert utc["600007"] == datetime(2011, 10, 30, 2, 0, tzinfo=UTC)
    assert utc["600008"] == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
    # The month is the London calendar month, not the UTC one.
    path = write_csv(
        tmp_path / "edge.csv",
        "600010,A,x,1,2011-10-01 00:30:00,1.00,1.0,United Kingdom",  # 2011-09-30T23:30Z
        "600011,A,x,1,2011-09-30 23:30:00,1.00,1.0,United Kingdom",
    )
    events, report = ort.read_usage_events(path, "2011-10")
    assert [e.invoice_no for e in events] == ["600010"]
    assert events[0].timestamp == datetime(2011, 9, 30, 23, 30, tzinfo=UTC)
    assert report.out_of_month == 1


def test_skip_reasons_and_their_order(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "skips.csv",
        "700001,A,ok,2,2011-11-01 10:00:00,2.55,17850.0,United Kingdom",
        "700001,A,ok twin,2,2011-11-01 10:00:00,2.55,17850.0,United Kingdom",
        "C700002,A,cancelled,-2,2011-11-01 10:00:00,2.55,17850.0,United Kingdom",
        "C700002,A,cancelled no customer,-2,2011-11-01 10:00:00,2.55,,United Kingdom",
        "700003,A,zero,0,2011-11-01 10:00:00,2.55,17850.0,United Kingdom",
        "700004,A,damaged,-5,2011-11-01 10:00:00,0.0,,United Kingdom",
        "A700005,B,Adjust bad debt,1,2011-11-01 10:00:00,-11062.06,,United Kingdom",
        "700006,A,no customer,1,2011-11-01 10:00:00,1.25,,United Kingdom",
        "700007,A,bad date,1,01/11/2011 10:00,1.25,17850.0,United Kingdom",
        "700008,A,bad quantity,1.5,2011-11-01 10:00:00,1.25,17850.0,United Kingdom",
        "700009,A,bad price,1,2011-11-01 10:00:00,abc,17850.0,United Kingdom",
        "700010,A,bad customer,1,2011-11-01 10:00:00,1.25,17850.5,United Kingdom",
        "700011,A,short row,1,2011-11-01 10:00:00,1.25,17850.0",
        "700012,A,free,3,2011-11-01 10:00:00,0.0,17850.0,United Kingdom",
        "700013,A,tiny,7,2011-11-01 10:00:00,0.001,17850.0,United Kingdom",
    )
    events, report = ort.read_usage_events(path, "2011-11")
    assert report.as_dict()["skipped"] == {
        "malformed_row": 1,
        "unparseable": 4,
        "cancelled_invoice": 2,
        "non_positive_quantity": 2,
        "negative_unit_price": 1,
        "missing_customer_id": 1,
    }
    assert report.rows_read == 15 and report.events == 4
    assert [e.event_id for e in events] == ["ort-700001-1", "ort-700001-2", "ort-700012-1", "ort-700013-1"]
    assert [e.to_document()["properties"]["amount"] for e in events] == ["5.10", "5.10", "0.0", "0.007"]
    assert events[0].to_document()["properties"]["unit_price"] == "2.55"


def test_header_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ort.RetailDataError):
        ort.read_usage_events(path)


def test_country_mapping_covers_iso_codes_and_first_row_rule(tmp_path: Path) -> None:
    # Written twice on purpose (tests.retail_expectations has its own table): they must agree.
    assert ort.COUNTRY_CODES == ISO_COUNTRY
    assert all(code is None or (len(code) == 2 and code.isupper()) for code in ort.COUNTRY_CODES.values())
    with pytest.raises(ort.RetailDataError):
        ort.country_code("Atlantis")
    path = write_csv(
        tmp_path / "countries.csv",
        "C800000,A,cancelled first,-1,2011-10-01 10:00:00,1.00,12431.0,Belgium",
        "800001,A,x,1,2011-11-01 10:00:00,1.00,12431.0,Australia",
        "800002,A,x,1,2011-11-01 10:00:00,1.00,12000.0,Unspecified",
        "800003,A,x,1,2011-11-01 10:00:00,1.00,12001.0,EIRE",
    )
    events, report = ort.read_usage_events(path, "2011-11")
    documents = ort.customer_documents(events, report.customer_countries)
    assert documents["12431"]["address"] == {"country": "BE"}  # first row of the file
    assert ort.customer_documents(events)["12431"]["address"] == {"country": "AU"}
    assert documents["12000"]["address"] == {"country": None}
    assert documents["12001"]["address"] == {"country": "IE"}


# --- Firestore (emulator) --------------------------------------------------------------------


def snapshot(db: Any, tenant_id: str = ort.TENANT_ID) -> dict[str, dict[str, Any]]:
    tenant = db.collection("tenants").document(tenant_id)
    documents = {tenant.path: tenant.get().to_dict()}
    for name in ("meters", "plans", "customers", "subscriptions", "usage_events"):
        for doc in tenant.collection(name).stream():
            documents[doc.reference.path] = doc.to_dict()
    return documents


def test_load_sample_twice_changes_nothing(db: Any) -> None:
    report = ort.load(db, SAMPLE, "2011-11")
    assert (report.events_written, report.customers, report.subscriptions) == (3097, 40, 40)
    first = snapshot(db)
    assert len(first) == 1 + 1 + 1 + 40 + 40 + 3097
    again = ort.load(db, SAMPLE, "2011-11")
    assert again.events_written == 3097
    assert snapshot(db) == first
    events, _ = ort.read_usage_events(SAMPLE, "2011-11")
    stored = first[f"tenants/uk-retail/usage_events/{events[0].event_id}"]
    assert stored == events[0].to_document()
    assert stored["timestamp"].tzinfo is not None


def test_tenant_meter_plan_customer_subscription_documents(db: Any) -> None:
    events, report = ort.read_usage_events(SAMPLE, "2011-11")
    ort.write_retail_tenant(db)
    count = ort.write_customers_and_subscriptions(db, "uk-retail", events, report.customer_countries)
    assert count == 40
    tenant = db.collection("tenants").document("uk-retail")
    data = tenant.get().to_dict()
    assert {
        k: data[k]
        for k in (
            "name",
            "status",
            "timezone",
            "currency",
            "invoice_prefix",
            "payment_terms_days",
            "tax_rates",
            "tax_inclusive",
        )
    } == {
        "name": "UK Online Retail Ltd",
        "status": "active",
        "timezone": "Europe/London",
        "currency": "GBP",
        "invoice_prefix": "UKR",
        "payment_terms_days": 30,
        "tax_rates": {"GB": "20"},
        "tax_inclusive": False,
    }
    assert data["legal_name"] and data["tax_id"].startswith("GB")
    assert data["email"].startswith("billing@")
    assert isinstance(data["address_lines"], list) and len(data["address_lines"]) >= 2
    assert tenant.collection("meters").document("retail_amount").get().to_dict() == {
        "aggregation": "sum",
        "field": "amount",
        "unit": "GBP",
        "name": "Retail sales amount",
    }
    plan = tenant.collection("plans").document("retail-passthrough").get().to_dict()
    assert plan["currency"] == "GBP" and plan["interval"] == "month"
    assert plan["interval_count"] == 1 and plan["name"]
    assert plan["charges"] == [
        {
            "type": "usage",
            "meter": "retail_amount",
            "model": "standard",
            "unit_amount_decimal": "100",
            "description": "Retail sales",
        }
    ]
    customer = tenant.collection("customers").document("12748").get().to_dict()
    assert customer == {
        "name": "Customer 12748",
        "email": "customer-12748@example.com",
        "address": {"country": "GB"},
        "status": "active",
        "source": {"dataset": "uci-online-retail", "country": "United Kingdom"},
    }
    assert tenant.collection("customers").document("12349").get().to_dict()["address"] == {"country": "IT"}
    subscription = tenant.collection("subscriptions").document("sub-12748").get().to_dict()
    assert subscription == {
        "customer_id": "12748",
        "plan_id": "retail-passthrough",
        "status": "active",
        "billing_time": "calendar",
        "started_at": datetime(2010, 12, 1, tzinfo=UTC),
    }
    assert len(list(tenant.collection("subscriptions").stream())) == 40


def test_cli_parse_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert ort._main(["--csv", str(SAMPLE), "--month", "2011-11", "--parse-only"]) == 0
    assert '"events": 3097' in capsys.readouterr().out


# --- the full file ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_read() -> tuple[list[ort.UsageEventRow], ort.SkipReport]:
    return ort.read_usage_events(FULL, None)


@pytest.mark.slow
@needs_full
def test_full_file_against_independent_counts(
    full_read: tuple[list[ort.UsageEventRow], ort.SkipReport],
) -> None:
    events, report = full_read
    expected = summarize(FULL, "2011-11")
    assert report.rows_read == expected.rows == 541_909
    assert report.events == expected.file_events == 397_924
    assert (
        {k: v for k, v in report.skipped.items() if v}
        == dict(expected.file_skipped)
        == {
            "cancelled_invoice": 9288,
            "non_positive_quantity": 1336,
            "negative_unit_price": 2,
            "missing_customer_id": 133_359,
        }
    )
    november = [e for e in events if (e.local_time.year, e.local_time.month) == (2011, 11)]
    assert len(november) == expected.events == 64_545
    customers = {e.customer_id for e in november}
    assert len(customers) == len(expected.invoices) == 1665
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for event in november:
        amounts[event.customer_id] += event.amount
    assert amounts == {c: e.amount for c, e in expected.invoices.items()}
    countries = {c: ort.country_code(report.customer_countries[c]) for c in customers}
    assert countries == {c: e.country for c, e in expected.invoices.items()}
    assert len({e.event_id for e in events}) == len(events)
    # A real July row: BST, so UTC = local - 1 h.
    july = next(e for e in events if e.invoice_no == "558638")
    assert july.local_time.replace(tzinfo=None) == datetime(2011, 7, 1, 8, 16)
    assert july.timestamp == datetime(2011, 7, 1, 7, 16, tzinfo=UTC)


@pytest.mark.slow
@needs_full
def test_shipped_sample_is_what_make_sample_cuts(
    tmp_path: Path,
    full_read: tuple[list[ort.UsageEventRow], ort.SkipReport],
) -> None:
    out = tmp_path / "sample.csv.gz"
    make_sample.write_sample(FULL, out)
    assert out.read_bytes() == SAMPLE.read_bytes()
    # The sample's events are the full file's, same ids and documents.
    sample_events, _ = ort.read_usage_events(SAMPLE, "2011-11")
    sample = {e.event_id: e.to_document() for e in sample_events}
    full_events, _ = full_read
    assert {e.event_id: e.to_document() for e in full_events if e.event_id in sample} == sample
