"""Stripe: customers and invoices mirrored once, idempotency keys ours, retries, recovery."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from google.cloud import firestore

from billing.delivery.outbox import Services, deliver_finalized_invoices
from billing.delivery.stripe_billing import (
    StripeGateway,
    StripeSettings,
    idempotency_key,
    push_invoice,
    sync_status,
)
from billing.errors import DataError, StripeFailure
from billing.pricing.periods import utc_now
from billing.store.firestore_store import BillingStore
from tests import factories as f
from tests import getting_paid as gp
from tests.fake_stripe import API_KEY, FakeStripe

T = gp.T
fake_stripe = pytest.fixture(gp.stripe_fixture, name="fake_stripe")


def gateway(fake: FakeStripe, sleeps: list[float] | None = None) -> StripeGateway:
    record = sleeps if sleeps is not None else []
    return StripeGateway(
        StripeSettings(api_key=API_KEY, api_base=fake.url),
        base_delay=0.01,
        max_delay=0.05,
        sleep=record.append,
        timeout=5,
    )


def setup(db: firestore.Client, method: str = "send_invoice") -> tuple[BillingStore, Any]:
    gp.seed_tenant(db, email=False, stripe=True, collection_method=method)
    f.customer(db, T, "alice", "GB", name="Alice Ltd")
    store = BillingStore(db)
    return store, store.get_tenant(T)


def push(
    store: BillingStore, tenant: Any, db: firestore.Client, invoice_id: str, fake: FakeStripe, **kwargs: Any
) -> Any:
    fresh = {"invoice_id": invoice_id, **gp.invoice(db, invoice_id)}
    return push_invoice(store, tenant, fresh, kwargs.pop("gw", None) or gateway(fake), utc_now(), **kwargs)


def test_push_mirrors_the_invoice_and_records_every_step(
    db: firestore.Client, fake_stripe: FakeStripe
) -> None:
    store, tenant = setup(db)
    gp.seed_invoice(db, "inv-1", "alice", number="ACME-2026-000001")
    result = push(store, tenant, db, "inv-1", fake_stripe)
    assert result.steps == ["invoice_create", "lines", "finalize", "send"]

    (customer,) = fake_stripe.customers.values()
    assert customer["metadata"] == {"tenant_id": T, "customer_id": "alice"}
    assert customer["name"] == "Alice Ltd" and customer["email"] == "alice@example.com"
    assert customer["address"] == {"country": "GB"}
    (stripe_invoice,) = fake_stripe.invoices.values()
    assert stripe_invoice["metadata"] == {"tenant_id": T, "invoice_id": "inv-1", "number": "ACME-2026-000001"}
    assert stripe_invoice["number"] == "ACME-2026-000001"
    assert stripe_invoice["currency"] == "gbp"
    assert stripe_invoice["collection_method"] == "send_invoice"
    assert stripe_invoice["days_until_due"] == 14
    assert stripe_invoice["status"] == "open" and stripe_invoice["sent"] is True
    assert stripe_invoice["auto_advance"] is False
    lines = stripe_invoice["lines"]["data"]
    assert [(li["amount"], li["description"], li["metadata"]["line"]) for li in lines] == [
        (10000, "Pro plan", "0"),
        (2000, "Tax (20%)", "tax"),
    ]
    assert lines[0]["period"] == {"start": 1790809200, "end": 1793491200}
    assert stripe_invoice["total"] == 12000

    # Every POST carried one of our keys, derived from our ids.
    keys = [r.idempotency_key for r in fake_stripe.posts()]
    assert keys == [
        f"{T}:alice:customer_create",
        f"{T}:inv-1:invoice_create",
        f"{T}:inv-1:line_0",
        f"{T}:inv-1:line_tax",
        f"{T}:inv-1:invoice_finalize",
        f"{T}:inv-1:invoice_send",
    ]
    assert fake_stripe.violations == []

    ours = gp.invoice(db, "inv-1")
    assert ours["stripe_invoice_id"] == stripe_invoice["id"]
    assert set(ours["stripe"]["steps"]) == {"invoice_create", "lines", "finalize", "send"}
    assert ours["stripe"]["completed_at"] and ours["stripe"]["status"] == "open"
    assert ours["stripe"]["hosted_invoice_url"].endswith(stripe_invoice["id"])
    assert gp.customer(db, "alice")["stripe_customer_id"] == customer["id"]


def test_rerun_is_a_no_op_even_after_stripe_forgot_the_keys(
    db: firestore.Client, fake_stripe: FakeStripe
) -> None:
    store, tenant = setup(db)
    gp.seed_invoice(db, "inv-1", "alice")
    push(store, tenant, db, "inv-1", fake_stripe)
    count = len(fake_stripe.requests)
    fake_stripe.forget_keys()  # more than 24 hours later
    again = push(store, tenant, db, "inv-1", fake_stripe)
    assert again.skipped == "already_done" and again.steps == []
    assert len(fake_stripe.requests) == count
    assert len(fake_stripe.invoices) == 1 and len(fake_stripe.customers) == 1


def test_one_stripe_customer_per_customer(db: firestore.Client, fake_stripe: FakeStripe) -> None:
    store, tenant = setup(db)
    gp.seed_invoice(db, "inv-1", "alice")
    gp.seed_invoice(db, "inv-2", "alice")
    push(store, tenant, db, "inv-1", fake_stripe)
    push(store, tenant, db, "inv-2", fake_stripe)
    assert len(fake_stripe.customers) == 1
    assert len(fake_stripe.posts("/v1/customers")) == 1
    assert {i["customer"] for i in fake_stripe.invoices.values()} == set(fake_stripe.customers)


def test_charge_automatically_finalizes_with_auto_advance_and_is_not_sent(
    db: firestore.Client, fake_stripe: FakeStripe
) -> None:
    store, tenant = setup(db, "charge_automatically")
    gp.seed_invoice(db, "inv-1", "alice")
    result = push(store, tenant, db, "inv-1", fake_stripe)
    assert result.steps == ["invoice_create", "lines", "finalize"]
    (stripe_invoice,) = fake_stripe.invoices.values()
    assert stripe_invoice["collection_method"] == "charge_automatically"
    assert stripe_invoice["days_until_due"] is None
    assert stripe_invoice["auto_advance"] is True and stripe_invoice["sent"] is False
    create = fake_stripe.posts("/v1/invoices")[0]
    assert "days_until_due" not in create.params
    assert fake_stripe.posts(r"/v1/invoices/.*/send") == []


def test_rate_limits_server_errors_and_network_errors_are_retried_with_the_same_key(
    db: firestore.Client, fake_stripe: FakeStripe
) -> None:
    store, tenant = setup(db)
    gp.seed_invoice(db, "inv-1", "alice")
    fake_stripe.fail(r"^/v1/invoices$", status=429, times=2)
    fake_stripe.fail(r"^/v1/invoiceitems$", status=503, times=1)
    fake_stripe.fail(r"/finalize$", status=0, times=1)  # connection dropped
    sleeps: list[float] = []
    result = push(store, tenant, db, "inv-1", fake_stripe, gw=gateway(fake_stripe, sleeps))
    assert result.steps == ["invoice_create", "lines", "finalize", "send"]
    creates = [r for r in fake_stripe.requests if r.method == "POST" and r.path == "/v1/invoices"]
    assert [r.status for r in creates] == [429, 429, 200]
    assert {r.idempotency_key for r in creates} == {f"{T}:inv-1:invoice_create"}
    finalizes = [r for r in fake_stripe.requests if r.path.endswith("/finalize")]
    assert [r.status for r in finalizes] == [0, 200]
    assert len({r.idempotency_key for r in finalizes}) == 1
    assert len(fake_stripe.invoices) == 1
    assert len(fake_stripe.invoices[result.stripe_invoice_id]["lines"]["data"]) == 2
    assert len(sleeps) == 4 and all(0 <= s <= 0.05 for s in sleeps)


def test_retries_give_up_and_the_next_run_continues(db: firestore.Client, fake_stripe: FakeStripe) -> None:
    store, tenant = setup(db)
    gp.seed_invoice(db, "inv-1", "alice")
    fake_stripe.fail(r"/finalize$", status=500, times=5)
    with pytest.raises(StripeFailure, match="after 5 attempt"):
        push(store, tenant, db, "inv-1", fake_stripe)
    ours = gp.invoice(db, "inv-1")
    assert set(ours["stripe"]["steps"]) == {"invoice_create", "lines"}
    result = push(store, tenant, db, "inv-1", fake_stripe)
    assert result.steps == ["finalize", "send"]
    assert len(fake_stripe.invoices) == 1


def test_invalid_requests_are_not_retried(db: firestore.Client, fake_stripe: FakeStripe) -> None:
    store, tenant = setup(db)
    gp.seed_invoice(db, "inv-1", "alice")
    # Somebody used our key with other parameters: Stripe answers idempotency_error.
    client = stripe.StripeClient(API_KEY, base_addresses={"api": fake_stripe.url}, max_network_retries=0)
    other = client.v1.customers.create(params={"name": "x"}, options={"idempotency_key": "other"})
    client.v1.invoices.create(
        params={
            "customer": other.id,
            "currency": "gbp",
            "collection_method": "send_invoice",
            "days_until_due": 3,
        },
        options={"idempotency_key": f"{T}:inv-1:invoice_create"},
    )
    with pytest.raises(StripeFailure, match=r"after 1 attempt.*IdempotencyError"):
        push(store, tenant, db, "inv-1", fake_stripe)


def test_a_create_stripe_did_but_we_did_not_record_is_found_not_repeated(
    db: firestore.Client, fake_stripe: FakeStripe
) -> None:
    """A crash between Stripe's answer and our write, noticed more than 24 h later."""
    store, tenant = setup(db)
    gp.seed_invoice(db, "inv-1", "alice")
    fake_stripe.fail(r"^/v1/invoiceitems$", status=400, times=1)  # stop after the create
    with pytest.raises(StripeFailure):
        push(store, tenant, db, "inv-1", fake_stripe)
    sid = gp.invoice(db, "inv-1")["stripe_invoice_id"]
    # Forget what we recorded after the create, as if the process had died before writing it,
    # and let the keys expire.
    db.document(f"tenants/{T}/invoices/inv-1").update(
        {
            "stripe_invoice_id": firestore.DELETE_FIELD,
            "stripe.invoice_id": firestore.DELETE_FIELD,
            "stripe.steps": firestore.DELETE_FIELD,
        }
    )
    db.document(f"tenants/{T}/customers/alice").update({"stripe_customer_id": firestore.DELETE_FIELD})
    # One line made it to Stripe before the crash too.
    client = stripe.StripeClient(API_KEY, base_addresses={"api": fake_stripe.url})
    client.v1.invoice_items.create(
        params={
            "customer": fake_stripe.invoices[sid]["customer"],
            "invoice": sid,
            "amount": 10000,
            "currency": "gbp",
            "description": "Pro plan",
            "metadata": {"invoice_id": "inv-1", "line": "0"},
        },
        options={"idempotency_key": "k0"},
    )
    db.document(f"tenants/{T}/invoices/inv-1").update({"stripe.lines_attempted_at": utc_now()})
    fake_stripe.forget_keys()

    result = push(store, tenant, db, "inv-1", fake_stripe)
    assert result.stripe_invoice_id == sid
    assert len(fake_stripe.customers) == 1 and len(fake_stripe.invoices) == 1
    lines = fake_stripe.invoices[sid]["lines"]["data"]
    assert sorted(li["metadata"]["line"] for li in lines) == ["0", "tax"]
    assert fake_stripe.invoices[sid]["status"] == "open"


