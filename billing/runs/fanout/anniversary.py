"""A fanned-out ``generate_invoices``: anniversary billing split into the month close's stage tasks.

When ``TASKS_MODE`` is ``http`` or ``cloud_tasks`` and a tenant's work for the hour is at least
``FANOUT_MIN_ITEMS`` items (due anniversary subscriptions plus due drafts, ``workload``), the
request records a fanned-out run for that tenant and answers 202; ``billing_worker`` does the
work (``billing.runs.fanout.stages.FUNCTION_HANDLERS["generate_invoices"]``):

1. ``plan``: under a lease, the due subscriptions (``anniversary.anniversary_candidates`` at the
   run's ``as_of``) sorted by (customer id, subscription id) and cut into chunks of about
   ``CHUNK_SIZE`` (``stages.cut_chunks``: a customer never straddles two chunks); then the due
   drafts (``finalize_at <= as_of``) sorted by (customer id, invoice id), cut the same way; and
   the usage fold state, once for the span of the due periods (``usage_source.plan_scope``). A
   draft chunk's ``subscription_ids`` holds draft invoice ids; the run record's
   ``subscription_chunks`` says how many chunks come first. It also repairs missing PDFs of
   earlier runs (``pipeline.republish_missing_pdfs``, as every inline run does).
2. ``price`` (per chunk, claimed with the month close's attempt fencing,
   ``ChunkStore.claim_chunk``/``finish_part``):
   - a subscription chunk prices its due periods (``pipeline.price_candidates``, its customers'
     usage only: ``usage_source.chunk_scope``) and creates the invoices with the inline path's
     deterministic ids: ``draft`` with ``finalize_at`` after the grace period; with
     ``grace_period_hours = 0`` (inline creates them ``open``) drafts due at once, handed to
     the run's numbering pass (``ChunkStore.prepare_drafts``), so that if the run dies the next
     hourly run finalizes them. The subscriptions' moves to their next period are recorded on
     the chunk with its completion, then applied (``advance_subscriptions``: conditioned on the
     period end read, so each moves once); a task of a chunk already done applies them again
     (a no-op unless the answer was lost between the commit and the move).
   - a draft chunk re-prices its drafts as inline does (``anniversary.reprice_due_drafts``,
     its customers' usage only), deletes the empty ones and hands the others to the numbering
     pass with their new amounts (``ChunkStore.prepare_drafts``).
3. ``number``, ``render``, ``deliver``, ``summarize``: the month close's
   (``billing.runs.fanout.stages``). The numbering order is inline's: the new invoices first,
   then the finalized drafts (``phase`` 0 and 1), each by (customer id, invoice id).

One run per (tenant, ``generate_invoices``, UTC hour of ``as_of``) at a time
(``RunStore.start_run``, key ``generate_invoices.YYYY-MM-DDTHH``). Dry runs and ``subscription_id``
runs stay inline, so do tenants below the threshold.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.errors import Conflict, Misconfigured
from billing.pricing.periods import BillingPeriod
from billing.records import Invoice, Subscription, Tenant
from billing.runs.anniversary import (
    GENERATE_INVOICES,
    anniversary_candidates,
    empty_reason,
    reprice_due_drafts,
)
from billing.runs.fanout.stages import (
    FUNCTION_HANDLERS,
    Worker,
    _after_price,
    _context,
    _enqueue,
    _error_figures,
    _stage_complete,
    cut_chunks,
    deliver,
    enqueue_chunks,
    initial_record,
    number,
    render,
    start_or_join,
    summarize,
)
from billing.runs.pipeline import BILLING_TIMES, Catalog, price_candidates, republish_missing_pdfs
from billing.runs.shell import RunContext, RunReport, resolve_tenants
from billing.runs.usage_source import chunk_scope, plan_scope
from billing.store.firestore_store import BillingStore, StoredInvoice, SubscriptionMove

DEFAULT_FANOUT_MIN_ITEMS = 1000
"""Items (due subscriptions + due drafts) from which a tenant's hour is fanned out.

