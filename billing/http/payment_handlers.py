"""Handlers of the getting-paid functions ``dunning`` and ``billing_admin``.

``functions/<name>/main.py`` stay thin; both go through ``billing.http.shell.handle`` (OIDC, body
validation, errors). ``stripe_webhook``, authenticated by Stripe's signature instead, is
``billing.http.webhook``.
"""

from __future__ import annotations

from typing import Any

from billing.delivery.outbox import Services
from billing.http.shell import Call, boolean, check_as_of, clock, rfc3339
from billing.runs.admin_actions import BILLING_ADMIN_FIELDS, run_admin_action
from billing.runs.dunning import DunningContext, run_dunning
from billing.store.clients import firestore_client
from billing.store.firestore_store import BillingStore

__all__ = ["BILLING_ADMIN_FIELDS", "DUNNING_FIELDS", "billing_admin", "dunning"]

DUNNING_FIELDS = {"as_of": rfc3339, "dry_run": boolean}


def dunning(call: Call) -> dict[str, Any]:
    """The dunning run (``billing.runs.dunning.run_dunning``) at ``as_of`` (default now).

    Raises:
        BadRequest: ``as_of`` more than 5 minutes in the future (``as_of_in_future``): it would
            suspend customers who are not yet due. Checked before anything is read or written.

    """
    now = clock.now()
    check_as_of(call.body.get("as_of"), now)
    ctx = DunningContext(
        run_id=call.run_id,
        as_of=call.body.get("as_of") or now,
        now=now,
        dry_run=bool(call.body.get("dry_run", False)),
        store=BillingStore(firestore_client()),
        services=Services(),
        principal=call.principal.email,
        all_tenants=call.tenant_id is None,
    )
    return run_dunning(ctx, call.tenant_id).to_json()


def billing_admin(call: Call) -> dict[str, Any]:
    """One admin action (``billing.runs.admin_actions.run_admin_action``)."""
    return run_admin_action(BillingStore(firestore_client()), call, clock.now())
