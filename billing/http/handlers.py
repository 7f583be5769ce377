"""What each HTTP function does once its request is accepted (``billing.http.shell.handle``).

``functions/<name>/main.py`` stays a thin entry point; the work lives here so that it is typed,
tested and shared. Each handler builds a ``RunContext`` from the environment (Firestore and Cloud
Storage clients from ``billing.store.clients``) and returns the JSON body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from billing.delivery.documents import render_and_upload
from billing.http.shell import Call, boolean, check_as_of, clock, identifier, rfc3339, text
from billing.pricing.periods import parse_month
from billing.records import Tenant
from billing.runs.anniversary import run_generate_invoices
from billing.runs.month_close import run_month_close
from billing.runs.shell import RunContext
from billing.store.clients import firestore_client, invoices_bucket, storage_client
from billing.store.firestore_store import BillingStore


def publish_to_bucket(
    tenant: Tenant,
    invoices: Sequence[Mapping[str, Any]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], float]:
    """Render invoices to PDF and upload them to ``INVOICES_BUCKET``."""
    outcome = render_and_upload(tenant, invoices, storage_client(), invoices_bucket())
    return outcome.uris, outcome.failures, outcome.render_seconds


def make_context(call: Call, *, dry_run: bool, now: datetime | None = None) -> RunContext:
    """A run context for ``call`` on the configured Firestore and bucket."""
    return RunContext(
        run_id=call.run_id,
        now=now or clock.now(),
        dry_run=dry_run,
        store=BillingStore(firestore_client()),
        publish_pdfs=None if dry_run else publish_to_bucket,
        principal=call.principal.email,
        all_tenants=call.tenant_id is None,
    )


def month_field(value: Any) -> str:
    """Validator: a ``YYYY-MM`` month (``billing.pricing.periods.parse_month``), kept as the string.

    Raises:
        BadRequest: ``invalid_field`` for a value that is not a string, ``invalid_month`` for
            a string that is not a month in 1970-01..9998-12.

    """
    if not isinstance(value, str):
        return text(value)  # raises: not a string
    parse_month(value)
    return value


MONTHLY_BILLING_FIELDS = {"month": month_field, "dry_run": boolean, "verify": boolean}


def monthly_billing(call: Call) -> dict[str, Any]:
    """The month close (``billing.runs.month_close.run_month_close``) for ``month`` or the previous month."""
    dry_run = bool(call.body.get("dry_run", False))
    ctx = make_context(call, dry_run=dry_run)
    ctx.verify_usage = bool(call.body.get("verify", False))  # issue 13: accumulators vs raw events
    if not dry_run:
        invoices_bucket()  # misconfiguration fails before anything is written
    report = run_month_close(ctx, call.tenant_id, call.body.get("month"))
    return report.to_json()


GENERATE_INVOICES_FIELDS = {
    "as_of": rfc3339,
    "subscription_id": identifier,
    "dry_run": boolean,
    "verify": boolean,
}


def generate_invoices(call: Call) -> dict[str, Any]:
    """Anniversary billing (``billing.runs.anniversary.run_generate_invoices``) at ``as_of`` or now.

    Raises:
        BadRequest: ``as_of`` in the future (more than ``billing.http.shell.AS_OF_SKEW``):
            invoicing periods that have not ended would freeze their amounts before their usage
            is in.

    """
    dry_run = bool(call.body.get("dry_run", False))
    as_of = call.body.get("as_of")
    now = clock.now()
    check_as_of(as_of, now)
    ctx = make_context(call, dry_run=dry_run, now=as_of or now)
    ctx.verify_usage = bool(call.body.get("verify", False))  # issue 13: accumulators vs raw events
    if not dry_run:
        invoices_bucket()
    report = run_generate_invoices(ctx, call.tenant_id, call.body.get("subscription_id"))
    return report.to_json()
