"""Issue 10, "Done when": one tenant with ``month_close_review`` walked through a month.

The close creates drafts; a person adds a discount line and a custom line, removes one, refreshes
after late usage (custom lines survive), finalizes three in bulk (numbered in the given order),
deletes one and reruns the close (nothing recreated); voids and regenerates one invoice; creates
a one-off invoice twice with one key (one invoice). The number series is gapless and every
finalized invoice has its PDF. Against the Firestore and Storage emulators, through the HTTP
functions.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore, storage

from tests import factories as f
from tests.conftest import TEST_BUCKET
from tests.reviewing import OCT, Admin, T, admin_fixture, close, draft_id, ok, seed

admin = pytest.fixture(admin_fixture, name="admin")


def test_a_review_month(db: firestore.Client, gcs: storage.Client, call_function: Any, admin: Admin) -> None:
    seed(db)
    # 1. The close creates drafts: no number, no PDF, nothing numbered.
    body = close(call_function)
    assert (body["generated"], body["drafts"], body["awaiting_review"]) == (5, 5, 5), body
    stored = f.invoices(db, T)
    assert {i["status"] for i in stored.values()} == {"draft"}
    assert all(
        i["number"] is None and i["pdf_uri"] is None and i["finalize_at"] is None for i in stored.values()
    )
    assert list(db.collection(f"tenants/{T}/invoice_sequences").stream()) == []
    # c1: 10.00 + 1 call x 0.10 = 10.10, + 20 % VAT
    assert (stored[draft_id(1)]["subtotal"], stored[draft_id(1)]["total"]) == (1010, 1212)

    # 2. A discount line and a custom line; the custom line's request retried: one line.
    discount = {
        "action": "add_line_item",
        "invoice_id": draft_id(1),
        "description": "Loyalty discount",
        "quantity": "1",
        "unit_amount_decimal": "-100",
    }
    ok(admin(discount, "req-discount"))
    setup = {**discount, "description": "Onboarding", "unit_amount_decimal": "500"}
    first = ok(admin(setup, "req-setup"))
    again = ok(admin(setup, "req-setup"))
    assert (first["changed"], again["changed"]) == (True, False)
    invoice = again["invoice"]
    assert [line["kind"] for line in invoice["lines"]] == ["fixed", "usage", "custom", "custom"]
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == (1410, 282, 1692)
    # ... and remove one (the onboarding line).
    removed = ok(
        admin({"action": "remove_line_item", "invoice_id": draft_id(1), "line_id": first["line_id"]})
    )
    assert [line["description"] for line in removed["invoice"]["lines"]][-1] == "Loyalty discount"
    assert removed["invoice"]["total"] == 1092  # (1010 - 100) x 1.2

    # 3. Late usage, then refresh: plan lines re-priced, the custom (discount) line kept.
    f.event(db, T, "late-c1", "c1", "calls", OCT)
    refreshed = ok(admin({"action": "refresh_draft", "invoice_id": draft_id(1)}))["invoice"]
    assert [(line["kind"], line["amount"]) for line in refreshed["lines"]] == [
        ("fixed", 1000),
        ("usage", 20),
        ("custom", -100),
    ]
    assert refreshed["total"] == 1104  # (1020 - 100) x 1.2

    # 4. Three finalized in bulk, numbered in the list's order.
    order = [draft_id(3), draft_id(1), draft_id(2)]
    done = ok(admin({"action": "finalize", "invoice_ids": order}, "req-bulk"))
    assert done["finalized"] == order
    assert [view["number"] for view in done["invoices"]] == [
        "RV-2026-000001",
        "RV-2026-000002",
        "RV-2026-000003",
    ]
    assert ok(admin({"action": "finalize", "invoice_ids": order}, "req-bulk"))["finalized"] == []

    # 5. One deleted; the close rerun recreates nothing.
    ok(admin({"action": "delete_draft", "invoice_id": draft_id(4)}))
    rerun = close(call_function)
    assert (rerun["generated"], rerun["drafts"], rerun["awaiting_review"]) == (0, 0, 1), rerun
    assert f.invoices(db, T)[draft_id(4)]["status"] == "deleted"

    # 6. (credit notes: the lead adds the partial, full and paid-invoice credit notes here)

    # 7. Void and regenerate one invoice: a new draft for the same period, replacing it.
    ok(admin({"action": "void", "invoice_id": draft_id(2)}))
    regenerated = ok(admin({"action": "regenerate", "invoice_id": draft_id(2)}))
    new_id = regenerated["invoice_id"]
    assert (regenerated["invoice"]["replaces"], regenerated["invoice"]["status"]) == (draft_id(2), "draft")
    assert f.invoices(db, T)[draft_id(2)]["replaced_by"] == new_id
    numbered = ok(admin({"action": "finalize", "invoice_id": new_id}))["invoice"]
    assert numbered["number"] == "RV-2026-000004"
    assert close(call_function)["generated"] == 0

    # 8. A one-off invoice created twice with one key: one invoice, numbered next.
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

    # Gapless numbers, and a PDF for every finalized invoice.
    final = [i for i in f.invoices(db, T).values() if i.get("number")]
    assert sorted(i["sequence"] for i in final) == [1, 2, 3, 4, 5]
    for invoice in final:
        uri = invoice["pdf_uri"]
        assert uri and uri.startswith(f"gs://{TEST_BUCKET}/{T}/"), invoice
        assert gcs.bucket(TEST_BUCKET).blob(uri.split("/", 3)[3]).download_as_bytes().startswith(b"%PDF")
