"""What each HTTP function does once its request is accepted (``billing.http.shell.handle``).

``functions/<name>/main.py`` stays a thin entry point; the work lives here so that it is typed,
tested and shared. Each handler builds a ``RunContext`` from the environment (Firestore and Cloud
Storage clients from ``billing.store.clients``) and returns the JSON body.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from billing.delivery.documents import render_and_upload
from billing.delivery.outbox import Services
from billing.errors import BadRequest, BillingError, echo
from billing.http import payment_handlers
from billing.http.shell import Accepted, Call, boolean, check_as_of, clock, identifier, rfc3339, text
from billing.pricing.periods import parse_month
from billing.records import Tenant
from billing.runs.anniversary import run_generate_invoices
from billing.runs.dunning import DunningContext, run_dunning
from billing.runs.fanout import (
    STAGES,
    Worker,
    can_fan_out,
    execute,
    fanout_min_items,
    run_status,
    start_generate_invoices,
    start_month_close,
)
from billing.runs.fanout.dunning import start_dunning
from billing.runs.month_close import run_month_close
from billing.runs.shell import RunContext
from billing.store.clients import firestore_client, invoices_bucket, storage_client
from billing.store.firestore_store import BillingStore
from billing.tasks import TasksSettings, task_queue_from_env


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
    """The month close for ``month`` or the previous month.

    ``TASKS_MODE=inline`` (default) or a dry run: in the request
    (``billing.runs.month_close.run_month_close``), answered 200 with the report. ``http`` or
    ``cloud_tasks``: fanned out (``billing.runs.fanout.start_month_close``), answered 202
    ``{"run_id", "status": "running"}``; ``GET ?run_id=`` then answers the run record
    (``run_status``). A named tenant with ``month_close_review`` is closed inline.
    """
    dry_run = bool(call.body.get("dry_run", False))
    ctx = make_context(call, dry_run=dry_run)
    ctx.verify_usage = bool(call.body.get("verify", False))  # issue 13: accumulators vs raw events
    if not dry_run:
        invoices_bucket()  # misconfiguration fails before anything is written
    settings = TasksSettings.from_env()
    if settings.mode != "inline" and not dry_run and not _reviewed(ctx, call.tenant_id):
        return Accepted(
            start_month_close(ctx, make_worker(ctx.store, settings), call.tenant_id, call.body.get("month"))
        )
    report = run_month_close(ctx, call.tenant_id, call.body.get("month"))
    return report.to_json()


def _reviewed(ctx: RunContext, tenant_id: str | None) -> bool:
    """Whether the named tenant reviews its month close (drafts for a person: closed inline)."""
    if tenant_id is None:
        return False
    try:
        return bool(ctx.store.get_tenant(tenant_id).month_close_review)
    except BillingError:
        return False  # unknown or broken: the run's own validation answers it


def make_worker(store: BillingStore, settings: TasksSettings | None = None) -> Worker:
    """The fan-out worker on ``store``: the ``TASKS_MODE`` queue, the bucket's PDF sink, ``CHUNK_SIZE``."""
    settings = settings or TasksSettings.from_env()
    holder: list[Worker] = []
    queue = task_queue_from_env(lambda body: execute(holder[0], body), settings)
    worker = Worker(store, queue, publish_to_bucket, chunk_size=settings.chunk_size)
    holder.append(worker)
    return worker


def run_record(call: Call) -> dict[str, Any]:
    """``GET ?run_id=``: the run record(s) (``billing.runs.fanout.run_status``)."""
    return run_status(BillingStore(firestore_client()), call.tenant_id, str(call.body["run_id"]))


