"""Payment status of invoices: the allowed transitions, Stripe's invoice events, reactivation.

Status machine (Stripe's, "Invoice lifecycle"; ``paid`` and ``void`` are final)::

    draft -> open -> paid
    open -> void
    open -> uncollectible -> paid
    uncollectible -> void

Every change happens in a Firestore transaction that re-reads the invoice, so concurrent
writers (the webhook, an admin, the dunning run) cannot interleave; a change that the current
status does not allow is refused (admin: 409) or ignored (Stripe events: recorded as ignored).
Nothing ever moves a ``paid`` invoice to another status.

Stripe events (``invoice.paid``, ``invoice.payment_succeeded``, ``invoice.payment_failed``,
``invoice.voided``, ``invoice.marked_uncollectible``) are applied idempotently: each event id is
recorded on the invoice (``stripe_event_ids``) in the same transaction as its effect, so a
redelivered event (Stripe delivers at least once and may deliver out of order: "Best practices
for using webhooks") changes nothing at all. Events arriving out of order are harmless because the
status machine only moves forward.

Trust (contract, "Stripe webhook: whose objects it may touch"): a correctly signed event only
proves that it comes from *some* Stripe account that can reach our endpoint. It acts only when
its ``metadata.tenant_id``/``invoice_id`` are valid ids, its ``account`` equals the tenant's
``stripe.account`` (or both are absent), the tenant has ``stripe.enabled``, our invoice has a
recorded ``stripe_invoice_id`` (written by ``billing.delivery.stripe_billing`` when we pushed it, never
from an event) equal to the event's object id and, for a payment, the currency is the
invoice's. Anything else is ``ignored`` with a reason and writes nothing.

Payments: Stripe's invoice ``amount_paid`` is the total the Stripe invoice has received so far;
the new money is that total minus the Stripe payments already recorded on our invoice. Money
below what is due is a partial payment (Stripe's "Accept partial payments": the invoice stays
``open`` and ``amount_remaining`` shrinks): it is added to ``payments`` and ``amount_paid``,
``amount_due`` is lowered, the status stays. The invoice becomes ``paid`` when nothing is due.

Reactivation: a customer suspended by dunning (``suspended_by == "dunning"``) is reactivated when
nothing is overdue any more: no ``open`` invoice with ``due_at`` before ``as_of`` and no
``uncollectible`` invoice (a written-off debt keeps the account suspended). The customer and the
subscriptions that dunning suspended go back to ``active`` in one transaction, which also records
the reactivation notice in the notification outbox (``billing.delivery.outbox``), so the notice is sent
once, later if email is down.

Fields written on invoices: ``status``, ``amount_paid``, ``amount_due``, ``paid_at``,
``voided_at``, ``marked_uncollectible_at``, ``payments`` (list of ``{amount, paid_at, source,
reference, by, at}``), ``payment_failures``, ``last_payment_failure``, ``stripe_event_ids``,
``history`` (``{action, actor, at, ...}``). On customers: ``status``, ``reactivated_at``,
``last_suspension``, ``suspensions``; on subscriptions: ``status``, ``reactivated_at``,
``last_suspension``, ``suspensions`` (the open interval closed at the reactivation time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.delivery.outbox import (
    history_entry,
    notification_document,
    reactivation_notification,
)
from billing.delivery.stripe_billing import from_stripe_amount
from billing.errors import BadRequest, Conflict, NotFound, echo
from billing.records import Customer, Tenant
from billing.store.firestore_store import BillingStore

PAYMENT_EVENTS = ("invoice.paid", "invoice.payment_succeeded")
HANDLED_EVENTS = (*PAYMENT_EVENTS, "invoice.payment_failed", "invoice.voided",
                  "invoice.marked_uncollectible")
# Our document-id rule (billing.http.shell.identifier), matched in full.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,254}")
ALLOWED: dict[str, tuple[str, ...]] = {
    "paid": ("open", "uncollectible"),
    "void": ("open", "uncollectible"),
    "uncollectible": ("open",),
}
FINAL = ("paid", "void")


def can_move(current: str | None, target: str) -> bool:
    """True when an invoice in ``current`` may become ``target`` (see the module's machine)."""
    return current in ALLOWED.get(target, ())


def status_fields(target: str, at: datetime, invoice: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that come with a move to ``target`` at ``at``."""
    if target == "paid":
        total = int(invoice.get("total") or 0)
        return {"status": "paid", "paid_at": at, "amount_due": 0,
                "amount_paid": max(int(invoice.get("amount_paid") or 0), total)}
    if target == "void":
        return {"status": "void", "voided_at": at, "amount_due": 0}
    if target == "uncollectible":
        return {"status": "uncollectible", "marked_uncollectible_at": at}
    raise ValueError(f"unknown target status {target!r}")


# -- Stripe events -------------------------------------------------------------------------------
class EventIgnored(Exception):  # an outcome, not an error: the webhook answers 200
    """A verified event we acknowledge without acting on it; nothing is written.

    ``reason`` is the stable snake_case code answered as ``{"ignored": reason}``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class EventOutcome:
    """What an event did: ``result`` is ``applied``, ``duplicate`` or ``ignored`` (+ ``reason``)."""

    result: str
    reason: str | None = None
    tenant_id: str | None = None
    invoice_id: str | None = None
    customer_id: str | None = None
    status: str | None = None
    reactivate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view (for the webhook's response); ``ignored`` carries the reason."""
        body: dict[str, Any] = {"result": self.result}
        if self.result == "ignored":
            body["ignored"] = self.reason
        for key in ("reason", "tenant_id", "invoice_id", "status"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body


@dataclass(frozen=True)
class EventTarget:
    """The invoice an event names: our ids (from ``metadata``) and the Stripe invoice object."""

    tenant_id: str
    invoice_id: str
    stripe_id: str
    obj: Mapping[str, Any]


def _epoch_time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def valid_id(value: Any) -> bool:
    """True for a document id by our rule (``billing.http.shell.identifier``, matched in full).

    Letters, digits and ``_ . : @ + -``, starting with a letter or digit, at most 255
    characters: this excludes every id Firestore refuses (``.``, ``..``, ``__x__``, ``/``,
    empty, over 1,500 bytes).
    """
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def event_target(event: Mapping[str, Any]) -> EventTarget:
    """The invoice an invoice event names (``metadata.tenant_id``/``invoice_id``, object ``id``).

    Raises:
        BadRequest: the event has no ``id``/``type`` or its object is not a map.
        EventIgnored: ``not_our_invoice`` (no such metadata: an invoice we did not create),
            ``invalid_metadata`` (ids that are not valid ids), ``missing_object_id``.

    """
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise BadRequest("event has no id or type", code="invalid_event")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise BadRequest("event has no data.object", code="invalid_event")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, Mapping) or ("tenant_id" not in meta and "invoice_id" not in meta):
        raise EventIgnored("not_our_invoice")
    tenant_id, invoice_id = meta.get("tenant_id"), meta.get("invoice_id")
    if not (valid_id(tenant_id) and valid_id(invoice_id)):
        raise EventIgnored("invalid_metadata")
    stripe_id = obj.get("id")
    if not isinstance(stripe_id, str) or not stripe_id:
        raise EventIgnored("missing_object_id")
    return EventTarget(str(tenant_id), str(invoice_id), stripe_id, obj)


def check_tenant(store: BillingStore, tenant_id: str, event: Mapping[str, Any]) -> None:
    """Check that ``tenant_id`` takes events from the account that sent ``event``.

    The contract ("Stripe webhook: whose objects it may touch"): the tenant exists, has
    ``stripe.enabled`` (exactly ``true``), and the event's ``account`` (set by Stripe on events
    of a Connect account) equals ``tenants/{t}.stripe.account``, or both are absent.

    Raises:
        EventIgnored: ``unknown_tenant``, ``stripe_not_enabled`` or ``account_mismatch``.

    """
    snapshot = store.tenant_ref(tenant_id).get()
    store.reads += 1
    if not snapshot.exists:
        raise EventIgnored("unknown_tenant")
    config = (snapshot.to_dict() or {}).get("stripe")
    if not isinstance(config, Mapping) or config.get("enabled") is not True:
        raise EventIgnored("stripe_not_enabled")
    if (config.get("account") or None) != (event.get("account") or None):
        raise EventIgnored("account_mismatch")


def stripe_payment(invoice: Mapping[str, Any], obj: Mapping[str, Any]) -> int:
    """The new money a payment event reports for ``invoice`` (our minor units; may be <= 0).

    Stripe's invoice ``amount_paid`` is what the Stripe invoice has received in total so far
    (Stripe API, "The Invoice object"; with partial payments it grows with each payment). The
    new payment is that total minus the Stripe payments already recorded on our invoice, so
    ``invoice.paid`` and ``invoice.payment_succeeded`` for the same payment, redeliveries and
    late events never count money twice.

    Raises:
        EventIgnored: ``currency_mismatch`` (the object's currency is not the invoice's) or
            ``invalid_amount`` (``amount_paid`` missing, not an integer or negative).

    """
    currency = str(invoice.get("currency") or "")
    theirs = obj.get("currency")
    if not currency or not isinstance(theirs, str) or theirs.upper() != currency.upper():
        raise EventIgnored("currency_mismatch")
    paid = obj.get("amount_paid")
    if isinstance(paid, bool) or not isinstance(paid, int) or paid < 0:
        raise EventIgnored("invalid_amount")
    recorded = sum(int(p.get("amount") or 0) for p in invoice.get("payments") or []
                   if isinstance(p, Mapping) and p.get("source") == "stripe")
    return from_stripe_amount(currency, paid) - recorded


def _payment_updates(invoice: Mapping[str, Any], amount: int, paid_at: datetime,
                     event_id: str, now: datetime) -> tuple[dict[str, Any], str]:
    """Fields recording ``amount`` received; ``paid`` once nothing is due, else partial."""
    due = int(invoice.get("amount_due", invoice.get("total", 0)) or 0)
    updates: dict[str, Any] = {
        "amount_paid": int(invoice.get("amount_paid") or 0) + amount,
        "amount_due": max(0, due - amount),
        "payments": firestore.ArrayUnion([{
            "amount": amount, "paid_at": paid_at, "source": "stripe", "reference": event_id,
            "by": "stripe", "at": now}])}
    if amount < due:
        return updates, "partial_payment"
    updates.update({"status": "paid", "paid_at": paid_at})
    return updates, "paid"


def event_updates(event_type: str, event: Mapping[str, Any], obj: Mapping[str, Any],
                  invoice: Mapping[str, Any], now: datetime) -> tuple[dict[str, Any], str]:
    """``(fields to write, effect)`` of a trusted event on ``invoice``; effect ``none``: nothing.

    Raises:
        EventIgnored: a payment in another currency or with a bad amount (``stripe_payment``).

    """
    current = str(invoice.get("status"))
    happened = _epoch_time(event.get("created")) or now
    event_id = str(event["id"])
    if event_type in PAYMENT_EVENTS:
        amount = stripe_payment(invoice, obj)
        if not can_move(current, "paid") or amount <= 0:
            return {}, "none"
        transitions = obj.get("status_transitions")
        paid_at = _epoch_time((transitions if isinstance(transitions, Mapping) else {})
                              .get("paid_at")) or happened
        return _payment_updates(invoice, amount, paid_at, event_id, now)
    if event_type in ("invoice.voided", "invoice.marked_uncollectible"):
        target = "void" if event_type == "invoice.voided" else "uncollectible"
        if not can_move(current, target):
            return {}, "none"
        return status_fields(target, happened, invoice), target
    if current != "open":  # invoice.payment_failed: informative, no status change
        return {}, "none"
    return {"payment_failures": firestore.Increment(1),
            "last_payment_failure": {
                "at": happened, "event_id": event_id, "attempt_count": obj.get("attempt_count"),
                "next_payment_attempt": _epoch_time(obj.get("next_payment_attempt"))}
            }, "payment_failed"


def _apply_in_transaction(transaction: firestore.Transaction, ref: firestore.DocumentReference,
                          target: EventTarget, event: Mapping[str, Any], now: datetime,
                          run_id: str) -> EventOutcome:
    """The twin check, then the event's effect on the invoice, in one transaction.

    Raises:
        EventIgnored: no such invoice, no recorded twin or another one, or a payment the
            invoice cannot take (``event_updates``); nothing is written.

    """
    event_type = str(event["type"])
    snapshot = ref.get(transaction=transaction)
    if not snapshot.exists:
        raise EventIgnored("unknown_invoice")
    invoice = snapshot.to_dict() or {}
    recorded = invoice.get("stripe_invoice_id")
    if not recorded:
        raise EventIgnored("no_stripe_twin")
    if recorded != target.stripe_id:
        raise EventIgnored("stripe_invoice_mismatch")
    outcome = EventOutcome("applied", tenant_id=target.tenant_id,
                           invoice_id=target.invoice_id,
                           customer_id=invoice.get("customer_id"),
                           status=invoice.get("status"))
    if event["id"] in (invoice.get("stripe_event_ids") or []):
        outcome.result = "duplicate"
        return outcome
    updates, effect = event_updates(event_type, event, target.obj, invoice, now)
    if effect == "none":
        outcome.result = "ignored"
        outcome.reason = ("no_new_payment" if event_type in PAYMENT_EVENTS
                          and can_move(outcome.status, "paid")
                          else f"invoice_is_{outcome.status}")
    outcome.status = updates.get("status", outcome.status)
    outcome.reactivate = effect in ("paid", "void")
    updates["stripe_event_ids"] = firestore.ArrayUnion([event["id"]])
    updates["history"] = firestore.ArrayUnion([history_entry(
        event_type, "stripe", now, event_id=event["id"], effect=effect, run_id=run_id,
        event_created=_epoch_time(event.get("created")) or now)])
    transaction.update(ref, updates)
    return outcome


def apply_stripe_event(store: BillingStore, event: Mapping[str, Any], now: datetime,
                       run_id: str) -> EventOutcome:
    """Apply a verified Stripe event to our invoice (idempotent; see the module docstring).

    An event acts only when every rule of the contract holds (see ``event_target``,
    ``check_tenant``, the twin check of ``_apply_in_transaction`` and ``stripe_payment``); it is
    otherwise ``ignored`` with a reason and nothing is written. The twin check: our invoice has a
    recorded ``stripe_invoice_id`` (written only when we pushed it, never from an event) equal
    to the event's object id. A trusted event whose effect the invoice's status does not allow
    (or a payment that brings no new money) is ``ignored`` with ``invoice_is_<status>`` or
    ``no_new_payment`` but recorded on the invoice (event id, ``history``) as an audit trail.

    Raises:
        BadRequest: the event is malformed (no id, type or object).

    """
    event_type = str(event.get("type"))
    if event_type not in HANDLED_EVENTS:
        return EventOutcome("ignored", reason="unhandled_event_type")
    try:
        target = event_target(event)
        check_tenant(store, target.tenant_id, event)
    except EventIgnored as ignored:
        return EventOutcome("ignored", reason=ignored.reason)
    ref = store.invoice_ref(target.tenant_id, target.invoice_id)

    def run(transaction: firestore.Transaction) -> EventOutcome:
        return _apply_in_transaction(transaction, ref, target, event, now, run_id)

    try:
        result = store.run_transaction(run)
    except EventIgnored as ignored:
        return EventOutcome("ignored", reason=ignored.reason, tenant_id=target.tenant_id,
                            invoice_id=target.invoice_id)
    finally:
        store.reads += 1
    store.writes += result.result != "duplicate"
    return result


# -- admin payments and status changes -----------------------------------------------------------
def change_status(store: BillingStore, tenant_id: str, invoice_id: str, target: str,
                  actor: str, now: datetime, run_id: str, *, at: datetime | None = None,
                  payment: Mapping[str, Any] | None = None,
                  details: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Move one invoice to ``target`` (``paid``, ``void``, ``uncollectible``) or record a payment.

    ``payment`` (for ``paid``): ``{amount, paid_at, reference}``; an amount below what is due
    is recorded as a partial payment and the invoice stays ``open`` (``amount_due`` reduced).
    A ``reference`` already recorded makes the call a no-op (a retried admin request).
    ``details`` go into the ``history`` entry; ``extra`` are more fields written in the same
    transaction (e.g. ``dunning.uncollectible``).

    Returns the invoice document after the change (with ``invoice_id`` and ``changed``).

    Raises:
        NotFound: no such invoice.
        Conflict: the current status does not allow the change, or the amount exceeds what is
            due.

    """
    ref = store.invoice_ref(tenant_id, invoice_id)
    at = at or now

    def run(transaction: firestore.Transaction) -> dict[str, Any]:
        snapshot = ref.get(transaction=transaction)
        if not snapshot.exists:
            raise NotFound(f"unknown invoice {echo(invoice_id)}", code="unknown_invoice")
        invoice = snapshot.to_dict() or {}
        current = invoice.get("status")
        if payment is not None:
            reference = payment.get("reference")
            if reference and any(p.get("reference") == reference
                                 for p in invoice.get("payments") or []):
                return {"invoice_id": invoice_id, **invoice, "changed": False}
        if not can_move(current, target):
            raise Conflict(f"invoice {echo(invoice_id)} is {current}; it cannot become {target}",
                           code="invalid_transition")
        updates: dict[str, Any] = {}
        action = {"paid": "mark_paid", "void": "void",
                  "uncollectible": "mark_uncollectible"}[target]
        if payment is not None:
            amount = int(payment["amount"])
            due = int(invoice.get("amount_due", invoice.get("total", 0)) or 0)
            if amount > due:
                raise Conflict(f"amount {amount} exceeds the amount due {due} of invoice "
                               f"{echo(invoice_id)}", code="amount_exceeds_due")
            paid_total = int(invoice.get("amount_paid") or 0) + amount
            updates["payments"] = firestore.ArrayUnion([{
                "amount": amount, "paid_at": payment["paid_at"], "source": "admin",
                "reference": payment.get("reference"), "by": actor, "at": now}])
            updates["amount_paid"] = paid_total
            updates["amount_due"] = due - amount
            if amount == due:
                updates.update({"status": "paid", "paid_at": payment["paid_at"]})
            else:
                action = "partial_payment"
        else:
            updates.update(status_fields(target, at, invoice))
        updates.update(extra or {})
        updates["history"] = firestore.ArrayUnion([history_entry(
            action, actor, now, run_id=run_id, **dict(details or {}))])
        transaction.update(ref, updates)
        after = dict(invoice)
        after.update({k: v for k, v in updates.items() if k not in ("history", "payments")})
        return {"invoice_id": invoice_id, **after, "changed": True}

    result = store.run_transaction(run)
    store.reads += 1
    store.writes += 1
    return result


# -- reactivation --------------------------------------------------------------------------------
def blocking_invoices(invoices: Sequence[Mapping[str, Any]], as_of: datetime) -> list[str]:
    """Ids among ``invoices`` that keep a customer suspended at ``as_of``.

    Blocking: ``open`` with ``due_at`` before ``as_of``, or ``uncollectible``.
    """
    out = []
    for invoice in invoices:
        status = invoice.get("status")
        due = invoice.get("due_at")
        if status == "uncollectible" or (status == "open" and isinstance(due, datetime)
                                         and due < as_of):
            out.append(str(invoice.get("invoice_id")))
    return out


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


@dataclass
class Reactivation:
    """A reactivation done: the customer, the subscriptions resumed, the notice's outbox id."""

    customer: Customer
    subscriptions: list[str]
    notification_id: str | None


def reactivate_if_clear(store: BillingStore, tenant: Tenant, customer_id: str, as_of: datetime,
                        now: datetime, run_id: str, *, actor: str = "system",
                        notify: bool = True, dry_run: bool = False) -> Reactivation | None:
    """Reactivate ``customer_id`` if dunning suspended them and nothing blocks any more.

    One transaction reads the customer, their open/uncollectible invoices and subscriptions,
    then writes the customer (``active``), each subscription dunning suspended (``active``),
    closing their open ``suspensions`` interval at ``now`` (``closed_suspensions``), and,
    with ``notify`` and a customer email, a ``pending`` reactivation notice in the outbox.
    ``dry_run`` decides without writing. Returns None when nothing was (or would be) done.

    Raises:
        DataError: the customer document is invalid.

    """
    customers = store.collection(tenant.id, "customers")
    customer_ref = customers.document(customer_id)
    invoices_query = store.collection(tenant.id, "invoices").where(
        filter=FieldFilter("customer_id", "==", customer_id)).where(
        filter=FieldFilter("status", "in", ["open", "uncollectible"]))
    subs_query = store.collection(tenant.id, "subscriptions").where(
        filter=FieldFilter("customer_id", "==", customer_id))

    def run(transaction: firestore.Transaction) -> Reactivation | None:
        snapshot = customer_ref.get(transaction=transaction)
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        if data.get("status") != "suspended" or data.get("suspended_by") != "dunning":
            return None
        invoices = [{"invoice_id": s.id, **(s.to_dict() or {})}
                    for s in invoices_query.stream(transaction=transaction)]
        if blocking_invoices(invoices, as_of):
            return None
        subs = [(s.reference, s.to_dict() or {}) for s in subs_query.stream(transaction=transaction)]
        customer = Customer.parse(customer_id, {**data, "status": "active"})
        suspension_id = str(data.get("suspension_id") or f"t{int(now.timestamp())}")
        resumed = [ref.id for ref, sub in subs
                   if sub.get("status") == "suspended" and sub.get("suspended_by") == "dunning"
                   and sub.get("suspension_id", suspension_id) == suspension_id]
        note = reactivation_notification(customer, suspension_id) if notify else None
        if dry_run:
            return Reactivation(customer, resumed, note.id if note else None)
        last = {k: data.get(k) for k in ("suspension_reason", "suspended_at", "suspended_by",
                                         "suspension_id", "suspension_invoice_id")}
        transaction.update(customer_ref, {
            "status": "active", "reactivated_at": now, "last_suspension": last,
            "suspensions": closed_suspensions(data, now),
            "suspension_reason": firestore.DELETE_FIELD, "suspended_at": firestore.DELETE_FIELD,
            "suspended_by": firestore.DELETE_FIELD, "suspension_id": firestore.DELETE_FIELD,
            "suspension_invoice_id": firestore.DELETE_FIELD,
            "history": firestore.ArrayUnion([history_entry(
                "reactivated", actor, now, run_id=run_id, suspension_id=suspension_id,
                as_of=as_of)])})
        for ref, sub in subs:
            if ref.id in resumed:
                transaction.update(ref, {
                    "status": "active", "reactivated_at": now,
                    "suspensions": closed_suspensions(sub, now),
                    "last_suspension": {k: sub.get(k) for k in (
                        "suspension_reason", "suspended_at", "suspended_by", "suspension_id")},
                    "suspension_reason": firestore.DELETE_FIELD,
                    "suspended_at": firestore.DELETE_FIELD,
                    "suspended_by": firestore.DELETE_FIELD,
                    "suspension_id": firestore.DELETE_FIELD})
        if note is not None:
            transaction.create(
                store.collection(tenant.id, "notifications").document(note.id),
                notification_document(note, "pending", now, run_id))
        return Reactivation(customer, resumed, note.id if note else None)

    outcome = store.run_transaction(run)
    store.reads += 1
    if outcome is not None and not dry_run:
        store.writes += 1 + len(outcome.subscriptions) + (outcome.notification_id is not None)
    return outcome

