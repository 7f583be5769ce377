"""The run summary email (``billing.runs.notify``): once per run and recipient, whatever the retries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.runs.month_close import run_month_close
from billing.runs.shell import RunContext
from billing.store.firestore_store import BillingStore
from tests import factories as f
from tests.smtp_server import SmtpServer, running_smtp

T = "acme"
NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)
FINANCE = "finance@acme.test"


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    with running_smtp(tmp_path) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("CONSOLE_URL", "https://console.example.test")
        yield server


def seed(db: firestore.Client, *, on: list[str] | None = None, failing: bool = True) -> None:
    notifications: dict[str, Any] = {"run_summary_to": [FINANCE]}
    if on is not None:
        notifications["on"] = on
    f.tenant(db, T, notifications=notifications)
    f.plan(db, T, "pro", [{"type": "fixed", "description": "Pro plan", "unit_amount_decimal": "123456"}])
    f.customer(db, T, "alice", "GB")
    f.subscription(db, T, "sub-alice", "alice", "pro")
    if failing:  # a plan that does not exist: this customer fails in pricing, the others go on
        f.customer(db, T, "bob", "GB")
        f.subscription(db, T, "sub-bob", "bob", "missing-plan")


def close(db: firestore.Client, run_id: str, *, all_tenants: bool = False) -> dict[str, Any]:
    ctx = RunContext(run_id=run_id, now=NOW, dry_run=False, store=BillingStore(db), all_tenants=all_tenants)
    return run_month_close(ctx, None if all_tenants else T, "2026-10").to_json()


def test_a_run_with_a_failing_customer_sends_one_summary_however_often_it_is_retried(
    db: firestore.Client, smtp: SmtpServer
) -> None:
    seed(db)
    bodies = [close(db, "run-retried") for _ in range(4)]  # the run, then 3 retries of it
    assert bodies[0]["generated"] == 1 and bodies[0]["errors_by_stage"]["pricing"] == 1
    assert [e["stage"] for e in bodies[0]["errors"]] == ["pricing"]
    summaries = smtp.of_kind("run_summary")
    assert len(summaries) == 1
    mail = summaries[0]
    assert mail.message["To"] == FINANCE
    assert "monthly_billing errors: acme (2026-10), 1 error" in mail.subject
    assert "generated: 1" in mail.text() and "pricing: 1" in mail.text()
    assert "GBP: £1,481.47" in mail.text()  # 1234.56 + 20% VAT, formatted for the currency
    assert "sub-bob" in mail.text() and "missing-plan" in mail.text()
    assert "https://console.example.test/runs/acme/run-retried" in mail.text()
    assert '<td>pricing</td><td style="text-align: right">1</td>' in mail.html()
    outbox = (
        db.collection(f"tenants/{T}/notifications")
        .where(filter=FieldFilter("kind", "==", "run_summary"))
        .get()
    )
    assert [(d.to_dict() or {})["status"] for d in outbox] == ["sent"]


def test_a_clean_run_sends_one_summary_when_completed_is_listed(
    db: firestore.Client, smtp: SmtpServer
) -> None:
    seed(db, on=["completed"], failing=False)
    close(db, "run-clean")
    close(db, "run-clean")
    summaries = smtp.of_kind("run_summary")
    assert len(summaries) == 1
    assert "monthly_billing completed: acme" in summaries[0].subject


def test_a_clean_run_sends_nothing_by_default(db: firestore.Client, smtp: SmtpServer) -> None:
    seed(db, failing=False)  # default on: failed, errors
    close(db, "run-quiet")
    assert smtp.of_kind("run_summary") == []


def test_a_failed_send_is_retried_by_the_next_delivery_of_the_run(
    db: firestore.Client, smtp: SmtpServer
) -> None:
    seed(db)
    smtp.fail_next(1)
    first = close(db, "run-flaky")
    assert first["errors_by_stage"]["email"] == 1
    assert smtp.of_kind("run_summary") == []
    close(db, "run-flaky")
    close(db, "run-flaky")
    assert len(smtp.of_kind("run_summary")) == 1


def test_the_operator_gets_one_summary_of_an_all_tenant_run_with_errors(
    db: firestore.Client, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_EMAIL", "ops@platform.test")
    seed(db)
    for _ in range(3):
        close(db, "run-all", all_tenants=True)
    to = sorted(str(m.message["To"]) for m in smtp.of_kind("run_summary"))
    assert to == [FINANCE, "ops@platform.test"]
    operator = next(m for m in smtp.of_kind("run_summary") if m.message["To"] == "ops@platform.test")
    assert "all tenants" in operator.subject
    assert "https://console.example.test/runs?run_id=run-all" in operator.text()
    assert db.document("operator_notifications/run_summary.run-all").get().get("status") == "sent"


def test_a_run_finished_elsewhere_sends_its_summary_from_the_record_once(
    db: firestore.Client, smtp: SmtpServer
) -> None:
    from billing.runs.notify import notify_recorded_run
    from billing.store.reporting import ReportingStore

    seed(db)
    close(db, "run-recorded", all_tenants=False)  # the inline run sent its summary already
    assert len(smtp.of_kind("run_summary")) == 1
    smtp.clear()
    store = ReportingStore(db)
    record = db.document(f"tenants/{T}/billing_runs/run-fanned").get().to_dict() or {}
    assert record == {}
    record = {
        "function": "monthly_billing",
        "status": "completed",
        "month": "2026-10",
        "errors": 1,
        "errors_by_stage": {"pricing": 0, "storage": 0, "pdf": 1, "upload": 0, "stripe": 0, "email": 0},
        "error_details": [
            {"tenant_id": T, "invoice_id": "i-1", "error": "PDF rendering failed: x", "stage": "pdf"}
        ],
        "totals": {"GBP": 148147},
        "summary": {"generated": 1},
        "seconds": 75.2,
    }
    tenant = store.get_tenant(T)
    outcomes = [notify_recorded_run(store, tenant, "run-fanned", record) for _ in range(3)]
    assert outcomes == [["sent_now"], ["sent"], ["sent"]]
    (mail,) = smtp.of_kind("run_summary")
    assert "monthly_billing errors: acme (2026-10), 1 error" in mail.subject
    assert "pdf: 1" in mail.text() and "Duration: 1 min 15 s" in mail.text() and "£1,481.47" in mail.text()
