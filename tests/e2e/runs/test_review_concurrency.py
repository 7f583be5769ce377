"""Issue 10 item 7, "never twice, again": each review action fired 4 times at once has one effect.

Threads call ``billing_admin`` through the functions framework at the same instant
(``tests.factories.concurrently``) against the Firestore emulator: one line per request id, one
removal, one refresh, one deletion, one finalization and number per draft, one one-off invoice
per key, one live invoice after concurrent ``regenerate``.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore

from tests import factories as f
from tests.reviewing import Admin, T, admin_fixture, close, draft_id, seed

admin = pytest.fixture(admin_fixture, name="admin")
TIMES = 4
LINE = {"description": "Onboarding", "quantity": "1", "unit_amount_decimal": "500"}


def fire(
    admin: Admin, body: dict[str, Any], request_id: str | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """``body`` sent ``TIMES`` times at once; every answer."""
    return f.concurrently(TIMES, lambda: admin(body, request_id))


def history(db: firestore.Client, invoice_id: str, action: str) -> list[dict[str, Any]]:
    return [h for h in f.invoices(db, T)[invoice_id].get("history", []) if h["action"] == action]


def test_concurrent_edits_take_effect_once(db: firestore.Client, call_function: Any, admin: Admin) -> None:
    seed(db, customers=2)
    close(call_function)
    invoice_id = draft_id(1)
    added = fire(admin, {"action": "add_line_item", "invoice_id": invoice_id, **LINE}, "req-add")
    assert [status for status, _ in added] == [200] * TIMES, added
    assert sorted(body["changed"] for _, body in added) == [False] * (TIMES - 1) + [True]
    stored = f.invoices(db, T)[invoice_id]
    assert [line["kind"] for line in stored["lines"]] == ["fixed", "usage", "custom"]
    assert stored["total"] == (1010 + 500) * 12 // 10
    line_id = added[0][1]["line_id"]

    removed = fire(
        admin, {"action": "remove_line_item", "invoice_id": invoice_id, "line_id": line_id}, "req-rm"
    )
    assert [status for status, _ in removed] == [200] * TIMES, removed
    assert len(history(db, invoice_id, "remove_line_item")) == 1
    assert f.invoices(db, T)[invoice_id]["total"] == 1212

    f.event(db, T, "late", "c1", "calls", f.invoices(db, T)[invoice_id]["period_start"])
    refreshed = fire(admin, {"action": "refresh_draft", "invoice_id": invoice_id}, "req-refresh")
    assert [status for status, _ in refreshed] == [200] * TIMES, refreshed
    assert len(history(db, invoice_id, "refresh_draft")) == 1
    assert f.invoices(db, T)[invoice_id]["subtotal"] == 1020

    deleted = fire(admin, {"action": "delete_draft", "invoice_id": draft_id(2)}, "req-del")
    assert [status for status, _ in deleted] == [200] * TIMES, deleted
    assert len(history(db, draft_id(2), "delete_draft")) == 1


def test_concurrent_finalize_numbers_each_draft_once(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=3)
    close(call_function)
    # Without a request id: one call numbers, the others find it open (409) or finalized meanwhile.
    single = fire(admin, {"action": "finalize", "invoice_id": draft_id(1)})
    assert sum(1 for status, body in single if status == 200 and body["changed"]) == 1, single
    assert {status for status, _ in single} <= {200, 409}
    bulk = fire(admin, {"action": "finalize", "invoice_ids": [draft_id(3), draft_id(2)]}, "req-bulk")
    assert [status for status, _ in bulk] == [200] * TIMES, bulk
    numbers = {i: doc["number"] for i, doc in f.invoices(db, T).items()}
    assert numbers == {
        draft_id(1): "RV-2026-000001",
        draft_id(3): "RV-2026-000002",
        draft_id(2): "RV-2026-000003",
    }
    assert db.document(f"tenants/{T}/invoice_sequences/2026").get().to_dict()["last"] == 3  # type: ignore[index]
    assert all(len(history(db, i, "finalize")) == 1 for i in numbers)


def test_concurrent_create_invoice_makes_one_invoice(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=1)
    body = {
        "action": "create_invoice",
        "customer_id": "c1",
        "idempotency_key": "prepaid-c1",
        "lines": [LINE],
        "finalize": True,
    }
    answers = fire(admin, body)
    assert [status for status, _ in answers] == [200] * TIMES, answers
    assert sum(1 for _, answer in answers if answer["created"]) == 1
    assert len({answer["invoice_id"] for _, answer in answers}) == 1
    stored = f.invoices(db, T)
    assert len(stored) == 1
    (invoice,) = stored.values()
    assert (invoice["type"], invoice["number"], invoice["total"]) == ("one_off", "RV-2026-000001", 600)


def test_concurrent_regenerate_leaves_one_live_invoice(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=1, month_close_review=False)
    close(call_function)
    status, voided = admin({"action": "void", "invoice_id": draft_id(1)})
    assert status == 200, voided
    answers = fire(admin, {"action": "regenerate", "invoice_id": draft_id(1)})
    assert [status for status, _ in answers] == [200] * TIMES, answers
    assert sum(1 for _, answer in answers if answer["created"]) == 1
    live = [i for i, doc in f.invoices(db, T).items() if doc["status"] not in ("void", "deleted")]
    assert live == [f"{draft_id(1)}-r1"]
    # Not a review tenant: the new invoice is final at once, numbered next.
    assert f.invoices(db, T)[live[0]]["number"] == "RV-2026-000002"
