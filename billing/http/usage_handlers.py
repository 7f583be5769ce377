"""The HTTP handlers of the usage functions: ``aggregate_usage`` (the hourly fold) and ``current_usage``.

Like ``billing.http.handlers``: each validates nothing itself beyond what ``handle`` checked,
builds the run's context from the environment and returns the JSON body.
"""

from __future__ import annotations

from typing import Any

from billing.errors import BadRequest
from billing.http.handlers import make_context
from billing.http.shell import Call, boolean, check_as_of, clock, identifier, rfc3339
from billing.runs.current_usage import current_usage as price_current_usage
from billing.runs.fold_usage import run_fold_usage
from billing.store.clients import firestore_client
from billing.store.firestore_store import BillingStore

AGGREGATE_USAGE_FIELDS = {"dry_run": boolean}


def aggregate_usage(call: Call) -> dict[str, Any]:
    """The hourly fold (``billing.runs.fold_usage.run_fold_usage``) of one or every tenant."""
    ctx = make_context(call, dry_run=bool(call.body.get("dry_run", False)))
    return run_fold_usage(ctx, call.tenant_id).to_json()


CURRENT_USAGE_FIELDS = {"customer_id": identifier, "subscription_id": identifier, "as_of": rfc3339}


def current_usage(call: Call) -> dict[str, Any]:
    """The open period's usage of a customer (``billing.runs.current_usage``).

    ``as_of`` (optional, an extension; default now): the period that contains it, with every
    event known now (to look at a past period, e.g. the demo's November 2011).

    Raises:
        BadRequest: no ``X-Tenant-ID`` (``missing_tenant``), no ``customer_id``
            (``missing_field``), ``as_of`` in the future (``as_of_in_future``), before anything
            is read.
        NotFound: unknown tenant, customer or subscription.

    """
    if call.tenant_id is None:
        raise BadRequest("X-Tenant-ID is required for current_usage", code="missing_tenant")
    customer_id = call.body.get("customer_id")
    if customer_id is None:
        raise BadRequest("customer_id is required", code="missing_field")
    now = clock.now()
    as_of = call.body.get("as_of")
    check_as_of(as_of, now)
    store = BillingStore(firestore_client())
    answer = price_current_usage(
        store, call.tenant_id, customer_id, call.body.get("subscription_id"), as_of or now
    )
    return {"run_id": call.run_id, **answer}
