"""Issue 10 item 8: bad input to each review action gets the contract's 4xx and writes nothing.

Every case is sent to ``billing_admin`` against the emulator after the month close made drafts and
one invoice was finalized; the tenant's documents are compared before and after.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore

from tests import factories as f
from tests.reviewing import Admin, T, admin_fixture, close, draft_id, ok, seed

admin = pytest.fixture(admin_fixture, name="admin")
LINE = {"description": "Extra", "quantity": "1", "unit_amount_decimal": "100"}
ADD = {"action": "add_line_item", "invoice_id": draft_id(1), **LINE}
ONE_OFF = {"action": "create_invoice", "customer_id": "c1", "idempotency_key": "k1", "lines": [LINE]}

CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown invoice", {**ADD, "invoice_id": "nope"}, 404, "unknown_invoice"),
    ("another tenant's invoice", {**ADD, "invoice_id": "other-draft"}, 404, "unknown_invoice"),
    ("open invoice", {**ADD, "invoice_id": draft_id(3)}, 409, "invalid_transition"),
    ("quantity not a string", {**ADD, "quantity": 1.5}, 400, "invalid_field"),
    ("quantity not decimal", {**ADD, "quantity": "abc"}, 400, "invalid_field"),
    ("quantity with exponent", {**ADD, "quantity": "1e3"}, 400, "invalid_field"),
    ("quantity zero", {**ADD, "quantity": "0"}, 400, "invalid_field"),
    ("absurd quantity", {**ADD, "quantity": "9" * 13}, 400, "invalid_field"),
    ("13 decimals", {**ADD, "unit_amount_decimal": "1.0000000000001"}, 400, "too_many_decimals"),
    ("absurd price", {**ADD, "unit_amount_decimal": "9" * 16}, 400, "invalid_field"),
    ("price NaN", {**ADD, "unit_amount_decimal": "NaN"}, 400, "invalid_field"),
    ("foreign currency", {**ADD, "currency": "EUR"}, 400, "currency_mismatch"),
    ("lone surrogate", {**ADD, "description": "caf\ud800"}, 400, "invalid_field"),
    ("control character", {**ADD, "description": "a\x00b"}, 400, "invalid_field"),
    ("empty description", {**ADD, "description": "  "}, 400, "invalid_field"),
    ("field of another action", {**ADD, "idempotency_key": "x"}, 400, "unknown_field"),
    ("missing field", {"action": "add_line_item", "invoice_id": draft_id(1)}, 400, "missing_field"),
    ("total below zero", {**ADD, "unit_amount_decimal": "-5000"}, 409, "negative_total"),
    (
        "unknown line",
        {"action": "remove_line_item", "invoice_id": draft_id(1), "line_id": "x"},
        404,
        "unknown_line",
    ),
    (
        "generated line",
        {"action": "remove_line_item", "invoice_id": draft_id(1), "line_id": "c1"},
        409,
        "generated_line",
    ),
    (
        "refresh an open invoice",
        {"action": "refresh_draft", "invoice_id": draft_id(3)},
        409,
        "invalid_transition",
    ),
    (
        "delete an open invoice",
        {"action": "delete_draft", "invoice_id": draft_id(3)},
        409,
        "invalid_transition",
    ),
    (
        "finalize an open invoice",
        {"action": "finalize", "invoice_id": draft_id(3)},
        409,
        "invalid_transition",
    ),
    (
        "finalize with an unknown id",
        {"action": "finalize", "invoice_ids": [draft_id(1), "nope"]},
        404,
        "unknown_invoice",
    ),
    (
        "finalize id twice",
        {"action": "finalize", "invoice_ids": [draft_id(1), draft_id(1)]},
        400,
        "invalid_field",
    ),
    (
        "finalize both",
        {"action": "finalize", "invoice_id": draft_id(1), "invoice_ids": [draft_id(2)]},
        400,
        "missing_field",
    ),
    ("finalize neither", {"action": "finalize"}, 400, "missing_field"),
    (
        "one-off without key",
        {k: v for k, v in ONE_OFF.items() if k != "idempotency_key"},
        400,
        "missing_field",
    ),
    ("one-off unknown customer", {**ONE_OFF, "customer_id": "ghost"}, 404, "unknown_customer"),
    ("one-off no lines", {**ONE_OFF, "lines": []}, 400, "invalid_field"),
    ("one-off line field", {**ONE_OFF, "lines": [{**LINE, "amount": 5}]}, 400, "unknown_field"),
    (
        "one-off line price",
        {**ONE_OFF, "lines": [{**LINE, "unit_amount_decimal": "0.1234567890123"}]},
        400,
        "too_many_decimals",
    ),
    ("one-off foreign currency", {**ONE_OFF, "currency": "USD"}, 400, "currency_mismatch"),
    (
        "one-off below zero",
        {**ONE_OFF, "lines": [{**LINE, "unit_amount_decimal": "-1"}]},
        409,
        "negative_total",
    ),
    ("one-off memo surrogate", {**ONE_OFF, "memo": "\udfff"}, 400, "invalid_field"),
    (
        "regenerate an open invoice",
        {"action": "regenerate", "invoice_id": draft_id(3)},
        409,
        "invalid_transition",
    ),
    ("regenerate a draft", {"action": "regenerate", "invoice_id": draft_id(1)}, 409, "invalid_transition"),
    ("regenerate unknown", {"action": "regenerate", "invoice_id": "nope"}, 404, "unknown_invoice"),
]


@pytest.fixture
def seeded(db: firestore.Client, call_function: Any, admin: Admin) -> None:
    """Three drafts of the close; c3's finalized; another tenant with a draft of its own."""
    seed(db, customers=3)
    close(call_function)
    ok(admin({"action": "finalize", "invoice_id": draft_id(3)}))
    f.tenant(db, "other", invoice_prefix="OT")
    db.document("tenants/other/invoices/other-draft").set(
        {**f.invoices(db, T)[draft_id(2)], "tenant_id": "other"}
    )


@pytest.mark.parametrize(("case", "body", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_changes_nothing(
    db: firestore.Client, seeded: None, admin: Admin, case: str, body: dict[str, Any], status: int, code: str
) -> None:
    before = f.all_documents(db, T), f.all_documents(db, "other")
    answer_status, answer = admin(body, f"req-{len(case)}")
    assert (answer_status, answer.get("error", {}).get("code")) == (status, code), answer
    assert (f.all_documents(db, T), f.all_documents(db, "other")) == before


def test_bad_request_id_and_missing_tenant(
    db: firestore.Client, seeded: None, admin: Admin, call_function: Any
) -> None:
    before = f.all_documents(db, T)
    status, answer = admin(ADD, "not an id!")
    assert (status, answer["error"]["code"]) == (400, "invalid_field")
    status, answer = call_function("billing_admin", ADD)
    assert (status, answer["error"]["code"]) == (400, "missing_tenant")
    assert f.all_documents(db, T) == before