Why 1,000: an inline request must end well inside the Scheduler attempt deadline (30 min).
Delivery makes about 7 Stripe calls per invoice: 1,000 invoices are ~7,000 calls, ~70 s at
Stripe's live limit of 100 requests/s and ~4.7 min at the test limit of 25/s, plus pricing and
PDFs (~25 s per 1,665 invoices measured for the month close), so an inline run of 999 items
stays under ~10 min even on a test account; above it, the stages' queues pace the work."""


def fanout_min_items(env: Mapping[str, str] | None = None) -> int:
    """``FANOUT_MIN_ITEMS`` (default ``DEFAULT_FANOUT_MIN_ITEMS``), an integer >= 1.

    Raises:
        Misconfigured: not an integer, or below 1.

    """
    env = os.environ if env is None else env
    raw = env.get("FANOUT_MIN_ITEMS") or str(DEFAULT_FANOUT_MIN_ITEMS)
    try:
        value = int(raw)
    except ValueError:
        raise Misconfigured(f"FANOUT_MIN_ITEMS must be an integer, got {raw!r}") from None
    if value < 1:
        raise Misconfigured(f"FANOUT_MIN_ITEMS must be at least 1, got {value}")
    return value


def can_fan_out(mode: str, *, dry_run: bool = False, single: bool = False) -> bool:
    """Whether a run may fan out at all (then ``fans_out`` decides per tenant).

    Only with a task queue (``mode`` ``http`` or ``cloud_tasks``), never for a dry run or a
    ``single`` subscription run (the admin's "invoice it now").
    """
    return mode in ("http", "cloud_tasks") and not dry_run and not single


def fans_out(mode: str, items: int, minimum: int, *, dry_run: bool = False, single: bool = False) -> bool:
    """The threshold rule of ``generate_invoices`` and dunning: ``can_fan_out`` and ``items >= minimum``."""
    return can_fan_out(mode, dry_run=dry_run, single=single) and items >= minimum


def workload(store: BillingStore, tenant: Tenant, as_of: datetime) -> int:
    """The tenant's items at ``as_of``: due anniversary subscriptions plus due drafts."""
    report = RunReport(GENERATE_INVOICES, "workload", True)
    catalog = Catalog.load(store, tenant.id)
    candidates, _ = anniversary_candidates(
        report, tenant, catalog, store.load_subscriptions(tenant.id, "anniversary"), as_of
    )
    return len({sub.id for sub, _ in candidates}) + len(store.due_drafts(tenant.id, as_of))


def hour_key(as_of: datetime) -> str:
    """The active-run key of a fanned-out ``generate_invoices``: ``generate_invoices.YYYY-MM-DDTHH`` (UTC)."""
    return f"{GENERATE_INVOICES.function}.{as_of.astimezone(UTC):%Y-%m-%dT%H}"


# -- the request ---------------------------------------------------------------------------------
def start_generate_invoices(
    ctx: RunContext, worker: Worker, tenant_id: str | None, minimum: int, mode: str
) -> dict[str, Any]:
    """Fan out the tenants whose hour holds at least ``minimum`` items (``fans_out``); the 202 body.

    Returns ``{"run_id", "status": "running", "tenants": [{tenant_id, as_of, run_id, joined?}],
    "errors": []}`` with an entry per fanned-out tenant (none: nothing fanned out, the caller
    runs inline). A tenant whose hour is running already joins that run (``joined: true``; for
    a named tenant the body's ``run_id`` is that run's).

    Raises:
        NotFound, PermissionDenied: unknown or disabled named tenant, before anything is written.

    """
    body: dict[str, Any] = {"run_id": ctx.run_id, "status": "running", "tenants": [], "errors": []}
    for tenant in resolve_tenants(ctx.store, tenant_id):
        if isinstance(tenant, tuple) or not fans_out(mode, workload(ctx.store, tenant, ctx.now), minimum):
            continue  # the inline run reports an unreadable tenant
        entry = {"tenant_id": tenant.id, "as_of": ctx.now.isoformat()}
        start_or_join(
            worker, body, entry, hour_key(ctx.now), _initial_record(ctx), named=tenant_id is not None
        )
    return body


