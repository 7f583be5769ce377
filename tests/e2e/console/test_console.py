"""The console against the emulator: security (IAP, tenants, CSRF), pages, forms, exports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import flask
from google.cloud import firestore

from billing.pricing.money import format_money
from tests import factories as f
from tests import getting_paid as gp
from tests.console_support import (
    FINANCE,
    OPERATOR,
    OTHER_KEY,
    FakeRunner,
    as_user,
    console_app,
    csrf_token,
)
from tests.e2e.usage.scenario import utc
from tests.e2e.usage.test_fold_usage import FOLDED, seed_twins

T = gp.T


def seed(db: firestore.Client) -> None:
    gp.seed_tenant(db, email=False, admins=[FINANCE])
    f.tenant(db, "globex", name="Globex", admins=["boss@globex.test"])
    f.customer(db, T, "alice", "GB", name="Alice <script>alert(1)</script> Ltd")
    gp.seed_invoice(db, "inv-1", "alice", number="ACME-2026-000001")


def client(db: firestore.Client, **kwargs: object) -> flask.testing.FlaskClient:
    return console_app(db, **kwargs).test_client()  # type: ignore[arg-type]


def test_no_wrong_audience_or_wrong_signer_assertion_is_401(db: firestore.Client) -> None:
    seed(db)
    c = client(db)
    assert c.get("/runs").status_code == 401
    assert c.get("/runs", headers=as_user(OPERATOR, audience="/other")).status_code == 401
    assert c.get("/runs", headers=as_user(OPERATOR, key=OTHER_KEY)).status_code == 401
    assert c.get("/runs", headers={"X-Goog-IAP-JWT-Assertion": "not.a.jwt"}).status_code == 401
    assert c.get("/runs", headers=as_user(OPERATOR)).status_code == 200


def test_a_tenant_admin_sees_only_their_tenant(db: firestore.Client) -> None:
    seed(db)
    c = client(db)
    assert c.get("/invoices?tenant=acme", headers=as_user(FINANCE)).status_code == 200
    refused = c.get("/invoices?tenant=globex", headers=as_user(FINANCE))
    assert refused.status_code == 403 and b"tenant_not_allowed" in refused.data
    assert c.get("/invoices/globex/inv-1", headers=as_user(FINANCE)).status_code == 403
    assert c.get("/runs", headers=as_user("stranger@else.test")).status_code == 403


def test_pages_escape_what_they_show(db: firestore.Client) -> None:
    seed(db)
    page = client(db).get("/invoices?tenant=acme", headers=as_user(FINANCE)).get_data(as_text=True)
    assert "Alice &lt;script&gt;alert(1)&lt;/script&gt; Ltd" in page and "<script>" not in page
    assert "£120.00" in page and 'class="num"' in page and 'class="badge info"' in page


def test_a_post_without_the_csrf_token_is_403_and_writes_nothing(db: firestore.Client) -> None:
    seed(db)
    before = gp.invoice(db, "inv-1")
    answer = client(db).post("/invoices/acme/inv-1/void", data={"reason": "x"}, headers=as_user(FINANCE))
    assert answer.status_code == 403
    assert gp.invoice(db, "inv-1") == before


def test_a_form_with_a_bad_field_shows_the_error_with_400_and_writes_nothing(db: firestore.Client) -> None:
    seed(db)
    c = client(db)
    token = csrf_token(c.get("/invoices/acme/inv-1", headers=as_user(FINANCE)).get_data(as_text=True))
    before = gp.invoice(db, "inv-1")
    for amount in ("", "12.345", "abc", "-5"):
        answer = c.post(
            "/invoices/acme/inv-1/mark_paid",
            data={"csrf_token": token, "amount": amount},
            headers=as_user(FINANCE),
        )
        assert answer.status_code == 400, amount
        assert 'class="error"' in answer.get_data(as_text=True)
    answer = c.post(
        "/invoices/acme/inv-1/mark_paid",
        data={"csrf_token": token, "amount": "120.00", "paid_on": "2026-02-30"},
        headers=as_user(FINANCE),
    )
    assert answer.status_code == 400 and "Paid on must be a date" in answer.get_data(as_text=True)
    assert gp.invoice(db, "inv-1") == before


def test_mark_paid_goes_through_billing_admin_and_records_the_user(db: firestore.Client) -> None:
    seed(db)
    c = client(db)
    token = csrf_token(c.get("/invoices/acme/inv-1", headers=as_user(FINANCE)).get_data(as_text=True))
    answer = c.post(
        "/invoices/acme/inv-1/mark_paid",
        data={"csrf_token": token, "amount": "120.00", "reference": "BACS-1"},
        headers=as_user(FINANCE),
    )
    assert answer.status_code == 303
    stored = gp.invoice(db, "inv-1")
    assert stored["status"] == "paid" and stored["amount_paid"] == 12000
    assert stored["history"][-1]["actor"] == FINANCE
    page = c.get(answer.headers["Location"], headers=as_user(FINANCE)).get_data(as_text=True)
    assert "Payment recorded." in page and 'class="badge ok">paid' in page


def test_lists_are_paginated_past_50_rows(db: firestore.Client) -> None:
    seed(db)
    for n in range(2, 62):
        gp.seed_invoice(db, f"inv-{n}", "alice", number=f"ACME-2026-{n:06d}")
    c = client(db)
    first = c.get("/invoices?tenant=acme", headers=as_user(OPERATOR)).get_data(as_text=True)
    assert first.count("/invoices/acme/inv-") == 50 and "Page 1 of 2 (61 rows)" in first
    assert 'href="/invoices?tenant=acme&amp;page=2">Next' in first
    second = c.get("/invoices?tenant=acme&page=2", headers=as_user(OPERATOR)).get_data(as_text=True)
    assert second.count("/invoices/acme/inv-") == 11


def test_a_run_detail_shows_its_errors_by_stage(db: firestore.Client) -> None:
    seed(db)
    db.document(f"tenants/{T}/billing_runs/run-9").set(
        {
            "function": "monthly_billing",
            "status": "completed",
            "month": "2026-10",
            "started_at": datetime(2026, 11, 1, tzinfo=UTC),
            "finished_at": datetime(2026, 11, 1, 0, 1, tzinfo=UTC),
            "errors": 1,
            "errors_by_stage": {"pricing": 0, "storage": 0, "pdf": 0, "upload": 1, "stripe": 0, "email": 0},
            "error_details": [
                {"tenant_id": T, "invoice_id": "inv-1", "error": "PDF upload failed: 503", "stage": "upload"}
            ],
            "totals": {"GBP": 12000},
            "summary": {"generated": 3, "skipped": 0},
        }
    )
    c = client(db)
    listed = c.get("/runs?tenant=acme", headers=as_user(OPERATOR)).get_data(as_text=True)
    assert "/runs/acme/run-9" in listed
    page = c.get("/runs/acme/run-9", headers=as_user(OPERATOR)).get_data(as_text=True)
    assert "PDF upload failed: 503" in page and "£120.00" in page
    assert '<div class="stat bad">upload<b>1</b></div>' in page
    assert (
        c.get("/runs?run_id=run-9", headers=as_user(OPERATOR))
        .get_data(as_text=True)
        .count("/runs/acme/run-9")
        == 1
    )


def test_the_aging_csv_through_the_console_sums_to_the_store(db: firestore.Client) -> None:
    seed(db)
    gp.seed_invoice(db, "inv-2", "alice", due_at=datetime(2026, 9, 1, tzinfo=UTC))
    c = client(db, clock=lambda: datetime(2026, 12, 1, tzinfo=UTC))
    answer = c.get("/exports/acme/ar_aging.csv?as_of=2026-12-01", headers=as_user(FINANCE))
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [(r["customer_id"], r["days_1_30"], r["days_90_plus"], r["total"]) for r in rows] == [
        ("alice", "120.00", "120.00", "240.00")
    ]
    due = sum(gp.invoice(db, i)["amount_due"] for i in ("inv-1", "inv-2"))
    assert sum(Decimal(r["total"]) for r in rows) == Decimal(due) / 100
    bad = c.get("/exports/acme/invoice_register.csv?from=2026-13-01&to=2026-12-01", headers=as_user(FINANCE))
    assert bad.status_code == 400


def test_run_now_needs_a_dry_run_and_a_platform_principal(db: firestore.Client) -> None:
    seed(db)
    runner = FakeRunner()
    c = client(db, runner=runner)
    token = csrf_token(c.get("/schedule?tenant=acme", headers=as_user(OPERATOR)).get_data(as_text=True))
    page = c.post(
        "/schedule/monthly_billing/dry-run",
        data={"csrf_token": token, "tenant": "acme", "scope": "all"},
        headers=as_user(OPERATOR),
    ).get_data(as_text=True)
    assert "Dry run of monthly_billing" in page and ">Run now</button>" in page and "£123.45" in page
    refused = c.post(
        "/schedule/monthly_billing/run",
        data={"csrf_token": token, "tenant": "acme"},
        headers=as_user(OPERATOR),
    )
    assert refused.status_code == 400
    done = c.post(
        "/schedule/monthly_billing/run",
        data={"csrf_token": token, "tenant": "acme", "dry_run_seen": "monthly_billing"},
        headers=as_user(OPERATOR),
    )
    assert done.status_code == 303
    assert runner.calls == [("dry_run", "monthly_billing", None), ("run_now", "monthly_billing", None)]
    admin = client(db, runner=runner)
    admin_token = csrf_token(
        admin.get("/schedule?tenant=acme", headers=as_user(FINANCE)).get_data(as_text=True)
    )
    admin.post(
        "/schedule/dunning/dry-run",
        data={"csrf_token": admin_token, "scope": "all"},
        headers=as_user(FINANCE),
    )
    assert runner.calls[-1] == ("dry_run", "dunning", "acme")  # a tenant admin's dry run is scoped
    assert (
        admin.post(
            "/schedule/dunning/run",
            data={"csrf_token": admin_token, "dry_run_seen": "dunning"},
            headers=as_user(FINANCE),
        ).status_code
        == 403
    )


def test_a_draft_line_is_added_and_removed_from_its_page(db: firestore.Client) -> None:
    seed(db)
    gp.seed_invoice(db, "d-1", "alice", status="draft", number=None, finalized_at=None, issued_at=None)
    c = client(db)
    page = c.get("/invoices/acme/d-1", headers=as_user(FINANCE)).get_data(as_text=True)
    token = csrf_token(page)
    before = gp.invoice(db, "d-1")
    refused = c.post(
        "/invoices/acme/d-1/add_line",
        data={"csrf_token": token, "description": "Discount", "quantity": "1", "unit_amount": "ten"},
        headers=as_user(FINANCE),
    )
    assert refused.status_code == 400 and "Unit amount must be a number" in refused.get_data(as_text=True)
    assert gp.invoice(db, "d-1") == before
    added = c.post(
        "/invoices/acme/d-1/add_line",
        data={"csrf_token": token, "description": "Discount", "quantity": "1", "unit_amount": "-5.00"},
        headers=as_user(FINANCE),
    )
    assert added.status_code == 303
    (custom,) = [line for line in gp.invoice(db, "d-1")["lines"] if line.get("kind") == "custom"]
    assert custom["amount"] == -500
    page = c.get("/invoices/acme/d-1", headers=as_user(FINANCE)).get_data(as_text=True)
    assert ">Remove</button>" in page
    removed = c.post(
        "/invoices/acme/d-1/remove_line",
        data={"csrf_token": token, "line_id": custom["line_id"]},
        headers=as_user(FINANCE),
    )
    assert removed.status_code == 303
    stored = gp.invoice(db, "d-1")
    assert [line.get("kind") for line in stored["lines"]] == ["fixed"]
    assert [(h["action"], h["actor"]) for h in stored["history"]] == [
        ("add_line_item", FINANCE),
        ("remove_line_item", FINANCE),
    ]


def usage_panel(page: str, subscription_id: str) -> str:
    start = page.index(f'<section class="usage" id="usage-{subscription_id}">')
    return page[start : page.index("</section>", start)]


def test_a_customers_invoices_page_shows_the_current_usage_the_function_answers(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    seed(db)
    seed_twins(db, "Europe/London")
    now = utc(2026, 10, 31, 23, 30)
    clock.set(now)
    c = client(db, clock=lambda: now)
    for customer_id, subscription_ids in (("c1", ["s1"]), ("c3", ["s3", "s3b"])):
        page = c.get(f"/invoices?tenant={FOLDED}&customer={customer_id}", headers=as_user(OPERATOR))
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert html.count('<section class="usage"') == len(subscription_ids), customer_id
        for sub in subscription_ids:
            status, answer = call_function(
                "current_usage", {"customer_id": customer_id, "subscription_id": sub}, tenant=FOLDED
            )
            assert status == 200 and answer["amount"] > 0, answer
            panel = usage_panel(html, sub)
            for key in ("amount", "tax", "total"):
                shown = format_money(answer[key], "GBP", "en_GB")
                assert f'<td class="num usage-{key}">{shown}</td>' in panel, (sub, key)
            for charge in answer["charges"]:
                amount = format_money(charge["amount"], "GBP", "en_GB")
                assert (
                    f'<td class="num">{charge["events_count"]}</td><td class="num">{amount}</td>' in panel
                ), charge
            # October in London, shown in the tenant's timezone; as of now (GMT after Oct 25)
            assert "Period 2026-10-01 00:00 – 2026-11-01 00:00 (Europe/London)" in panel
            assert "as of 2026-10-31 23:30 GMT" in panel


def test_the_usage_panel_is_a_note_without_an_active_subscription_and_is_tenant_scoped(
    db: firestore.Client,
) -> None:
    seed(db)
    seed_twins(db, "Europe/London")
    c = client(db, clock=lambda: utc(2026, 10, 20, 12))
    for customer_id, note in (
        ("c2", "this customer has no active subscription"),  # s2 was canceled on Oct 17
        ("nobody", "no such customer"),
        ("c/1", "this is not a customer id"),
        ("<b>x</b>", "this is not a customer id"),
    ):
        page = c.get(
            "/invoices", query_string={"tenant": FOLDED, "customer": customer_id}, headers=as_user(OPERATOR)
        )
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and f"Current usage: {note}." in html, customer_id
        assert '<section class="usage"' not in html and "<b>x</b>" not in html
    refused = c.get(f"/invoices?tenant={FOLDED}&customer=c1", headers=as_user(FINANCE))
    assert refused.status_code == 403 and "Current usage" not in refused.get_data(as_text=True)
    acme = c.get("/invoices?tenant=acme&customer=alice", headers=as_user(FINANCE)).get_data(as_text=True)
    assert "Current usage: this customer has no active subscription." in acme
