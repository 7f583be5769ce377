"""Customers and subscriptions changing state: anniversary advances, dunning's suspension, reactivation.

Each is one transaction per call (per batch for advances) that re-reads what it changes, so
concurrent or repeated runs change each document once. What to do is decided by the caller
(``billing.runs``) from the documents read, through a callback; the documents written are
built here.

Suspension (``suspend_for_invoice``): the customer and the subscriptions the caller names go to
``suspended`` with ``suspension_reason``, ``suspended_at``, ``suspended_by: "dunning"``,
``suspension_id`` and a new open interval ``{from: now, to: null}`` appended to
``suspensions`` (the interval the billing runs prorate fixed fees by); the invoice records
``dunning.suspension``; the notice is queued in the outbox. Reactivation
(``reactivate_customer``) reverses a dunning suspension: ``active``, ``reactivated_at``,
``last_suspension`` (the suspension fields, which are deleted), ``suspensions`` with the open
interval closed at ``now`` (``closed_suspensions``), and the reactivation notice queued.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.records import Customer, Invoice
from billing.store.base import StoreBase, Transaction
from billing.store.invoices import InvoiceChange, StoredInvoice, history_entry, parse_invoice, update_fields
from billing.store.issuing import INVOICE_BATCH_SIZE
from billing.store.outbox import Notification, notification_document

SUSPENSION_FIELDS = ("suspension_reason", "suspended_at", "suspended_by", "suspension_id")


@dataclass(frozen=True)
class SubscriptionMove:
    """An anniversary subscription's move to its next period (``advance_subscriptions``)."""

    subscription_id: str
    expected_period_end: datetime
    period_start: datetime
    period_end: datetime
    anchor: datetime


@dataclass(frozen=True)
class Account:
    """A customer's documents as one transaction read them.

    ``customer`` is ``None`` when there is no such document; ``subscriptions`` are
    ``(id, document)`` of every subscription of the customer; ``invoices`` (reactivation only)
    the customer's ``open`` and ``uncollectible`` invoices.
    """

    customer_id: str
    customer: Mapping[str, Any] | None
    subscriptions: tuple[tuple[str, Mapping[str, Any]], ...]
    invoices: tuple[StoredInvoice, ...] = ()


@dataclass(frozen=True)
class SuspensionPlan:
    """What dunning decided for an overdue invoice's customer.

    ``suspension_id`` ``None``: the customer stays as is (already suspended, archived) and
    only the step is recorded on the invoice; otherwise the customer and ``subscriptions`` are
    suspended for ``reason`` and ``notice`` (if any) is queued.
    """

    reason: str
    suspension_id: str | None
    subscriptions: tuple[str, ...] = ()
    notice: Notification | None = None


@dataclass(frozen=True)
class ReactivationPlan:
    """What a reactivation does: the customer (as it will be), its suspension, subscriptions, notice."""

    customer: Customer
    suspension_id: str
    subscriptions: tuple[str, ...]
    notice: Notification | None


