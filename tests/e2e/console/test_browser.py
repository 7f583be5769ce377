"""A finance user walks the console in a real browser (Chromium, Playwright), through the dev IAP proxy.

The console runs on the Firestore and Storage emulators behind ``devtools.iap_proxy`` (which signs
the IAP assertion), exactly as under ``make serve``. Each step asserts what the page shows and what
Firestore holds, and saves a screenshot of the page under ``.dev/screenshots/``.

``test_finance_user_reviews_runs_pays_and_exports`` walks the runs, the queue, the overdue list, a
payment, the AR aging CSV and a run's errors by stage; ``test_finance_user_corrects_and_finalizes_drafts``
walks the review-and-correction actions (contract, "Review and correction": ``add_line_item``,
``finalize`` of many, ``create_credit_note``), which the console sends through ``billing_admin``'s
dispatcher (``billing.runs.admin_actions.dispatch``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore
from playwright.sync_api import Browser, Page, expect, sync_playwright

from billing.console import create_app
from billing.console.settings import ConsoleSettings
from billing.http.auth.iap import IapKeys, IapSettings
from billing.runs.anniversary import run_generate_invoices
from billing.runs.month_close import run_month_close
from billing.runs.shell import RunContext
from billing.store.firestore_store import BillingStore
from billing.store.reporting import ReportingStore
from devtools import iap_proxy
from tests import factories as f
from tests import getting_paid as gp
from tests.conftest import REPO

T = gp.T
FINANCE = "finance@acme.test"
AUDIENCE = "/projects/123/locations/europe-west2/services/billing-console"
SHOTS = REPO / ".dev" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ANCHOR = datetime(2026, 10, 1, 9, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, 9, tzinfo=UTC)


def seed(db: firestore.Client) -> None:
    """Acme with three anniversary drafts in review, one open invoice, and two recorded runs."""
    gp.seed_tenant(db, email=False, admins=[FINANCE], grace_period_hours=72)
    f.plan(db, T, "pro", [{"type": "fixed", "description": "Pro plan", "unit_amount_decimal": "5000"}])
    for name in ("alice", "bob", "carol"):
        f.customer(db, T, name, "GB", name=f"{name.title()} Ltd")
        f.subscription(
            db,
            T,
            f"sub-{name}",
            name,
            "pro",
            started_at=ANCHOR,
            billing_time="anniversary",
            current_period_start=ANCHOR,
            current_period_end=PERIOD_END,
        )
    store = BillingStore(db)
    drafts = RunContext(run_id="run-drafts", now=PERIOD_END.replace(hour=10), dry_run=False, store=store)
    assert run_generate_invoices(drafts, T, None).counters["generated"] == 3
    # A calendar subscription on a plan that does not exist: the month close records its error.
    f.customer(db, T, "dora", "GB", name="Dora Ltd")
    f.subscription(db, T, "sub-dora", "dora", "missing-plan")
    close = RunContext(run_id="run-close", now=datetime(2026, 11, 2, tzinfo=UTC), dry_run=False, store=store)
    assert run_month_close(close, T, "2026-10").errors_by_stage["pricing"] == 1
    gp.seed_invoice(
        db, "inv-open", "alice", number="ACME-2026-000100", due_at=datetime(2026, 9, 1, tzinfo=UTC)
    )


@pytest.fixture
def console(db: firestore.Client) -> Iterator[str]:
    """The console behind the dev IAP proxy signing for FINANCE; yields the proxy's URL."""
    key = iap_proxy.IapKey.generate()
    settings = ConsoleSettings(
        iap=IapSettings(audience=AUDIENCE, certs_url="http://unused"),
        secret_key="browser-test-secret-0123456789abcdef",
        allowed_principals=frozenset({"ops@platform.test"}),
        run_mode="http",
    )
    app = create_app(
        settings, store_factory=lambda: ReportingStore(db), keys=IapKeys(fetch=lambda url: key.jwks())
    )
    server, upstream = iap_proxy.serve_wsgi(app)
    proxy = iap_proxy.serve(key, upstream, AUDIENCE, FINANCE)
    try:
        yield f"http://127.0.0.1:{proxy.server_port}"
    finally:
        proxy.shutdown()
        server.shutdown()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def invoices(db: firestore.Client) -> dict[str, dict[str, Any]]:
    return f.invoices(db, T)


