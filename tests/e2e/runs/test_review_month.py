"""Issue 10, "Done when": one tenant with ``month_close_review`` walked through a month.

The close creates drafts; a person adds a discount line and a custom line, removes one, refreshes
after late usage (custom lines survive), finalizes three in bulk (numbered in the given order),
deletes one and reruns the close (nothing recreated); issues a partial credit note on an open
invoice (amount due lowered), a full one on another (void) and one on a paid invoice (owed to the
customer: ``credited_to_balance`` and the customer's ``balance``); voids and regenerates one
invoice; creates a one-off invoice twice with one key (one invoice). Both number series are
gapless, every finalized invoice and every credit note has its PDF at the contract's path, and
every action is in ``history`` with the caller. Against the Firestore and Storage emulators,
through the HTTP functions.

The test reads as the month does: one named step per stage, each asserting its own outcome.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from google.cloud import firestore, storage

from tests import factories as f
from tests.conftest import ALLOWED, TEST_BUCKET, TODAY
from tests.reviewing import OCT, Admin, T, admin_fixture, close, draft_id, ok, seed

admin = pytest.fixture(admin_fixture, name="admin")
CREDIT_NOTES = ["RV-CN-2026-000001", "RV-CN-2026-000002", "RV-CN-2026-000003"]


def test_a_review_month(db: firestore.Client, gcs: storage.Client, call_function: Any, admin: Admin) -> None:
    seed(db)
    close_creates_drafts(db, call_function)
    line_ids = edit_a_draft(admin)
    refresh_after_late_usage(db, admin)
    finalize_three_in_bulk(admin)
    delete_one_and_rerun_the_close(db, call_function, admin)
    partial_credit_on_an_open_invoice(db, admin)
    full_credit_voids_another(db, admin)
    credit_on_a_paid_invoice_is_owed(db, admin)
    void_and_regenerate(db, call_function, admin)
    one_off_twice_with_one_key(admin)
    series_are_gapless_with_their_pdfs(db, gcs)
    history_names_the_caller(db, line_ids)


# -- 1. the close ----------------------------------------------------------------------------------
def close_creates_drafts(db: firestore.Client, call_function: Any) -> None:
    """Drafts: no number, no PDF, nothing numbered; the hourly run never finalizes them."""
    body = close(call_function)
    assert (body["generated"], body["drafts"], body["awaiting_review"]) == (5, 5, 5), body
    stored = f.invoices(db, T)
    assert {i["status"] for i in stored.values()} == {"draft"}
    assert all(
        i["number"] is None and i["pdf_uri"] is None and i["finalize_at"] is None for i in stored.values()
    )
    assert list(db.collection(f"tenants/{T}/invoice_sequences").stream()) == []
    status, hourly = call_function("generate_invoices", {"as_of": "2026-11-25T11:00:00Z"}, tenant=T)
    assert status == 200 and hourly["finalized"] == 0, hourly
    assert {i["status"] for i in f.invoices(db, T).values()} == {"draft"}
    # c1: 10.00 + 1 call x 0.10 = 10.10, + 20 % VAT
    assert (stored[draft_id(1)]["subtotal"], stored[draft_id(1)]["total"]) == (1010, 1212)


# -- 2.-5. review ----------------------------------------------------------------------------------
def edit_a_draft(admin: Admin) -> list[str]:
    """A discount line and a custom line (its request retried: one line), then one removed.

    Returns the line ids of the two custom lines added (discount, onboarding).
    """
    discount = {
        "action": "add_line_item",
        "invoice_id": draft_id(1),
        "description": "Loyalty discount",
        "quantity": "1",
        "unit_amount_decimal": "-100",
    }
    added = ok(admin(discount, "req-discount"))
    setup = {**discount, "description": "Onboarding", "unit_amount_decimal": "500"}
    first = ok(admin(setup, "req-setup"))
    again = ok(admin(setup, "req-setup"))
    assert (first["changed"], again["changed"]) == (True, False)
    invoice = again["invoice"]
    assert [line["kind"] for line in invoice["lines"]] == ["fixed", "usage", "custom", "custom"]
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == (1410, 282, 1692)
    removed = ok(
        admin({"action": "remove_line_item", "invoice_id": draft_id(1), "line_id": first["line_id"]})
    )
    assert [line["description"] for line in removed["invoice"]["lines"]][-1] == "Loyalty discount"
    assert removed["invoice"]["total"] == 1092  # (1010 - 100) x 1.2
    return [added["line_id"], first["line_id"]]


def refresh_after_late_usage(db: firestore.Client, admin: Admin) -> None:
    """Late usage, then refresh: plan lines re-priced, the custom (discount) line kept."""
    f.event(db, T, "late-c1", "c1", "calls", OCT)
    refreshed = ok(admin({"action": "refresh_draft", "invoice_id": draft_id(1)}))["invoice"]
    assert [(line["kind"], line["amount"]) for line in refreshed["lines"]] == [
        ("fixed", 1000),
        ("usage", 20),
        ("custom", -100),
    ]
    assert refreshed["total"] == 1104  # (1020 - 100) x 1.2


def finalize_three_in_bulk(admin: Admin) -> None:
    """Three drafts finalized at once, numbered in the list's order; the retry does nothing."""
    order = [draft_id(3), draft_id(1), draft_id(2)]
    done = ok(admin({"action": "finalize", "invoice_ids": order}, "req-bulk"))
    assert done["finalized"] == order
    assert [view["number"] for view in done["invoices"]] == [
        "RV-2026-000001",
        "RV-2026-000002",
        "RV-2026-000003",
    ]
    assert all(view["amount_due"] == view["total"] for view in done["invoices"])
    assert ok(admin({"action": "finalize", "invoice_ids": order}, "req-bulk"))["finalized"] == []