def _initial_record(ctx: RunContext) -> dict[str, Any]:
    """The run record of a fanned-out ``generate_invoices`` as the request writes it."""
    return initial_record(
        GENERATE_INVOICES.function,
        ctx.now,
        ctx.principal,
        as_of=ctx.now,
        subscription_chunks=0,
        generated=0,
        finalized=0,
        advanced=0,
        totals={},
        draft_totals={},
    )


# -- plan ----------------------------------------------------------------------------------------
def plan(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """Plan the run's chunks once (under a lease), then enqueue the price tasks still due."""
    store = worker.store
    if record.get("stage") == "plan":
        name = f"plan-{run_id}"
        lease = store.acquire_lease(
            tenant.id, name, uuid.uuid4().hex, ttl=timedelta(seconds=worker.claim_ttl), wait=timedelta(0)
        )
        if lease is None:  # a duplicate is planning: retried later, it then finds the plan
            raise Conflict("the run is being planned by another attempt", code="plan_busy")
        try:
            record = store.read_run(tenant.id, run_id) or {}
            if record.get("stage") == "plan":
                _plan_chunks(worker, tenant, run_id, record)
                record = store.read_run(tenant.id, run_id) or {}
        finally:
            store.release_lease(tenant.id, name, lease)
    if record.get("stage") == "summarize":
        _enqueue(worker, "summarize", tenant.id, run_id)
        return {"stage": "plan", "chunks": 0}
    return {"stage": "plan", "chunks": enqueue_chunks(worker, tenant.id, run_id, "price")}


def _usage_scope(
    store: BillingStore, tenant_id: str, spans: Sequence[tuple[datetime, datetime]]
) -> dict[str, Any]:
    """The fold state every chunk reads usage with (``usage_source.plan_scope``).

    Read once for the span of every due period and due draft (earliest start to latest end).
    """
    if not spans:
        return {"usage_watermark": None, "usage_unfolded": None}
    return plan_scope(store, tenant_id, min(s for s, _ in spans), max(e for _, e in spans))


def _plan_chunks(worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any]) -> None:
    """Write the chunks (subscriptions first, then due drafts) and move the run to ``price``."""
    store, now = worker.store, record["now"]
    ctx = _context(worker, run_id, record)
    report = RunReport(GENERATE_INVOICES, run_id, False)
    catalog = Catalog.load(store, tenant.id)
    candidates, _ = anniversary_candidates(
        report, tenant, catalog, store.load_subscriptions(tenant.id, "anniversary"), now
    )
    due = {(sub.customer_id, sub.id) for sub, _ in candidates}
    spans = [(period.start, period.end) for _, period in candidates]
    drafts = []
    for stored in store.due_drafts(tenant.id, now):
        if isinstance(stored, tuple):
            report.error(tenant.id, stored[1], invoice_id=stored[0])
        elif stored.subscription_id is not None:  # one-off drafts wait for a person
            drafts.append((stored.customer_id, stored.id))
            spans.append((stored.period_start, stored.period_end))
    sub_chunks = cut_chunks(due, worker.chunk_size)  # a customer never straddles two chunks
    chunks = sub_chunks + cut_chunks(drafts, worker.chunk_size)
    store.create_chunks(tenant.id, run_id, chunks)
    pricing_errors = len(report.errors)
    republish_missing_pdfs(ctx, report, tenant)  # earlier runs' missing PDFs, as every inline run
    figures = _error_figures(report, "pricing")
    by_stage = {"pricing": pricing_errors, "pdf": len(report.errors) - pricing_errors}
    fields = {
        "stage": "price" if chunks else "summarize",
        "stage_at": datetime.now(UTC),
        "chunks_total": len(chunks),
        "subscription_chunks": len(sub_chunks),
        "candidates": len(candidates),
        **_usage_scope(store, tenant.id, spans),
        "error_details": figures.get("error_details", []),
        "errors": len(report.errors),
        "errors_by_stage": {k: v for k, v in by_stage.items() if v},
    }
    store.update_run_if(tenant.id, run_id, {"stage": "plan"}, fields)