def test_a_total_that_differs_is_not_finalized(db: firestore.Client, fake_stripe: FakeStripe) -> None:
    store, tenant = setup(db)
    gp.seed_invoice(db, "inv-1", "alice", total=99999)
    with pytest.raises(DataError, match="not finalized"):
        push(store, tenant, db, "inv-1", fake_stripe)
    (stripe_invoice,) = fake_stripe.invoices.values()
    assert stripe_invoice["status"] == "draft"


def test_connected_account_header_and_tax_inclusive(db: firestore.Client, fake_stripe: FakeStripe) -> None:
    gp.seed_tenant(
        db, email=False, stripe={"enabled": True, "account": "acct_123", "use_invoice_number": False}
    )
    f.customer(db, T, "alice", "GB")
    store = BillingStore(db)
    tenant = store.get_tenant(T)
    gp.seed_invoice(db, "inv-1", "alice", tax_inclusive=True, total=10000, tax=1667)
    push(store, tenant, db, "inv-1", fake_stripe)
    assert {r.account for r in fake_stripe.requests} == {"acct_123"}
    (stripe_invoice,) = fake_stripe.invoices.values()
    assert [li["amount"] for li in stripe_invoice["lines"]["data"]] == [10000]
    assert stripe_invoice["number"].startswith("FAKE-")


