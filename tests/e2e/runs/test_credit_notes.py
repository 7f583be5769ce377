"""create_credit_note (issue 10 item 4): the effect on the invoice, the series, PDF, email, Stripe.

Every test goes through ``billing_admin`` on the real emulators (Firestore, Storage), the SMTP
sink and the fake Stripe.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore, storage

from tests import factories as f
from tests import getting_paid as gp
from tests.conftest import TEST_BUCKET, TODAY
from tests.fake_stripe import FakeStripe
from tests.smtp_server import SmtpServer

T = gp.T
ADMIN = "admin@example.com"
smtp = pytest.fixture(gp.smtp_fixture, name="smtp")
fake_stripe = pytest.fixture(gp.stripe_fixture, name="fake_stripe")
LINES = [
    {
        "line_id": "c1",
        "kind": "fixed",
        "description": "Pro plan",
        "quantity": "1",
        "unit_amount_decimal": "10000",
        "amount": 10000,
        "tax_rate": "20",
        "tax": 2000,
    },
    {
        "line_id": "c2",
        "kind": "usage",
        "description": "API calls",
        "quantity": "5000",
        "unit_amount_decimal": "1",
        "amount": 5000,
        "tax_rate": "20",
        "tax": 1000,
    },
]
TOTAL = 18000  # 15000 + 3000 tax
SERIES = ("credit_note_sequences", "invoice_sequences")


@pytest.fixture
def admin(call_function: Any, token: Callable[..., str]) -> Callable[..., tuple[int, dict[str, Any]]]:
    """``admin(body, tenant=T)`` calls billing_admin as a platform admin."""

    def call(
        body: dict[str, Any] | None, *, tenant: str | None = T, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token(email=ADMIN)}"}
        result: tuple[int, dict[str, Any]] = call_function(
            "billing_admin", body, tenant=tenant, headers=headers, **kwargs
        )
        return result

    return call


def seed(db: firestore.Client, *, email: bool = True, stripe: bool = False, **invoice: Any) -> None:
    gp.seed_tenant(db, email=email, stripe=stripe)
    f.customer(db, T, "alice", "GB", name="Alice Ltd")
    gp.seed_invoice(db, "inv-1", "alice", number="ACME-2026-000001", lines=LINES, tax=3000, **invoice)


def credit(key: str = "k1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "create_credit_note",
        "invoice_id": "inv-1",
        "reason": "product_unsatisfactory",
        "idempotency_key": key,
    }
    body.update(fields)
    return body


def notes(db: firestore.Client) -> list[dict[str, Any]]:
    return [d.to_dict() or {} for d in db.collection(f"tenants/{T}/credit_notes").stream()]


def pdf_text(data: bytes) -> str:
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True
    )
    return done.stdout.decode("utf-8")


def test_partial_credit_lowers_amount_due_with_pdf_and_one_email(
    db: firestore.Client, gcs: storage.Client, admin: Any, smtp: SmtpServer
) -> None:
    seed(db)
    status, body = admin(credit(lines=[{"line_id": "c1", "amount": 2500}], memo="Three days of outage"))
    assert status == 200 and body["errors"] == [], body
    note = body["credit_note"]
    assert note["number"] == "ACME-CN-2026-000001" and body["changed"] is True
    # 2500 of the 10000 line carries 2500 x 2000 / 10000 = 500 of its tax.
    assert note["lines"] == [{"description": "Pro plan", "invoice_line_id": "c1", "amount": 2500, "tax": 500}]
    assert (note["subtotal"], note["tax"], note["total"]) == (2500, 500, 3000)
    assert (note["pre_payment_amount"], note["credited_to_balance"]) == (3000, 0)
    assert (body["status"], body["amount_due"], body["amount_credited"]) == ("open", 15000, 3000)
    invoice = gp.invoice(db, "inv-1")
    assert (invoice["status"], invoice["amount_due"], invoice["amount_credited"]) == ("open", 15000, 3000)
    assert invoice["credit_note_ids"] == [note["credit_note_id"]]
    entry = invoice["history"][-1]
    assert (entry["action"], entry["actor"], entry["amount"], entry["credit_note_number"]) == (
        "create_credit_note",
        ADMIN,
        3000,
        "ACME-CN-2026-000001",
    )
    assert entry["at"] == TODAY

    name = f"{T}/credit_notes/ACME-CN-2026-000001.pdf"
    assert note["pdf_uri"] == f"gs://{TEST_BUCKET}/{name}"
    pdf = gcs.bucket(TEST_BUCKET).blob(name).download_as_bytes()
    text = pdf_text(pdf)
    for expected in (
        "CREDIT NOTE",
        "ACME-CN-2026-000001",
        "ACME-2026-000001",
        "Alice Ltd",
        "£30.00",
        "£5.00",
    ):
        assert expected in text, expected
    assert "Invoice date" in text and "1 Nov 2026" in text

    (message,) = smtp.messages
    assert message.kind == "credit_note" and message.rcpt_tos == ["alice@example.com"]
    assert message.attachments() == [("ACME-CN-2026-000001.pdf", "application/pdf", pdf)]
    stored = notes(db)[0]
    assert (
        stored["email_sent_at"] == TODAY
        and stored["status"] == "issued"
        and stored["delivery_pending"] is False
    )

    # The same request again: the same credit note, nothing new, no second email.
    before = f.all_documents(db, T)
    status, again = admin(credit(lines=[{"line_id": "c1", "amount": 2500}], memo="Three days of outage"))
    assert status == 200 and again["changed"] is False and again["credit_note"]["number"] == note["number"]
    assert f.all_documents(db, T) == before and len(smtp.messages) == 1
    # The same key with another request is refused.
    status, body = admin(credit(lines=[{"line_id": "c1", "amount": 2600}]))
    assert status == 409 and body["error"]["code"] == "idempotency_key_reused"
    assert f.all_documents(db, T) == before


def test_full_credit_by_amount_voids_the_open_invoice(db: firestore.Client, admin: Any) -> None:
    seed(db, email=False)
    status, body = admin(credit(amount=15000, reason="duplicate"))
    assert status == 200, body
    note = body["credit_note"]
    assert [(line["invoice_line_id"], line["amount"], line["tax"]) for line in note["lines"]] == [
        ("c1", 10000, 2000),
        ("c2", 5000, 1000),
    ]
    assert note["total"] == TOTAL
    invoice = gp.invoice(db, "inv-1")
    assert (invoice["status"], invoice["amount_due"], invoice["amount_credited"]) == ("void", 0, TOTAL)
    assert invoice["voided_at"] == TODAY
    # Nothing is left to credit: any more is 409.
    status, body = admin(credit("k2", amount=1))
    assert status == 409 and body["error"]["code"] == "invalid_transition"


def test_credit_on_a_paid_invoice_is_owed_to_the_customer(db: firestore.Client, admin: Any) -> None:
    seed(db, email=False, status="paid", amount_paid=TOTAL, amount_due=0)
    status, body = admin(credit(lines=[{"line_id": "c2", "amount": 1000}], reason="order_change"))
    assert status == 200, body
    note = body["credit_note"]
    assert (note["total"], note["pre_payment_amount"], note["credited_to_balance"]) == (1200, 0, 1200)
    invoice = gp.invoice(db, "inv-1")
    assert (invoice["status"], invoice["amount_due"], invoice["amount_credited"]) == ("paid", 0, 1200)
    customer = gp.customer(db, "alice")
    assert customer["balance"] == -1200  # Stripe's sign: negative is owed to the customer
    (entry,) = customer["balance_transactions"]
    assert (entry["type"], entry["amount"], entry["credit_note_id"]) == (
        "credit_note",
        -1200,
        note["credit_note_id"],
    )
    assert "refund" not in str(body).lower()


def test_partly_paid_invoice_credited_past_its_amount_due(db: firestore.Client, admin: Any) -> None:
    seed(db, email=False, amount_paid=12000, amount_due=6000)
    status, body = admin(credit(amount=10000))  # 10000 + 2000 tax = 12000: 6000 due, 6000 owed
    assert status == 200, body
    assert (body["credit_note"]["pre_payment_amount"], body["credit_note"]["credited_to_balance"]) == (
        6000,
        6000,
    )
    assert (body["status"], body["amount_due"]) == ("paid", 0)
    assert gp.customer(db, "alice")["balance"] == -6000


def test_series_is_gapless_and_distinct_from_invoices(db: firestore.Client, admin: Any) -> None:
    seed(db, email=False)
    gp.seed_invoice(db, "inv-2", "alice", number="ACME-2026-000002", lines=LINES, tax=3000)
    db.document(f"tenants/{T}/invoice_sequences/2026").set({"last": 2, "year": 2026})
    numbers = []
    for key, invoice_id in (("a", "inv-1"), ("b", "inv-2"), ("c", "inv-1")):
        status, body = admin(credit(key, invoice_id=invoice_id, amount=100))
        assert status == 200, body
        numbers.append(body["credit_note"]["number"])
    assert numbers == [f"ACME-CN-2026-{n:06d}" for n in (1, 2, 3)]
    counters = [db.document(f"tenants/{T}/{c}/2026").get().to_dict() or {} for c in SERIES]
    assert [c["last"] for c in counters] == [3, 2]


def test_stripe_credit_note_with_an_idempotency_key_from_the_credit_note(
    db: firestore.Client, admin: Any, fake_stripe: FakeStripe
) -> None:
    from billing.delivery.outbox import deliver_finalized_invoices
    from billing.pricing.periods import utc_now
    from billing.store.firestore_store import BillingStore

    seed(db, email=False, stripe=True)
    store = BillingStore(db)
    assert deliver_finalized_invoices(store, store.get_tenant(T), ["inv-1"], utc_now(), "r") == []
    twin = gp.invoice(db, "inv-1")["stripe_invoice_id"]
    status, body = admin(credit(lines=[{"line_id": "c1", "amount": 2500}], memo="Outage"))
    assert status == 200 and body["errors"] == [], body
    note = body["credit_note"]
    (stripe_note,) = fake_stripe.credit_notes.values()
    assert note["stripe_credit_note_id"] == stripe_note["id"]
    assert (stripe_note["invoice"], stripe_note["amount"], stripe_note["reason"]) == (
        twin,
        3000,
        "product_unsatisfactory",
    )
    assert stripe_note["metadata"]["credit_note_id"] == note["credit_note_id"]
    (post,) = fake_stripe.posts("/v1/credit_notes")
    assert post.idempotency_key == f"{T}:{note['credit_note_id']}:credit_note_create"
    assert fake_stripe.invoices[twin]["amount_remaining"] == 15000

    # Retried: no second Stripe credit note. A reason Stripe lacks goes in the memo.
    admin(credit(lines=[{"line_id": "c1", "amount": 2500}], memo="Outage"))
    assert len(fake_stripe.credit_notes) == 1
    status, body = admin(credit("k2", amount=12500, reason="order_cancellation"))
    assert status == 200 and body["errors"] == [], body
    second = fake_stripe.credit_notes[body["credit_note"]["stripe_credit_note_id"]]
    assert second["reason"] is None and second["memo"].startswith("Reason: order cancellation")
    assert fake_stripe.invoices[twin]["status"] == "void" and gp.invoice(db, "inv-1")["status"] == "void"


def test_stripe_failure_is_reported_and_finished_by_the_retry(
    db: firestore.Client, admin: Any, fake_stripe: FakeStripe
) -> None:
    from billing.delivery.outbox import deliver_finalized_invoices
    from billing.pricing.periods import utc_now
    from billing.store.firestore_store import BillingStore

    seed(db, email=False, stripe=True)
    store = BillingStore(db)
    assert deliver_finalized_invoices(store, store.get_tenant(T), ["inv-1"], utc_now(), "r") == []
    fake_stripe.fail(r"/v1/credit_notes$", status=400)
    status, body = admin(credit(amount=1000))
    assert status == 200 and [e["stage"] for e in body["errors"]] == ["stripe"], body
    assert body["credit_note"]["stripe_credit_note_id"] is None and not fake_stripe.credit_notes
    status, body = admin(credit(amount=1000))
    assert status == 200 and body["errors"] == [] and body["changed"] is False
    assert len(fake_stripe.credit_notes) == 1 and body["credit_note"]["stripe_credit_note_id"]


def test_four_concurrent_requests_with_one_key_issue_one_credit_note(
    db: firestore.Client, admin: Any, smtp: SmtpServer
) -> None:
    seed(db)
    results = f.concurrently(4, lambda: admin(credit(amount=1000)))
    assert all(status == 200 and body["errors"] == [] for status, body in results), results
    assert {body["credit_note"]["number"] for _, body in results} == {"ACME-CN-2026-000001"}
    assert sum(body["changed"] for _, body in results) == 1
    assert len(notes(db)) == 1 and gp.invoice(db, "inv-1")["amount_credited"] == 1200
    assert len([m for m in smtp.messages if m.kind == "credit_note"]) == 1


def test_concurrent_keys_above_the_invoice_only_those_that_fit(db: firestore.Client, admin: Any) -> None:
    seed(db, email=False)
    # Five credits of 5000 (+1000 tax = 6000) on an 18000 invoice: three fit.
    keys = iter(["a", "b", "c", "d", "e"])
    bodies = [credit(next(keys), amount=5000) for _ in range(5)]
    calls = iter(bodies)
    results = f.concurrently(5, lambda: admin(next(calls)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 200, 409, 409], results
    refused = [body["error"]["code"] for status, body in results if status == 409]
    assert set(refused) <= {"amount_exceeds_creditable", "invalid_transition"}
    numbers = sorted(body["credit_note"]["number"] for status, body in results if status == 200)
    assert numbers == [f"ACME-CN-2026-{n:06d}" for n in (1, 2, 3)]
    invoice = gp.invoice(db, "inv-1")
    assert (invoice["amount_credited"], invoice["amount_due"], invoice["status"]) == (TOTAL, 0, "void")
    assert len(notes(db)) == 3


def test_void_of_a_paid_invoice_is_use_credit_note(db: firestore.Client, admin: Any) -> None:
    seed(db, email=False, status="paid", amount_paid=TOTAL, amount_due=0)
    before = f.all_documents(db, T)
    status, body = admin({"action": "void", "invoice_id": "inv-1"})
    assert status == 409 and body["error"]["code"] == "use_credit_note"
    assert f.all_documents(db, T) == before


def test_credit_that_clears_the_overdue_balance_reactivates(
    db: firestore.Client, admin: Any, smtp: SmtpServer
) -> None:
    seed(db)
    db.document(f"tenants/{T}/customers/alice").update(
        {"status": "suspended", "suspended_by": "dunning", "suspension_id": "s1"}
    )
    status, body = admin(credit(amount=5000))  # partial: still overdue
    assert status == 200 and body["reactivated"] is False
    assert gp.customer(db, "alice")["status"] == "suspended"
    status, body = admin(credit("k2", amount=10000))  # the rest: void, nothing overdue
    assert status == 200 and body["status"] == "void" and body["reactivated"] is True, body
    assert gp.customer(db, "alice")["status"] == "active"
    assert [m.kind for m in smtp.messages] == ["credit_note", "credit_note", "reactivation"]


BAD = [
    ("unknown invoice", credit(invoice_id="nope", amount=100), 404, "unknown_invoice"),
    ("unknown line", credit(lines=[{"line_id": "zz", "amount": 100}]), 404, "unknown_line"),
    ("amount above creditable", credit(amount=15001), 409, "amount_exceeds_creditable"),
    (
        "line above creditable",
        credit(lines=[{"line_id": "c2", "amount": 5001}]),
        409,
        "amount_exceeds_creditable",
    ),
    ("float amount", credit(amount=10.5), 400, "invalid_field"),
    ("string amount", credit(amount="100"), 400, "invalid_field"),
    ("negative amount", credit(amount=-5), 400, "invalid_field"),
    ("zero amount", credit(amount=0), 400, "invalid_field"),
    ("huge amount", credit(amount=10**30), 400, "invalid_field"),
    ("negative line", credit(lines=[{"line_id": "c1", "amount": -1}]), 400, "invalid_field"),
    ("line extra key", credit(lines=[{"line_id": "c1", "amount": 1, "tax": 1}]), 400, "invalid_field"),
    ("empty lines", credit(lines=[]), 400, "invalid_field"),
    ("lines and amount", credit(lines=[{"line_id": "c1", "amount": 1}], amount=1), 400, "invalid_field"),
    ("neither", credit(), 400, "invalid_field"),
    ("unknown reason", credit(amount=100, reason="changed_mind"), 400, "invalid_field"),
    ("no key", {k: v for k, v in credit(amount=100).items() if k != "idempotency_key"}, 400, "missing_field"),
    ("foreign currency", credit(amount=100, currency="EUR"), 400, "currency_mismatch"),
    ("memo too long", credit(amount=100, memo="x" * 501), 400, "invalid_field"),
    ("memo control char", credit(amount=100, memo="a\x00b"), 400, "invalid_field"),
    ("field of another action", credit(amount=100, paid_at="2026-11-20T10:00:00Z"), 400, "unknown_field"),
]


@pytest.mark.parametrize(("name", "body", "status", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_writes_nothing_and_never_reaches_stripe(
    db: firestore.Client,
    admin: Any,
    fake_stripe: FakeStripe,
    name: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    from billing.delivery.outbox import deliver_finalized_invoices
    from billing.pricing.periods import utc_now
    from billing.store.firestore_store import BillingStore

    seed(db, email=False, stripe=True)
    store = BillingStore(db)
    assert deliver_finalized_invoices(store, store.get_tenant(T), ["inv-1"], utc_now(), "r") == []
    calls = len(fake_stripe.requests)
    before = f.all_documents(db, T)
    got, answer = admin(body)
    assert (got, answer.get("error", {}).get("code")) == (status, code), answer
    assert f.all_documents(db, T) == before
    assert len(fake_stripe.requests) == calls


@pytest.mark.parametrize("invoice_status", ["draft", "void", "uncollectible", "deleted"])
def test_wrong_status_is_409_and_writes_nothing(
    db: firestore.Client, admin: Any, invoice_status: str
) -> None:
    seed(db, email=False, status=invoice_status)
    before = f.all_documents(db, T)
    status, body = admin(credit(amount=100))
    assert status == 409 and body["error"]["code"] == "invalid_transition"
    assert f.all_documents(db, T) == before


def test_broken_unicode_in_memo_is_400(db: firestore.Client, admin: Any) -> None:
    seed(db, email=False)
    before = f.all_documents(db, T)
    raw = (
        b'{"action": "create_credit_note", "invoice_id": "inv-1", "reason": "other", '
        b'"idempotency_key": "k", "amount": 100, "memo": "bad \\ud800 surrogate"}'
    )
    status, body = admin(None, raw=raw)
    assert status == 400 and body["error"]["code"] == "invalid_field", body
    assert f.all_documents(db, T) == before


def test_another_tenants_invoice(db: firestore.Client, admin: Any, call_function: Any, token: Any) -> None:
    seed(db, email=False)
    f.tenant(db, "other", admins=["boss@other.test"])
    before = f.all_documents(db, T)
    # A platform admin naming the other tenant: the invoice is not there (404).
    status, body = admin(credit(amount=100), tenant="other")
    assert status == 404 and body["error"]["code"] == "unknown_invoice"
    # The other tenant's admin naming ours: 403.
    headers = {"Authorization": f"Bearer {token(email='boss@other.test')}"}
    status, body = call_function("billing_admin", credit(amount=100), tenant=T, headers=headers)
    assert status == 403
    assert f.all_documents(db, T) == before


def test_dunning_chases_the_amount_due_after_credits(
    db: firestore.Client, admin: Any, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db)  # due 2026-11-15: 10 days overdue on TODAY, so reminder_7 is due
    status, body = admin(credit(amount=5000))  # 5000 + 1000 tax off 18000
    assert status == 200 and body["amount_due"] == 12000, body
    status, run = call_function("dunning", {}, tenant=T)
    assert status == 200 and run["reminders_sent"] == 1, run
    reminder = next(m for m in smtp.messages if m.kind == "reminder")
    assert "£120.00" in reminder.text() and "£180.00" not in reminder.text()

    # Credited to zero: void, so the next run has nothing overdue for it.
    status, body = admin(credit("k2", amount=10000))
    assert status == 200 and body["status"] == "void", body
    status, run = call_function("dunning", {}, tenant=T)
    assert status == 200 and run["tenants"][0]["overdue"] == 0, run


def test_dunning_finishes_a_credit_note_whose_email_failed(
    db: firestore.Client, admin: Any, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db, due_at=TODAY)  # not overdue: the run only sweeps
    smtp.fail_next(1)
    status, body = admin(credit(amount=1000))
    assert status == 200 and [e["stage"] for e in body["errors"]] == ["email"], body
    (stored,) = notes(db)
    assert stored["delivery_pending"] is True and stored["pdf_uri"] and "email_sent_at" not in stored
    status, run = call_function("dunning", {}, tenant=T)
    assert status == 200 and run["errors"] == [] and run["deliveries_retried"] == 1, run
    (stored,) = notes(db)
    assert stored["delivery_pending"] is False and stored["email_sent_at"] == TODAY
    assert [m.kind for m in smtp.messages] == ["credit_note"]
    status, run = call_function("dunning", {}, tenant=T)
    assert run["deliveries_retried"] == 0 and len(smtp.messages) == 1
