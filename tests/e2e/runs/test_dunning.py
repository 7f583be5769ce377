"""dunning: the policy day by day, once per step under repeated and concurrent runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from google.cloud import firestore

from billing.errors import DataError
from billing.http.shell import clock as http_clock
from billing.records import Tenant
from tests import factories as f
from tests import getting_paid as gp
from tests.conftest import TODAY
from tests.smtp_server import SmtpServer

T = gp.T
DUE = gp.DUE
smtp = pytest.fixture(gp.smtp_fixture, name="smtp")


def day(n: float) -> str:
    return (DUE + timedelta(days=n)).isoformat()


def run(call_function: Any, as_of: str, *, move_clock: bool = True, **body: Any) -> dict[str, Any]:
    """Call dunning at ``as_of``; ``move_clock``: the function's day is ``as_of`` (else TODAY).

    The runs below simulate days to come: ``as_of`` more than 5 minutes ahead of the function's
    clock is refused (``as_of_in_future``), so a day-by-day simulation moves the clock with it,
    as the daily schedule would (``call_function``'s ``clock`` fixture resets it after the test).
    """
    http_clock.set(datetime.fromisoformat(as_of) if move_clock else TODAY)
    status, answer = call_function("dunning", {"as_of": as_of, **body}, tenant=T)
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


def seed(db: firestore.Client, **tenant_fields: Any) -> None:
    gp.seed_tenant(db, **tenant_fields)
    f.customer(db, T, "alice", "GB", name="Alice Ltd")
    f.subscription(db, T, "sub-alice", "alice", "pro")
    f.subscription(
        db, T, "sub-old", "alice", "pro", status="canceled", canceled_at=datetime(2025, 1, 1, tzinfo=UTC)
    )
    gp.seed_invoice(db, "inv-1", "alice", number="ACME-2026-000001", subscription_id="sub-alice")


# -- the policy -------------------------------------------------------------------------------------
def tenant(dunning: Any = None) -> Tenant:
    raw = {
        "name": "A",
        "status": "active",
        "timezone": "UTC",
        "currency": "GBP",
        "invoice_prefix": "A",
        "payment_terms_days": 14,
        "tax_rates": {},
    }
    if dunning is not None:
        raw["dunning"] = dunning
    return Tenant.parse("a", raw)


def test_policy_defaults_configuration_and_plan() -> None:
    policy = tenant().dunning
    assert (policy.reminder_days, policy.suspend_after_days, policy.uncollectible_after_days) == (
        (1, 7, 14),
        21,
        60,
    )
    d = timedelta(days=1)

    def plan(days: float, *done: str) -> list[str]:
        return policy.plan(d * days, {step: {} for step in done})

    assert plan(0.5) == []
    assert plan(1) == ["reminder_1"]
    assert plan(3, "reminder_1") == []
    assert plan(10) == ["reminder_7"]  # missed days are not made up with several emails
    assert plan(14, "reminder_1", "reminder_7") == ["reminder_14"]
    assert plan(21, "reminder_14") == ["suspension"]
    assert plan(25, "suspension") == []
    assert policy.plan(d * 25, {"suspension": {"notice": "n"}}) == ["suspension_notice"]
    assert plan(60, "suspension") == ["uncollectible"]
    assert plan(70) == ["suspension", "uncollectible"]

    custom = tenant(
        {"reminder_days": [30, 3], "suspend_after_days": 10, "uncollectible_after_days": None}
    ).dunning
    assert custom.reminder_days == (3, 30)
    assert custom.plan(d * 12, {}) == ["suspension"]
    assert custom.plan(d * 31, {"suspension": {}}) == ["reminder_30"]
    assert custom.plan(d * 999, {"suspension": {}, "reminder_30": {}}) == []
    assert tenant({"enabled": False}).dunning.plan(d * 99, {}) == []
    for bad in (
        {"reminder_days": "1,7"},
        {"reminder_days": [1.5]},
        {"suspend_after_days": -1},
        {"uncollectible_after_days": True},
        "weekly",
    ):
        with pytest.raises(DataError):
            tenant(bad).dunning  # noqa: B018 (the property raises)


# -- day by day ---------------------------------------------------------------------------------------
def test_reminders_suspension_and_write_off_each_once(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    body = run(call_function, day(0.5))
    assert body["reminders_sent"] == 0  # overdue, but not a full day yet
    assert body["skips"] == [{"tenant_id": T, "invoice_id": "inv-1", "reason": "up_to_date"}]

    for n, step in ((1, "reminder_1"), (7, "reminder_7"), (14, "reminder_14")):
        body = run(call_function, day(n))
        assert (body["reminders_sent"], body["errors"]) == (1, []), body
        assert body["actions"][0]["action"] == step
        again = run(call_function, day(n + 0.5))
        assert again["reminders_sent"] == 0 and again["skips"][0]["reason"] == "up_to_date"
    reminders = smtp.of_kind("reminder")
    assert len(reminders) == 3
    assert [m.message["Subject"] for m in reminders] == [
        "Reminder: invoice ACME-2026-000001 from Acme Analytics Ltd is overdue (£120.00)"
    ] * 3
    assert "7 days overdue" in reminders[1].text()
    assert reminders[0].attachments()[0][0] == "ACME-2026-000001.pdf"
    invoice = gp.invoice(db, "inv-1")
    assert set(invoice["dunning"]) == {"reminder_1", "reminder_7", "reminder_14"}
    assert invoice["dunning"]["reminder_7"]["as_of"] == DUE + timedelta(days=7)

    body = run(call_function, day(21))
    assert (body["suspended"], body["notices_sent"], body["reminders_sent"]) == (1, 1, 0)
    customer = gp.customer(db, "alice")
    assert customer["status"] == "suspended" and customer["suspended_by"] == "dunning"
    assert "ACME-2026-000001 is unpaid 21 days" in customer["suspension_reason"]
    subs = {s.id: s.to_dict() or {} for s in db.collection(f"tenants/{T}/subscriptions").stream()}
    assert subs["sub-alice"]["status"] == "suspended"
    assert subs["sub-alice"]["suspension_reason"] == customer["suspension_reason"]
    assert subs["sub-old"]["status"] == "canceled"
    (notice,) = smtp.of_kind("suspension")
    assert "suspended" in notice.subject and customer["suspension_reason"] in notice.text()

    assert run(call_function, day(30))["suspended"] == 0
    body = run(call_function, day(60))
    assert body["marked_uncollectible"] == 1
    invoice = gp.invoice(db, "inv-1")
    assert invoice["status"] == "uncollectible" and invoice["dunning"]["uncollectible"]
    # Written off, the customer stays suspended; nothing more happens.
    body = run(call_function, day(90))
    assert (body["reactivated"], body["marked_uncollectible"], body["skipped"]) == (0, 0, 0)
    assert gp.customer(db, "alice")["status"] == "suspended"
    assert len(smtp.messages) == 4
    actions = [h["action"] for h in gp.invoice(db, "inv-1")["history"]]
    assert actions == [
        "dunning.reminder_1",
        "dunning.reminder_7",
        "dunning.reminder_14",
        "dunning.suspension",
        "dunning.suspension_notice",
        "mark_uncollectible",
    ]
    runs = [s.to_dict() or {} for s in db.collection(f"tenants/{T}/billing_runs").stream()]
    assert {r["function"] for r in runs} == {"dunning"} and len(runs) == 11


def test_concurrent_runs_send_each_step_once(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    gp.seed_invoice(db, "inv-2", "alice", subscription_id="sub-alice")
    for n in (1, 7, 21):
        results = f.concurrently(5, partial(run, call_function, day(n)))
        assert all(r["errors"] == [] for r in results), results
        if n < 21:
            assert sum(r["reminders_sent"] for r in results) == 2
        else:
            assert sum(r["suspended"] for r in results) == 1
            assert sum(r["notices_sent"] for r in results) == 1
    kinds = sorted(m.kind for m in smtp.messages)
    assert kinds == ["reminder"] * 4 + ["suspension"]
    recorded = [gp.invoice(db, i)["dunning"] for i in ("inv-1", "inv-2")]
    assert sum(1 for d in recorded if d["suspension"]["customer_suspended"]) == 1


def test_dry_run_lists_actions_and_changes_nothing(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    before = f.all_documents(db, T)
    body = run(call_function, day(21), dry_run=True)
    assert body["dry_run"] is True
    assert (body["suspended"], body["notices_sent"], body["reminders_sent"]) == (1, 1, 0)
    assert [a["action"] for a in body["actions"]] == ["suspension"]
    assert body["actions"][0]["days_overdue"] == 21
    assert f.all_documents(db, T) == before and smtp.messages == []
    body = run(call_function, day(60), dry_run=True)
    assert [a["action"] for a in body["actions"]] == ["suspension", "uncollectible"]
    assert f.all_documents(db, T) == before


def test_a_failed_email_is_reported_and_retried_next_run(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    smtp.fail_next(1)
    body = run(call_function, day(1))
    assert body["reminders_sent"] == 0
    (error,) = body["errors"]
    assert (error["tenant_id"], error["invoice_id"]) == (T, "inv-1") and "451" in error["error"]
    assert "reminder_1" not in (gp.invoice(db, "inv-1").get("dunning") or {})
    body = run(call_function, day(1.5))
    assert (body["reminders_sent"], body["errors"]) == (1, [])
    assert run(call_function, day(2))["reminders_sent"] == 0
    assert len(smtp.messages) == 1
    note = db.document(f"tenants/{T}/notifications/inv-1.reminder_1").get().to_dict() or {}
    assert (note["status"], note["attempts"]) == ("sent", 2)


def test_suspension_notice_retried_and_second_invoice_records_without_notice(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    gp.seed_invoice(db, "inv-2", "alice", due_at=DUE + timedelta(days=1))
    smtp.fail_next(1)
    body = run(call_function, day(22))
    assert body["suspended"] == 1 and body["notices_sent"] == 0 and len(body["errors"]) == 1
    assert [a["action"] for a in body["actions"]] == ["suspension", "suspension_recorded"]
    assert gp.customer(db, "alice")["status"] == "suspended"
    body = run(call_function, day(23))
    assert body["notices_sent"] == 1 and body["suspended"] == 0
    assert [a["action"] for a in body["actions"]] == ["suspension_notice"]
    assert len(smtp.of_kind("suspension")) == 1
    assert gp.invoice(db, "inv-2")["dunning"]["suspension"]["customer_suspended"] is False


def test_email_disabled_still_suspends(db: firestore.Client, call_function: Any) -> None:
    seed(db, email=False)
    body = run(call_function, day(7))
    assert body["reminders_sent"] == 0
    assert body["skips"] == [{"tenant_id": T, "invoice_id": "inv-1", "reason": "reminder_7_email_disabled"}]
    assert run(call_function, day(21))["suspended"] == 1
    assert gp.customer(db, "alice")["status"] == "suspended"
    assert list(db.collection(f"tenants/{T}/notifications").stream()) == []


def test_reactivation_when_nothing_is_overdue(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    gp.seed_invoice(db, "inv-later", "alice", due_at=DUE + timedelta(days=30))
    run(call_function, day(21))
    assert gp.customer(db, "alice")["status"] == "suspended"
    # Paid outside any of our paths (e.g. restored from a backup): the run notices.
    db.document(f"tenants/{T}/invoices/inv-1").update({"status": "paid"})
    body = run(call_function, day(22))
    assert body["reactivated"] == 1 and body["notices_sent"] == 1
    assert body["actions"][-1]["subscriptions"] == ["sub-alice"]
    assert gp.customer(db, "alice")["status"] == "active"
    sub = db.document(f"tenants/{T}/subscriptions/sub-alice").get().to_dict() or {}
    assert sub["status"] == "active" and sub["last_suspension"]["suspended_by"] == "dunning"
    # The interval the billing runs prorate by: opened by the suspension, closed by this run.
    customer = gp.customer(db, "alice")
    for record in (customer, sub):
        (interval,) = record["suspensions"]
        assert interval == {"from": record["last_suspension"]["suspended_at"], "to": record["reactivated_at"]}
    assert run(call_function, day(22.5))["reactivated"] == 0
    assert len(smtp.of_kind("reactivation")) == 1


def test_uncollectible_or_other_overdue_invoices_block_reactivation(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    gp.seed_invoice(db, "inv-2", "alice", due_at=DUE + timedelta(days=5))
    run(call_function, day(21))
    db.document(f"tenants/{T}/invoices/inv-1").update({"status": "paid"})
    assert run(call_function, day(22))["reactivated"] == 0  # inv-2 is 17 days overdue
    db.document(f"tenants/{T}/invoices/inv-2").update({"status": "uncollectible"})
    assert run(call_function, day(23))["reactivated"] == 0
    db.document(f"tenants/{T}/invoices/inv-2").update({"status": "void"})
    assert run(call_function, day(24))["reactivated"] == 1


def test_manual_suspension_is_left_alone(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    db.document(f"tenants/{T}/customers/alice").update(
        {"status": "suspended", "suspension_reason": "fraud check"}
    )
    db.document(f"tenants/{T}/invoices/inv-1").update({"status": "paid"})
    body = run(call_function, day(30))
    assert body["reactivated"] == 0 and gp.customer(db, "alice")["status"] == "suspended"


def test_sweep_retries_pending_invoice_deliveries_and_notices(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    from billing.delivery.outbox import deliver_finalized_invoices
    from billing.pricing.periods import utc_now
    from billing.store.firestore_store import BillingStore

    seed(db)
    store = BillingStore(db)
    smtp.fail_next(1)
    failures = deliver_finalized_invoices(store, store.get_tenant(T), ["inv-1"], utc_now(), "close")
    assert len(failures) == 1
    body = run(call_function, day(-3))  # not overdue: only the sweep has work
    assert (body["deliveries_retried"], body["errors"]) == (1, [])
    assert [m.kind for m in smtp.messages] == ["invoice"]
    assert gp.invoice(db, "inv-1")["delivery_pending"] is False
    assert run(call_function, day(-2))["deliveries_retried"] == 0
    assert len(smtp.messages) == 1


def test_one_bad_invoice_does_not_stop_the_run(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)
    f.customer(db, T, "bob", "GB")
    gp.seed_invoice(db, "inv-bad", "bob", currency="XXX")
    body = run(call_function, day(1))
    assert body["reminders_sent"] == 1
    assert [(e["invoice_id"], e["code"]) for e in body["errors"]] == [("inv-bad", "unknown_currency")]


def test_request_errors_and_all_tenants(db: firestore.Client, call_function: Any, smtp: SmtpServer) -> None:
    seed(db)
    before = f.all_documents(db, T)
    for body, tenant_id, status, code in (
        ({"as_of": "2026-11-20"}, T, 400, "invalid_field"),
        ({"as_of": day(1), "dry_run": "yes"}, T, 400, "invalid_field"),
        ({"since": day(1)}, T, 400, "unknown_field"),
        ({"as_of": day(1)}, "ghost", 404, "unknown_tenant"),
    ):
        got, answer = call_function("dunning", body, tenant=tenant_id)
        assert (got, answer["error"]["code"]) == (status, code), answer
    assert f.all_documents(db, T) == before
    f.tenant(db, "other", status="disabled")
    status, body = call_function("dunning", {"as_of": day(1)})
    assert status == 200 and [t["tenant_id"] for t in body["tenants"]] == [T]
    assert body["reminders_sent"] == 1


def test_reactivation_uses_the_real_clock_not_a_past_as_of(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    # Issue 8 item 11: a past as_of must not reactivate a customer who is overdue today.
    gp.seed_tenant(db)
    f.customer(
        db,
        T,
        "alice",
        "GB",
        status="suspended",
        suspended_by="dunning",
        suspension_id="s1",
        suspended_at=TODAY - timedelta(days=9),
    )
    f.subscription(
        db, T, "sub-alice", "alice", "pro", status="suspended", suspended_by="dunning", suspension_id="s1"
    )
    gp.seed_invoice(db, "inv-1", "alice", due_at=TODAY - timedelta(days=30), subscription_id="sub-alice")
    body = run(call_function, "2000-01-01T00:00:00Z", move_clock=False)
    assert (body["reactivated"], body["errors"]) == (0, []), body
    assert gp.customer(db, "alice")["status"] == "suspended"
    assert smtp.of_kind("reactivation") == []
    # Paid: the same past as_of now reactivates (nothing is overdue by the real clock).
    db.document(f"tenants/{T}/invoices/inv-1").update({"status": "paid"})
    assert run(call_function, "2000-01-01T00:00:00Z", move_clock=False)["reactivated"] == 1
    assert gp.customer(db, "alice")["status"] == "active"