def delete_one_and_rerun_the_close(db: firestore.Client, call_function: Any, admin: Admin) -> None:
    """A deleted draft stays deleted: the close rerun recreates nothing."""
    ok(admin({"action": "delete_draft", "invoice_id": draft_id(4)}))
    rerun = close(call_function)
    assert (rerun["generated"], rerun["drafts"], rerun["awaiting_review"]) == (0, 0, 1), rerun
    assert f.invoices(db, T)[draft_id(4)]["status"] == "deleted"


# -- 6. credit notes -------------------------------------------------------------------------------
def credit(invoice_id: str, key: str, reason: str, **fields: Any) -> dict[str, Any]:
    """A ``create_credit_note`` body (``amount`` or ``lines`` in ``fields``)."""
    return {
        "action": "create_credit_note",
        "invoice_id": invoice_id,
        "reason": reason,
        "idempotency_key": key,
        **fields,
    }


def partial_credit_on_an_open_invoice(db: firestore.Client, admin: Admin) -> None:
    """5.00 off RV-2026-000002 (1104): taken from its first line, tax pro rata; due 504, open."""
    body = ok(admin(credit(draft_id(1), "cn-c1-outage", "product_unsatisfactory", amount=500)))
    note = body["credit_note"]
    assert (note["number"], note["subtotal"], note["tax"], note["total"]) == (CREDIT_NOTES[0], 500, 100, 600)
    assert (note["pre_payment_amount"], note["credited_to_balance"]) == (600, 0)
    assert [(x["description"], x["amount"], x["tax"]) for x in note["lines"]] == [("Pro plan", 500, 100)]
    assert (body["status"], body["amount_due"], body["amount_credited"]) == ("open", 504, 600)
    assert body["errors"] == [], body
    assert f.invoices(db, T)[draft_id(1)]["credit_note_ids"] == [note["credit_note_id"]]
    # The same request again: the same credit note, no second number.
    again = ok(admin(credit(draft_id(1), "cn-c1-outage", "product_unsatisfactory", amount=500)))
    assert (again["changed"], again["credit_note"]["number"]) == (False, CREDIT_NOTES[0])


