"""Reactivation: a customer suspended by dunning comes back once nothing is overdue any more.

A customer suspended by dunning (``suspended_by == "dunning"``) is reactivated when nothing
blocks (after a payment, a void, or a credit note that leaves nothing due): no ``open`` invoice
with ``due_at`` before ``as_of`` and an ``amount_due`` left, and no ``uncollectible`` invoice (a
written-off debt keeps the account suspended, as Stripe's "Subscription status: unpaid" keeps a
subscription off until it is paid). The customer and the subscriptions that this suspension
(``suspension_id``) suspended go back to ``active`` in one transaction
(``BillingStore.reactivate_customer``), which also records the reactivation notice in the
notification outbox (``billing.delivery.outbox``), so the notice is sent once, later if email is
down. Fields written on customers: ``status``, ``reactivated_at``, ``last_suspension``,
``suspensions``; on subscriptions the same (the open interval closed at the reactivation time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billing.delivery.outbox import reactivation_notification
from billing.records import Customer, Tenant
from billing.store.firestore_store import Account, BillingStore, ReactivationPlan, StoredInvoice


def blocking_invoices(invoices: Sequence[StoredInvoice], as_of: datetime) -> list[str]:
    """Ids among ``invoices`` that keep a customer suspended at ``as_of``.

    Blocking: ``open`` with ``due_at`` before ``as_of`` and something still due (``amount_due``
    after payments and credit notes), or ``uncollectible``; an invoice that cannot be read blocks
    too (nobody can tell it is paid).
    """
    out = []
    for invoice in invoices:
        if isinstance(invoice, tuple):
            out.append(invoice[0])
        elif invoice.status == "uncollectible" or (
            invoice.status == "open"
            and invoice.amount_due > 0
            and invoice.due_at is not None
            and invoice.due_at < as_of
        ):
            out.append(invoice.id)
    return out


def resumes(subscription: Mapping[str, Any], suspension_id: str) -> bool:
    """Whether a subscription document comes back with the suspension ``suspension_id``.

    Only those dunning suspended, for this suspension (a document without ``suspension_id``
    was suspended by it: written before suspensions had ids).
    """
    return (
        subscription.get("status") == "suspended"
        and subscription.get("suspended_by") == "dunning"
        and subscription.get("suspension_id", suspension_id) == suspension_id
    )


@dataclass
class Reactivation:
    """A reactivation done: the customer, the subscriptions resumed, the notice's outbox id."""

    customer: Customer
    subscriptions: list[str]
    notification_id: str | None


def reactivate_if_clear(
    store: BillingStore,
    tenant: Tenant,
    customer_id: str,
    as_of: datetime,
    now: datetime,
    run_id: str,
    *,
    actor: str = "system",
    notify: bool = True,
    dry_run: bool = False,
) -> Reactivation | None:
    """Reactivate ``customer_id`` if dunning suspended them and nothing blocks any more.

    One transaction reads the customer, their open/uncollectible invoices and subscriptions,
    then writes the customer (``active``), each subscription this suspension suspended
    (``resumes``), closing their open ``suspensions`` interval at ``now``, and, with ``notify``
    and a customer email, a ``pending`` reactivation notice in the outbox. ``dry_run`` decides
    without writing. Returns None when nothing was (or would be) done.

    Raises:
        DataError: the customer document is invalid.

    """

    def decide(account: Account) -> ReactivationPlan | None:
        if blocking_invoices(account.invoices, as_of):
            return None
        data = account.customer or {}
        customer = Customer.parse(customer_id, {**data, "status": "active"})
        suspension_id = str(data.get("suspension_id") or f"t{int(now.timestamp())}")
        resumed = tuple(sub_id for sub_id, sub in account.subscriptions if resumes(sub, suspension_id))
        note = reactivation_notification(customer, suspension_id) if notify else None
        return ReactivationPlan(customer, suspension_id, resumed, note)

    plan = store.reactivate_customer(
        tenant.id, customer_id, decide, now=now, as_of=as_of, run_id=run_id, actor=actor, dry_run=dry_run
    )
    if plan is None:
        return None
    return Reactivation(plan.customer, list(plan.subscriptions), plan.notice.id if plan.notice else None)
