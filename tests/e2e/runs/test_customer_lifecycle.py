"""One customer's whole life, end to end through the HTTP functions, every step exactly once.

Month close -> invoice email with the PDF (real SMTP server, STARTTLS + AUTH) and a Stripe invoice
(local fake Stripe) -> three reminders on their days -> suspension -> payment by a signed Stripe
webhook -> reactivation. Each dunning day runs several times, concurrently and again later; the
webhook is delivered more than once: nothing happens twice. Bad signatures, unknown events and
bad admin requests get clear errors and change nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from google.cloud import firestore, storage

from billing.http.shell import Clock
from tests import factories as f
from tests import getting_paid as gp
from tests.conftest import TEST_BUCKET
from tests.fake_stripe import FakeStripe, sign
from tests.smtp_server import SmtpServer

T = gp.T
MONTH = "2026-10"
INVOICE = "sub-alice-20261001"
smtp = pytest.fixture(gp.smtp_fixture, name="smtp")
fake_stripe = pytest.fixture(gp.stripe_fixture, name="fake_stripe")


def seed(db: firestore.Client) -> None:
    gp.seed_tenant(
        db,
        email=True,
        stripe=True,
        collection_method="send_invoice",
        dunning={"reminder_days": [1, 7, 14], "suspend_after_days": 21, "uncollectible_after_days": 60},
    )
    f.plan(db, T, "pro", [{"type": "fixed", "description": "Pro plan", "unit_amount_decimal": "4900"}])
    f.customer(db, T, "alice", "GB", name="Alice Analytics Ltd")
    f.subscription(db, T, "sub-alice", "alice", "pro")


def test_one_customer_from_invoice_to_reactivation(
    db: firestore.Client,
    gcs: storage.Client,
    call_function: Any,
    token: Any,
    smtp: SmtpServer,
    fake_stripe: FakeStripe,
    clock: Clock,
) -> None:
    seed(db)

    def dunning(as_of: Any) -> dict[str, Any]:
        # The daily run on a day to come: the function's clock is that day (a future as_of
        # is refused as as_of_in_future).
        clock.set(as_of)
        status, body = call_function("dunning", {"as_of": as_of.isoformat()}, tenant=T)
        assert status == 200 and body["errors"] == [], body
        result: dict[str, Any] = body
        return result

    def kinds() -> Counter[str]:
        return Counter(m.kind for m in smtp.messages)

    # 1. The month close: invoice, PDF, email with the PDF, Stripe invoice.
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200, body
    assert (body["generated"], body["errors"]) == (1, [])
    invoice = gp.invoice(db, INVOICE)
    assert invoice["status"] == "open" and invoice["total"] == 5880  # 49.00 + 20 % VAT
    due = invoice["due_at"]
    assert due - invoice["issued_at"] == timedelta(days=14)
    pdf = gcs.bucket(TEST_BUCKET).blob(invoice["pdf_uri"].split("/", 3)[3]).download_as_bytes()
    (email,) = smtp.messages
    assert email.kind == "invoice" and email.rcpt_tos == ["alice@example.com"]
    assert email.tls and email.authenticated
    assert email.attachments() == [(f"{invoice['number']}.pdf", "application/pdf", pdf)]
    assert "£58.80" in email.subject and "Alice Analytics Ltd" in email.text()
    (stripe_invoice,) = fake_stripe.invoices.values()
    assert stripe_invoice["metadata"] == {"tenant_id": T, "invoice_id": INVOICE, "number": invoice["number"]}
    assert [li["amount"] for li in stripe_invoice["lines"]["data"]] == [4900, 980]
    assert (stripe_invoice["total"], stripe_invoice["status"], stripe_invoice["sent"]) == (5880, "open", True)
    assert invoice["stripe_invoice_id"] == stripe_invoice["id"]
    assert invoice["delivery_pending"] is False
    posts = len(fake_stripe.posts())

    # The month close again, twice at once: nothing new anywhere.
    for status, body in f.concurrently(
        2, lambda: call_function("monthly_billing", {"month": MONTH}, tenant=T)
    ):
        assert status == 200 and body["generated"] == 0 and body["errors"] == [], body
    assert len(smtp.messages) == 1 and len(fake_stripe.posts()) == posts

    # 2. Three reminders on their days; every day runs 4 times at once, then again later.
    for day in (1, 7, 14):

        def on_the_day(d: int = day) -> dict[str, Any]:
            return dunning(due + timedelta(days=d))

        results = f.concurrently(4, on_the_day)
        assert sum(r["reminders_sent"] for r in results) == 1, (day, results)
        later = dunning(due + timedelta(days=day, hours=20))
        assert later["reminders_sent"] == 0 and later["skips"][0]["reason"] == "up_to_date"
    assert kinds() == {"invoice": 1, "reminder": 3}
    reminders = smtp.of_kind("reminder")
    assert [
        "1 day overdue" in reminders[0].text(),
        "7 days overdue" in reminders[1].text(),
        "14 days overdue" in reminders[2].text(),
    ] == [True, True, True]
    assert gp.customer(db, "alice")["status"] == "active"

    # 3. Suspension at 21 days, once.
    results = f.concurrently(4, lambda: dunning(due + timedelta(days=21)))
    assert sum(r["suspended"] for r in results) == 1
    assert sum(r["notices_sent"] for r in results) == 1
    assert dunning(due + timedelta(days=21, hours=12))["suspended"] == 0
    customer = gp.customer(db, "alice")
    assert customer["status"] == "suspended" and customer["suspended_by"] == "dunning"
    assert invoice["number"] in customer["suspension_reason"]
    subscription = db.document(f"tenants/{T}/subscriptions/sub-alice").get().to_dict() or {}
    assert subscription["status"] == "suspended"
    assert (
        subscription["suspensions"]
        == customer["suspensions"]
        == [{"from": customer["suspended_at"], "to": None}]
    )
    assert subscription["suspension_reason"] == customer["suspension_reason"]
    assert kinds() == {"invoice": 1, "reminder": 3, "suspension": 1}

    # 4. Bad requests change nothing.
    before = f.all_documents(db, T)
    fake_stripe.pay(stripe_invoice["id"])
    paid_event = fake_stripe.invoice_event("invoice.paid", stripe_invoice["id"])
    status, body = gp.signed_post(call_function, paid_event, secret="whsec_wrong")
    assert status == 400 and body["error"]["code"] == "invalid_signature"
    status, body = gp.signed_post(call_function, paid_event, header="t=1,v1=deadbeef")
    assert status == 400 and body["error"]["code"] == "invalid_signature"
    unknown = {
        **fake_stripe.invoice_event("invoice.upcoming", stripe_invoice["id"]),
        "type": "invoice.upcoming",
    }
    status, body = gp.signed_post(call_function, unknown)
    assert status == 200 and (body["result"], body["reason"]) == ("ignored", "unhandled_event_type")
    admin_headers = {"Authorization": f"Bearer {token(email='admin@example.com')}"}
    for request, tenant, code in (
        ({"action": "mark_paid", "invoice_id": INVOICE, "amount": 5880}, T, 400),
        (
            {
                "action": "mark_paid",
                "invoice_id": INVOICE,
                "amount": 99999,
                "paid_at": "2026-11-20T00:00:00Z",
            },
            T,
            409,
        ),
        ({"action": "void", "invoice_id": INVOICE}, None, 400),
        ({"action": "refund", "invoice_id": INVOICE}, T, 400),
        ({"action": "void", "invoice_id": "no-such-invoice"}, T, 404),
    ):
        status, body = call_function("billing_admin", request, tenant=tenant, headers=admin_headers)
        assert status == code and body["error"]["message"], (request, body)
    assert f.all_documents(db, T) == before

    # 5. Payment by webhook, delivered three times (twice at once): applied once, reactivation.
    payload = json.dumps(paid_event).encode()
    header = {"Stripe-Signature": sign(payload)}
    deliveries = f.concurrently(
        2, lambda: call_function("stripe_webhook", raw=payload, headers=header, auth=False)
    )
    deliveries.append(call_function("stripe_webhook", raw=payload, headers=header, auth=False))
    assert [status for status, _ in deliveries] == [200, 200, 200]
    assert sorted(body["result"] for _, body in deliveries) == ["applied", "duplicate", "duplicate"]
    assert sum(body["reactivated"] for _, body in deliveries) == 1
    invoice = gp.invoice(db, INVOICE)
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_due"]) == ("paid", 5880, 0)
    assert gp.customer(db, "alice")["status"] == "active"
    subscription = db.document(f"tenants/{T}/subscriptions/sub-alice").get().to_dict() or {}
    assert subscription["status"] == "active" and "suspension_reason" not in subscription
    assert [i["to"] for i in subscription["suspensions"]] == [subscription["reactivated_at"]]
    assert kinds() == {"invoice": 1, "reminder": 3, "suspension": 1, "reactivation": 1}

    # 6. Later runs find nothing to do.
    for days in (22, 30, 61):
        body = dunning(due + timedelta(days=days))
        assert (
            body["reminders_sent"],
            body["suspended"],
            body["marked_uncollectible"],
            body["reactivated"],
            body["notices_sent"],
        ) == (0, 0, 0, 0, 0), body
    assert kinds() == {"invoice": 1, "reminder": 3, "suspension": 1, "reactivation": 1}
    assert len(fake_stripe.invoices) == 1 and len(fake_stripe.customers) == 1
    assert fake_stripe.violations == []

    # Every step is recorded once on the invoice, in order.
    history = [h["action"] for h in gp.invoice(db, INVOICE)["history"]]
    assert history == [
        "email_sent",
        "dunning.reminder_1",
        "dunning.reminder_7",
        "dunning.reminder_14",
        "dunning.suspension",
        "dunning.suspension_notice",
        "invoice.paid",
    ]
    notes = {s.id: (s.to_dict() or {}) for s in db.collection(f"tenants/{T}/notifications").stream()}
    assert all(n["status"] == "sent" and n["attempts"] == 1 for n in notes.values()), notes
    assert len(notes) == 6
