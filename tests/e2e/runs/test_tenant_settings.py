"""A tenant's settings are parsed once, by ``Tenant.parse``, into typed fields (issue 9 item 2).

An invalid optional setting does not fail the tenant: its ``DataError`` is raised where that
setting is used, so a bad ``dunning`` map fails the tenant's dunning run, as it always did, and
not its month close. The last two tests run the real functions on the emulator.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from google.cloud import firestore

from billing.errors import DataError
from billing.records import (
    DunningPolicy,
    EmailSettings,
    NotificationSettings,
    SellerBlock,
    Tenant,
    TenantStripe,
)
from tests import factories as f

BASE: dict[str, Any] = {
    "name": "Acme",
    "status": "active",
    "timezone": "Europe/London",
    "currency": "GBP",
    "invoice_prefix": "ACME",
    "payment_terms_days": 14,
    "tax_rates": {"gb": "20"},
}


def tenant(**fields: Any) -> Tenant:
    return Tenant.parse("acme", {**BASE, **fields})


def test_absent_settings_take_their_defaults() -> None:
    t = tenant()
    assert t.dunning == DunningPolicy((1, 7, 14), 21, 60, enabled=True)
    assert t.stripe == TenantStripe(enabled=False, days_until_due=14) and not t.stripe_enabled
    assert t.email == EmailSettings(enabled=False)
    assert t.notifications == NotificationSettings(run_summary_to=(), on=("failed", "errors"))
    assert t.seller_block == SellerBlock(name="Acme")
    assert t.seller() == {"name": "Acme", "address_lines": [], "email": None, "tax_id": None}
    assert (t.locale, t.invoice_memo, t.month_close_review, t.admins) == ("en_GB", None, False, frozenset())
    assert t.tax_rates == {"GB": Decimal(20)}


def test_every_setting_is_typed() -> None:
    t = tenant(
        dunning={"reminder_days": [7, 1], "suspend_after_days": None, "enabled": True},
        stripe={
            "enabled": True,
            "collection_method": "charge_automatically",
            "account": "acct_1",
            "use_invoice_number": False,
        },
        email={"enabled": True, "from": "Acme Billing <billing@acme.test>", "reply_to": "help@acme.test"},
        notifications={"run_summary_to": ["ops@acme.test", "ops@acme.test"], "on": ["completed"]},
        legal_name="Acme Analytics Ltd",
        address_lines=["1 Main Street", "London"],
        tax_id="GB123",
        locale="de_DE",
        invoice_memo="Thank you.",
        month_close_review=True,
        admins=[" Ann@Acme.test ", "bob@acme.test", ""],
    )
    assert t.dunning == DunningPolicy((1, 7), None, 60, enabled=True)
    assert t.stripe == TenantStripe(
        enabled=True,
        collection_method="charge_automatically",
        days_until_due=14,
        account="acct_1",
        use_invoice_number=False,
    )
    assert t.stripe_enabled
    assert t.email == EmailSettings(
        enabled=True, sender="Acme Billing <billing@acme.test>", reply_to="help@acme.test"
    )
    assert t.notifications == NotificationSettings(("ops@acme.test",), ("completed",))
    assert t.seller() == {
        "name": "Acme Analytics Ltd",
        "address_lines": ["1 Main Street", "London"],
        "email": "help@acme.test",
        "tax_id": "GB123",
    }
    assert (t.locale, t.invoice_memo, t.month_close_review) == ("de_DE", "Thank you.", True)
    assert t.admins == {"ann@acme.test", "bob@acme.test"}


def test_the_email_setting_is_read_leniently() -> None:
    # Older documents hold the seller's address as a plain string: email stays off.
    legacy = tenant(email="billing@acme.test")
    assert legacy.email == EmailSettings(enabled=False, address="billing@acme.test")
    assert legacy.seller_block.email == "billing@acme.test"
    # Only a JSON true enables it; the seller's email is the bare address of reply_to, else of
    # from (the one seller rule), skipping a text without "@".
    assert tenant(email={"enabled": "yes", "from": "a@acme.test"}).email.enabled is False
    assert tenant(email={"from": "Acme <a@acme.test>"}).seller_block.email == "a@acme.test"
    assert (
        tenant(email={"reply_to": "nobody", "from": "Acme <a@acme.test>"}).seller()["email"] == "a@acme.test"
    )
    assert tenant(email=42).email == EmailSettings()
    assert tenant(email="").seller_block.email is None


@pytest.mark.parametrize(
    ("fields", "read", "code", "message"),
    [
        ({"dunning": "weekly"}, "dunning", "invalid_field", "'dunning' must be a map"),
        (
            {"dunning": {"reminder_days": [1.5]}},
            "dunning",
            "invalid_field",
            "dunning.reminder_days must be whole days",
        ),
        (
            {"stripe": {"enabled": True, "collection_method": "cash"}},
            "stripe",
            "invalid_field",
            "stripe.collection_method must be one of",
        ),
        ({"stripe": "on"}, "stripe", "invalid_field", "'stripe' must be a map"),
        (
            {"notifications": {"run_summary_to": "ops@acme.test"}},
            "notifications",
            "invalid_field",
            "must be a list of email addresses",
        ),
        (
            {"notifications": {"run_summary_to": ["ops@acme"]}},
            "notifications",
            "invalid_email",
            "not one email address",
        ),
        (
            {"notifications": {"on": ["succeeded"]}},
            "notifications",
            "invalid_field",
            "notifications.on must be a list of completed, failed, errors",
        ),
        ({"notifications": ["ops@acme.test"]}, "notifications", "invalid_field", "must be a map"),
        (
            {"address_lines": "1 Main Street"},
            "seller_block",
            "invalid_field",
            "'address_lines' must be a list of strings",
        ),
        ({"legal_name": ["Acme"]}, "seller_block", "invalid_field", "'legal_name' must be a string"),
        ({"tax_id": 123}, "seller_block", "invalid_field", "'tax_id' must be a string"),
        ({"invoice_memo": {"text": "x"}}, "invoice_memo", "invalid_field", "must be a string"),
        ({"month_close_review": "yes"}, "month_close_review", "invalid_field", "true or false"),
        ({"admins": "ann@acme.test"}, "admins", "invalid_field", "list of email addresses"),
        ({"admins": ["root"]}, "admins", "invalid_email", "not one email address"),
    ],
)
def test_an_invalid_setting_fails_where_it_is_read(
    fields: dict[str, Any], read: str, code: str, message: str
) -> None:
    t = tenant(**fields)  # the tenant itself parses: its other settings are usable
    with pytest.raises(DataError, match=message) as info:
        getattr(t, read)
    assert info.value.code == code
    assert info.value.message.startswith("tenants/acme: ")
    others = {
        "dunning",
        "stripe",
        "notifications",
        "seller_block",
        "invoice_memo",
        "month_close_review",
        "admins",
    } - {read}
    for name in others:
        getattr(t, name)


def test_stripe_enabled_is_the_contract_flag_even_when_the_rest_is_invalid() -> None:
    # As before: the tenant has Stripe on, and each push fails with the settings' error.
    t = tenant(stripe={"enabled": True, "days_until_due": -1})
    assert t.stripe_enabled is True
    with pytest.raises(DataError, match=r"stripe\.days_until_due"):
        t.stripe  # noqa: B018 (the property raises)


def test_required_fields_still_fail_the_tenant() -> None:
    with pytest.raises(DataError, match="payment_terms_days"):
        tenant(payment_terms_days="14")
    with pytest.raises(DataError, match="tax rate"):
        tenant(tax_rates={"GB": "lots"})


def test_an_invalid_dunning_map_fails_the_dunning_run_not_the_month_close(
    db: firestore.Client, call_function: Any
) -> None:
    f.tenant(db, "acme", dunning={"reminder_days": "1,7"}, notifications="everyone")
    f.customer(db, "acme", "alice")
    f.plan(db, "acme", "pro", [{"type": "fixed", "unit_amount_decimal": "1000"}])
    f.subscription(db, "acme", "sub-alice", "alice", "pro")
    status, body = call_function("monthly_billing", {"month": "2026-10"}, tenant="acme")
    assert status == 200, body
    assert body["errors"] == [] and body["generated"] == 1
    status, body = call_function("dunning", {}, tenant="acme")
    assert status == 200, body
    assert [(e["tenant_id"], e["code"]) for e in body["errors"]] == [("acme", "invalid_field")]
    assert "dunning.reminder_days must be a list" in body["errors"][0]["error"]