# -- price: subscription chunks and draft chunks ----------------------------------------------
def price(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """Bill or finalize one chunk under its claim (see the module docstring)."""
    store, index = worker.store, int(body["chunk"])
    token = store.claim_chunk(
        tenant.id,
        run_id,
        index,
        int(body.get("generation", 0)),
        datetime.now(UTC),
        claim_ttl=worker.claim_ttl,
    )
    if token is None:  # done (or superseded): finish what a lost answer may have left
        _advance(
            store, tenant.id, (store.read_chunk(tenant.id, run_id, index) or {}).get("moves") or [], record
        )
        _after_price(worker, tenant.id, run_id, complete=_stage_complete(worker, tenant.id, run_id, "price"))
        return {"stage": "price", "chunk": index, "ignored": "done or superseded"}
    try:
        chunk = store.read_chunk(tenant.id, run_id, index) or {}
        ids = [str(i) for i in chunk.get("subscription_ids") or []]
        ctx = _context(worker, run_id, record)
        report = RunReport(GENERATE_INVOICES, run_id, False)
        catalog = Catalog.load(store, tenant.id)
        if index < int(record.get("subscription_chunks", 0)):
            figures, fields = _bill_chunk(ctx, report, tenant, catalog, ids, record)
        else:
            figures, fields = _finalize_chunk(ctx, report, tenant, catalog, ids, record)
        committed, complete = store.finish_part(
            tenant.id, run_id, index, "price", figures, token=token, chunk_fields=fields
        )
    except BaseException:
        store.release_claim(tenant.id, run_id, index, token)  # the retry takes over at once
        raise
    if committed:
        _advance(store, tenant.id, fields.get("moves") or [], record)
    _after_price(worker, tenant.id, run_id, complete=complete)
    return {
        "stage": "price",
        "chunk": index,
        "committed": committed,
        "generated": figures.get("generated", 0),
    }


def _advance(
    store: BillingStore, tenant_id: str, moves: Sequence[Mapping[str, Any]], record: Mapping[str, Any]
) -> None:
    """Apply a chunk's recorded moves (each subscription moves once: conditioned on its period end)."""
    if moves:
        store.advance_subscriptions(
            tenant_id,
            [
                SubscriptionMove(
                    m["subscription_id"], m["expected_period_end"], m["start"], m["end"], m["anchor"]
                )
                for m in moves
            ],
            now=record["now"],
        )


def _bill_chunk(
    ctx: RunContext,
    report: RunReport,
    tenant: Tenant,
    catalog: Catalog,
    ids: Sequence[str],
    record: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Price a subscription chunk and create its invoices; its figures and chunk fields."""
    store = ctx.store
    subs: list[Subscription] = []
    for sid, sub in store.get_subscriptions(tenant.id, ids).items():
        if isinstance(sub, Subscription):
            subs.append(sub)
        else:
            report.error(tenant.id, sub, subscription_id=sid)
    candidates, advances = anniversary_candidates(report, tenant, catalog, subs, ctx.now)
    customers = sorted({sub.customer_id for sub, _ in candidates})
    drafts, events_read = price_candidates(
        ctx,
        report,
        tenant,
        catalog,
        candidates,
        known=store.chunk_subscriptions(tenant.id, customers),
        known_billing_times=BILLING_TIMES,
        scope=chunk_scope(record, customers),
    )
    result = store.create_invoices(tenant, drafts, now=ctx.now, run_id=ctx.run_id, finalize=False)
    for draft, error in result.rejected:
        report.error(tenant.id, error, subscription_id=draft.subscription_id)
    ours = _ours(ctx, report, tenant, {d.invoice_id: d.subscription_id for d in drafts}, result)
    at_once = tenant.grace_period_hours == 0  # inline creates them open: here the pass numbers them
    if at_once:  # due at once (finalize_at = now): if this run dies, the next run finalizes them
        store.prepare_drafts(tenant.id, [d for d in drafts if d.invoice_id in ours], ctx.run_id)
    totals: dict[str, int] = {}
    for draft in (d for d in drafts if d.invoice_id in ours):
        totals[draft.currency] = totals.get(draft.currency, 0) + draft.total
    moves = _moves(advances, {e.get("subscription_id") for e in report.errors})
    figures: dict[str, Any] = {
        **_figures(report),
        "generated": len(ours),
        "finalized": len(ours) if at_once else 0,
        "advanced": len(moves),
        "events_read": events_read,
        "totals" if at_once else "draft_totals": totals,
    }
    keys = sorted((d.customer.id, d.invoice_id) for d in drafts if d.invoice_id in ours)
    invoices = [{"customer_id": c, "invoice_id": i, "phase": 0} for c, i in keys] if at_once else []
    return figures, {"invoices": invoices, "moves": moves}


def _moves(
    advances: Mapping[str, tuple[Subscription, BillingPeriod, datetime]], failed: Collection[Any]
) -> list[dict[str, Any]]:
    """The chunk's subscription moves as stored on the chunk (those of failed subscriptions left out)."""
    return [
        {
            "subscription_id": sid,
            "expected_period_end": sub.current_period_end,
            "start": period.start,
            "end": period.end,
            "anchor": anchor,
        }
        for sid, (sub, period, anchor) in advances.items()
        if sid not in failed and sub.current_period_end is not None
    ]


def _ours(
    ctx: RunContext, report: RunReport, tenant: Tenant, subscription_of: Mapping[str, str], result: Any
) -> set[str]:
    """The invoices this run created (an earlier attempt's count); others are ``already_invoiced``."""
    ours = {i.id for i in result.created}
    found = ctx.store.get_invoices(tenant.id, list(result.existing)) if result.existing else {}
    for invoice_id in result.existing:
        invoice = found.get(invoice_id)
        if isinstance(invoice, Invoice) and invoice.run_id == ctx.run_id:
            ours.add(invoice_id)
        else:
            report.skip(tenant.id, "already_invoiced", subscription_id=subscription_of[invoice_id])
    return ours


def _figures(report: RunReport) -> dict[str, Any]:
    """A chunk report's errors (stage ``pricing``), skips and warnings as run-record figures."""
    return {
        **_error_figures(report, "pricing"),
        "skipped": report.skipped,
        "skips": report.skips,
        "warnings_count": report.warnings_count,
    }


def _finalize_chunk(
    ctx: RunContext,
    report: RunReport,
    tenant: Tenant,
    catalog: Catalog,
    ids: Sequence[str],
    record: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Re-price a draft chunk, delete the empty drafts, hand the others to the numbering pass."""
    store = ctx.store
    stored: list[StoredInvoice] = []
    for invoice_id, found in store.get_invoices(tenant.id, list(ids)).items():
        if not isinstance(found, Invoice):
            stored.append((invoice_id, found))
        elif found.status == "draft" and found.finalize_at is not None:  # not finalized or taken over
            stored.append(found)
    customers = {i.customer_id for i in stored if isinstance(i, Invoice)}
    scope = chunk_scope(record, customers)  # its customers' usage only
    subs, priced, empty = reprice_due_drafts(ctx, report, tenant, catalog, stored, scope)
    store.discard_drafts(
        tenant.id, {d.invoice_id: empty_reason(subs, d) for d in empty}, now=ctx.now, run_id=ctx.run_id
    )
    prepared = set(store.prepare_drafts(tenant.id, priced, ctx.run_id))
    totals: dict[str, int] = {}
    for draft in (d for d in priced if d.invoice_id in prepared):
        totals[draft.currency] = totals.get(draft.currency, 0) + draft.total
    keys = sorted((d.customer.id, d.invoice_id) for d in priced if d.invoice_id in prepared)
    figures = {**_figures(report), "finalized": len(prepared), "totals": totals}
    return figures, {"invoices": [{"customer_id": c, "invoice_id": i, "phase": 1} for c, i in keys]}


FUNCTION_HANDLERS[GENERATE_INVOICES.function] = {
    "plan": plan,
    "price": price,
    "number": number,
    "render": render,
    "deliver": deliver,
    "summarize": summarize,
}
