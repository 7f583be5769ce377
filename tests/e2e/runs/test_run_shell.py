"""The run shell (``billing.runs.shell``): dunning is recorded, leased, summarized like billing runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from billing.http.shell import clock as http_clock
from tests import factories as f
from tests import getting_paid as gp
from tests.smtp_server import SmtpServer

T = gp.T
smtp = pytest.fixture(gp.smtp_fixture, name="smtp")
AS_OF = gp.DUE + timedelta(days=1)  # reminder_1 is due
PRINCIPAL = "scheduler@dev.local"  # the default token's email (tests/conftest.py)
# Every run record has these, whatever the function (billing.runs.shell's docstring).
RECORD_FIELDS = {
    "function",
    "status",
    "started_at",
    "finished_at",
    "principal",
    "skipped",
    "errors",
    "seconds",
    "summary",
    "error_details",
}


def seed(db: firestore.Client) -> None:
    gp.seed_tenant(db)
    f.customer(db, T, "alice", "GB", name="Alice Ltd")
    f.subscription(db, T, "sub-alice", "alice", "pro")
    gp.seed_invoice(db, "inv-1", "alice", number="ACME-2026-000001", subscription_id="sub-alice")


def call(call_function: Any, function: str, **body: Any) -> dict[str, Any]:
    http_clock.set(AS_OF)
    status, answer = call_function(function, {"as_of": AS_OF.isoformat(), **body}, tenant=T)
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


def records(db: firestore.Client) -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() or {} for s in db.collection(f"tenants/{T}/billing_runs").stream()}


def test_a_dunning_run_is_recorded_like_the_billing_runs(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    body = call(call_function, "dunning")
    assert body["reminders_sent"] == 1 and body["errors"] == []
    record = records(db)[body["run_id"]]
    assert RECORD_FIELDS <= set(record)
    assert (record["function"], record["status"], record["principal"]) == ("dunning", "completed", PRINCIPAL)
    assert record["as_of"] == AS_OF
    # The function's counters, flat, as the billing runs record theirs.
    assert (record["reminders_sent"], record["suspended"], record["skipped"], record["errors"]) == (
        1,
        0,
        0,
        0,
    )
    assert record["error_details"] == [] and record["summary"]["overdue"] == 1
    # The response's tenant summary carries the same counters.
    (summary,) = body["tenants"]
    assert (summary["tenant_id"], summary["reminders_sent"], summary["overdue"]) == (T, 1, 1)

    billing = call(call_function, "generate_invoices")
    assert RECORD_FIELDS <= set(records(db)[billing["run_id"]])
    assert list(db.collection(f"tenants/{T}/run_leases").stream()) == []  # both released


def test_a_dunning_run_waits_for_the_dunning_lease(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    # Another delivery of the schedule holds the lease for 2 more seconds (then it expires).
    now = datetime.now(UTC)
    db.document(f"tenants/{T}/run_leases/dunning").set(
        {"holder": "other-run", "acquired_at": now, "expires_at": now + timedelta(seconds=2)}
    )
    body = call(call_function, "dunning")
    assert body["reminders_sent"] == 1
    assert body["tenants"][0]["seconds"] >= 1.5
    assert list(db.collection(f"tenants/{T}/run_leases").stream()) == []


def test_a_dunning_dry_run_writes_no_record_and_takes_no_lease(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    # A live lease held by another run: a dry run does not wait for it (nor take it).
    now = datetime.now(UTC)
    db.document(f"tenants/{T}/run_leases/dunning").set(
        {"holder": "other-run", "acquired_at": now, "expires_at": now + timedelta(minutes=10)}
    )
    before = f.all_documents(db, T)
    body = call(call_function, "dunning", dry_run=True)
    assert body["dry_run"] is True and body["reminders_sent"] == 1
    assert body["tenants"][0]["seconds"] < 60
    assert records(db) == {}
    assert f.all_documents(db, T) == before and smtp.messages == []


def test_a_tenant_whose_run_record_cannot_be_written_does_not_stop_the_others(
    db: firestore.Client, call_function: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review finding: the run record and the lease were written outside the per-tenant guard, so
    # a Firestore error on one tenant's record stopped the month close for every tenant after it.
    from billing.store.firestore_store import BillingStore

    fee = [{"type": "fixed", "description": "Pro", "unit_amount_decimal": "1000", "quantity": "1"}]
    for tid in ("a-first", "b-broken", "c-last"):
        f.tenant(db, tid, invoice_prefix=tid[0].upper())
        f.plan(db, tid, "pro", fee)
        f.customer(db, tid, "alice")
        f.subscription(db, tid, "sub-alice", "alice", "pro")
    real_write_run = BillingStore.write_run

    def write_run(self: BillingStore, tenant_id: str, run_id: str, fields: dict[str, Any]) -> None:
        if tenant_id == "b-broken":
            raise RuntimeError("Firestore is unavailable for this tenant's run record")
        real_write_run(self, tenant_id, run_id, fields)

    monkeypatch.setattr(BillingStore, "write_run", write_run)
    status, body = call_function("monthly_billing", {"month": "2026-10"})
    assert status == 200, body
    assert body["generated"] == 2
    assert [(e["tenant_id"], e["code"]) for e in body["errors"]] == [("b-broken", "internal")]
    assert {t["tenant_id"]: t.get("failed", False) for t in body["tenants"]} == {
        "a-first": False,
        "b-broken": True,
        "c-last": False,
    }
    assert len(f.invoices(db, "c-last")) == 1 and f.invoices(db, "b-broken") == {}
