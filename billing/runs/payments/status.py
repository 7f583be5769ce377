"""The invoice status machine and the status changes of admins and dunning.

Status machine (Stripe's, "Invoice lifecycle"; ``paid`` and ``void`` are final)::

    draft -> open -> paid
    open -> void
    open -> uncollectible -> paid
    uncollectible -> void

Every change happens in one store transaction that re-reads the invoice
(``BillingStore.change_invoice``), so concurrent writers (the webhook, an admin, the dunning run)
cannot interleave; a change that the current status does not allow is refused (admin: 409) or
ignored (Stripe events: recorded as ignored). Nothing ever moves a ``paid`` invoice: voiding
one is 409 ``use_credit_note`` (``CONTRACT.md``; in the EU a credit note is the lawful way to
correct an issued invoice, VAT Directive art. 219, and Stripe cannot void a paid invoice either).

Payments recorded by an admin: an amount below what is due is a partial payment (Stripe's
"Accept partial payments": the invoice stays ``open``, ``amount_due`` shrinks); the whole amount
due makes it ``paid``; more is refused. Fields written: ``status``, ``amount_paid``,
``amount_due``, ``paid_at``, ``voided_at``, ``marked_uncollectible_at``, ``payments`` (``{amount,
paid_at, source, reference, by, at}``) and a ``history`` entry ``{action, actor, at, ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from billing.errors import Conflict, NotFound, echo
from billing.records import Invoice, Payment
from billing.store.firestore_store import BillingStore, InvoiceChange, history_entry

ALLOWED: dict[str, tuple[str, ...]] = {
    "paid": ("open", "uncollectible"),
    "void": ("open", "uncollectible"),
    "uncollectible": ("open",),
}
FINAL = ("paid", "void")
ACTIONS = {"paid": "mark_paid", "void": "void", "uncollectible": "mark_uncollectible"}


def can_move(current: str | None, target: str) -> bool:
    """True when an invoice in ``current`` may become ``target`` (see the module's machine)."""
    return current in ALLOWED.get(target, ())


def transition_conflict(invoice_id: str, current: str | None, target: str) -> Conflict:
    """The 409 for a move the machine does not allow.

    ``use_credit_note`` for the ``void`` of a paid invoice (correct it with
    ``create_credit_note``), else ``invalid_transition``.
    """
    if target == "void" and current == "paid":
        return Conflict(
            f"invoice {echo(invoice_id)} is paid; a paid invoice is corrected with a credit note "
            "(create_credit_note), not voided",
            code="use_credit_note",
        )
    return Conflict(
        f"invoice {echo(invoice_id)} is {current}; {ACTIONS.get(target, target)} is not allowed",
        code="invalid_transition",
    )


def status_change(target: str, at: datetime, invoice: Invoice) -> InvoiceChange:
    """The fields that come with a move of ``invoice`` to ``target`` at ``at``.

    ``paid``: nothing left due, ``amount_paid`` at least the total; ``void``: nothing due;
    ``uncollectible``: the time only (the debt stays due).

    Raises:
        ValueError: ``target`` is not one of the machine's targets.

    """
    if target == "paid":
        return InvoiceChange(
            status="paid", paid_at=at, amount_due=0, amount_paid=max(invoice.amount_paid, invoice.total)
        )
    if target == "void":
        return InvoiceChange(status="void", voided_at=at, amount_due=0)
    if target == "uncollectible":
        return InvoiceChange(status="uncollectible", marked_uncollectible_at=at)
    raise ValueError(f"unknown target status {target!r}")


@dataclass(frozen=True)
class ManualPayment:
    """A payment an admin records: ``amount`` in minor units, when it was paid, their reference."""

    amount: int
    paid_at: datetime
    reference: str | None = None


def payment_change(
    invoice: Invoice, payment: ManualPayment, actor: str, now: datetime
) -> tuple[InvoiceChange, str]:
    """The change recording ``payment`` on ``invoice`` and its history action.

    ``mark_paid`` when it pays everything due (the invoice becomes ``paid``), else
    ``partial_payment`` (it stays as it is, ``amount_due`` reduced).

    Raises:
        Conflict: ``amount_exceeds_due``.

    """
    due = invoice.amount_due
    if payment.amount > due:
        raise Conflict(
            f"amount {payment.amount} exceeds the amount due {due} of invoice {echo(invoice.id)}",
            code="amount_exceeds_due",
        )
    change = InvoiceChange(
        payment=Payment(payment.amount, payment.paid_at, "admin", payment.reference, actor, now),
        amount_paid=invoice.amount_paid + payment.amount,
        amount_due=due - payment.amount,
    )
    if payment.amount < due:
        return change, "partial_payment"
    return replace(change, status="paid", paid_at=payment.paid_at), "mark_paid"


@dataclass(frozen=True)
class StatusChange:
    """The invoice after ``change_status`` and whether this call changed it."""

    invoice: Invoice
    changed: bool


def change_status(
    store: BillingStore,
    tenant_id: str,
    invoice_id: str,
    target: str,
    actor: str,
    now: datetime,
    run_id: str,
    *,
    at: datetime | None = None,
    payment: ManualPayment | None = None,
    details: Mapping[str, Any] | None = None,
    dunning: Mapping[str, Mapping[str, Any]] | None = None,
) -> StatusChange:
    """Move one invoice to ``target`` (``paid``, ``void``, ``uncollectible``) or record a payment.

    ``payment`` (for ``paid``): an amount below what is due is recorded as a partial payment
    and the invoice stays ``open`` (``amount_due`` reduced). A ``reference`` already recorded
    makes the call a no-op (a retried admin request). ``details`` go into the ``history``
    entry; ``dunning`` (step -> record) is recorded in the same write (``dunning.uncollectible``).

    Raises:
        NotFound: no such invoice.
        Conflict: the current status does not allow the change, or the amount exceeds what is
            due.

    """

    def decide(invoice: Invoice | None) -> tuple[Invoice, InvoiceChange | None]:
        if invoice is None:
            raise NotFound(f"unknown invoice {echo(invoice_id)}", code="unknown_invoice")
        if payment is not None and invoice.paid_by(payment.reference):
            return invoice, None
        if not can_move(invoice.status, target):
            raise transition_conflict(invoice_id, invoice.status, target)
        if payment is not None:
            change, action = payment_change(invoice, payment, actor, now)
        else:
            change, action = status_change(target, at or now, invoice), ACTIONS[target]
        return invoice, replace(
            change,
            dunning=dunning or {},
            history=(history_entry(action, actor, now, run_id=run_id, **dict(details or {})),),
        )

    before, after = store.change_invoice(tenant_id, invoice_id, decide)
    return StatusChange(after or before, after is not None)