def count(value: Any) -> int:
    """Validator: a JSON integer in 0..10**9 (chunk indexes, generations, cursors)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise BadRequest(f"must be an integer in 0..10**9, got {echo(value)}", code="invalid_field")
    return value


def stage(value: Any) -> str:
    """Validator: one of the fan-out stages (``billing.runs.fanout.STAGES``)."""
    if value not in STAGES:
        raise BadRequest(f"must be one of {', '.join(STAGES)}, got {echo(value)}", code="invalid_field")
    return str(value)


BILLING_WORKER_FIELDS = {
    "stage": stage,
    "run": identifier,
    "chunk": count,
    "generation": count,
    "cursor": count,
}


def billing_worker(call: Call) -> dict[str, Any]:
    """Execute one fan-out task (``billing.runs.fanout.execute``); ``tenant_id`` in the body.

    Answers what the stage did, plus ``store``: the documents this task read and wrote, and
    ``seconds``: how long it ran (not counting any wait for a free request thread).

    Raises:
        BadRequest: no ``stage``, or a stage other than ``sweep`` without ``tenant_id``/``run``.

    """
    if "stage" not in call.body:
        raise BadRequest("stage is required", code="invalid_field")
    if call.body["stage"] != "sweep" and (call.tenant_id is None or "run" not in call.body):
        raise BadRequest("tenant_id and run are required", code="invalid_field")
    worker = make_worker(BillingStore(firestore_client()))
    began = time.monotonic()
    answer = execute(worker, {**call.body, "tenant_id": call.tenant_id})
    # This task's Firestore documents read and written, and its own seconds (the benchmark's).
    store = {"reads": worker.store.reads, "writes": worker.store.writes}
    return {**answer, "store": store, "seconds": round(time.monotonic() - began, 3)}


GENERATE_INVOICES_FIELDS = {
    "as_of": rfc3339,
    "subscription_id": identifier,
    "dry_run": boolean,
    "verify": boolean,
}


def generate_invoices(call: Call) -> dict[str, Any]:
    """Anniversary billing (``billing.runs.anniversary.run_generate_invoices``) at ``as_of`` or now.

    With ``TASKS_MODE`` ``http``/``cloud_tasks``, each tenant whose hour holds at least
    ``FANOUT_MIN_ITEMS`` items is fanned out (``billing.runs.fanout.anniversary``): answered 202
    ``{"run_id", "status": "running", "tenants"}`` (across all tenants, the others' inline
    report under ``inline``); ``GET ?run_id=`` answers the run record. Dry runs and
    ``subscription_id`` runs stay inline.

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
    subscription_id = call.body.get("subscription_id")
    settings = TasksSettings.from_env()
    if can_fan_out(settings.mode, dry_run=dry_run, single=subscription_id is not None):
        # Tenants with at least FANOUT_MIN_ITEMS items are fanned out; the others run here.
        body = start_generate_invoices(
            ctx, make_worker(ctx.store, settings), call.tenant_id, fanout_min_items(), settings.mode
        )
        if body["tenants"]:
            if call.tenant_id is not None:
                return Accepted(body)
            fanned = {t["tenant_id"] for t in body["tenants"]}
            return Accepted(
                {**body, "inline": run_generate_invoices(ctx, None, None, exclude=fanned).to_json()}
            )
    report = run_generate_invoices(ctx, call.tenant_id, subscription_id)
    return report.to_json()


def dunning(call: Call) -> dict[str, Any]:
    """The dunning run; fanned out per tenant above ``FANOUT_MIN_ITEMS`` overdue invoices.

    ``TASKS_MODE=inline`` or a dry run: ``billing.http.payment_handlers.dunning`` (200, the
    report). Otherwise each tenant with at least ``FANOUT_MIN_ITEMS`` overdue invoices is fanned
    out (``billing.runs.fanout.dunning``): 202 ``{"run_id", "status": "running", "tenants"}``
    (across all tenants, the others' inline report under ``inline``); ``GET ?run_id=`` answers
    the run record.

    Raises:
        BadRequest: ``as_of`` in the future (as the inline handler), before anything is written.

    """
    settings = TasksSettings.from_env()
    if not can_fan_out(settings.mode, dry_run=bool(call.body.get("dry_run", False))):
        return payment_handlers.dunning(call)
    now = clock.now()
    check_as_of(call.body.get("as_of"), now)
    ctx = DunningContext(
        run_id=call.run_id,
        as_of=call.body.get("as_of") or now,
        now=now,
        dry_run=False,
        store=BillingStore(firestore_client()),
        services=Services(),
        principal=call.principal.email,
        all_tenants=call.tenant_id is None,
    )
    worker = make_worker(ctx.store, settings)
    body = start_dunning(ctx, worker, call.tenant_id, fanout_min_items(), settings.mode)
    if not body["tenants"]:
        return run_dunning(ctx, call.tenant_id).to_json()
    if call.tenant_id is not None:
        return Accepted(body)
    fanned = {t["tenant_id"] for t in body["tenants"]}
    return Accepted({**body, "inline": run_dunning(ctx, None, exclude=fanned).to_json()})
