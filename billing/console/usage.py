"""The "Current usage" panel of the invoices page filtered by one customer (issue 13, item 3).

``usage_panels(store, tenant, customer_id, now)`` answers ``(panels, note)``: one
``UsagePanel`` per subscription of the customer active at ``now``, each the answer of
``billing.runs.current_usage.current_usage`` (Lago's current usage: the open period's usage
priced by the billing engine; nothing is priced here), or no panel and a short ``note`` for
people when there is nothing to show: a customer id that is not an id, an unknown customer, no
active subscription, or a document the library cannot read. Nothing is ever written, and no
case is a 500: the invoices list still shows.

Amounts are integers in minor units of ``currency``; ``period_from``/``period_to`` (the period
is ``[from, to)``) and ``as_of`` are aware datetimes in the tenant's timezone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.errors import BadRequest, BillingError, DataError, NotFound
from billing.http.shell import identifier
from billing.logs import get_logger
from billing.pricing.periods import zone
from billing.records import Subscription, Tenant
from billing.runs.current_usage import choose_subscription, current_usage
from billing.store.firestore_store import BillingStore

log = get_logger("billing.console")
NOTES = {
    "invalid_field": "Current usage: this is not a customer id.",
    "unknown_customer": "Current usage: no such customer.",
    "no_active_subscription": "Current usage: this customer has no active subscription.",
}


@dataclass(frozen=True)
class ChargeUsage:
    """One charge of the open period: ``meter`` code, exact ``units``, ``events``, minor-unit ``amount``."""

    meter: str
    units: Decimal
    events: int
    amount: int


@dataclass(frozen=True)
class UsagePanel:
    """One subscription's current usage (``current_usage``'s answer, dates in the tenant's timezone).

    Raises:
        DataError: built from an answer whose amounts are not integers or whose dates are naive.

    """

    subscription_id: str
    currency: str
    period_from: datetime
    period_to: datetime
    as_of: datetime
    amount: int
    tax: int
    total: int
    charges: tuple[ChargeUsage, ...]

    def __post_init__(self) -> None:
        """Validate the amounts (integers) and the datetimes (aware)."""
        amounts = [self.amount, self.tax, self.total, *(c.amount for c in self.charges)]
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in amounts):
            raise DataError("current usage amounts must be integers", code="invalid_usage")
        if any(d.tzinfo is None for d in (self.period_from, self.period_to, self.as_of)):
            raise DataError("current usage datetimes must be aware", code="invalid_usage")

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any], timezone: str) -> UsagePanel:
        """The panel of one ``current_usage`` answer, its datetimes shown in ``timezone``."""
        tz = zone(timezone)

        def local(key: str) -> datetime:
            return datetime.fromisoformat(str(answer[key])).astimezone(tz)

        return cls(
            subscription_id=str(answer["subscription_id"]),
            currency=str(answer["currency"]),
            period_from=local("from_datetime"),
            period_to=local("to_datetime"),
            as_of=local("as_of"),
            amount=answer["amount"],
            tax=answer["tax"],
            total=answer["total"],
            charges=tuple(
                ChargeUsage(c["meter"], Decimal(c["units"]), c["events_count"], c["amount"])
                for c in answer["charges"]
            ),
        )


def active_subscription_ids(
    store: BillingStore, tenant_id: str, customer_id: str, now: datetime
) -> list[str]:
    """Ids of the customer's readable subscriptions active at ``now``, by ``current_usage``'s own rule."""
    ids = []
    for sub in store.subscriptions_of_customers(tenant_id, [customer_id]):
        if not isinstance(sub, Subscription):
            continue
        try:  # the library's rule for "active", one subscription at a time
            choose_subscription([sub], customer_id, None, now)
        except NotFound:
            continue
        ids.append(sub.id)
    return sorted(ids)


def usage_panels(
    store: BillingStore, tenant: Tenant, customer_id: str, now: datetime
) -> tuple[list[UsagePanel], str | None]:
    """The customer's current usage panels, or none and a note (module docstring)."""
    try:
        identifier(customer_id)
        try:
            answers = [current_usage(store, tenant.id, customer_id, None, now)]
        except BadRequest as exc:
            if exc.code != "subscription_required":
                raise
            answers = [
                current_usage(store, tenant.id, customer_id, sub_id, now)
                for sub_id in active_subscription_ids(store, tenant.id, customer_id, now)
            ]
        return [UsagePanel.from_answer(a, tenant.timezone) for a in answers], None
    except BillingError as exc:
        if exc.code in NOTES:
            return [], NOTES[exc.code]
        log.warning("console current usage failed", extra={"code": exc.code, "tenant_id": tenant.id})
        return [], f"Current usage cannot be computed: {exc.message}"


__all__ = ["ChargeUsage", "UsagePanel", "active_subscription_ids", "usage_panels"]
