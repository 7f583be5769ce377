"""Review actions and credit notes together (issue 10): the cases where the two meet.

Decisions pinned here (see the module docstrings of ``billing.runs.review.regenerate`` and
``billing.runs.credit_notes``):

- An invoice voided by a credit note (credited to zero, Stripe's behaviour) is ``void`` like any
  other, so ``regenerate`` accepts it. That is the EU correction (VAT Directive art. 219): cancel
  the issued invoice with a full credit note, then issue a corrected one. The credit note stays
  issued against the old invoice; the replacement starts uncredited and bills the period again.
- A ``paid`` invoice credited in full stays ``paid`` (the credit is owed to the customer) and is
  still the period's live invoice, so ``regenerate`` refuses it (409): billing the period again
  is a one-off invoice's job.
- A one-off invoice takes credit notes like any other and is never regenerated (409
  ``one_off_invoice``).
- ``dunning`` chases only ``open`` invoices, for their ``amount_due``: deleted and remaining
  drafts, invoices voided by a credit note and paid invoices credited afterwards are left alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from billing.http.shell import Clock
from tests import factories as f
from tests.reviewing import Admin, T, admin_fixture, close, draft_id, ok, seed

admin = pytest.fixture(admin_fixture, name="admin")


def credit(invoice_id: str, key: str, **fields: Any) -> dict[str, Any]:
    """A ``create_credit_note`` body (reason ``other`` unless given; ``amount`` or ``lines``)."""
    return {
        "action": "create_credit_note",
        "invoice_id": invoice_id,
        "reason": "other",
        "idempotency_key": key,
        **fields,
    }


def finalized(admin: Admin, *invoice_ids: str) -> None:
    """Finalize month-close drafts in the given order."""
    done = ok(admin({"action": "finalize", "invoice_ids": list(invoice_ids)}))
    assert done["finalized"] == list(invoice_ids), done


def test_an_invoice_voided_by_a_credit_note_can_be_regenerated(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=2)
    close(call_function)
    finalized(admin, draft_id(1), draft_id(2))
    voided = ok(admin(credit(draft_id(1), "wrong-usage", amount=1010)))  # 10.10 + VAT = 12.12
    assert (voided["status"], voided["amount_credited"]) == ("void", 1212)
    note_id = voided["credit_note"]["credit_note_id"]

    regenerated = ok(admin({"action": "regenerate", "invoice_id": draft_id(1)}))
    new_id = regenerated["invoice_id"]
    assert regenerated["created"] is True and new_id == f"{draft_id(1)}-r1"
    view = regenerated["invoice"]
    assert (view["replaces"], view["status"], view["total"], view["amount_credited"]) == (
        draft_id(1),
        "draft",
        1212,
        0,
    )
    invoices = f.invoices(db, T)
    assert invoices[new_id]["credit_note_ids"] == [] and "line_credits" not in invoices[new_id]
    old = invoices[draft_id(1)]
    assert (old["status"], old["replaced_by"], old["credit_note_ids"]) == ("void", new_id, [note_id])
    note = db.document(f"tenants/{T}/credit_notes/{note_id}").get().to_dict() or {}
    assert (note["status"], note["invoice_id"]) == ("issued", draft_id(1))

    # The void invoice takes no more credit; the replacement is numbered next and takes credit.
    status, body = admin(credit(draft_id(1), "more", amount=1))
    assert status == 409 and body["error"]["code"] == "invalid_transition", body
    numbered = ok(admin({"action": "finalize", "invoice_id": new_id}))["invoice"]
    assert (numbered["number"], numbered["amount_due"]) == ("RV-2026-000003", 1212)
    second = ok(admin(credit(new_id, "goodwill", amount=100)))
    assert (second["credit_note"]["number"], second["amount_due"]) == ("RV-CN-2026-000002", 1092)
    # Asked again: the same replacement; the close recreates nothing.
    again = ok(admin({"action": "regenerate", "invoice_id": draft_id(1)}))
    assert (again["changed"], again["invoice_id"]) == (False, new_id)
    assert close(call_function)["generated"] == 0
    assert len(f.invoices(db, T)) == 3


def test_a_paid_invoice_credited_in_full_is_not_regenerated(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=1)
    close(call_function)
    finalized(admin, draft_id(1))
    pay = {
        "action": "mark_paid",
        "invoice_id": draft_id(1),
        "amount": 1212,
        "paid_at": "2026-11-25T10:00:00Z",
    }
    ok(admin(pay))
    body = ok(admin(credit(draft_id(1), "refund-as-credit", amount=1010)))
    assert (body["status"], body["amount_credited"], body["credit_note"]["credited_to_balance"]) == (
        "paid",
        1212,
        1212,
    )
    before = f.all_documents(db, T)
    status, refused = admin({"action": "regenerate", "invoice_id": draft_id(1)})
    assert status == 409 and refused["error"]["code"] == "invalid_transition", refused
    assert f.all_documents(db, T) == before
    # A person who must bill the period again does it with a one-off invoice.
    one_off = {
        "action": "create_invoice",
        "customer_id": "c1",
        "idempotency_key": "rebill-c1-2026-10",
        "lines": [{"description": "Pro plan, October 2026", "quantity": "1", "unit_amount_decimal": "1000"}],
        "finalize": True,
    }
    assert ok(admin(one_off))["invoice"]["number"] == "RV-2026-000002"


def test_a_one_off_invoice_is_credited_but_never_regenerated(db: firestore.Client, admin: Admin) -> None:
    seed(db, customers=1)
    made = ok(
        admin(
            {
                "action": "create_invoice",
                "customer_id": "c1",
                "idempotency_key": "extras-c1",
                "lines": [
                    {"description": "Workshop", "quantity": "1", "unit_amount_decimal": "20000"},
                    {"description": "Travel", "quantity": "2", "unit_amount_decimal": "2500"},
                ],
                "finalize": True,
            }
        )
    )
    invoice_id, lines = made["invoice_id"], made["invoice"]["lines"]
    assert (made["invoice"]["number"], made["invoice"]["total"]) == ("RV-2026-000001", 30000)
    travel = [{"line_id": lines[1]["line_id"], "amount": 2500}]
    partial = ok(admin(credit(invoice_id, "one-trip", lines=travel, reason="order_change")))
    assert partial["credit_note"]["lines"] == [
        {"description": "Travel", "invoice_line_id": lines[1]["line_id"], "amount": 2500, "tax": 500}
    ]
    assert (partial["status"], partial["amount_due"]) == ("open", 27000)
    rest = ok(admin(credit(invoice_id, "cancelled", amount=22500, reason="order_cancellation")))
    assert (rest["status"], rest["amount_due"], rest["amount_credited"]) == ("void", 0, 30000)
    assert [rest["credit_note"]["number"], partial["credit_note"]["number"]] == [
        "RV-CN-2026-000002",
        "RV-CN-2026-000001",
    ]
    before = f.all_documents(db, T)
    status, body = admin({"action": "regenerate", "invoice_id": invoice_id})
    assert status == 409 and body["error"]["code"] == "one_off_invoice", body
    assert f.all_documents(db, T) == before


def test_dunning_leaves_deleted_drafts_and_credited_invoices_alone(
    db: firestore.Client, call_function: Any, admin: Admin, clock: Clock
) -> None:
    seed(db, customers=5)
    close(call_function)
    ok(admin({"action": "delete_draft", "invoice_id": draft_id(4)}))
    finalized(admin, draft_id(1), draft_id(2), draft_id(3))  # d5 stays a draft
    ok(admin(credit(draft_id(1), "partial", amount=500)))  # open, 6.00 of 12.12 off: 6.12 due
    ok(admin(credit(draft_id(2), "full", amount=1020)))  # void
    pay = {
        "action": "mark_paid",
        "invoice_id": draft_id(3),
        "amount": 1236,
        "paid_at": "2026-11-25T10:00:00Z",
    }
    ok(admin(pay))
    ok(admin(credit(draft_id(3), "after-payment", amount=30)))  # paid, owed to c3
    untouched = {i: f.invoices(db, T)[draft_id(i)] for i in (2, 3, 4, 5)}

    clock.set(datetime(2027, 1, 20, 12, tzinfo=UTC))  # 42 days past due (2026-12-09)
    status, run = call_function("dunning", {}, tenant=T)
    assert status == 200 and run["errors"] == [], run
    assert run["tenants"][0]["overdue"] == 1, run
    assert {a.get("invoice_id") for a in run["actions"] if "invoice_id" in a} == {draft_id(1)}, run
    assert run["suspended"] == 1, run
    invoices = f.invoices(db, T)
    assert {i: invoices[draft_id(i)] for i in (2, 3, 4, 5)} == untouched
    assert "suspension" in invoices[draft_id(1)]["dunning"]
    customers = {
        s.id: (s.to_dict() or {})["status"] for s in db.collection(f"tenants/{T}/customers").stream()
    }
    assert customers == {"c1": "suspended", "c2": "active", "c3": "active", "c4": "active", "c5": "active"}


def test_an_invoice_with_credit_notes_is_credited_not_voided(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    """``void`` of a partly credited invoice is 409 ``use_credit_note``, and writes nothing.

    Voiding it then regenerating would bill the period again in full and silently drop the
    credit already issued; crediting the rest keeps every correction a credit note.
    """
    seed(db, customers=1)
    close(call_function)
    finalized(admin, draft_id(1))
    ok(admin(credit(draft_id(1), "goodwill", amount=500)))
    before = f.all_documents(db, T)
    status, refused = admin({"action": "void", "invoice_id": draft_id(1)})
    assert status == 409 and refused["error"]["code"] == "use_credit_note", refused
    assert f.all_documents(db, T) == before
    rest = ok(admin(credit(draft_id(1), "the-rest", amount=510)))
    assert (rest["status"], rest["amount_due"], rest["amount_credited"]) == ("void", 0, 1212)
