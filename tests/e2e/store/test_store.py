"""The store's guarantees on the real emulator, without the run lease in front of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.cloud import firestore

from billing.pricing.invoicing import InvoiceDraft, build_invoice
from billing.pricing.periods import month_period
from billing.records import Customer, Plan, Subscription, Tenant
from billing.store.firestore_store import BillingStore
from tests import factories as f

NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)
TENANT = Tenant.parse(
    "t1",
    {
        "name": "T1",
        "status": "active",
        "timezone": "Europe/London",
        "currency": "GBP",
        "invoice_prefix": "T1",
        "payment_terms_days": 30,
        "tax_rates": {"GB": "20"},
    },
)
PLAN = Plan.parse(
    "p",
    {
        "currency": "GBP",
        "interval": "month",
        "charges": [{"type": "fixed", "description": "Fee", "unit_amount_decimal": "1234"}],
    },
)


def drafts(count: int) -> list[InvoiceDraft]:
    period = month_period(2026, 10, "Europe/London")
    out = []
    for i in range(count):
        customer = Customer.parse(
            f"c{i:03d}", {"name": f"C{i}", "status": "active", "address": {"country": "GB"}}
        )
        sub = Subscription.parse(
            f"s{i:03d}",
            {
                "customer_id": customer.id,
                "plan_id": "p",
                "status": "active",
                "billing_time": "calendar",
                "started_at": datetime(2020, 1, 1, tzinfo=UTC),
            },
        )
        out.append(
            build_invoice(
                tenant=TENANT,
                customer=customer,
                subscription=sub,
                plan=PLAN,
                meters={},
                period=period,
                usage={},
                usage_events=0,
            )
        )
    return out


def test_concurrent_creates_make_each_invoice_once_with_gapless_numbers(db: firestore.Client) -> None:
    batch = drafts(30)
    created: list[str] = []

    def create() -> None:
        result = BillingStore(db).create_invoices(
            TENANT, batch, now=NOW, run_id="r", finalize=True, batch_size=10
        )
        created.extend(invoice.id for invoice in result.created)

    f.concurrently(4, create)
    assert sorted(created) == sorted(d.invoice_id for d in batch)
    stored = {s.id: s.to_dict() or {} for s in db.collection("tenants/t1/invoices").stream()}
    assert len(stored) == 30
    numbers = sorted(doc["number"] for doc in stored.values())
    assert numbers == [f"T1-2026-{n:06d}" for n in range(1, 31)]
    # Finalization order: customers in order, so numbers follow the invoice ids.
    by_id = sorted(stored.items())
    assert [doc["sequence"] for _, doc in by_id] == list(range(1, 31))
    assert all(doc["total"] == 1234 + 247 for doc in stored.values())
    assert (db.document("tenants/t1/invoice_sequences/2026").get().to_dict() or {})["last"] == 30


def test_concurrent_finalizations_number_each_draft_once(db: firestore.Client) -> None:
    batch = drafts(12)
    BillingStore(db).create_invoices(TENANT, batch, now=NOW, run_id="r", finalize=False)
    finalized: list[str] = []

    def finalize() -> None:
        done = BillingStore(db).finalize_drafts(TENANT, batch, now=NOW, run_id="f", batch_size=5)
        finalized.extend(invoice.id for invoice in done)

    f.concurrently(3, finalize)
    assert sorted(finalized) == sorted(d.invoice_id for d in batch)
    stored = [s.to_dict() or {} for s in db.collection("tenants/t1/invoices").stream()]
    assert sorted(doc["sequence"] for doc in stored) == list(range(1, 13))
    assert {doc["status"] for doc in stored} == {"open"}


def test_lease_is_exclusive_released_and_expires(db: firestore.Client) -> None:
    store = BillingStore(db)
    token = store.acquire_lease("t1", "monthly_billing", "run-a", ttl=timedelta(minutes=5), wait=timedelta(0))
    assert token is not None
    assert (
        store.acquire_lease(
            "t1", "monthly_billing", "run-b", ttl=timedelta(minutes=5), wait=timedelta(seconds=0.3)
        )
        is None
    )
    store.release_lease("t1", "monthly_billing", token)
    again = store.acquire_lease("t1", "monthly_billing", "run-b", ttl=timedelta(seconds=0), wait=timedelta(0))
    assert again is not None
    # run-b's lease has already expired (ttl 0): run-c takes it over at once.
    taken = store.acquire_lease(
        "t1", "monthly_billing", "run-c", ttl=timedelta(minutes=5), wait=timedelta(seconds=2)
    )
    assert taken is not None
    lease = db.document("tenants/t1/run_leases/monthly_billing").get().to_dict() or {}
    assert lease["holder"] == "run-c"
    store.release_lease("t1", "monthly_billing", again)  # stale token: must not free run-c's
    assert db.document("tenants/t1/run_leases/monthly_billing").get().exists


def test_amounts_are_integers_in_minor_units() -> None:
    draft = drafts(1)[0]
    assert draft.lines[0].quantity == Decimal(1)
    assert (draft.subtotal, draft.tax, draft.total) == (1234, 247, 1481)


def test_concurrent_advances_move_each_subscription_once(db: firestore.Client) -> None:
    from billing.store.firestore_store import SubscriptionMove

    start, end = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 2, 15, tzinfo=UTC)
    moves = []
    for i in range(7):
        db.document(f"tenants/t1/subscriptions/a{i}").set(
            {"current_period_start": start, "current_period_end": end}
        )
        moves.append(SubscriptionMove(f"a{i}", end, end, datetime(2026, 3, 15, tzinfo=UTC), start))
    moved: list[int] = []

    def advance() -> None:
        moved.append(BillingStore(db).advance_subscriptions("t1", moves, now=NOW, batch_size=3))

    f.concurrently(3, advance)
    assert sum(moved) == 7
    for i in range(7):
        data = db.document(f"tenants/t1/subscriptions/a{i}").get().to_dict() or {}
        assert data["current_period_end"] == datetime(2026, 3, 15, tzinfo=UTC)
        assert data["billing_cycle_anchor"] == start


def test_an_explicit_month_skips_tenants_where_it_has_not_ended(db: firestore.Client) -> None:
    from billing.runs.month_close import run_month_close
    from billing.runs.shell import RunContext

    f.tenant(db, "london", timezone="Europe/London")
    f.tenant(db, "la", timezone="America/Los_Angeles")
    for tenant in ("london", "la"):
        f.plan(db, tenant, "p", [{"type": "fixed", "unit_amount_decimal": "100"}])
        f.customer(db, tenant, "c")
        f.subscription(db, tenant, "s", "c", "p")
    # 2026-11-01 02:00 UTC: October is over in London, not yet in Los Angeles (19:00 Oct 31).
    ctx = RunContext(
        run_id="r",
        now=datetime(2026, 11, 1, 2, tzinfo=UTC),
        dry_run=False,
        store=BillingStore(db),
        publish_pdfs=None,
    )
    report = run_month_close(ctx, None, "2026-10")
    assert report.generated == 1 and report.errors == []
    by_tenant = {t["tenant_id"]: t for t in report.tenants}
    assert by_tenant["la"]["skipped"] == "month_not_closed"
    assert by_tenant["london"]["generated"] == 1
    assert not list(db.collection("tenants/la/invoices").stream())
