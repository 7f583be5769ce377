"""``current_usage``: the open period's usage of one subscription, priced now (Lago's current usage).

Answer (Lago's ``customer_usage`` shape; amounts in minor units of ``currency``)::

    {"customer_id", "subscription_id", "from_datetime", "to_datetime", "currency",
     "amount", "tax", "total", "charges": [{"meter", "units", "events_count", "amount"}],
     "as_of"}

``from_datetime``/``to_datetime``: the subscription's billing period that contains ``as_of``
(``billing.runs.fold_usage.period_containing``: the calendar month in the tenant's timezone, or
the anniversary period). The usage comes from the same source as the close
(``billing.runs.usage_source``: accumulators plus the events after them, or raw events) and is
priced by the same engine (``billing.pricing.invoicing.build_invoice``), so it equals the usage
lines of the draft the close would produce with the events known now. ``amount`` is the usage
charges' amount (fixed fees are not usage, as in Lago), ``tax`` their tax, ``total`` what they
add to the invoice (``amount + tax``, or ``amount`` for a tax-inclusive tenant). ``units`` is the
meter's quantity summed over its groups, as a decimal string.

Errors (nothing is ever written): 404 ``unknown_customer``, ``unknown_subscription`` (absent, or
another customer's), ``no_active_subscription``; 400 ``subscription_required`` when the customer
has several active subscriptions and none is named.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.errors import BadRequest, DataError, NotFound
from billing.pricing.invoicing import InvoiceDraft
from billing.pricing.money import decimal_text
from billing.pricing.usage import SubscriptionUsage, UsageRouter, meters_of_plan
from billing.records import Customer, Meter, Subscription
from billing.runs.fold_usage import period_containing
from billing.runs.pipeline import BILLING_TIMES, Catalog, claim_usage, draft_from_usage, watch_candidate
from billing.runs.usage_source import supply_usage
from billing.store.firestore_store import BillingStore


def choose_subscription(
    subscriptions: Sequence[Subscription | tuple[str, DataError]],
    customer_id: str,
    subscription_id: str | None,
    now: datetime,
) -> Subscription:
    """The named subscription of the customer, or its one subscription active at ``now``.

    Raises:
        NotFound: the named one is absent or another customer's; none active.
        BadRequest: several active and none named (``subscription_required``).
        DataError: the named subscription's document is invalid.

    """
    readable = [s for s in subscriptions if isinstance(s, Subscription)]
    if subscription_id is not None:
        for sub in subscriptions:
            if isinstance(sub, tuple) and sub[0] == subscription_id:
                raise sub[1]
        named = [s for s in readable if s.id == subscription_id and s.customer_id == customer_id]
        if not named:
            raise NotFound(f"customer has no subscription {subscription_id!r}", code="unknown_subscription")
        return named[0]
    active = [s for s in readable if s.started_at <= now and (s.canceled_at is None or now < s.canceled_at)]
    if not active:
        raise NotFound("the customer has no active subscription", code="no_active_subscription")
    if len(active) > 1:
        raise BadRequest(
            f"the customer has {len(active)} active subscriptions: name one in subscription_id",
            code="subscription_required",
        )
    return active[0]


def current_usage(
    store: BillingStore, tenant_id: str, customer_id: str, subscription_id: str | None, now: datetime
) -> dict[str, Any]:
    """The open period's usage of the customer's subscription at ``now`` (module docstring).

    Raises:
        NotFound: unknown tenant, customer or subscription. BadRequest: see ``choose_subscription``.
        DataError: the subscription's plan or the customer's document cannot be read.

    """
    tenant = store.get_tenant(tenant_id)
    customer = store.get_customers(tenant_id, [customer_id]).get(customer_id)
    if customer is None or (isinstance(customer, DataError) and customer.code == "unknown_customer"):
        raise NotFound(f"unknown customer {customer_id!r}", code="unknown_customer")
    if not isinstance(customer, Customer):
        raise customer
    subscriptions = store.subscriptions_of_customers(tenant_id, [customer_id])
    sub = choose_subscription(subscriptions, customer_id, subscription_id, now)
    catalog = Catalog.load(store, tenant_id)
    plan = catalog.plan(sub.plan_id)
    period = period_containing(sub, plan, tenant.timezone, now)
    router = UsageRouter()
    claim_usage(store, tenant, router, catalog, [(sub, period)], subscriptions, BILLING_TIMES)
    key = f"{sub.id}@{period.key}"
    watch_candidate(router, key, sub, period, plan, catalog)
    supply_usage(store, tenant, catalog.meters, router, [(sub, period, key)])
    usage = router.usage[key]
    draft = draft_from_usage(tenant, customer, sub, period, plan, catalog, usage)
    meters = meters_of_plan(plan.charges, catalog.meters)
    charges = charge_usage(meters, usage, draft)
    amount = sum(int(c["amount"]) for c in charges)
    tax = sum(line.tax for line in draft.lines if line.meter is not None)
    return {
        "customer_id": customer_id,
        "subscription_id": sub.id,
        "from_datetime": period.start.isoformat(),
        "to_datetime": period.end.isoformat(),
        "currency": draft.currency,
        "amount": amount,
        "tax": tax,
        "total": amount if tenant.tax_inclusive else amount + tax,
        "charges": charges,
        "as_of": now.isoformat(),
    }


def charge_usage(
    meters: Sequence[Meter], usage: SubscriptionUsage, draft: InvoiceDraft
) -> list[dict[str, Any]]:
    """Lago's ``charges_usage``: per meter of the plan, units, events counted and billed amount.

    ``units`` is the meter's quantity summed over its groups (decimal string); ``amount`` the
    sum of the draft's lines for that meter (usage and tier flat fees), in minor units.
    """
    charges: list[dict[str, Any]] = []
    for meter in meters:
        accumulator = usage.accumulators[meter.code]
        charges.append(
            {
                "meter": meter.code,
                "units": decimal_text(sum(accumulator.results().values(), Decimal(0))),
                "events_count": accumulator.events_counted,
                "amount": sum(line.amount for line in draft.lines if line.meter == meter.code),
            }
        )
    return charges
