"""stripe_webhook: signature checks, idempotent and order-proof status changes, reactivation."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from billing.delivery.stripe_billing import StripeGateway, StripeSettings, push_invoice
from billing.http.webhook import MAX_WEBHOOK_BYTES
from billing.pricing.periods import utc_now
from billing.store.firestore_store import BillingStore
from tests import factories as f
from tests import getting_paid as gp
from tests.conftest import REPO
from tests.fake_stripe import API_KEY, WEBHOOK_SECRET, FakeStripe, sign
from tests.smtp_server import SmtpServer

T = gp.T
smtp = pytest.fixture(gp.smtp_fixture, name="smtp")
PAID_AT = 1795000000


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)


def event(
    event_type: str,
    event_id: str = "evt_1",
    invoice_id: str = "inv-1",
    *,
    tenant_id: str = T,
    stripe_id: str = "in_1",
    **obj: Any,
) -> dict[str, Any]:
    invoice = {
        "id": stripe_id,
        "object": "invoice",
        "amount_paid": 0,
        "amount_due": 12000,
        "currency": "gbp",
        "status": "open",
        "attempt_count": 1,
        "metadata": {"tenant_id": tenant_id, "invoice_id": invoice_id},
        "status_transitions": {"paid_at": None},
    }
    if event_type == "invoice.paid":
        invoice.update(status="paid", amount_paid=12000, status_transitions={"paid_at": PAID_AT})
    invoice.update(obj)
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": invoice},
    }


def seed(db: firestore.Client, *, stripe: bool | dict[str, Any] = True, **invoice_fields: Any) -> None:
    gp.seed_tenant(db, email=True, stripe=stripe)
    f.customer(db, T, "alice", "GB")
    gp.seed_invoice(db, "inv-1", "alice", stripe_invoice_id="in_1", **invoice_fields)


def services_stripe(fake: FakeStripe) -> StripeGateway:
    return StripeGateway(StripeSettings(api_key=API_KEY, api_base=fake.url), sleep=lambda _: None, timeout=5)


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
        (12000, "stripe", "evt_1")
    ]
    (entry,) = invoice["history"]
    assert (entry["action"], entry["actor"], entry["effect"]) == ("invoice.paid", "stripe", "paid")

    before = f.all_documents(db, T)
    status, body = post(call_function, event("invoice.paid"))
    assert status == 200 and body["result"] == "duplicate"
    assert f.all_documents(db, T) == before


def test_events_out_of_order_never_move_a_paid_invoice_back(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    assert post(call_function, event("invoice.paid", "evt_paid"))[1]["result"] == "applied"
    for i, kind in enumerate(("invoice.voided", "invoice.marked_uncollectible", "invoice.payment_failed")):
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
    assert post(call_function, event("invoice.marked_uncollectible", "e3"))[1]["status"] == "uncollectible"
    assert gp.invoice(db, "inv-1")["marked_uncollectible_at"]
    assert post(call_function, event("invoice.paid", "e4"))[1]["status"] == "paid"

    gp.seed_invoice(db, "inv-2", "alice", stripe_invoice_id="in_2")
    _, body = post(call_function, event("invoice.voided", "e5", "inv-2", stripe_id="in_2"))
    assert body["status"] == "void" and gp.invoice(db, "inv-2")["voided_at"]
    _, body = post(call_function, event("invoice.paid", "e6", "inv-2", stripe_id="in_2"))
    assert (body["result"], body["reason"]) == ("ignored", "invoice_is_void")
    assert gp.invoice(db, "inv-2")["status"] == "void"


@pytest.mark.parametrize("case", ["wrong_secret", "tampered", "missing", "garbage", "stale"])
def test_bad_signatures_are_refused_and_change_nothing(
    db: firestore.Client, call_function: Any, case: str
) -> None:
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
    db: firestore.Client, call_function: Any
) -> None:
    seed(db)
    before = f.all_documents(db, T)
    cases = {
        "unhandled_event_type": {
            "id": "evt_c",
            "object": "event",
            "type": "customer.created",
            "data": {"object": {"id": "cus_1", "object": "customer"}},
        },
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


def test_malformed_bodies_methods_and_configuration(
    db: firestore.Client, call_function: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db)
    before = f.all_documents(db, T)
    raw = b"not json"
    status, body = call_function(
        "stripe_webhook", raw=raw, auth=False, headers={"Stripe-Signature": sign(raw)}
    )
    assert status == 400 and body["error"]["code"] == "invalid_json"
    raw = b'{"id": "evt_1", "type": "invoice.paid"}'
    status, body = call_function(
        "stripe_webhook", raw=raw, auth=False, headers={"Stripe-Signature": sign(raw)}
    )
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
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db, due_at=datetime(2026, 1, 1, tzinfo=UTC))
    suspension: dict[str, Any] = {
        "status": "suspended",
        "suspension_reason": "r",
        "suspended_by": "dunning",
        "suspended_at": datetime(2026, 1, 22, tzinfo=UTC),
        "suspension_id": "s1",
    }
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


def test_a_failed_notice_does_not_fail_the_payment(
    db: firestore.Client, call_function: Any, smtp: SmtpServer
) -> None:
    seed(db, due_at=datetime(2026, 1, 1, tzinfo=UTC))
    db.document(f"tenants/{T}/customers/alice").update(
        {"status": "suspended", "suspended_by": "dunning", "suspension_id": "s1"}
    )
    smtp.fail_next(1)
    status, body = post(call_function, event("invoice.paid"))
    assert status == 200 and body["reactivated"] is True
    assert body["errors"][0]["customer_id"] == "alice" and "451" in body["errors"][0]["error"]
    assert gp.invoice(db, "inv-1")["status"] == "paid"
    note = db.document(f"tenants/{T}/notifications/alice.reactivation.s1").get().to_dict() or {}
    assert (note["status"], note["sweep"]) == ("failed", True)
    assert smtp.messages == []


# -- issue 8 item 9: whose objects an event may touch ---------------------------------------------
def everything(db: firestore.Client) -> dict[str, dict[str, Any]]:
    """Every document of every tenant (path -> data): proves an event wrote nothing anywhere."""
    out: dict[str, dict[str, Any]] = {}
    for ref in db.collection("tenants").list_documents():
        out.update(f.all_documents(db, ref.id))
    return out


def without(event_body: dict[str, Any], key: str) -> dict[str, Any]:
    event_body["data"]["object"].pop(key)
    return event_body


UNTRUSTED: dict[str, tuple[str, Any]] = {
    # case: (reason, event)
    "other_account": ("account_mismatch", lambda: {**event("invoice.paid"), "account": "acct_evil"}),
    "other_account_void": ("account_mismatch", lambda: {**event("invoice.voided"), "account": "acct_evil"}),
    "no_twin": (
        "no_stripe_twin",
        lambda: event("invoice.paid", invoice_id="inv-bare", stripe_id="in_forged"),
    ),
    "no_twin_void": (
        "no_stripe_twin",
        lambda: event("invoice.voided", invoice_id="inv-bare", stripe_id="in_forged"),
    ),
    "twin_mismatch": ("stripe_invoice_mismatch", lambda: event("invoice.voided", stripe_id="in_other")),
    "missing_object_id": ("missing_object_id", lambda: without(event("invoice.paid"), "id")),
    "empty_object_id": ("missing_object_id", lambda: event("invoice.paid", stripe_id="")),
    "numeric_object_id": ("missing_object_id", lambda: event("invoice.paid", stripe_id=1)),  # type: ignore[arg-type]
    "currency_mismatch": ("currency_mismatch", lambda: event("invoice.paid", currency="eur")),
    "currency_missing": ("currency_mismatch", lambda: without(event("invoice.paid"), "currency")),
    "amount_missing": ("invalid_amount", lambda: without(event("invoice.paid"), "amount_paid")),
    "amount_negative": ("invalid_amount", lambda: event("invoice.paid", amount_paid=-5)),
    "amount_bool": ("invalid_amount", lambda: event("invoice.paid", amount_paid=True)),
}


@pytest.mark.parametrize("case", sorted(UNTRUSTED))
def test_untrusted_or_unmatched_events_are_ignored_and_write_nothing(
    db: firestore.Client, call_function: Any, case: str
) -> None:
    """Correctly signed, but not provably about an invoice we pushed to this tenant's Stripe."""
    seed(db)
    gp.seed_invoice(db, "inv-bare", "alice")  # never pushed to Stripe: no stripe_invoice_id
    before = everything(db)
    reason, build = UNTRUSTED[case]
    status, body = post(call_function, build())
    assert status == 200, body
    assert (body["result"], body["ignored"], body["reason"]) == ("ignored", reason, reason)
    assert everything(db) == before
    assert "stripe_invoice_id" not in gp.invoice(db, "inv-bare")


