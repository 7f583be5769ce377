"""billing_admin: the five actions, recorded with who and when; bad requests change nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
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
PAID_AT = "2026-11-20T10:30:00+01:00"


@pytest.fixture
def admin(call_function: Any, token: Callable[..., str]) -> Callable[..., tuple[int, dict[str, Any]]]:
    """``admin(body, tenant=T, email=ADMIN)`` calls billing_admin as an admin."""

    def call(
        body: dict[str, Any] | None, *, tenant: str | None = T, email: str = ADMIN, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token(email=email)}"}
        result: tuple[int, dict[str, Any]] = call_function(
            "billing_admin", body, tenant=tenant, headers=headers, **kwargs
        )
        return result

    return call


def seed(db: firestore.Client, **tenant_fields: Any) -> None:
    gp.seed_tenant(db, **tenant_fields)
    f.customer(db, T, "alice", "GB", name="Alice Ltd")
    gp.seed_invoice(db, "inv-1", "alice", number="ACME-2026-000001")


def test_mark_paid_records_payment_with_who_and_when(db: firestore.Client, admin: Any) -> None:
    seed(db)
    status, body = admin(
        {
            "action": "mark_paid",
            "invoice_id": "inv-1",
            "amount": 12000,
            "paid_at": PAID_AT,
            "reference": "BACS 123",
            "reason": "bank transfer",
        }
    )
    assert status == 200, body
    assert (body["status"], body["amount_paid"], body["amount_due"], body["changed"]) == (
        "paid",
        12000,
        0,
        True,
    )
    assert body["errors"] == [] and body["run_id"]
    invoice = gp.invoice(db, "inv-1")
    assert invoice["status"] == "paid" and invoice["paid_at"] == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    (payment,) = invoice["payments"]
    assert (payment["amount"], payment["by"], payment["reference"]) == (12000, ADMIN, "BACS 123")
    (entry,) = invoice["history"]
    assert (entry["action"], entry["actor"], entry["reason"]) == ("mark_paid", ADMIN, "bank transfer")
    assert entry["at"] == TODAY  # the functions' clock
    assert entry["run_id"] == body["run_id"]

    # The same payment again (same reference): a no-op, not a 409 nor a double count.
    before = f.all_documents(db, T)
    status, body = admin(
        {
            "action": "mark_paid",
            "invoice_id": "inv-1",
            "amount": 12000,
            "paid_at": PAID_AT,
            "reference": "BACS 123",
        }
    )
    assert status == 200 and body["changed"] is False
    assert f.all_documents(db, T) == before


def test_partial_payments_then_the_rest(db: firestore.Client, admin: Any) -> None:
    seed(db)
    status, body = admin({"action": "mark_paid", "invoice_id": "inv-1", "amount": 5000, "paid_at": PAID_AT})
    assert status == 200 and (body["status"], body["amount_due"]) == ("open", 7000)
    assert gp.invoice(db, "inv-1")["history"][-1]["action"] == "partial_payment"
    status, body = admin({"action": "mark_paid", "invoice_id": "inv-1", "amount": 7001, "paid_at": PAID_AT})
    assert status == 409 and body["error"]["code"] == "amount_exceeds_due"
    status, body = admin({"action": "mark_paid", "invoice_id": "inv-1", "amount": 7000, "paid_at": PAID_AT})
    assert status == 200 and (body["status"], body["amount_paid"]) == ("paid", 12000)


def test_void_and_uncollectible_transitions(db: firestore.Client, admin: Any) -> None:
    seed(db)
    gp.seed_invoice(db, "inv-2", "alice")
    gp.seed_invoice(db, "inv-p", "alice", status="paid")
    gp.seed_invoice(db, "inv-d", "alice", status="draft")
    assert admin({"action": "void", "invoice_id": "inv-1"})[1]["status"] == "void"
    assert gp.invoice(db, "inv-1")["voided_at"]
    assert admin({"action": "mark_uncollectible", "invoice_id": "inv-2"})[1]["status"] == "uncollectible"
    before = f.all_documents(db, T)
    for action, invoice_id in (
        ("void", "inv-1"),
        ("mark_uncollectible", "inv-2"),
        ("mark_uncollectible", "inv-p"),
        ("void", "inv-d"),
        ("resend_email", "inv-d"),
    ):
        status, body = admin({"action": action, "invoice_id": invoice_id})
        assert status == 409, (action, invoice_id, body)
        assert body["error"]["code"] == "invalid_transition"
        assert "not allowed" in body["error"]["message"]
    status, body = admin({"action": "mark_paid", "invoice_id": "inv-p", "amount": 1, "paid_at": PAID_AT})
    assert status == 409
    status, body = admin({"action": "void", "invoice_id": "inv-p"})  # issue 10: correct it with a credit note
    assert status == 409 and body["error"]["code"] == "use_credit_note", body
    assert f.all_documents(db, T) == before
    assert admin({"action": "void", "invoice_id": "inv-2"})[1]["status"] == "void"
    actors = {(h["action"], h["actor"]) for h in gp.invoice(db, "inv-2")["history"]}
    assert actors == {("mark_uncollectible", ADMIN), ("void", ADMIN)}


BAD_REQUESTS: list[tuple[str, dict[str, Any] | None, dict[str, Any], int, str]] = [
    ("no tenant", {"action": "void", "invoice_id": "inv-1"}, {"tenant": None}, 400, "missing_tenant"),
    ("no action", {"invoice_id": "inv-1"}, {}, 400, "missing_field"),
    ("unknown action", {"action": "refund", "invoice_id": "inv-1"}, {}, 400, "invalid_field"),
    ("no invoice", {"action": "void"}, {}, 400, "missing_field"),
    ("bad invoice id", {"action": "void", "invoice_id": "a/b"}, {}, 400, "invalid_field"),
    (
        "no amount",
        {"action": "mark_paid", "invoice_id": "inv-1", "paid_at": PAID_AT},
        {},
        400,
        "missing_field",
    ),
    ("no paid_at", {"action": "mark_paid", "invoice_id": "inv-1", "amount": 5}, {}, 400, "missing_field"),
    (
        "negative",
        {"action": "mark_paid", "invoice_id": "inv-1", "amount": -5, "paid_at": PAID_AT},
        {},
        400,
        "invalid_field",
    ),
    (
        "float",
        {"action": "mark_paid", "invoice_id": "inv-1", "amount": 12.5, "paid_at": PAID_AT},
        {},
        400,
        "invalid_field",
    ),
    (
        "string",
        {"action": "mark_paid", "invoice_id": "inv-1", "amount": "120.00", "paid_at": PAID_AT},
        {},
        400,
        "invalid_field",
    ),
    (
        "bool",
        {"action": "mark_paid", "invoice_id": "inv-1", "amount": True, "paid_at": PAID_AT},
        {},
        400,
        "invalid_field",
    ),
    (
        "naive date",
        {"action": "mark_paid", "invoice_id": "inv-1", "amount": 5, "paid_at": "2026-11-20T10:30:00"},
        {},
        400,
        "invalid_field",
    ),
    (
        "future",
        {"action": "mark_paid", "invoice_id": "inv-1", "amount": 5, "paid_at": "2099-01-01T00:00:00Z"},
        {},
        400,
        "invalid_field",
    ),
    ("amount on void", {"action": "void", "invoice_id": "inv-1", "amount": 5}, {}, 400, "unknown_field"),
    ("unknown field", {"action": "void", "invoice_id": "inv-1", "force": True}, {}, 400, "unknown_field"),
    ("not json", None, {"raw": b"{action: void}"}, 400, "invalid_json"),
    ("unknown invoice", {"action": "void", "invoice_id": "nope"}, {}, 404, "unknown_invoice"),
    ("unknown tenant", {"action": "void", "invoice_id": "inv-1"}, {"tenant": "ghost"}, 404, "unknown_tenant"),
    (
        "principal not allowed",
        {"action": "void", "invoice_id": "inv-1"},
        {"email": "mallory@example.com"},
        403,
        "permission_denied",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "kwargs", "status", "code"), BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_requests_get_clear_errors_and_change_nothing(
    db: firestore.Client,
    admin: Any,
    name: str,
    body: dict[str, Any] | None,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    seed(db)
    before = f.all_documents(db, T)
    got, answer = admin(body, **kwargs)
    assert got == status, answer
    assert answer["error"]["code"] == code and answer["error"]["message"]
    assert f.all_documents(db, T) == before


def test_no_token_is_401(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    before = f.all_documents(db, T)
    status, body = call_function(
        "billing_admin", {"action": "void", "invoice_id": "inv-1"}, tenant=T, auth=False
    )
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    assert f.all_documents(db, T) == before


def test_resend_email_and_render_pdf(
    db: firestore.Client, gcs: storage.Client, admin: Any, smtp: SmtpServer
) -> None:
    seed(db)
    status, body = admin({"action": "render_pdf", "invoice_id": "inv-1"})
    assert status == 200, body
    uri = f"gs://{TEST_BUCKET}/{T}/2026-10/ACME-2026-000001.pdf"
    assert body["pdf_uri"] == uri
    blob = gcs.bucket(TEST_BUCKET).blob(f"{T}/2026-10/ACME-2026-000001.pdf")
    pdf = blob.download_as_bytes()
    assert pdf.startswith(b"%PDF")
    invoice = gp.invoice(db, "inv-1")
    assert invoice["pdf_uri"] == uri and invoice["history"][-1]["actor"] == ADMIN

    status, body = admin({"action": "resend_email", "invoice_id": "inv-1", "reason": "lost"})
    assert status == 200, body
    (message,) = smtp.messages
    assert message.rcpt_tos == ["alice@example.com"] and message.kind == "invoice"
    assert message.attachments() == [("ACME-2026-000001.pdf", "application/pdf", pdf)]
    entry = gp.invoice(db, "inv-1")["history"][-1]
    assert (entry["action"], entry["actor"], entry["to"], entry["reason"]) == (
        "resend_email",
        ADMIN,
        "alice@example.com",
        "lost",
    )
    admin({"action": "resend_email", "invoice_id": "inv-1"})
    assert len(smtp.messages) == 2  # an explicit resend always sends

    smtp.fail_next(1)
    before = f.all_documents(db, T)
    status, body = admin({"action": "resend_email", "invoice_id": "inv-1"})
    assert status == 502 and body["error"]["code"] == "email_failed"
    assert f.all_documents(db, T) == before


def test_resend_needs_email_enabled(db: firestore.Client, admin: Any) -> None:
    seed(db, email=False)
    before = f.all_documents(db, T)
    status, body = admin({"action": "resend_email", "invoice_id": "inv-1"})
    assert status == 409 and body["error"]["code"] == "email_disabled"
    assert f.all_documents(db, T) == before


def test_actions_on_a_stripe_invoice_change_stripe_first(
    db: firestore.Client, admin: Any, fake_stripe: FakeStripe
) -> None:
    from billing.delivery.outbox import deliver_finalized_invoices
    from billing.pricing.periods import utc_now
    from billing.store.firestore_store import BillingStore

    seed(db, email=False, stripe=True)
    gp.seed_invoice(db, "inv-2", "alice", number="ACME-2026-000002")
    store = BillingStore(db)
    tenant = store.get_tenant(T)
    assert deliver_finalized_invoices(store, tenant, ["inv-1", "inv-2"], utc_now(), "r") == []
    one, two = (gp.invoice(db, i)["stripe_invoice_id"] for i in ("inv-1", "inv-2"))

    before = f.all_documents(db, T)
    status, body = admin({"action": "mark_paid", "invoice_id": "inv-1", "amount": 100, "paid_at": PAID_AT})
    assert status == 409 and body["error"]["code"] == "partial_payment_in_stripe"
    fake_stripe.fail(r"/pay$", status=400)
    status, body = admin({"action": "mark_paid", "invoice_id": "inv-1", "amount": 12000, "paid_at": PAID_AT})
    assert status == 502 and body["error"]["code"] == "stripe_failed"
    assert f.all_documents(db, T) == before

    status, body = admin({"action": "mark_paid", "invoice_id": "inv-1", "amount": 12000, "paid_at": PAID_AT})
    assert status == 200 and body["status"] == "paid"
    assert fake_stripe.invoices[one]["status"] == "paid"
    assert fake_stripe.invoices[one]["paid_out_of_band"] is True
    assert gp.invoice(db, "inv-1")["history"][-1]["stripe_status"] == "paid"
    status, body = admin({"action": "void", "invoice_id": "inv-2"})
    assert status == 200 and fake_stripe.invoices[two]["status"] == "void"
    assert all(r.idempotency_key for r in fake_stripe.posts())


def test_payment_reactivates_the_customer(db: firestore.Client, admin: Any, smtp: SmtpServer) -> None:
    seed(db)
    db.document(f"tenants/{T}/customers/alice").update(
        {
            "status": "suspended",
            "suspended_by": "dunning",
            "suspension_id": "s9",
            "suspension_reason": "overdue",
        }
    )
    status, body = admin({"action": "void", "invoice_id": "inv-1"})
    assert status == 200 and body["reactivated"] is True
    assert gp.customer(db, "alice")["status"] == "active"
    assert [m.kind for m in smtp.messages] == ["reactivation"]


def test_a_reactivation_failure_after_the_payment_is_reported_not_500(
    db: firestore.Client, admin: Any, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review finding: the void is committed before the reactivation; an unexpected error there
    # answered 500, and a retried call then got 409 for an action that had been done.
    from billing.runs import admin_actions

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Firestore went away")

    monkeypatch.setattr(admin_actions, "reactivate_if_clear", broken)
    seed(db)
    db.document(f"tenants/{T}/customers/alice").update({"status": "suspended", "suspended_by": "dunning"})
    status, body = admin({"action": "void", "invoice_id": "inv-1"})
    assert status == 200 and body["status"] == "void", body
    assert [(e["customer_id"], e["code"]) for e in body["errors"]] == [("alice", "internal")]
    assert gp.invoice(db, "inv-1")["status"] == "void"


def test_render_pdf_refuses_a_draft(db: firestore.Client, admin: Any) -> None:
    gp.seed_tenant(db)
    f.customer(db, T, "alice", "GB", name="Alice Ltd")
    gp.seed_invoice(db, "draft-1", "alice", status="draft", number=None)
    db.document(f"tenants/{T}/invoices/draft-1").update({"number": None})
    before = f.all_documents(db, T)
    status, body = admin({"action": "render_pdf", "invoice_id": "draft-1"})
    assert status == 409 and body["error"]["code"] == "invoice_is_draft"
    assert f.all_documents(db, T) == before


@pytest.mark.parametrize("action", ["render_pdf", "resend_email"])
def test_a_deleted_draft_is_neither_rendered_nor_sent(db: firestore.Client, admin: Any, action: str) -> None:
    # Review finding: a draft re-priced to nothing is `deleted`; resend_email mailed it (an
    # unnumbered invoice for a period never billed) and render_pdf stored a PDF of it.
    gp.seed_tenant(db)
    f.customer(db, T, "alice", "GB", name="Alice Ltd")
    gp.seed_invoice(db, "gone-1", "alice", status="deleted", number=None)
    db.document(f"tenants/{T}/invoices/gone-1").update({"number": None})
    before = f.all_documents(db, T)
    status, body = admin({"action": action, "invoice_id": "gone-1"})
    assert status == 409 and body["error"]["code"] == "invalid_transition", body
    assert f.all_documents(db, T) == before


STRIPE_EDGE_BODIES = [
    (
        "void, reason with a lone surrogate",
        b'{"action": "void", "invoice_id": "inv-1", "reason": "dup \\ud800"}',
    ),
    (
        "mark_uncollectible, reason with a control character",
        b'{"action": "mark_uncollectible", "invoice_id": "inv-1", "reason": "x\\u0007"}',
    ),
    (
        "mark_paid, reference with a lone surrogate",
        b'{"action": "mark_paid", "invoice_id": "inv-1", "amount": 12000, '
        b'"paid_at": "2026-11-20T10:30:00Z", "reference": "\\udfff"}',
    ),
    (
        "mark_paid, paid_at in year 1",
        b'{"action": "mark_paid", "invoice_id": "inv-1", "amount": 12000, '
        b'"paid_at": "0001-01-01T00:00:00+05:00"}',
    ),
]


@pytest.mark.parametrize(("name", "raw"), STRIPE_EDGE_BODIES, ids=[case[0] for case in STRIPE_EDGE_BODIES])
def test_bad_text_or_instant_never_reaches_stripe(
    db: firestore.Client, admin: Any, fake_stripe: FakeStripe, name: str, raw: bytes
) -> None:
    """Issue 8 item 12: such a field used to fail the Firestore write after Stripe had voided."""
    from billing.delivery.outbox import deliver_finalized_invoices
    from billing.pricing.periods import utc_now
    from billing.store.firestore_store import BillingStore

    seed(db, email=False, stripe=True)
    store = BillingStore(db)
    assert deliver_finalized_invoices(store, store.get_tenant(T), ["inv-1"], utc_now(), "r") == []
    twin = gp.invoice(db, "inv-1")["stripe_invoice_id"]
    calls = len(fake_stripe.requests)
    before = f.all_documents(db, T)
    status, body = admin(None, raw=raw)
    assert status == 400 and body["error"]["code"] == "invalid_field", body
    assert len(fake_stripe.requests) == calls
    assert fake_stripe.invoices[twin]["status"] == "open"
    assert f.all_documents(db, T) == before
