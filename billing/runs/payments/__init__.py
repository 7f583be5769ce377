"""Payment status of invoices: the status machine, Stripe's invoice events, reactivation.

- ``status``: the allowed transitions (Stripe's invoice lifecycle) and the status changes and
  payments an admin or the dunning run records (``change_status``);
- ``stripe_events``: Stripe's invoice events, checked against the contract's trust rules and
  applied once each (``apply_stripe_event``);
- ``reactivation``: a customer suspended by dunning comes back when nothing is overdue
  (``reactivate_if_clear``).

Every change is one store transaction that re-reads what it changes (``billing.store``).
"""

from billing.runs.payments.reactivation import Reactivation, blocking_invoices, reactivate_if_clear
from billing.runs.payments.status import (
    ALLOWED,
    FINAL,
    ManualPayment,
    StatusChange,
    can_move,
    change_status,
    status_change,
    transition_conflict,
)
from billing.runs.payments.stripe_events import (
    HANDLED_EVENTS,
    PAYMENT_EVENTS,
    EventIgnored,
    EventOutcome,
    apply_stripe_event,
)

__all__ = [
    "ALLOWED",
    "FINAL",
    "HANDLED_EVENTS",
    "PAYMENT_EVENTS",
    "EventIgnored",
    "EventOutcome",
    "ManualPayment",
    "Reactivation",
    "StatusChange",
    "apply_stripe_event",
    "blocking_invoices",
    "can_move",
    "change_status",
    "reactivate_if_clear",
    "status_change",
    "transition_conflict",
]