def test_sync_status_void_uncollectible_pay_and_draft(db: firestore.Client, fake_stripe: FakeStripe) -> None:
    store, tenant = setup(db)
    gw = gateway(fake_stripe)
    for i in range(1, 4):
        gp.seed_invoice(db, f"inv-{i}", "alice")
        push(store, tenant, db, f"inv-{i}", fake_stripe)
    docs = {i: {"invoice_id": f"inv-{i}", **gp.invoice(db, f"inv-{i}")} for i in range(1, 4)}
    assert sync_status(tenant, docs[1], "void", gw) == "void"
    assert sync_status(tenant, docs[1], "void", gw) == "void"  # already: accepted
    assert sync_status(tenant, docs[2], "mark_uncollectible", gw) == "uncollectible"
    assert sync_status(tenant, docs[2], "pay", gw) == "paid"
    assert sync_status(tenant, docs[3], "pay", gw) == "paid"
    assert fake_stripe.invoices[docs[3]["stripe_invoice_id"]]["paid_out_of_band"] is True
    assert sync_status(tenant, {"invoice_id": "x"}, "void", gw) is None
    # A twin still in draft is deleted, not voided.
    gp.seed_invoice(db, "inv-4", "alice")
    fake_stripe.fail(r"/finalize$", status=400, times=1)
    with pytest.raises(StripeFailure):
        push(store, tenant, db, "inv-4", fake_stripe)
    draft = {"invoice_id": "inv-4", **gp.invoice(db, "inv-4")}
    assert sync_status(tenant, draft, "void", gw) == "deleted"
    assert draft["stripe_invoice_id"] not in fake_stripe.invoices
    assert fake_stripe.violations == []