def full_credit_voids_another(db: firestore.Client, admin: Admin) -> None:
    """RV-2026-000001 (c3: 10.30 + VAT = 12.36) credited in full: void, nothing due."""
    body = ok(admin(credit(draft_id(3), "cn-c3-duplicate", "duplicate", amount=1030)))
    note = body["credit_note"]
    assert (note["number"], note["total"], note["credited_to_balance"]) == (CREDIT_NOTES[1], 1236, 0)
    assert (body["status"], body["amount_due"], body["amount_credited"]) == ("void", 0, 1236)
    assert body["errors"] == [], body
    stored = f.invoices(db, T)[draft_id(3)]
    assert (stored["status"], stored["voided_at"]) == ("void", TODAY)


def credit_on_a_paid_invoice_is_owed(db: firestore.Client, admin: Admin) -> None:
    """c1 pays the 5.04 left, then its usage line is credited: owed to c1, no refund."""
    pay = {"action": "mark_paid", "invoice_id": draft_id(1), "amount": 504, "paid_at": "2026-11-25T09:00:00Z"}
    ok(admin(pay))
    invoice = f.invoices(db, T)[draft_id(1)]
    assert (invoice["status"], invoice["amount_due"], invoice["amount_paid"]) == ("paid", 0, 504)
    usage_line = invoice["lines"][1]
    assert usage_line["kind"] == "usage"
    lines = [{"line_id": usage_line["line_id"], "amount": 20}]
    body = ok(admin(credit(draft_id(1), "cn-c1-calls", "order_change", lines=lines)))
    note = body["credit_note"]
    assert (note["number"], note["total"]) == (CREDIT_NOTES[2], 24)  # 20 + 4 VAT
    assert (note["pre_payment_amount"], note["credited_to_balance"]) == (0, 24)
    assert (body["status"], body["amount_due"], body["amount_paid"], body["amount_credited"]) == (
        "paid",
        0,
        504,
        624,
    )
    customer = db.document(f"tenants/{T}/customers/c1").get().to_dict() or {}
    assert customer["balance"] == -24  # Stripe's sign: negative is owed to the customer
    assert [(x["type"], x["amount"], x["credit_note_id"]) for x in customer["balance_transactions"]] == [
        ("credit_note", -24, note["credit_note_id"])
    ]
    assert body["errors"] == [] and "refund" not in str(body).lower(), body


# -- 7.-8. void and regenerate, one-off ------------------------------------------------------------
def void_and_regenerate(db: firestore.Client, call_function: Any, admin: Admin) -> None:
    """RV-2026-000003 voided and regenerated: a new draft for the same period, numbered next."""
    ok(admin({"action": "void", "invoice_id": draft_id(2)}))
    regenerated = ok(admin({"action": "regenerate", "invoice_id": draft_id(2)}))
    new_id = regenerated["invoice_id"]
    assert (regenerated["invoice"]["replaces"], regenerated["invoice"]["status"]) == (draft_id(2), "draft")
    assert f.invoices(db, T)[draft_id(2)]["replaced_by"] == new_id
    numbered = ok(admin({"action": "finalize", "invoice_id": new_id}))["invoice"]
    assert numbered["number"] == "RV-2026-000004"
    assert close(call_function)["generated"] == 0


def one_off_twice_with_one_key(admin: Admin) -> None:
    """A one-off invoice created twice with one key: one invoice, numbered next."""
    one_off = {
        "action": "create_invoice",
        "customer_id": "c5",
        "idempotency_key": "prepaid-2026-11-c5",
        "lines": [
            {"description": "Prepaid support, 10 hours", "quantity": "10", "unit_amount_decimal": "5000"}
        ],
        "finalize": True,
        "memo": "Prepaid",
    }
    made, repeated = ok(admin(one_off)), ok(admin(one_off))
    assert (made["created"], repeated["created"]) == (True, False)
    assert made["invoice_id"] == repeated["invoice_id"]
    assert (made["invoice"]["type"], made["invoice"]["number"], made["invoice"]["total"]) == (
        "one_off",
        "RV-2026-000005",
        60000,
    )