@pytest.mark.parametrize(
    ("tenant_account", "event_account"),
    [(None, "acct_evil"), ("acct_tenant", None), ("acct_tenant", "acct_evil")],
)
def test_the_event_account_must_be_the_tenants(
    db: firestore.Client, call_function: Any, tenant_account: str | None, event_account: str | None
) -> None:
    stripe: dict[str, Any] = {"enabled": True}
    if tenant_account:
        stripe["account"] = tenant_account
    seed(db, stripe=stripe)
    before = everything(db)
    body_in = event("invoice.paid")
    if event_account:
        body_in["account"] = event_account
    status, body = post(call_function, body_in)
    assert status == 200 and body["ignored"] == "account_mismatch", body
    assert everything(db) == before


def test_an_event_from_the_tenants_connected_account_applies(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db, stripe={"enabled": True, "account": "acct_tenant"})
    status, body = post(call_function, {**event("invoice.paid"), "account": "acct_tenant"})
    assert status == 200 and body["result"] == "applied", body
    assert "ignored" not in body
    assert gp.invoice(db, "inv-1")["status"] == "paid"


@pytest.mark.parametrize("stripe", [False, {"enabled": False}, {"enabled": "yes"}])
def test_a_tenant_without_stripe_enabled_ignores_events(
    db: firestore.Client, call_function: Any, stripe: bool | dict[str, Any]
) -> None:
    seed(db, stripe=stripe)
    before = everything(db)
    for kind in ("invoice.paid", "invoice.voided"):
        status, body = post(call_function, event(kind, f"evt_{kind}"))
        assert status == 200 and body["ignored"] == "stripe_not_enabled", body
    assert everything(db) == before


