"""Issue 8 item 13: a customer email is one plain address, or nothing is sent to it.

Through the HTTP functions: the month close reports the subscription of a customer whose email
is not one address in ``errors`` (``invalid_email``) and bills the others; ``resend_email``
answers 422 ``invalid_email`` and writes and sends nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore, storage

from tests import factories as f
from tests import getting_paid as gp
from tests.smtp_server import SmtpServer

T = gp.T
BAD_EMAILS = ["a@x\r\nBcc: y", "a@x, evil@y", "not an email"]
smtp = pytest.fixture(gp.smtp_fixture, name="smtp")


@pytest.mark.parametrize("bad", BAD_EMAILS, ids=repr)
def test_month_close_reports_a_customer_whose_email_is_not_one_address(
    db: firestore.Client, gcs: storage.Client, call_function: Any, smtp: SmtpServer, bad: str
) -> None:
    gp.seed_tenant(db, email=True)
    f.plan(db, T, "pro", [{"type": "fixed", "description": "Pro plan", "unit_amount_decimal": "4900"}])
    f.customer(db, T, "alice", "GB")
    f.customer(db, T, "mallory", "GB", email=bad)
    f.subscription(db, T, "sub-alice", "alice", "pro")
    f.subscription(db, T, "sub-mallory", "mallory", "pro")
    status, body = call_function("monthly_billing", {"month": "2026-10"}, tenant=T)
    assert status == 200, body
    assert body["generated"] == 1
    (error,) = body["errors"]
    assert (error["subscription_id"], error["code"]) == ("sub-mallory", "invalid_email")
    assert bad not in error["error"]
    assert sorted(f.invoices(db, T)) == ["sub-alice-20261001"]
    assert [m.rcpt_tos for m in smtp.messages] == [["alice@example.com"]]


@pytest.fixture
def admin(call_function: Any, token: Any) -> Any:
    def call(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token(email='admin@example.com')}"}
        result: tuple[int, dict[str, Any]] = call_function("billing_admin", body, tenant=T, headers=headers)
        return result

    return call


@pytest.mark.parametrize("where", ["customer", "snapshot"])
@pytest.mark.parametrize("bad", BAD_EMAILS, ids=repr)
def test_resend_email_to_an_address_that_is_not_one_is_422(
    db: firestore.Client, admin: Any, smtp: SmtpServer, bad: str, where: str
) -> None:
    """The customer's email is bad; or they have none and the invoice's snapshot is bad."""
    gp.seed_tenant(db, email=True)
    f.customer(db, T, "mallory", "GB", email=bad if where == "customer" else None)
    gp.seed_invoice(
        db,
        "inv-1",
        "mallory",
        customer={
            "id": "mallory",
            "name": "Mallory",
            "address": {},
            "tax_id": None,
            "email": "mallory@example.com" if where == "customer" else bad,
        },
    )
    before = f.all_documents(db, T)
    status, body = admin({"action": "resend_email", "invoice_id": "inv-1"})
    assert status == 422, body
    assert body["error"]["code"] == "invalid_email"
    assert bad not in body["error"]["message"]
    assert f.all_documents(db, T) == before
    assert smtp.messages == []