# -- the month's records ---------------------------------------------------------------------------
def stored_pdf(gcs: storage.Client, uri: str, name: str) -> bytes:
    """The object at ``uri``, which must be ``gs://{TEST_BUCKET}/{name}``."""
    assert uri == f"gs://{TEST_BUCKET}/{name}", (uri, name)
    data: bytes = gcs.bucket(TEST_BUCKET).blob(name).download_as_bytes()
    return data


def pdf_text(data: bytes) -> str:
    """The text of a PDF (poppler's ``pdftotext``)."""
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True
    )
    return done.stdout.decode("utf-8")


def series_are_gapless_with_their_pdfs(db: firestore.Client, gcs: storage.Client) -> None:
    """Invoices numbered 1..5 and credit notes 1..3, each with its PDF at the contract's path.

    A credit note's PDF names itself and its invoice, and shows a balance line only when part of
    the credit is owed to the customer.
    """
    final = sorted((i for i in f.invoices(db, T).values() if i.get("number")), key=lambda i: i["sequence"])
    assert [i["sequence"] for i in final] == [1, 2, 3, 4, 5]
    assert [i["number"] for i in final] == [f"RV-2026-{n:06d}" for n in range(1, 6)]
    for invoice in final:
        month = "2026-10" if invoice["type"] == "subscription" else "2026-11"  # period start, London
        name = f"{T}/{month}/{invoice['number']}.pdf"
        assert stored_pdf(gcs, invoice["pdf_uri"], name).startswith(b"%PDF"), invoice["number"]
    notes = sorted(
        (d.to_dict() or {} for d in db.collection(f"tenants/{T}/credit_notes").stream()),
        key=lambda n: n["sequence"],
    )
    assert [(n["sequence"], n["number"]) for n in notes] == list(enumerate(CREDIT_NOTES, start=1))
    for note in notes:
        name = f"{T}/credit_notes/{note['number']}.pdf"
        text = pdf_text(stored_pdf(gcs, note["pdf_uri"], name))
        for expected in ("CREDIT NOTE", note["number"], note["invoice_number"]):
            assert expected in text, (expected, text)
        assert ("Credited to your balance" in text) == (note["credited_to_balance"] > 0), text
        assert note["status"] == "issued" and note["delivery_pending"] is False


HISTORY = {
    draft_id(1): [
        "add_line_item",
        "add_line_item",
        "remove_line_item",
        "refresh_draft",
        "finalize",
        "create_credit_note",
        "mark_paid",
        "create_credit_note",
    ],
    draft_id(2): ["finalize", "void"],
    f"{draft_id(2)}-r1": ["regenerate", "finalize"],
    draft_id(3): ["finalize", "create_credit_note"],
    draft_id(4): ["delete_draft"],
}


def history_names_the_caller(db: firestore.Client, line_ids: list[str]) -> None:
    """Every person's action is a ``history`` entry with the caller and the time, in order."""
    invoices = f.invoices(db, T)
    (one_off,) = (key for key, i in invoices.items() if i["type"] == "one_off")
    expected = {**HISTORY, one_off: ["create_invoice"]}
    for invoice_id, actions in expected.items():
        entries = invoices[invoice_id]["history"]
        assert [e["action"] for e in entries] == actions, (invoice_id, entries)
        assert {(e["actor"], e["at"]) for e in entries} == {(ALLOWED, TODAY)}, entries
    c1 = invoices[draft_id(1)]["history"]
    assert [e["line_id"] for e in c1[:3]] == [line_ids[0], line_ids[1], line_ids[1]]
    assert [e["credit_note_number"] for e in c1 if e["action"] == "create_credit_note"] == [
        CREDIT_NOTES[0],
        CREDIT_NOTES[2],
    ]
    assert invoices[draft_id(3)]["history"][-1]["status_after"] == "void"
    for snapshot in db.collection(f"tenants/{T}/credit_notes").stream():
        issued = (snapshot.to_dict() or {})["history"][0]
        assert (issued["action"], issued["actor"], issued["at"]) == ("issued", ALLOWED, TODAY)
