"""stripe_webhook: signature checks, idempotent and order-proof status changes, reactivation."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from tests import factories as f
from tests import getting_paid as gp
from tests.fake_stripe import WEBHOOK_SECRET, sign
from tests.smtp_server import SmtpServer

T = gp.T
smtp = pytest.fixture(gp.smtp_fixture, name="smtp")
PAID_AT = 1795000000


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)


def event(event_type: str, event_id: str = "evt_1", invoice_id: str = "inv-1", *,
          tenant_id: str = T, stripe_id: str = "in_1", **obj: Any) -> dict[str, Any]:
    invoice = {"id": stripe_id, "object": "invoice", "amount_paid": 0, "amount_due": 12000,
               "status": "open", "attempt_count": 1,
               "metadata": {"tenant_id": tenant_id, "invoice_id": invoice_id},
               "status_transitions": {"paid_at": None}}
    if event_type == "invoice.paid":
        invoice.update(status="paid", amount_paid=12000,
                       status_transitions={"paid_at": PAID_AT})
    invoice.update(obj)
    return {"id": event_id, "object": "event", "type": event_type, "created": int(time.time()),
            "livemode": False, "data": {"object": invoice}}


def seed(db: firestore.Client, **invoice_fields: Any) -> None:
    gp.seed_tenant(db, email=True)
    f.customer(db, T, "alice", "GB")
    gp.seed_invoice(db, "inv-1", "alice", stripe_invoice_id="in_1", **invoice_fields)


def post(call_function: Any, body: dict[str, Any], **kwargs: Any) -> tuple[int, dict[str, Any]]:
    return gp.signed_post(call_function, body, **kwargs)


def test_paid_event_marks_the_invoice_paid_once(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    status, body = post(call_function, event("invoice.paid"))
    assert status == 200, body
    assert (body["received"], body["result"], body["status"]) == (True, "applied", "paid")
    invoice = gp.invoice(db, "inv-1")
    assert invoice["status"] == "paid" and invoice["amount_paid"] == 12000
    assert invoice["amount_due"] == 0
    assert invoice["paid_at"] == datetime.fromtimestamp(PAID_AT, UTC)
    assert invoice["stripe_event_ids"] == ["evt_1"]
    assert [(p["amount"], p["source"], p["reference"]) for p in invoice["payments"]] == [
        (12000, "stripe", "evt_1")]
    (entry,) = invoice["history"]
    assert (entry["action"], entry["actor"], entry["effect"]) == ("invoice.paid", "stripe", "paid")

    before = f.all_documents(db, T)
    status, body = post(call_function, event("invoice.paid"))
    assert status == 200 and body["result"] == "duplicate"
    assert f.all_documents(db, T) == before


def test_events_out_of_order_never_move_a_paid_invoice_back(db: firestore.Client,
                                                            call_function: Any) -> None:
    seed(db)
    assert post(call_function, event("invoice.paid", "evt_paid"))[1]["result"] == "applied"
    for i, kind in enumerate(("invoice.voided", "invoice.marked_uncollectible",
                              "invoice.payment_failed")):
        status, body = post(call_function, event(kind, f"evt_late_{i}"))
        assert status == 200 and body["result"] == "ignored", body
        assert body["reason"] == "invoice_is_paid"
    invoice = gp.invoice(db, "inv-1")
    assert invoice["status"] == "paid" and "voided_at" not in invoice
    assert "payment_failures" not in invoice
    assert len(invoice["stripe_event_ids"]) == 4


def test_uncollectible_then_paid_and_void(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    assert post(call_function, event("invoice.payment_failed", "e1"))[1]["result"] == "applied"
    assert post(call_function, event("invoice.payment_failed", "e2"))[1]["result"] == "applied"
    invoice = gp.invoice(db, "inv-1")
    assert invoice["status"] == "open" and invoice["payment_failures"] == 2
    assert invoice["last_payment_failure"]["event_id"] == "e2"
    assert post(call_function, event("invoice.marked_uncollectible", "e3"))[1]["status"] == \
        "uncollectible"
    assert gp.invoice(db, "inv-1")["marked_uncollectible_at"]
    assert post(call_function, event("invoice.paid", "e4"))[1]["status"] == "paid"

    gp.seed_invoice(db, "inv-2", "alice", stripe_invoice_id="in_2")
    _, body = post(call_function, event("invoice.voided", "e5", "inv-2", stripe_id="in_2"))
    assert body["status"] == "void" and gp.invoice(db, "inv-2")["voided_at"]
    _, body = post(call_function, event("invoice.paid", "e6", "inv-2", stripe_id="in_2"))
    assert (body["result"], body["reason"]) == ("ignored", "invoice_is_void")
    assert gp.invoice(db, "inv-2")["status"] == "void"


@pytest.mark.parametrize("case", ["wrong_secret", "tampered", "missing", "garbage", "stale"])
def test_bad_signatures_are_refused_and_change_nothing(db: firestore.Client, call_function: Any,
                                                       case: str) -> None:
    seed(db)
    before = f.all_documents(db, T)
    payload = json.dumps(event("invoice.paid")).encode()
    headers = {
        "wrong_secret": {"Stripe-Signature": sign(payload, "whsec_other")},
        "tampered": {"Stripe-Signature": sign(payload.replace(b"12000", b"99999"))},
        "missing": {},
        "garbage": {"Stripe-Signature": "nonsense"},
        "stale": {"Stripe-Signature": sign(payload, timestamp=int(time.time()) - 3600)},
    }[case]
    # "tampered": the signature covers an altered body, the original is sent.
    status, body = call_function("stripe_webhook", raw=payload, headers=headers, auth=False)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_signature"
    assert f.all_documents(db, T) == before


def test_unknown_events_and_foreign_invoices_are_acknowledged_and_ignored(
        db: firestore.Client, call_function: Any) -> None:
    seed(db)
    before = f.all_documents(db, T)
    cases = {
        "unhandled_event_type": {"id": "evt_c", "object": "event", "type": "customer.created",
                                 "data": {"object": {"id": "cus_1", "object": "customer"}}},
        "not_our_invoice": event("invoice.paid", "evt_x", metadata={}),
        "unknown_invoice": event("invoice.paid", "evt_y", "nope"),
        "unknown_tenant": event("invoice.paid", "evt_z", tenant_id="ghost"),
        "stripe_invoice_mismatch": event("invoice.paid", "evt_m", stripe_id="in_other"),
    }
    for reason, payload in cases.items():
        status, body = post(call_function, payload)
        assert status == 200, body
        assert (body["result"], body["reason"]) == ("ignored", reason)
    assert f.all_documents(db, T) == before


def test_malformed_bodies_methods_and_configuration(db: firestore.Client, call_function: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seed(db)
    before = f.all_documents(db, T)
    raw = b"not json"
    status, body = call_function("stripe_webhook", raw=raw, auth=False,
                                 headers={"Stripe-Signature": sign(raw)})
    assert status == 400 and body["error"]["code"] == "invalid_json"
    raw = b'{"id": "evt_1", "type": "invoice.paid"}'
    status, body = call_function("stripe_webhook", raw=raw, auth=False,
                                 headers={"Stripe-Signature": sign(raw)})
    assert status == 400 and body["error"]["code"] == "invalid_event"
    status, body = call_function("stripe_webhook", method="GET", auth=False)
    assert status == 200 and body["status"] == "ok"
    status, _ = call_function("stripe_webhook", method="PUT", auth=False, raw=b"{}")
    assert status == 405
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET")
    status, body = post(call_function, event("invoice.paid"))
    assert status == 500 and body["error"]["code"] == "misconfigured"
    assert f.all_documents(db, T) == before


def test_payment_reactivates_a_suspended_customer_and_sends_the_notice(
        db: firestore.Client, call_function: Any, smtp: SmtpServer) -> None:
    seed(db, due_at=datetime(2026, 1, 1, tzinfo=UTC))
    suspension: dict[str, Any] = {
        "status": "suspended", "suspension_reason": "r", "suspended_by": "dunning",
        "suspended_at": datetime(2026, 1, 22, tzinfo=UTC), "suspension_id": "s1"}
    db.document(f"tenants/{T}/customers/alice").update(suspension)
    f.subscription(db, T, "sub-a", "alice", "pro", **suspension)
    f.subscription(db, T, "sub-b", "alice", "pro", status="suspended")  # suspended by hand
    status, body = post(call_function, event("invoice.paid"))
    assert status == 200 and body["reactivated"] is True, body
    customer = gp.customer(db, "alice")
    assert customer["status"] == "active" and "suspension_reason" not in customer
    assert customer["last_suspension"]["suspension_id"] == "s1"
    assert customer["history"][-1]["action"] == "reactivated"
    subs = {s.id: s.to_dict() or {} for s in db.collection(f"tenants/{T}/subscriptions").stream()}
    assert subs["sub-a"]["status"] == "active" and subs["sub-b"]["status"] == "suspended"
    (notice,) = smtp.messages
    assert notice.kind == "reactivation" and notice.rcpt_tos == ["alice@example.com"]
    assert "active again" in notice.text()
    # The same payment again: nothing more.
    post(call_function, event("invoice.paid"))
    assert len(smtp.messages) == 1


def test_a_failed_notice_does_not_fail_the_payment(db: firestore.Client, call_function: Any,
                                                   smtp: SmtpServer) -> None:
    seed(db, due_at=datetime(2026, 1, 1, tzinfo=UTC))
    db.document(f"tenants/{T}/customers/alice").update({
        "status": "suspended", "suspended_by": "dunning", "suspension_id": "s1"})
    smtp.fail_next(1)
    status, body = post(call_function, event("invoice.paid"))
    assert status == 200 and body["reactivated"] is True
    assert body["errors"][0]["customer_id"] == "alice" and "451" in body["errors"][0]["error"]
    assert gp.invoice(db, "inv-1")["status"] == "paid"
    note = db.document(f"tenants/{T}/notifications/alice.reactivation.s1").get().to_dict() or {}
    assert (note["status"], note["sweep"]) == ("failed", True)
    assert smtp.messages == []