BAD_IDS = [".", "..", "__x__", "__.*__", "a/b", "/", "", "x" * 256, "é", "a\nb", 7, None]


@pytest.mark.parametrize("field", ["tenant_id", "invoice_id"])
@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda v: repr(v)[:12])
def test_metadata_ids_that_are_not_ids_are_ignored(
    db: firestore.Client, call_function: Any, field: str, bad: Any
) -> None:
    seed(db)
    before = everything(db)
    body_in = event("invoice.paid")
    body_in["data"]["object"]["metadata"][field] = bad
    status, body = post(call_function, body_in)
    assert status == 200, body
    assert body["ignored"] == "invalid_metadata", body
    assert everything(db) == before


def test_a_payment_below_the_amount_due_is_partial(db: firestore.Client, call_function: Any) -> None:
    """Stripe's ``amount_paid`` is what the Stripe invoice has received in total so far."""
    seed(db)
    first = event("invoice.payment_succeeded", "evt_p1", amount_paid=5000, status="open")
    status, body = post(call_function, first)
    assert status == 200 and (body["result"], body["status"]) == ("applied", "open"), body
    invoice = gp.invoice(db, "inv-1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_due"]) == ("open", 5000, 7000)
    assert [(p["amount"], p["reference"]) for p in invoice["payments"]] == [(5000, "evt_p1")]
    assert invoice["history"][-1]["effect"] == "partial_payment"
    assert "paid_at" not in invoice

    before = everything(db)
    assert post(call_function, first)[1]["result"] == "duplicate"
    assert everything(db) == before

    status, body = post(call_function, event("invoice.paid", "evt_p2"))  # amount_paid 12000
    assert status == 200 and (body["result"], body["status"]) == ("applied", "paid"), body
    invoice = gp.invoice(db, "inv-1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_due"]) == ("paid", 12000, 0)
    assert [(p["amount"], p["reference"]) for p in invoice["payments"]] == [
        (5000, "evt_p1"),
        (7000, "evt_p2"),
    ]
    # Stripe sends invoice.payment_succeeded for the same final payment: nothing more is paid.
    _, body = post(call_function, event("invoice.payment_succeeded", "evt_p3"))
    assert body["result"] == "ignored" and body["reason"] == "invoice_is_paid"
    assert gp.invoice(db, "inv-1")["amount_paid"] == 12000


def test_an_invoice_paid_event_for_less_than_due_leaves_the_invoice_open(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db)
    status, body = post(call_function, event("invoice.paid", amount_paid=11999))
    assert status == 200 and body["status"] == "open", body
    invoice = gp.invoice(db, "inv-1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_due"]) == ("open", 11999, 1)
    assert body["reactivated"] is False


fake_stripe = pytest.fixture(gp.stripe_fixture, name="fake_stripe")