def closed_suspensions(data: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The document's ``suspensions`` with every open interval closed at ``now``.

    A document suspended before intervals were recorded (no open one) gets its interval
    ``{from: suspended_at, to: now}`` (``from`` null when ``suspended_at`` is unknown).
    """
    raw = data.get("suspensions")
    intervals = [dict(i) for i in raw if isinstance(i, Mapping)] if isinstance(raw, list) else []
    if not any(i.get("to") is None for i in intervals):
        intervals.append({"from": data.get("suspended_at"), "to": None})
    return [{**i, "to": now} if i.get("to") is None else i for i in intervals]


def _resumed_fields(data: Mapping[str, Any], now: datetime, kept: Sequence[str]) -> dict[str, Any]:
    """The update that ends a suspension: ``active``, the interval closed, ``kept`` remembered."""
    return {
        "status": "active",
        "reactivated_at": now,
        "suspensions": closed_suspensions(data, now),
        "last_suspension": {k: data.get(k) for k in kept},
        **{k: firestore.DELETE_FIELD for k in kept},
    }


class AccountStore(StoreBase):
    """Subscription advances, suspensions and reactivations (see the module docstring)."""

    def advance_subscriptions(
        self,
        tenant_id: str,
        moves: Sequence[SubscriptionMove],
        *,
        now: datetime,
        batch_size: int = INVOICE_BATCH_SIZE,
    ) -> int:
        """Move anniversary subscriptions to their next period, each once.

        One transaction per batch reads the subscriptions and updates only those whose
        ``current_period_end`` still equals the move's ``expected_period_end``, so a concurrent or
        repeated run that already advanced one changes nothing. Returns how many this call moved.
        """
        advanced = 0
        for start in range(0, len(moves), batch_size):
            batch = list(moves[start : start + batch_size])
            refs = [self._doc(tenant_id, "subscriptions", m.subscription_id) for m in batch]

            def run(
                tx: Transaction,
                batch: list[SubscriptionMove] = batch,
                refs: list[firestore.DocumentReference] = refs,
            ) -> int:
                snapshots = tx.get_all(refs)
                moved = 0
                for move, ref in zip(batch, refs, strict=True):
                    snapshot = snapshots[move.subscription_id]
                    data = snapshot.to_dict() or {}
                    if not snapshot.exists or data.get("current_period_end") != move.expected_period_end:
                        continue
                    tx.update(
                        ref,
                        {
                            "current_period_start": move.period_start,
                            "current_period_end": move.period_end,
                            "billing_cycle_anchor": data.get("billing_cycle_anchor") or move.anchor,
                            "period_advanced_at": now,
                        },
                    )
                    moved += 1
                return moved

            advanced += self.run_transaction(run)
        return advanced

    def suspended_customer_ids(self, tenant_id: str) -> list[str]:
        """Ids of the tenant's customers with ``status == "suspended"``, sorted (``dunning``)."""
        query = self._collection(tenant_id, "customers").where(
            filter=FieldFilter("status", "==", "suspended")
        )
        return sorted(s.id for s in self._stream(query.select(["suspended_by"])))

    def _account(
        self,
        tx: Transaction,
        tenant_id: str,
        customer_id: str,
        customer: Mapping[str, Any] | None,
        with_invoices: bool,
    ) -> Account:
        """Read the customer's subscriptions (and open/uncollectible invoices) in ``tx``."""
        subs = tx.query(
            self._collection(tenant_id, "subscriptions").where(
                filter=FieldFilter("customer_id", "==", customer_id)
            )
        )
        invoices: tuple[StoredInvoice, ...] = ()
        if with_invoices:
            invoices = tuple(
                parse_invoice(s)
                for s in tx.query(
                    self._collection(tenant_id, "invoices")
                    .where(filter=FieldFilter("customer_id", "==", customer_id))
                    .where(filter=FieldFilter("status", "in", ["open", "uncollectible"]))
                )
            )
        return Account(customer_id, customer, tuple((s.id, s.to_dict() or {}) for s in subs), invoices)

    def suspend_for_invoice(
        self,
        tenant_id: str,
        invoice_id: str,
        decide: Callable[[Invoice, Account], SuspensionPlan],
        *,
        now: datetime,
        as_of: datetime,
        run_id: str,
    ) -> SuspensionPlan | None:
        """Record ``dunning.suspension`` on the invoice and suspend as ``decide`` says, at once.

        In one transaction: the invoice is read; unless it is still ``open`` without a
        suspension record (else ``None``: a concurrent run did it, or it was paid), the
        customer and their subscriptions are read and ``decide(invoice, account)`` gives the
        plan, which is written (module docstring) with the invoice's record ``{at, as_of,
        run_id, customer_suspended, suspension_id, subscriptions, notice, reason}``.

        Raises:
            DataError: the invoice cannot be parsed (or ``decide`` raised it).

        """
        invoice_ref = self._doc(tenant_id, "invoices", invoice_id)

        def run(tx: Transaction) -> SuspensionPlan | None:
            snapshot = tx.get(invoice_ref)
            if not snapshot.exists:
                return None
            invoice = Invoice.from_document(invoice_id, snapshot.to_dict() or {})
            if invoice.status != "open" or "suspension" in invoice.dunning:
                return None
            customer_ref = self._doc(tenant_id, "customers", invoice.customer_id)
            found = tx.get(customer_ref)
            account = self._account(
                tx, tenant_id, invoice.customer_id, (found.to_dict() or {}) if found.exists else None, False
            )
            plan = decide(invoice, account)
            if plan.suspension_id is not None:
                self._suspend(tx, tenant_id, customer_ref, invoice_id, plan, now, run_id)
            tx.update(
                invoice_ref,
                update_fields(
                    InvoiceChange(
                        dunning={
                            "suspension": {
                                "at": now,
                                "as_of": as_of,
                                "run_id": run_id,
                                "customer_suspended": plan.suspension_id is not None,
                                "suspension_id": plan.suspension_id,
                                "subscriptions": list(plan.subscriptions),
                                "notice": plan.notice.id if plan.notice else None,
                                "reason": plan.reason,
                            }
                        },
                        history=(
                            history_entry(
                                "dunning.suspension",
                                "dunning",
                                now,
                                run_id=run_id,
                                as_of=as_of,
                                customer_suspended=plan.suspension_id is not None,
                            ),
                        ),
                    )
                ),
            )
            return plan

        return self.run_transaction(run)

    def _suspend(
        self,
        tx: Transaction,
        tenant_id: str,
        customer_ref: firestore.DocumentReference,
        invoice_id: str,
        plan: SuspensionPlan,
        now: datetime,
        run_id: str,
    ) -> None:
        """Write a suspension: the customer, the planned subscriptions and the queued notice."""
        fields = {
            "suspension_reason": plan.reason,
            "suspended_at": now,
            "suspended_by": "dunning",
            "suspension_id": plan.suspension_id,
            "suspensions": firestore.ArrayUnion([{"from": now, "to": None}]),
        }
        tx.update(
            customer_ref,
            {
                "status": "suspended",
                **fields,
                "suspension_invoice_id": invoice_id,
                "history": firestore.ArrayUnion(
                    [
                        history_entry(
                            "suspended",
                            "dunning",
                            now,
                            invoice_id=invoice_id,
                            run_id=run_id,
                            reason=plan.reason,
                        )
                    ]
                ),
            },
        )
        for sub_id in plan.subscriptions:
            tx.update(self._doc(tenant_id, "subscriptions", sub_id), {"status": "suspended", **fields})
        if plan.notice is not None:
            tx.set(
                self._doc(tenant_id, "notifications", plan.notice.id),
                notification_document(plan.notice, "pending", now, run_id),
            )

    def reactivate_customer(
        self,
        tenant_id: str,
        customer_id: str,
        decide: Callable[[Account], ReactivationPlan | None],
        *,
        now: datetime,
        as_of: datetime,
        run_id: str,
        actor: str,
        dry_run: bool = False,
    ) -> ReactivationPlan | None:
        """End a customer's dunning suspension as ``decide`` says, in one transaction.

        Only a customer whose ``status`` is ``suspended`` with ``suspended_by == "dunning"``
        qualifies (else ``None``, after one read); then their open and uncollectible invoices
        and subscriptions are read and ``decide(account)`` returns the plan or ``None``. The
        plan is written (module docstring: the customer with a ``reactivated`` history entry,
        the planned subscriptions, the notice created ``pending``) unless ``dry_run``.
        """
        customer_ref = self._doc(tenant_id, "customers", customer_id)

        def run(tx: Transaction) -> ReactivationPlan | None:
            snapshot = tx.get(customer_ref)
            data = (snapshot.to_dict() or {}) if snapshot.exists else {}
            if data.get("status") != "suspended" or data.get("suspended_by") != "dunning":
                return None
            account = self._account(tx, tenant_id, customer_id, data, True)
            plan = decide(account)
            if plan is None or dry_run:
                return plan
            tx.update(
                customer_ref,
                {
                    **_resumed_fields(data, now, (*SUSPENSION_FIELDS, "suspension_invoice_id")),
                    "history": firestore.ArrayUnion(
                        [
                            history_entry(
                                "reactivated",
                                actor,
                                now,
                                run_id=run_id,
                                suspension_id=plan.suspension_id,
                                as_of=as_of,
                            )
                        ]
                    ),
                },
            )
            subs = dict(account.subscriptions)
            for sub_id in plan.subscriptions:
                tx.update(
                    self._doc(tenant_id, "subscriptions", sub_id),
                    _resumed_fields(subs[sub_id], now, SUSPENSION_FIELDS),
                )
            if plan.notice is not None:
                tx.create(
                    self._doc(tenant_id, "notifications", plan.notice.id),
                    notification_document(plan.notice, "pending", now, run_id),
                )
            return plan

        return self.run_transaction(run)