def test_tenant_settings_are_validated() -> None:
    from billing.records import Tenant

    base = {
        "name": "A",
        "status": "active",
        "timezone": "UTC",
        "currency": "GBP",
        "invoice_prefix": "A",
        "payment_terms_days": 10,
        "tax_rates": {},
    }
    assert Tenant.parse("a", base).stripe.enabled is False
    config = Tenant.parse("a", {**base, "stripe": {"enabled": True}}).stripe
    assert (config.collection_method, config.days_until_due) == ("send_invoice", 10)
    with pytest.raises(DataError, match="collection_method"):
        Tenant.parse("a", {**base, "stripe": {"collection_method": "cash"}}).stripe  # noqa: B018
    with pytest.raises(DataError, match="days_until_due"):
        Tenant.parse("a", {**base, "stripe": {"days_until_due": -1}}).stripe  # noqa: B018
    assert idempotency_key("t", "i", "invoice_create") == "t:i:invoice_create"
    long = idempotency_key("t" * 200, "i" * 200, "invoice_create")
    assert len(long) <= 255 and long.endswith(":invoice_create")
    assert "sk_test" not in repr(StripeSettings(api_key=API_KEY))


def test_delivery_reports_a_missing_key_and_retries_later(
    db: firestore.Client, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, tenant = setup(db)
    gp.seed_invoice(db, "inv-1", "alice")
    monkeypatch.delenv("STRIPE_API_KEY")
    failures = deliver_finalized_invoices(store, tenant, ["inv-1"], utc_now(), "run-1")
    assert failures == [
        ("inv-1", "stripe: STRIPE_API_KEY is not set: Stripe is enabled for the tenant but cannot be called")
    ]
    assert gp.invoice(db, "inv-1")["delivery_pending"] is True
    assert fake_stripe.requests == []
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    assert deliver_finalized_invoices(store, tenant, ["inv-1"], utc_now(), "run-2", services=Services()) == []
    ours = gp.invoice(db, "inv-1")
    assert ours["delivery_pending"] is False and ours["delivered_at"]
    assert len(fake_stripe.invoices) == 1


def test_an_invoice_with_nothing_due_is_not_sent(db: firestore.Client, fake_stripe: FakeStripe) -> None:
    store, tenant = setup(db)
    gp.seed_invoice(
        db,
        "inv-0",
        "alice",
        tax=0,
        lines=[
            {
                "description": "Free tier",
                "quantity": "1",
                "unit_amount_decimal": "0",
                "amount": 0,
                "tax_rate": "20",
                "tax": 0,
                "kind": "fixed",
            }
        ],
    )
    result = push(store, tenant, db, "inv-0", fake_stripe)
    assert result.steps == ["invoice_create", "lines", "finalize"]
    (stripe_invoice,) = fake_stripe.invoices.values()
    assert stripe_invoice["status"] == "paid" and stripe_invoice["sent"] is False
    ours = gp.invoice(db, "inv-0")["stripe"]
    assert ours["completed_at"] and ours["sent"] is False and "send" in ours["steps"]


def test_stripe_amount_units_differ_from_iso_for_a_few_currencies() -> None:
    from billing.delivery.stripe_billing import from_stripe_amount, to_stripe_amount

    # ISK: zero-decimal in ISO 4217, sent to Stripe as a two-decimal amount.
    assert to_stripe_amount("isk", 5000) == 500000 and from_stripe_amount("ISK", 500000) == 5000
    # MGA: two decimals in ISO, zero-decimal at Stripe.
    assert to_stripe_amount("MGA", 150000) == 1500 and from_stripe_amount("MGA", 1500) == 150000
    with pytest.raises(DataError):
        to_stripe_amount("MGA", 150050)
    # KWD: three decimals both sides, but Stripe wants the last digit 0.
    assert to_stripe_amount("KWD", 1230) == 1230
    with pytest.raises(DataError):
        to_stripe_amount("KWD", 1234)
    assert to_stripe_amount("GBP", 1234) == 1234 and to_stripe_amount("JPY", 1234) == 1234


def test_an_amount_stripe_cannot_express_is_refused_before_any_request(
    db: firestore.Client, fake_stripe: FakeStripe
) -> None:
    # KWD has three decimals, but Stripe wants the last digit 0: 1.234 KWD cannot be sent. The
    # invoice is refused before the Stripe customer or draft exists (validate before calling out).
    store, tenant = setup(db)
    line = {
        "description": "Pro plan",
        "quantity": "1",
        "unit_amount_decimal": "1234",
        "amount": 1234,
        "tax_rate": "0",
        "tax": 0,
        "kind": "fixed",
    }
    gp.seed_invoice(db, "inv-kwd", "alice", lines=[line], tax=0, currency="KWD")
    with pytest.raises(DataError) as raised:
        push(store, tenant, db, "inv-kwd", fake_stripe)
    assert raised.value.code == "stripe_amount_unrepresentable"
    assert fake_stripe.requests == []
    assert "stripe" not in gp.invoice(db, "inv-kwd")