def test_connected_account_round_trip_with_a_partial_payment(
    db: firestore.Client, call_function: Any, fake_stripe: FakeStripe
) -> None:
    """Push to the tenant's connected account, pay part then the rest in (fake) Stripe."""
    gp.seed_tenant(db, email=False, stripe={"enabled": True, "account": "acct_conn"})
    f.customer(db, T, "alice", "GB")
    store = BillingStore(db)
    gp.seed_invoice(db, "inv-1", "alice")
    push_invoice(
        store,
        store.get_tenant(T),
        {"invoice_id": "inv-1", **gp.invoice(db, "inv-1")},
        services_stripe(fake_stripe),
        utc_now(),
    )
    stripe_id = gp.invoice(db, "inv-1")["stripe_invoice_id"]

    fake_stripe.pay(stripe_id, 4000)
    partial = fake_stripe.invoice_event("invoice.payment_succeeded", stripe_id)
    assert partial["account"] == "acct_conn"
    before = everything(db)
    for forged in (
        {k: v for k, v in partial.items() if k != "account"},
        {**partial, "account": "acct_other"},
    ):
        status, body = post(call_function, forged)
        assert status == 200 and body["ignored"] == "account_mismatch", body
    assert everything(db) == before

    status, body = post(call_function, partial)
    assert status == 200 and (body["result"], body["status"]) == ("applied", "open"), body
    invoice = gp.invoice(db, "inv-1")
    assert (invoice["amount_paid"], invoice["amount_due"]) == (4000, 8000)

    fake_stripe.pay(stripe_id)
    for kind in ("invoice.payment_succeeded", "invoice.paid"):  # Stripe sends both
        post(call_function, fake_stripe.invoice_event(kind, stripe_id))
    invoice = gp.invoice(db, "inv-1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_due"]) == ("paid", 12000, 0)
    assert [p["amount"] for p in invoice["payments"]] == [4000, 8000]


# -- issue 8 item 14: the body cap counts the bytes read -----------------------------------------
class ChunkedBody(io.RawIOBase):
    """A body that arrives in chunks, of unknown length (not seekable): a chunked upload."""

    def __init__(self, payload: bytes, size: int = 64 * 1024) -> None:
        self.chunks: Iterator[bytes] = (payload[i : i + size] for i in range(0, len(payload), size))
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.pending:
            self.pending = next(self.chunks, b"")
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count


def chunked_post(project_id: str, payload: bytes, header: str) -> tuple[int, dict[str, Any]]:
    """POST ``payload`` as a chunked body with no Content-Length, as gunicorn hands it over.

    gunicorn (Cloud Run's server for functions-framework) decodes chunked bodies itself and
    sets ``wsgi.input_terminated``, so the application reads the stream to its end. Werkzeug's
    test client always computes a Content-Length, so the WSGI environ is built here.
    """
    import functions_framework
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    app = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="stripe_webhook", source=str(REPO / "functions" / "stripe_webhook" / "main.py")
    )
    environ = EnvironBuilder(
        "/",
        method="POST",
        headers=[
            ("Stripe-Signature", header),
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BufferedReader(ChunkedBody(payload)), "wsgi.input_terminated": True})
    app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
    body = b"".join(app_iter)
    return int(status.split()[0]), json.loads(body) if body else {}


def big_event(size: int) -> bytes:
    """A correctly signed paid event padded to ``size`` bytes (a Stripe object has any fields)."""
    body = event("invoice.paid")
    body["data"]["object"]["description"] = ""
    pad = size - len(json.dumps(body).encode())
    body["data"]["object"]["description"] = "x" * pad
    payload = json.dumps(body).encode()
    assert len(payload) == size
    return payload


def test_a_chunked_body_over_the_cap_is_413_and_writes_nothing(db: firestore.Client, project_id: str) -> None:
    seed(db)
    before = everything(db)
    payload = big_event(3_000_000)
    status, body = chunked_post(project_id, payload, sign(payload))
    assert status == 413, body
    assert body["error"]["code"] == "body_too_large"
    assert everything(db) == before


def test_the_cap_is_a_byte_count(db: firestore.Client, project_id: str, call_function: Any) -> None:
    """Exactly the cap passes, one byte more does not, chunked or with a Content-Length."""
    seed(db)
    payload = big_event(MAX_WEBHOOK_BYTES + 1)
    status, body = call_function(
        "stripe_webhook", raw=payload, auth=False, headers={"Stripe-Signature": sign(payload)}
    )
    assert status == 413 and body["error"]["code"] == "body_too_large", body
    assert gp.invoice(db, "inv-1")["status"] == "open"
    payload = big_event(MAX_WEBHOOK_BYTES)
    status, body = chunked_post(project_id, payload, sign(payload))
    assert status == 200 and body["result"] == "applied", body
    assert gp.invoice(db, "inv-1")["status"] == "paid"
