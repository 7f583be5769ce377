"""Issue 10 rules beyond the walkthrough, against the emulators through ``billing_admin``.

History (caller and time), the builder's tax rules on custom lines, delivery at finalization,
anniversary drafts a person edits, regenerate chains, old documents and ``dispatch``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from billing.runs.admin_actions import dispatch
from billing.store.firestore_store import BillingStore
from tests import factories as f
from tests import getting_paid as gp
from tests.conftest import ALLOWED, TODAY
from tests.reviewing import OCT, Admin, T, admin_fixture, close, draft_id, ok, seed
from tests.smtp_server import SmtpServer

admin = pytest.fixture(admin_fixture, name="admin")
smtp = pytest.fixture(gp.smtp_fixture, name="smtp")
LINE = {"description": "Setup", "quantity": "2", "unit_amount_decimal": "250.5"}


def test_every_change_is_in_history_with_caller_and_time(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=1)
    body = close(call_function)
    assert body["draft_totals"] == {"GBP": 1212} and body["totals"] == {}
    ok(admin({"action": "add_line_item", "invoice_id": draft_id(1), **LINE}, "r-1"))
    ok(admin({"action": "refresh_draft", "invoice_id": draft_id(1)}, "r-2"))
    ok(admin({"action": "finalize", "invoice_id": draft_id(1)}, "r-3"))
    entries = f.invoices(db, T)[draft_id(1)]["history"]
    assert [(e["action"], e["request_id"]) for e in entries] == [
        ("add_line_item", "r-1"),
        ("refresh_draft", "r-2"),
        ("finalize", "r-3"),
    ]
    assert {e["actor"] for e in entries} == {ALLOWED}
    assert {e["at"] for e in entries} == {TODAY}


def test_custom_lines_follow_the_builders_tax_rules(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=2, tax_inclusive=True)
    db.document(f"tenants/{T}/customers/c2").update({"tax_exempt": True})
    close(call_function)
    # Inclusive: 2 x 2.505 = 5.01 holds 0.835 -> 0.84 (ROUND_HALF_UP) of 20 % VAT; total == subtotal.
    first = ok(admin({"action": "add_line_item", "invoice_id": draft_id(1), **LINE}, "a"))["invoice"]
    assert first["lines"][-1]["amount"] == 501 and first["lines"][-1]["tax"] == 84
    assert first["total"] == first["subtotal"] == 1010 + 501
    exempt_line = ok(
        admin({"action": "add_line_item", "invoice_id": draft_id(1), **LINE, "tax_exempt": True}, "b")
    )
    assert exempt_line["invoice"]["lines"][-1]["tax"] == 0
    exempt_customer = ok(admin({"action": "add_line_item", "invoice_id": draft_id(2), **LINE}, "c"))[
        "invoice"
    ]
    assert (exempt_customer["lines"][-1]["tax"], exempt_customer["tax"]) == (0, 0)


def test_finalize_delivers_like_a_run(
    db: firestore.Client, call_function: Any, admin: Admin, smtp: SmtpServer
) -> None:
    seed(db, customers=2, email={"enabled": True, "from": "Review <billing@review.test>"})
    close(call_function)
    assert smtp.messages == []  # drafts are not delivered
    ok(admin({"action": "finalize", "invoice_ids": [draft_id(2), draft_id(1)]}, "bulk"))
    ok(admin({"action": "finalize", "invoice_ids": [draft_id(2), draft_id(1)]}, "bulk"))  # a retry
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["c1@example.com", "c2@example.com"]
    stored = f.invoices(db, T)
    assert all(stored[draft_id(n)]["pdf_uri"] and not stored[draft_id(n)]["delivery_pending"] for n in (1, 2))


def test_an_edited_anniversary_draft_waits_for_a_person(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=0, month_close_review=False, grace_period_hours=1)
    for name in ("ann", "bob"):
        f.customer(db, T, name)
        f.subscription(
            db,
            T,
            f"sub-{name}",
            name,
            "pro",
            billing_time="anniversary",
            started_at=datetime(2026, 10, 1, tzinfo=UTC),
            current_period_start=datetime(2026, 10, 1, tzinfo=UTC),
            current_period_end=datetime(2026, 11, 1, tzinfo=UTC),
        )
    status, body = call_function("generate_invoices", {"as_of": "2026-11-01T00:10:00Z"}, tenant=T)
    assert status == 200 and body["generated"] == 2, body
    ok(admin({"action": "add_line_item", "invoice_id": "sub-ann-20261001", **LINE}, "ann-setup"))
    status, body = call_function("generate_invoices", {"as_of": "2026-11-01T02:00:00Z"}, tenant=T)
    assert status == 200 and body["finalized"] == 1, body
    stored = f.invoices(db, T)
    assert stored["sub-bob-20261001"]["status"] == "open"  # the grace period as before
    ann = stored["sub-ann-20261001"]
    assert (ann["status"], ann["lines"][-1]["kind"]) == ("draft", "custom")
    assert (
        ok(admin({"action": "finalize", "invoice_id": "sub-ann-20261001"}))["invoice"]["number"]
        == "RV-2026-000002"
    )


def test_regenerate_a_regenerated_invoice_and_refuse_one_offs(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=1, month_close_review=False)
    close(call_function)
    ok(admin({"action": "void", "invoice_id": draft_id(1)}))
    first = ok(admin({"action": "regenerate", "invoice_id": draft_id(1)}))["invoice_id"]
    ok(admin({"action": "void", "invoice_id": first}))
    f.event(db, T, "late", "c1", "calls", OCT)
    second = ok(admin({"action": "regenerate", "invoice_id": first}))
    assert (second["invoice_id"], second["invoice"]["replaces"]) == (f"{draft_id(1)}-r2", first)
    assert second["invoice"]["subtotal"] == 1020 and second["invoice"]["status"] == "open"
    again = ok(admin({"action": "regenerate", "invoice_id": draft_id(1)}))  # answers its replacement
    assert (again["changed"], again["invoice_id"]) == (False, first)
    live = [i for i, d in f.invoices(db, T).items() if d["status"] not in ("void", "deleted")]
    assert live == [f"{draft_id(1)}-r2"]
    one_off = ok(
        admin({"action": "create_invoice", "customer_id": "c1", "idempotency_key": "k", "lines": [LINE]})
    )["invoice_id"]
    status, answer = admin({"action": "refresh_draft", "invoice_id": one_off})
    assert (status, answer["error"]["code"]) == (409, "one_off_invoice")


def test_drafts_stored_before_issue_10_are_edited_with_derived_line_ids(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=1)
    close(call_function)
    ref = db.document(f"tenants/{T}/invoices/{draft_id(1)}")
    old = ref.get().to_dict() or {}
    old_lines = [{k: v for k, v in line.items() if k != "line_id"} for line in old["lines"]]
    old_lines[-1]["kind"] = "flat"
    ref.update(
        {"lines": old_lines, "type": firestore.DELETE_FIELD, "amount_credited": firestore.DELETE_FIELD}
    )
    invoice = ok(admin({"action": "add_line_item", "invoice_id": draft_id(1), **LINE}, "x"))["invoice"]
    assert [line["line_id"] for line in invoice["lines"]][:2] == ["line-0", "line-1"]
    assert [line["line_id"] for line in f.invoices(db, T)[draft_id(1)]["lines"]][:2] == ["line-0", "line-1"]


def test_dispatch_is_the_library_entry_point(db: firestore.Client, call_function: Any) -> None:
    seed(db, customers=1)
    close(call_function)
    store = BillingStore(db)
    rendered: list[str] = []

    def sink(tenant: Any, invoices: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]], float]:
        rendered.extend(i["invoice_id"] for i in invoices)
        return [(i["invoice_id"], f"gs://test/{i['invoice_id']}.pdf") for i in invoices], [], 0.0

    body = {"action": "add_line_item", "invoice_id": draft_id(1), **LINE}
    first = dispatch(
        store, T, "finance@review.test", body, now=TODAY, request_id="console-1", publish_pdfs=sink
    )
    again = dispatch(
        store, T, "finance@review.test", body, now=TODAY, request_id="console-1", publish_pdfs=sink
    )
    assert (first["changed"], again["changed"]) == (True, False)
    done = dispatch(
        store,
        T,
        "finance@review.test",
        {"action": "finalize", "invoice_id": draft_id(1)},
        now=TODAY,
        publish_pdfs=sink,
    )
    assert done["invoice"]["number"] == "RV-2026-000001" and rendered == [draft_id(1)]
    assert f.invoices(db, T)[draft_id(1)]["history"][-1]["actor"] == "finance@review.test"


def test_a_one_off_draft_is_edited_then_finalized_in_the_same_series(
    db: firestore.Client, call_function: Any, admin: Admin
) -> None:
    seed(db, customers=1)
    close(call_function)
    ok(admin({"action": "finalize", "invoice_id": draft_id(1)}))  # RV-2026-000001
    body = {"action": "create_invoice", "customer_id": "c1", "idempotency_key": "extras-c1", "lines": [LINE]}
    draft = ok(admin(body))["invoice"]
    assert (draft["status"], draft["number"], draft["subscription_id"]) == ("draft", None, None)
    edited = ok(admin({"action": "add_line_item", "invoice_id": draft["invoice_id"], **LINE}, "more"))[
        "invoice"
    ]
    assert edited["total"] == 2 * 601  # 2 x 2.505 = 5.01 + 20 % = 6.01, twice
    # The same key again with finalize: the stored draft (with its added line) is finalized.
    final = ok(admin({**body, "finalize": True}))
    assert (final["created"], final["invoice"]["number"], final["invoice"]["total"]) == (
        False,
        "RV-2026-000002",
        1202,
    )
    assert f.invoices(db, T)[draft["invoice_id"]]["pdf_uri"]
