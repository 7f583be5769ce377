"""The invoice status machine directly (issue 9, item 7): ``billing.runs.payments.status``.

Stripe's invoice lifecycle: ``draft -> open -> paid``, ``open -> void``,
``open -> uncollectible -> paid``, ``uncollectible -> void``; ``paid`` and ``void`` are final.
Pure rules: which moves are allowed, the fields a move writes, and how an admin's payment
is recorded (partial, whole, or refused). The store transaction around them is tested on the
emulator (``tests/e2e/store/test_invoice_record.py``, ``tests/e2e/runs/test_billing_admin.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from billing.errors import Conflict
from billing.records import Invoice, Payment
from billing.runs.payments.status import (
    ACTIONS,
    ALLOWED,
    FINAL,
    ManualPayment,
    can_move,
    payment_change,
    status_change,
)

STATUSES = ("draft", "open", "paid", "void", "uncollectible")
AT = datetime(2026, 11, 20, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
EDGES = {
    ("open", "paid"),
    ("open", "void"),
    ("open", "uncollectible"),
    ("uncollectible", "paid"),
    ("uncollectible", "void"),
}


def invoice(**fields: Any) -> Invoice:
    """An open GBP invoice of 18000 (15000 + 20 % tax), nothing paid, with ``fields`` over it."""
    document: dict[str, Any] = {
        "tenant_id": "acme",
        "customer_id": "alice",
        "subscription_id": "sub-alice",
        "period_start": datetime(2026, 9, 30, 23, tzinfo=UTC),
        "period_end": datetime(2026, 11, 1, tzinfo=UTC),
        "currency": "GBP",
        "lines": [],
        "subtotal": 15000,
        "tax": 3000,
        "total": 18000,
        "amount_paid": 0,
        "amount_due": 18000,
        "status": "open",
    }
    document.update(fields)
    return Invoice.from_document("inv-1", document)


@pytest.mark.parametrize("current", [*STATUSES, None])
@pytest.mark.parametrize("target", STATUSES)
def test_exactly_the_lifecycle_edges_are_allowed(current: str | None, target: str) -> None:
    assert can_move(current, target) is ((current, target) in EDGES)


def test_final_statuses_never_move_and_every_target_has_an_action() -> None:
    assert set(FINAL) == {"paid", "void"}
    assert not any(can_move(final, target) for final in FINAL for target in STATUSES)
    assert set(ACTIONS) == set(ALLOWED) == {"paid", "void", "uncollectible"}
    assert ACTIONS == {"paid": "mark_paid", "void": "void", "uncollectible": "mark_uncollectible"}


def test_paid_leaves_nothing_due_and_counts_at_least_the_total_paid() -> None:
    change = status_change("paid", AT, invoice())
    assert (change.status, change.paid_at, change.amount_due, change.amount_paid) == ("paid", AT, 0, 18000)
    partly = status_change("paid", AT, invoice(amount_paid=5000, amount_due=13000))
    assert (partly.amount_paid, partly.amount_due) == (18000, 0)
    over = status_change("paid", AT, invoice(amount_paid=20000, amount_due=0))
    assert over.amount_paid == 20000  # what was received is never reduced


def test_void_clears_what_is_due_and_uncollectible_keeps_the_debt() -> None:
    void = status_change("void", AT, invoice(amount_paid=5000, amount_due=13000))
    assert (void.status, void.voided_at, void.amount_due, void.amount_paid) == ("void", AT, 0, None)
    bad = status_change("uncollectible", AT, invoice(amount_paid=5000, amount_due=13000))
    assert (bad.status, bad.marked_uncollectible_at, bad.amount_due, bad.amount_paid) == (
        "uncollectible",
        AT,
        None,
        None,
    )


@pytest.mark.parametrize("target", ["refunded", "draft", "open", ""])
def test_a_target_outside_the_machine_is_a_value_error(target: str) -> None:
    with pytest.raises(ValueError, match="unknown target status"):
        status_change(target, AT, invoice())


def test_a_payment_below_what_is_due_is_partial_and_keeps_the_status() -> None:
    change, action = payment_change(
        invoice(amount_paid=3000, amount_due=15000), ManualPayment(5000, AT, "r1"), "ops@x.test", NOW
    )
    assert action == "partial_payment"
    assert (change.status, change.paid_at, change.amount_paid, change.amount_due) == (None, None, 8000, 10000)
    assert change.payment == Payment(5000, AT, "admin", "r1", "ops@x.test", NOW)


def test_a_payment_of_everything_due_marks_the_invoice_paid_when_it_was_paid() -> None:
    change, action = payment_change(invoice(amount_due=18000), ManualPayment(18000, AT), "ops@x.test", NOW)
    assert action == "mark_paid"
    assert (change.status, change.paid_at, change.amount_paid, change.amount_due) == ("paid", AT, 18000, 0)
    assert change.payment == Payment(18000, AT, "admin", None, "ops@x.test", NOW)


def test_a_payment_over_what_is_due_is_refused() -> None:
    with pytest.raises(Conflict, match="exceeds the amount due 15000") as caught:
        payment_change(invoice(amount_paid=3000, amount_due=15000), ManualPayment(15001, AT), "ops", NOW)
    assert caught.value.code == "amount_exceeds_due"
