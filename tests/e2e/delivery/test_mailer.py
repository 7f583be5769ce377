"""Email: settings, templates, a real STARTTLS + AUTH SMTP server, invoice delivery once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore, storage

from billing.delivery.mailer import (
    Mailer,
    SmtpSettings,
    build_message,
    invoice_values,
    render,
)
from billing.delivery.outbox import Services, deliver_finalized_invoices
from billing.errors import DataError, EmailError, Misconfigured
from billing.pricing.periods import utc_now
from billing.records import Customer, Tenant
from billing.store.firestore_store import BillingStore
from tests import factories as f
from tests import getting_paid as gp
from tests.conftest import TEST_BUCKET
from tests.smtp_server import PASSWORD, SmtpServer

T = gp.T
smtp = pytest.fixture(gp.smtp_fixture, name="smtp")

BASE_ENV = {"SMTP_HOST": "smtp.example.com", "SMTP_FROM": "billing@example.com"}


def tenant(**raw: Any) -> Tenant:
    return Tenant.parse(
        T,
        {
            "name": "Acme",
            "status": "active",
            "timezone": "Europe/London",
            "currency": "GBP",
            "invoice_prefix": "ACME",
            "payment_terms_days": 14,
            "tax_rates": {},
            **raw,
        },
    )


def test_settings_from_environment() -> None:
    settings = SmtpSettings.from_env(BASE_ENV)
    assert (settings.port, settings.starttls, settings.username) == (587, True, None)
    full = SmtpSettings.from_env(
        {
            **BASE_ENV,
            "SMTP_PORT": "2525",
            "SMTP_STARTTLS": "false",
            "SMTP_USERNAME": "u",
            "SMTP_PASSWORD": "s3cret",
        }
    )
    assert (full.port, full.starttls, full.username) == (2525, False, "u")
    assert "s3cret" not in repr(full)
    for env, message in (
        ({"SMTP_FROM": "a@b.c"}, "SMTP_HOST"),
        ({"SMTP_HOST": "h"}, "SMTP_FROM"),
        ({**BASE_ENV, "SMTP_STARTTLS": "maybe"}, "true or false"),
        ({**BASE_ENV, "SMTP_PORT": "x"}, "numbers"),
        ({**BASE_ENV, "SMTP_USERNAME": "u"}, "SMTP_PASSWORD"),
    ):
        with pytest.raises(Misconfigured, match=message):
            SmtpSettings.from_env(env)


def sample_invoice(**overrides: Any) -> dict[str, Any]:
    data = {
        "invoice_id": "sub-1-20261001",
        "number": "ACME-2026-000042",
        "currency": "GBP",
        "total": 153000,
        "amount_due": 153000,
        "amount_paid": 0,
        "period_start": datetime(2026, 9, 30, 23, tzinfo=UTC),
        "period_end": datetime(2026, 11, 1, tzinfo=UTC),
        "issued_at": datetime(2026, 11, 1, 9, tzinfo=UTC),
        "due_at": datetime(2026, 11, 15, 9, tzinfo=UTC),
        "customer": {"id": "c1", "name": "Zoë <Corp> & Co", "email": "zoe@example.com"},
    }
    data.update(overrides)
    return data


def test_templates_format_amounts_dates_and_escape_html() -> None:
    values = invoice_values(tenant(), sample_invoice())
    rendered = render("invoice", values)
    assert rendered.subject == ("Invoice ACME-2026-000042 from Acme: £1,530.00 due on 15 November 2026")
    assert "Dear Zoë <Corp> & Co," in rendered.text
    assert "1 October 2026 to 31 October 2026" in rendered.text  # end exclusive, London time
    assert "Zoë &lt;Corp&gt; &amp; Co" in rendered.html and "<Corp>" not in rendered.html
    yen = invoice_values(tenant(currency="JPY"), sample_invoice(currency="JPY", total=1500, amount_due=1500))
    assert yen["amount_due"] == "JP¥1,500"  # CLDR en_GB; no decimals for yen
    for kind, extra in (
        ("reminder", {"days_overdue": "7 days"}),
        ("suspension", {"days_overdue": "21 days", "suspension_reason": "r"}),
    ):
        out = render(kind, {**values, **extra})
        assert "£1,530.00" in out.text and "£1,530.00" in out.html
    assert "7 days overdue" in render("reminder", {**values, "days_overdue": "7 days"}).text


def test_message_structure_and_stable_message_id() -> None:
    settings = SmtpSettings.from_env(BASE_ENV)
    t = tenant(email={"enabled": True, "from": "billing@acme.test"}, email_address=None)
    values = invoice_values(t, sample_invoice())
    one = build_message(
        "invoice",
        tenant=t,
        to="zoe@example.com",
        values=values,
        settings=settings,
        message_key="k1",
        attachment=("A.pdf", b"%PDF-1"),
    )
    two = build_message(
        "invoice", tenant=t, to="zoe@example.com", values=values, settings=settings, message_key="k1"
    )
    assert one["Message-ID"] == two["Message-ID"] and one["Message-ID"].endswith("@example.com>")
    assert one["From"] == "Acme <billing@acme.test>"
    assert one.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in one.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
    ]


def test_sends_over_starttls_with_login(smtp: SmtpServer) -> None:
    mailer = Mailer.from_env()
    t = tenant(email={"enabled": True})
    message = build_message(
        "invoice",
        tenant=t,
        to="zoe@example.com",
        values=invoice_values(t, sample_invoice()),
        settings=mailer.settings,
        message_key="k",
        attachment=("ACME-2026-000042.pdf", b"%PDF-1.4 test"),
    )
    message_id = mailer.send(message)
    (received,) = smtp.messages
    assert received.tls and received.authenticated
    assert received.rcpt_tos == ["zoe@example.com"] and received.mail_from == "billing@mail.test"
    assert received.message["Message-ID"] == message_id
    assert "£1,530.00" in received.text() and "£1,530.00" in received.html()
    assert received.attachments() == [("ACME-2026-000042.pdf", "application/pdf", b"%PDF-1.4 test")]


def test_failures_are_clear_and_never_show_the_password(
    smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tenant()
    settings = SmtpSettings.from_env({**smtp.env(), "SMTP_PASSWORD": "wrong-" + PASSWORD})
    message = build_message(
        "reactivation",
        tenant=t,
        to="x@example.com",
        values={"tenant_name": "Acme", "customer_name": "X", "support_line": "", "seller_footer": ""},
        settings=settings,
        message_key="k",
    )
    with pytest.raises(EmailError, match="535") as info:
        Mailer(settings).send(message)
    assert PASSWORD not in info.value.message
    smtp.fail_next(1)
    with pytest.raises(EmailError, match="451"):
        Mailer(SmtpSettings.from_env(smtp.env())).send(message)
    down = SmtpSettings.from_env({**smtp.env(), "SMTP_PORT": "1"})
    with pytest.raises(EmailError, match="failed"):
        Mailer(down).send(message)
    assert smtp.messages == []


# -- delivery of new invoices ---------------------------------------------------------------------
def seed(db: firestore.Client, **tenant_fields: Any) -> tuple[BillingStore, Tenant]:
    gp.seed_tenant(db, **tenant_fields)
    f.customer(db, T, "alice", "GB", name="Alice Ltd")
    f.customer(db, T, "bob", "GB", name="Bob")
    store = BillingStore(db)
    return store, store.get_tenant(T)


def test_new_invoice_email_with_stored_pdf_once(
    db: firestore.Client, gcs: storage.Client, smtp: SmtpServer
) -> None:
    store, t = seed(db)
    blob = gcs.bucket(TEST_BUCKET).blob(f"{T}/2026-10/A-1.pdf")
    blob.upload_from_string(b"%PDF-1.4 stored", content_type="application/pdf")
    gp.seed_invoice(db, "inv-a", "alice", number="A-1", pdf_uri=f"gs://{TEST_BUCKET}/{T}/2026-10/A-1.pdf")
    gp.seed_invoice(db, "inv-b", "bob", number="A-2")  # no PDF yet: rendered on the fly
    gp.seed_invoice(db, "inv-d", "bob", status="draft")
    now = utc_now()
    ids = ["inv-a", "inv-b", "inv-d", "missing"]
    assert deliver_finalized_invoices(store, t, ids, now, "run-1") == []
    by_to = {m.rcpt_tos[0]: m for m in smtp.messages}
    assert sorted(by_to) == ["alice@example.com", "bob@example.com"]
    alice = by_to["alice@example.com"]
    assert alice.attachments() == [("A-1.pdf", "application/pdf", b"%PDF-1.4 stored")]
    assert alice.message["From"] == "Acme Billing <billing@acme.test>"
    assert alice.message["Reply-To"] == "billing@acme.test"
    assert "Alice Ltd" in alice.text() and "£120.00" in alice.subject
    (name, content_type, data) = by_to["bob@example.com"].attachments()[0]
    assert (name, content_type) == ("A-2.pdf", "application/pdf") and data.startswith(b"%PDF")
    doc = gp.invoice(db, "inv-a")
    assert doc["email_sent_at"] and doc["email_to"] == "alice@example.com"
    assert doc["delivery_pending"] is False and doc["delivered_at"]
    assert [h["action"] for h in doc["history"]] == ["email_sent"]
    note = db.document(f"tenants/{T}/notifications/inv-a.invoice").get().to_dict() or {}
    assert note["status"] == "sent" and note["attempts"] == 1
    assert "delivery_pending" not in gp.invoice(db, "inv-d")

    before = gp.invoice(db, "inv-a")
    assert deliver_finalized_invoices(store, t, ids, utc_now(), "run-2") == []
    assert len(smtp.messages) == 2
    assert gp.invoice(db, "inv-a") == before


def test_failed_email_is_reported_then_retried_once(db: firestore.Client, smtp: SmtpServer) -> None:
    store, t = seed(db)
    gp.seed_invoice(db, "inv-a", "alice")
    smtp.fail_next(1)
    failures = deliver_finalized_invoices(store, t, ["inv-a"], utc_now(), "r1")
    assert len(failures) == 1 and failures[0][0] == "inv-a" and "451" in failures[0][1]
    doc = gp.invoice(db, "inv-a")
    assert doc["delivery_pending"] is True and "email_sent_at" not in doc
    note = db.document(f"tenants/{T}/notifications/inv-a.invoice").get().to_dict() or {}
    assert note["status"] == "failed" and "451" in note["last_error"]
    assert smtp.messages == []
    assert deliver_finalized_invoices(store, t, ["inv-a"], utc_now(), "r2") == []
    assert len(smtp.messages) == 1
    assert deliver_finalized_invoices(store, t, ["inv-a"], utc_now(), "r3") == []
    assert len(smtp.messages) == 1
    note = db.document(f"tenants/{T}/notifications/inv-a.invoice").get().to_dict() or {}
    assert note["status"] == "sent" and note["attempts"] == 2


def test_concurrent_deliveries_send_one_email(db: firestore.Client, smtp: SmtpServer) -> None:
    store, t = seed(db)
    gp.seed_invoice(db, "inv-a", "alice")
    results = f.concurrently(
        6, lambda: deliver_finalized_invoices(BillingStore(db), t, ["inv-a"], utc_now(), "concurrent")
    )
    assert len(smtp.messages) == 1
    # A run that found the email in flight reports it and leaves the invoice pending for later.
    assert all(not r or "another run" in r[0][1] for r in results)
    deliver_finalized_invoices(store, t, ["inv-a"], utc_now(), "after")
    assert len(smtp.messages) == 1
    assert gp.invoice(db, "inv-a")["delivery_pending"] is False


def test_email_disabled_and_missing_configuration(
    db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, t = seed(db, email=False)
    gp.seed_invoice(db, "inv-a", "alice")
    assert deliver_finalized_invoices(store, t, ["inv-a"], utc_now(), "r") == []
    assert "delivery_pending" not in gp.invoice(db, "inv-a")
    store, t = seed(db, email=True)
    monkeypatch.delenv("SMTP_HOST", raising=False)
    failures = deliver_finalized_invoices(store, t, ["inv-a"], utc_now(), "r", services=Services())
    assert failures == [("inv-a", "email: SMTP_HOST is not set: email cannot be sent")]


# -- issue 8 item 13: one addr-spec per customer, checked again when a message is built -----------
BAD_EMAILS = ["a@x\r\nBcc: y", "a@x, evil@y", "not an email"]
ALSO_BAD = [
    "a@x.com\r\nBcc: evil@y.com",
    "a@x.com, evil@y.com",
    "a@x.com;evil@y.com",
    "Bob <a@x.com>",
    "<a@x.com>",
    "a@x",
    "a@x.com (c)",
    "(c)a@x.com",
    " a@x.com",
    "a@x.com ",
    "a@x.com\n",
    "a@x.com\x00",
    "a\tb@x.com",
    "a..b@x.com",
    ".a@x.com",
    "a@-x.com",
    "a@x..com",
    "a@x.com.",
    '"a b"@x.com',
    "a@[1.2.3.4]",
    "üser@x.com",
    "a@müller.de",
    "a" * 65 + "@x.com",
    "a@" + "b" * 250 + ".com",
    "a@x.123",
    "a@@x.com",
    "@x.com",
    "a@",
    42,
    ["a@x.com"],
]
GOOD_EMAILS = [
    "alice@example.com",
    "first.last+tag@sub.example.co.uk",
    "o'neil@example.ie",
    "x_y-z@xn--mller-kva.de",
    "UPPER@Example.COM",
    "1@2.io",
]


@pytest.mark.parametrize("bad", BAD_EMAILS + ALSO_BAD, ids=lambda v: repr(v)[:24])
def test_a_customer_email_must_be_one_address(bad: Any) -> None:
    with pytest.raises(DataError) as info:
        Customer.parse("mallory", {"name": "Mallory", "status": "active", "email": bad})
    assert info.value.code == "invalid_email"
    assert "customers/mallory" in info.value.message
    # The message describes the problem without repeating the address (it goes to logs).
    assert not (isinstance(bad, str) and bad.strip() and bad in info.value.message)


@pytest.mark.parametrize("good", GOOD_EMAILS)
def test_plain_addresses_are_accepted_as_they_are(good: str) -> None:
    assert Customer.parse("c", {"name": "C", "status": "active", "email": good}).email == good


@pytest.mark.parametrize("absent", [{}, {"email": None}, {"email": ""}])
def test_a_customer_may_have_no_email(absent: dict[str, Any]) -> None:
    assert Customer.parse("c", {"name": "C", "status": "active", **absent}).email is None


@pytest.mark.parametrize("to", BAD_EMAILS + ALSO_BAD[:8], ids=lambda v: repr(v)[:24])
def test_build_message_refuses_a_recipient_that_is_not_one_address(to: str) -> None:
    """The last line of defence: an address that reached the mailer unchecked is refused."""
    settings = SmtpSettings.from_env(BASE_ENV)
    t = tenant(email={"enabled": True, "from": "billing@acme.test"})
    with pytest.raises(DataError) as info:
        build_message(
            "invoice",
            tenant=t,
            to=to,
            values=invoice_values(t, sample_invoice()),
            settings=settings,
            message_key="k1",
        )
    assert info.value.code == "invalid_email"


@pytest.mark.parametrize("bad", BAD_EMAILS, ids=repr)
def test_a_stored_snapshot_with_a_bad_address_is_not_sent(
    db: firestore.Client, smtp: SmtpServer, bad: str
) -> None:
    """An invoice stored before addresses were checked, whose customer now has no email."""
    store, t = seed(db)
    f.customer(db, T, "carol", "GB", email=None)
    gp.seed_invoice(
        db,
        "inv-c",
        "carol",
        customer={"id": "carol", "name": "Carol", "email": bad, "address": {}, "tax_id": None},
    )
    failures = deliver_finalized_invoices(store, t, ["inv-c"], utc_now(), "r1")
    assert [invoice_id for invoice_id, _ in failures] == ["inv-c"]
    assert "not one email address" in failures[0][1]
    assert smtp.messages == []
    assert "email_sent_at" not in gp.invoice(db, "inv-c")