def test_finance_user_reviews_runs_pays_and_exports(
    db: firestore.Client, console: str, browser: Browser, tmp_path: Path
) -> None:
    seed(db)
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.goto(f"{console}/")
    expect(page.locator("h1")).to_contain_text("Runs")
    expect(page.locator("header .who")).to_contain_text(FINANCE)
    shot(page, "01-runs")

    page.get_by_role("link", name="Drafts", exact=True).click()
    expect(page.locator("h1")).to_contain_text("Drafts awaiting review")
    expect(page.locator("tbody tr")).to_have_count(3)
    expect(page.get_by_role("button", name="Finalize", exact=True)).to_be_visible()
    shot(page, "02-drafts")

    page.get_by_role("link", name="Overdue", exact=True).click()
    row = page.locator("tbody tr", has_text="ACME-2026-000100")
    expect(row.locator("td.num").last).to_have_text("£120.00")
    expect(row).to_contain_text("none")
    shot(page, "03-overdue")
    row.get_by_role("link").click()

    expect(page.locator("h1")).to_contain_text("Invoice ACME-2026-000100")
    page.get_by_label("Amount (GBP)").fill("")
    page.get_by_role("button", name="Mark paid").click()
    expect(page.locator(".error")).to_contain_text("Amount is required")
    assert invoices(db)["inv-open"]["status"] == "open"  # the refused form wrote nothing
    page.get_by_label("Amount (GBP)").fill("120.00")
    page.get_by_label("Reference").fill("BACS 4471")
    page.get_by_role("button", name="Mark paid").click()
    expect(page.locator(".notice")).to_have_text("Payment recorded.")
    expect(page.locator("h1 .badge")).to_have_text("paid")
    stored = invoices(db)["inv-open"]
    assert stored["status"] == "paid" and stored["amount_paid"] == 12000 and stored["amount_due"] == 0
    assert stored["history"][-1]["actor"] == FINANCE
    shot(page, "04-invoice-paid")

    gp.seed_invoice(db, "inv-late", "bob", number="ACME-2026-000101", due_at=datetime(2026, 7, 1, tzinfo=UTC))
    page.get_by_role("link", name="Exports", exact=True).click()
    shot(page, "05-exports")
    aging = page.locator(".panel", has_text="AR aging")
    with page.expect_download() as download:
        aging.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "aging.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(path.open(newline="")))
    open_due = sum(d["amount_due"] for d in invoices(db).values() if d["status"] == "open")
    assert sum(Decimal(r["total"]) for r in rows) == Decimal(open_due) / 100 == Decimal("120.00")
    assert [(r["customer_id"], r["days_90_plus"]) for r in rows] == [("bob", "120.00")]

    page.get_by_role("link", name="Runs", exact=True).click()
    page.locator("tbody tr", has_text="monthly_billing").get_by_role("link", name="Details").click()
    expect(page.locator("h1")).to_contain_text("monthly_billing")
    expect(page.locator(".stat.bad")).to_have_text("pricing1")
    expect(page.locator("table").last).to_contain_text("missing-plan")
    shot(page, "06-run-detail")
    record = db.document(f"tenants/{T}/billing_runs/run-close").get().to_dict() or {}
    assert record["errors_by_stage"]["pricing"] == 1


def test_finance_user_corrects_and_finalizes_drafts(
    db: firestore.Client, console: str, browser: Browser
) -> None:
    seed(db)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{console}/drafts?tenant={T}")
    drafts = sorted(i for i, d in invoices(db).items() if d["status"] == "draft")
    assert len(drafts) == 3
    page.get_by_role("link", name=drafts[0], exact=True).click()
    page.get_by_label("Description").fill("Loyalty discount")
    page.get_by_label("Quantity").fill("1")
    page.get_by_label("Unit amount (GBP, negative for a discount)").fill("-10.00")
    page.get_by_role("button", name="Add line").click()
    expect(page.locator(".notice")).to_have_text("Line added.")
    expect(page.locator("tbody").first).to_contain_text("Loyalty discount")
    custom = [line for line in invoices(db)[drafts[0]]["lines"] if line.get("kind") == "custom"]
    assert [(c["description"], c["amount"]) for c in custom] == [("Loyalty discount", -1000)]
    shot(page, "07-draft-discount")

    page.get_by_role("link", name="Drafts", exact=True).click()
    for invoice_id in drafts[:2]:
        page.get_by_label(f"select {invoice_id}").check()
    page.get_by_role("button", name="Finalize", exact=True).click()
    expect(page.locator(".notice")).to_have_text("2 draft(s) finalized.")
    expect(page.locator("tbody tr")).to_have_count(1)
    shot(page, "08-drafts-finalized")
    stored = invoices(db)
    finalized = [stored[i] for i in drafts[:2]]
    assert [d["status"] for d in finalized] == ["open", "open"]
    assert finalized[0]["number"] < finalized[1]["number"]  # numbered in the list's order
    assert stored[drafts[0]]["total"] == (5000 - 1000) * 12 // 10

    page.goto(f"{console}/invoices/{T}/{drafts[1]}")
    panel = page.locator(".panel", has_text="Credit note")
    panel.get_by_label("Reason").select_option("order_change")
    panel.get_by_label("Amount before tax (GBP; its tax is credited too)").fill("6.00")
    panel.get_by_role("button", name="Issue credit note").click()
    expect(page.locator(".notice")).to_have_text("Credit note issued.")
    notes = [s.to_dict() or {} for s in db.collection(f"tenants/{T}/credit_notes").stream()]
    # 6.00 taken from the lines, and the tax charged on it (20 %) credited with it.
    assert [(n["invoice_id"], n["subtotal"], n["tax"], n["total"], n["reason"]) for n in notes] == [
        (drafts[1], 600, 120, 720, "order_change")
    ]
    assert invoices(db)[drafts[1]]["amount_due"] == 6000 - 720
    expect(page.locator("#credit-notes")).to_contain_text(str(notes[0]["number"]))
    shot(page, "09-credit-note")
    page.get_by_role("link", name="Credit notes", exact=True).click()
    expect(page.locator("tbody tr").first).to_contain_text(str(notes[0]["number"]))
    expect(page.locator("tbody tr").first.locator("td.num").last).to_have_text("£7.20")
    shot(page, "10-credit-notes")
