"""Stripe's invoice events applied to our invoices: trust checks, payments, idempotency.

Stripe events (``invoice.paid``, ``invoice.payment_succeeded``, ``invoice.payment_failed``,
``invoice.voided``, ``invoice.marked_uncollectible``) are applied idempotently: each event id is
recorded on the invoice (``stripe_event_ids``) in the same transaction as its effect, so a
redelivered event (Stripe delivers at least once and may deliver out of order: "Best practices
for using webhooks") changes nothing at all. Events arriving out of order are harmless because the
status machine (``billing.runs.payments.status``) only moves forward.

Trust (contract, "Stripe webhook: whose objects it may touch"): a correctly signed event only
proves that it comes from *some* Stripe account that can reach our endpoint. It acts only when
its ``metadata.tenant_id``/``invoice_id`` are valid ids, its ``account`` equals the tenant's
``stripe.account`` (or both are absent), the tenant has ``stripe.enabled``, our invoice has a
recorded ``stripe_invoice_id`` (written by ``billing.delivery.stripe_billing`` when we pushed it,
never from an event) equal to the event's object id and, for a payment, the currency is the
invoice's. Anything else is ``ignored`` with a reason and writes nothing.

Payments: Stripe's invoice ``amount_paid`` is the total the Stripe invoice has received so far;
the new money is that total minus the Stripe payments already recorded on our invoice. Money
below what is due is a partial payment (Stripe's "Accept partial payments": the invoice stays
``open`` and ``amount_remaining`` shrinks): it is added to ``payments`` and ``amount_paid``,
``amount_due`` is lowered, the status stays. The invoice becomes ``paid`` when nothing is due.
Fields written besides the status machine's: ``payment_failures``, ``last_payment_failure``,
``stripe_event_ids`` and ``history``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from billing.delivery.stripe_billing import from_stripe_amount
from billing.errors import BadRequest
from billing.records import Invoice, Payment
from billing.runs.payments.status import can_move, status_change
from billing.store.firestore_store import BillingStore, InvoiceChange, history_entry

PAYMENT_EVENTS = ("invoice.paid", "invoice.payment_succeeded")
HANDLED_EVENTS = (*PAYMENT_EVENTS, "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible")
# Our document-id rule (billing.http.shell.identifier), matched in full.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,254}")


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
    document = store.tenant_document(tenant_id)
    if document is None:
        raise EventIgnored("unknown_tenant")
    config = document.get("stripe")
    if not isinstance(config, Mapping) or config.get("enabled") is not True:
        raise EventIgnored("stripe_not_enabled")
    if (config.get("account") or None) != (event.get("account") or None):
        raise EventIgnored("account_mismatch")


def stripe_payment(invoice: Invoice, obj: Mapping[str, Any]) -> int:
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
    theirs = obj.get("currency")
    if not isinstance(theirs, str) or theirs.upper() != invoice.currency.upper():
        raise EventIgnored("currency_mismatch")
    paid = obj.get("amount_paid")
    if isinstance(paid, bool) or not isinstance(paid, int) or paid < 0:
        raise EventIgnored("invalid_amount")
    return from_stripe_amount(invoice.currency, paid) - invoice.stripe_paid()


def _payment_change(
    invoice: Invoice, amount: int, paid_at: datetime, event_id: str, now: datetime
) -> tuple[InvoiceChange, str]:
    """The change recording ``amount`` received; ``paid`` once nothing is due, else partial."""
    due = invoice.amount_due
    change = InvoiceChange(
        amount_paid=invoice.amount_paid + amount,
        amount_due=max(0, due - amount),
        payment=Payment(amount, paid_at, "stripe", event_id, "stripe", now),
    )
    if amount < due:
        return change, "partial_payment"
    return replace(change, status="paid", paid_at=paid_at), "paid"


def event_change(
    event_type: str, event: Mapping[str, Any], obj: Mapping[str, Any], invoice: Invoice, now: datetime
) -> tuple[InvoiceChange, str]:
    """``(change, effect)`` of a trusted event on ``invoice``; effect ``none``: nothing changes.

    Raises:
        EventIgnored: a payment in another currency or with a bad amount (``stripe_payment``).

    """
    happened = _epoch_time(event.get("created")) or now
    event_id = str(event["id"])
    if event_type in PAYMENT_EVENTS:
        amount = stripe_payment(invoice, obj)
        if not can_move(invoice.status, "paid") or amount <= 0:
            return InvoiceChange(), "none"
        transitions = obj.get("status_transitions")
        paid_at = (
            _epoch_time((transitions if isinstance(transitions, Mapping) else {}).get("paid_at")) or happened
        )
        return _payment_change(invoice, amount, paid_at, event_id, now)
    if event_type in ("invoice.voided", "invoice.marked_uncollectible"):
        target = "void" if event_type == "invoice.voided" else "uncollectible"
        if not can_move(invoice.status, target):
            return InvoiceChange(), "none"
        return status_change(target, happened, invoice), target
    if invoice.status != "open":  # invoice.payment_failed: informative, no status change
        return InvoiceChange(), "none"
    return InvoiceChange(
        payment_failure={
            "at": happened,
            "event_id": event_id,
            "attempt_count": obj.get("attempt_count"),
            "next_payment_attempt": _epoch_time(obj.get("next_payment_attempt")),
        }
    ), "payment_failed"


def _decide(
    target: EventTarget, event: Mapping[str, Any], invoice: Invoice | None, now: datetime, run_id: str
) -> tuple[EventOutcome, InvoiceChange | None]:
    """The twin check, then the event's effect on the invoice (run in the store's transaction).

    Raises:
        EventIgnored: no such invoice, no recorded twin or another one, or a payment the
            invoice cannot take (``event_change``); nothing is written.

    """
    event_type = str(event["type"])
    if invoice is None:
        raise EventIgnored("unknown_invoice")
    if not invoice.stripe_invoice_id:
        raise EventIgnored("no_stripe_twin")
    if invoice.stripe_invoice_id != target.stripe_id:
        raise EventIgnored("stripe_invoice_mismatch")
    outcome = EventOutcome(
        "applied",
        tenant_id=target.tenant_id,
        invoice_id=target.invoice_id,
        customer_id=invoice.customer_id,
        status=invoice.status,
    )
    if event["id"] in invoice.stripe_event_ids:
        outcome.result = "duplicate"
        return outcome, None
    change, effect = event_change(event_type, event, target.obj, invoice, now)
    if effect == "none":
        outcome.result = "ignored"
        outcome.reason = (
            "no_new_payment"
            if event_type in PAYMENT_EVENTS and can_move(outcome.status, "paid")
            else f"invoice_is_{outcome.status}"
        )
    outcome.status = change.status or outcome.status
    outcome.reactivate = effect in ("paid", "void")
    return outcome, replace(
        change,
        stripe_event_id=str(event["id"]),
        history=(
            history_entry(
                event_type,
                "stripe",
                now,
                event_id=event["id"],
                effect=effect,
                run_id=run_id,
                event_created=_epoch_time(event.get("created")) or now,
            ),
        ),
    )


def apply_stripe_event(
    store: BillingStore, event: Mapping[str, Any], now: datetime, run_id: str
) -> EventOutcome:
    """Apply a verified Stripe event to our invoice (idempotent; see the module docstring).

    An event acts only when every rule of the contract holds (see ``event_target``,
    ``check_tenant``, the twin check of ``_decide`` and ``stripe_payment``); it is otherwise
    ``ignored`` with a reason and nothing is written. The twin check: our invoice has a
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
    try:
        outcome, _ = store.change_invoice(
            target.tenant_id, target.invoice_id, lambda invoice: _decide(target, event, invoice, now, run_id)
        )
    except EventIgnored as ignored:
        return EventOutcome(
            "ignored", reason=ignored.reason, tenant_id=target.tenant_id, invoice_id=target.invoice_id
        )
    return outcome
