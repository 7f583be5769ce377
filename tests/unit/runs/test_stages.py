"""``errors_by_stage``: each error's stage and the counts in the run report (billing.runs.stages)."""

from __future__ import annotations

from google.api_core.exceptions import Aborted

from billing.errors import BillingError, DataError, EmailError, StripeFailure
from billing.runs.shell import RunKind, RunReport
from billing.runs.stages import STAGES, split_delivery, stage_of

KIND = RunKind("monthly_billing", ("generated",), frozenset({"totals"}))


def test_each_error_source_has_its_stage() -> None:
    assert stage_of(DataError("plan 'p' names meter 'm' that does not exist")) == "pricing"
    assert stage_of(KeyError("x")) == "pricing"
    assert stage_of(Aborted("contention")) == "storage"  # type: ignore[no-untyped-call]
    assert stage_of(BillingError("PDF rendering failed: boom", code="pdf_failed")) == "pdf"
    assert stage_of(BillingError("PDF upload failed: 503", code="pdf_failed")) == "upload"
    assert stage_of(StripeFailure("card declined")) == "stripe"
    assert stage_of(EmailError("550 mailbox unavailable")) == "email"
    assert stage_of(BillingError("stripe: down", code="delivery_failed")) == "stripe"


def test_a_delivery_failure_is_split_per_stage() -> None:
    assert split_delivery("email: 550 no; such user; stripe: 502") == [
        ("email", "email: 550 no; such user"),
        ("stripe", "stripe: 502"),
    ]
    assert split_delivery("invoices/x: unreadable") == [("storage", "invoices/x: unreadable")]


def test_the_report_counts_errors_by_stage_and_names_each_stage() -> None:
    report = RunReport(KIND, "run-1", dry_run=False)
    report.error("t", DataError("bad plan"), subscription_id="s1")
    report.error("t", BillingError("email: 550; stripe: 502", code="delivery_failed"), invoice_id="i1")
    report.error("t", BillingError("PDF upload failed: x", code="pdf_failed"), invoice_id="i2")
    report.error("t", RuntimeError("x"), stage="storage")
    body = report.to_json()
    assert body["errors_by_stage"] == {
        "pricing": 1,
        "storage": 1,
        "pdf": 0,
        "upload": 1,
        "stripe": 1,
        "email": 1,
    }
    assert [e["stage"] for e in body["errors"]] == ["pricing", "email", "stripe", "upload", "storage"]
    assert body["errors"][1] == {
        "tenant_id": "t",
        "invoice_id": "i1",
        "error": "email: 550",
        "code": "delivery_failed",
        "stage": "email",
    }
    assert set(body["errors_by_stage"]) == set(STAGES)


def test_a_clean_report_has_every_stage_at_zero() -> None:
    assert RunReport(KIND, "run-2", dry_run=True).to_json()["errors_by_stage"] == dict.fromkeys(STAGES, 0)
