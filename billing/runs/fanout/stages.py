"""The stages of a fanned-out month close and the worker that dispatches them (see the package doc).

Task bodies (JSON, the ``billing_worker`` request): ``{"stage", "tenant_id", "run"}`` plus
``chunk`` and ``generation`` (``price``), ``chunk`` (``render``, ``deliver``) or ``cursor``
(``number``). Task names are deterministic (``billing.tasks.task_name``): ``{run}-{stage}-{tenant}``
then the chunk and generation, or the numbering cursor, so a re-enqueued "next stage" is the
same task. Figures (minor units per currency in ``totals``) accumulate on the run record
(``billing.store.chunks``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from billing.delivery.outbox import deliver_finalized_invoices, delivery_enabled
from billing.errors import BadRequest, BillingError, Conflict, NotFound
from billing.pricing.invoicing import InvoiceDraft
from billing.pricing.periods import BillingPeriod, month_period, parse_month, utc_now
from billing.records import Invoice, Subscription, Tenant
from billing.runs.month_close import MONTHLY_BILLING, calendar_candidates, month_close_period
from billing.runs.notify import FIRST_ERRORS, notify_recorded_run
from billing.runs.pipeline import BILLING_TIMES, Catalog, price_candidates
from billing.runs.shell import MAX_LISTED, PdfSink, RunContext, RunReport, resolve_tenants
from billing.runs.stages import empty_counts
from billing.runs.usage_source import chunk_scope, plan_scope
from billing.store.firestore_store import BillingStore
from billing.tasks import Task, TaskQueue, task_name

MONTH_CLOSE_STAGES = ("plan", "price", "number", "render", "deliver", "summarize")
"""The month close's stages, in order (``generate_invoices`` runs them too)."""
STAGES = (*MONTH_CLOSE_STAGES, "sweep", "dun", "reactivate")
"""Every stage a task may carry (``dun``, ``reactivate``: ``billing.runs.fanout.dunning``)."""
NUMBER_BUDGET_SECONDS = 480.0
"""The numbering pass's budget per task (8 min, under the 15 min dispatch deadline)."""
CLAIM_TTL_SECONDS = 960.0
"""A claim older than the dispatch deadline (15 min) plus a minute has no live attempt."""


@dataclass
class Worker:
    """What the stages need: the store, the task queue, the PDF sink, sizes and budgets.

    ``chunk_size``: subscriptions per price task (``CHUNK_SIZE``). ``number_budget``: seconds of
    numbering per task before a continuation. ``claim_ttl``: seconds a chunk's claim (and the
    numbering lease) protects a live attempt; past it, a retry takes over (the earlier attempt
    is fenced out). ``clock``: the worker's clock (sweeper ages).
    """

    store: BillingStore
    queue: TaskQueue
    publish_pdfs: PdfSink | None
    chunk_size: int = 500
    number_budget: float = NUMBER_BUDGET_SECONDS
    claim_ttl: float = CLAIM_TTL_SECONDS
    clock: Callable[[], datetime] = field(default=utc_now)


def _enqueue(worker: Worker, stage: str, tenant_id: str, run_id: str, *extra: object, **fields: Any) -> None:
    """Enqueue ``stage`` for the run; ``extra`` completes the task name (chunk, generation...)."""
    queue = "delivery" if stage == "deliver" else "work"
    body = {"stage": stage, "tenant_id": tenant_id, "run": run_id, **fields}
    worker.queue.enqueue(Task(queue, task_name(run_id, stage, tenant_id, *extra), body))


# -- the request: validate, record, enqueue plan ------------------------------------------------
def start_month_close(
    ctx: RunContext, worker: Worker, tenant_id: str | None, month: str | None
) -> dict[str, Any]:
    """Record a fanned-out month close per tenant and enqueue its ``plan``; the 202 body.

    Validation is the inline close's (``month_close.run_month_close``): a bad month or an
    unknown tenant raises before anything is written; across all tenants, one whose month has
    not ended is listed in ``tenants`` as skipped.

    One run per (tenant, function, month) at a time (``RunStore.start_run``): while a run of it
    is ``running``, another call starts nothing for that tenant; its entry in ``tenants`` names
    the running run (``run_id``, ``joined: true``) and, for a named tenant, so does the body's
    ``run_id``. Once that run has ended a call starts a new run (which then skips what is
    invoiced already).

    Raises:
        BadRequest, NotFound, PermissionDenied: before anything is written.

    """
    if month is not None:
        parse_month(month)
    body: dict[str, Any] = {
        "run_id": ctx.run_id,
        "status": "running",
        "dry_run": False,
        "tenants": [],
        "errors": [],
    }
    planned: list[tuple[Tenant, BillingPeriod]] = []
    for tenant in resolve_tenants(ctx.store, tenant_id):
        if isinstance(tenant, tuple):
            body["errors"].append(
                {"tenant_id": tenant[0], "error": tenant[1].message, "code": tenant[1].code}
            )
            continue
        try:
            planned.append((tenant, month_close_period(tenant, month, ctx.now)))
        except BadRequest as exc:
            if tenant_id is not None:
                raise
            body["tenants"].append({"tenant_id": tenant.id, "skipped": exc.code, "reason": exc.message})
    for tenant, period in planned:
        key = f"{MONTHLY_BILLING.function}.{period.month_label}"
        entry = {"tenant_id": tenant.id, "month": period.month_label}
        start_or_join(worker, body, entry, key, _initial_record(ctx, period), named=tenant_id is not None)
    return body


def start_or_join(
    worker: Worker,
    body: dict[str, Any],
    entry: dict[str, Any],
    key: str,
    record: dict[str, Any],
    *,
    named: bool,
) -> None:
    """Record ``body``'s run as the tenant's active run for ``key`` and enqueue its plan, or join.

    ``RunStore.start_run``: while another run of that key is running, nothing starts; the
    tenant's ``entry`` (appended to ``body["tenants"]``) names that run with ``joined: true``
    and, for a ``named`` tenant, so does the body's ``run_id`` (one run, one numbering pass).
    """
    tenant_id, run_id = str(entry["tenant_id"]), str(body["run_id"])
    active = worker.store.start_run(tenant_id, key, run_id, record)
    entry["run_id"] = active
    if active == run_id:
        _enqueue(worker, "plan", tenant_id, run_id)
    else:
        entry["joined"] = True
        if named:
            body["run_id"] = active
    body["tenants"].append(entry)


def _initial_record(ctx: RunContext, period: BillingPeriod) -> dict[str, Any]:
    """The run record of a fanned-out month close as the request writes it."""
    return initial_record(
        MONTHLY_BILLING.function,
        ctx.now,
        ctx.principal,
        month=period.month_label,
        period_start=period.start,
        period_end=period.end,
        generated=0,
        totals={},
    )


def initial_record(function: str, now: datetime, principal: str | None, **fields: Any) -> dict[str, Any]:
    """A fanned-out run's record as its request writes it: ``running`` in ``plan``, counters at 0.

    ``now``: the run's clock (every task uses it, never its own). ``fields``: the function's
    own (its period, counters and totals maps), added to the shared ones.
    """
    started = utc_now()
    return {
        "function": function,
        "mode": "fanout",
        "status": "running",
        "stage": "plan",
        "stage_at": started,
        "started_at": started,
        "finished_at": None,
        "now": now,
        "principal": principal,
        "chunks_total": 0,
        "skipped": 0,
        "errors": 0,
        "errors_by_stage": {},
        **fields,
    }


# -- the worker's dispatch ----------------------------------------------------------------------
def execute(worker: Worker, body: Mapping[str, Any]) -> dict[str, Any]:
    """Run one task (``body`` as in the module docstring); returns what it did.

    Raises:
        BadRequest: unknown stage. NotFound: unknown run. Anything else propagates (a 5xx, so
        the queue retries the task).

    """
    stage = body.get("stage")
    if stage == "sweep":
        from billing.runs.fanout.sweeper import sweep

        return sweep(worker, body.get("tenant_id"))
    if str(stage) not in STAGES:
        raise BadRequest(f"unknown stage {stage!r}", code="invalid_field")
    tenant_id, run_id = str(body["tenant_id"]), str(body["run"])
    record = worker.store.read_run(tenant_id, run_id)
    if record is None or record.get("mode") != "fanout":
        raise NotFound(f"no fanned-out run {run_id!r} for tenant {tenant_id!r}", code="unknown_run")
    # The run's function picks its stages (FUNCTION_HANDLERS); the month close's are the default.
    handler = FUNCTION_HANDLERS.get(str(record.get("function")), _HANDLERS).get(str(stage))
    if handler is None:
        raise BadRequest(f"unknown stage {stage!r}", code="invalid_field")
    if record.get("status") != "running" and not (stage == "summarize" and record.get("stage") == "done"):
        return {"stage": stage, "ignored": f"run {record.get('status')}"}
    tenant = worker.store.get_tenant(tenant_id)
    return handler(worker, tenant, run_id, record, body)


def _context(worker: Worker, run_id: str, record: Mapping[str, Any]) -> RunContext:
    """The run context of a task: the run's clock (the request's ``now``), never the task's."""
    return RunContext(
        run_id, record["now"], False, worker.store, worker.publish_pdfs, record.get("principal")
    )


def _period(tenant: Tenant, record: Mapping[str, Any]) -> BillingPeriod:
    return month_period(*parse_month(str(record["month"])), tenant.timezone)


def _error_figures(report: RunReport, stage: str) -> dict[str, Any]:
    """Errors of a report as run-record figures, counted under ``stage``."""
    if not report.errors:
        return {}
    return {
        "errors": len(report.errors),
        "error_details": report.errors,
        "errors_by_stage": {stage: len(report.errors)},
    }


def cut_chunks(keys: Iterable[tuple[str, str]], size: int) -> list[list[str]]:
    """Subscription ids cut into chunks of about ``size``, in (customer id, subscription id) order.

    A customer's subscriptions never straddle two chunks (a chunk may exceed ``size`` by the
    rest of its last customer's): each chunk reads its customers' events with one range query
    (``stream_customer_range_events``), so every event is read, and counted, by one chunk.
    """
    chunks: list[list[str]] = []
    current: list[str] = []
    last_customer: str | None = None
    for customer_id, subscription_id in sorted(keys):
        if len(current) >= size and customer_id != last_customer:
            chunks.append(current)
            current = []
        current.append(subscription_id)
        last_customer = customer_id
    if current:
        chunks.append(current)
    return chunks


# -- plan ---------------------------------------------------------------------------------------
def plan(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """Cut the tenant's candidates into chunks and enqueue their price tasks (idempotent)."""
    store = worker.store
    if record.get("stage") == "plan":
        report = RunReport(MONTHLY_BILLING, run_id, False)
        catalog = Catalog.load(store, tenant.id)
        subs = store.load_subscriptions(tenant.id, "calendar")
        period = _period(tenant, record)
        candidates = calendar_candidates(report, tenant, catalog, subs, period)
        chunks = cut_chunks(((sub.customer_id, sub.id) for sub, _ in candidates), worker.chunk_size)
        store.create_chunks(tenant.id, run_id, chunks)
        figures = _error_figures(report, "pricing")
        fields = {
            "stage": "price" if chunks else "summarize",
            "stage_at": utc_now(),
            "chunks_total": len(chunks),
            "candidates": len(candidates),
            **plan_scope(store, tenant.id, period.start, period.end),
            **{k: v for k, v in figures.items() if k != "errors"},
            "errors": int(figures.get("errors", 0)),
        }
        store.update_run_if(tenant.id, run_id, {"stage": "plan"}, fields)
        record = store.read_run(tenant.id, run_id) or {}
    if record.get("stage") == "summarize":
        _enqueue(worker, "summarize", tenant.id, run_id)
        return {"stage": "plan", "chunks": 0}
    return {"stage": "plan", "chunks": enqueue_chunks(worker, tenant.id, run_id, "price")}


def enqueue_chunks(worker: Worker, tenant_id: str, run_id: str, stage: str) -> int:
    """Enqueue ``stage`` (``price``, ``dun``) for each chunk not done with it; the run's chunk count.

    Each task carries the chunk's ``generation`` in its name and body, so a chunk the sweeper
    moved on (``ChunkStore.raise_generation``) gets a new task and the old one is refused.
    """
    chunks = worker.store.read_chunks(tenant_id, run_id)
    for chunk in chunks:
        if not chunk.get(f"{stage}_done"):
            index, gen = chunk["index"], int(chunk.get("generation", 0))
            _enqueue(worker, stage, tenant_id, run_id, index, f"g{gen}", chunk=index, generation=gen)
    return len(chunks)


# -- price and create ---------------------------------------------------------------------------
def price(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """Price one chunk and create its invoices unnumbered; commit under the attempt's token."""
    store, index = worker.store, int(body["chunk"])
    token = store.claim_chunk(
        tenant.id, run_id, index, int(body.get("generation", 0)), utc_now(), claim_ttl=worker.claim_ttl
    )
    if token is None:
        _after_price(worker, tenant.id, run_id, complete=_stage_complete(worker, tenant.id, run_id, "price"))
        return {"stage": "price", "chunk": index, "ignored": "done or superseded"}
    try:
        return _price_claimed(worker, tenant, run_id, record, index, token)
    except BaseException:
        store.release_claim(tenant.id, run_id, index, token)  # the retry takes over at once
        raise


def _price_claimed(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], index: int, token: str
) -> dict[str, Any]:
    """The price stage of a claimed chunk (see ``price``)."""
    store = worker.store
    chunk = store.read_chunk(tenant.id, run_id, index) or {}
    wanted = set(chunk.get("subscription_ids") or [])
    ctx = _context(worker, run_id, record)
    report = RunReport(MONTHLY_BILLING, run_id, False)
    by_id = store.get_subscriptions(tenant.id, sorted(wanted))
    customers = sorted({s.customer_id for s in by_id.values() if isinstance(s, Subscription)})
    known = store.chunk_subscriptions(tenant.id, customers)
    period = _period(tenant, record)
    candidates = [(s, period) for s in known if isinstance(s, Subscription) and s.id in wanted]
    for sid, sub in by_id.items():
        if not isinstance(sub, Subscription):
            report.error(tenant.id, sub, subscription_id=sid)
    drafts, events_read = price_candidates(
        ctx,
        report,
        tenant,
        Catalog.load(store, tenant.id),
        candidates,
        known=known,
        known_billing_times=BILLING_TIMES,
        scope=chunk_scope(record, customers),
    )
    figures, chunk_fields = _create(worker, tenant, run_id, record, report, drafts)
    figures["events_read"] = events_read
    committed, complete = store.finish_part(
        tenant.id, run_id, index, "price", figures, token=token, chunk_fields=chunk_fields
    )
    _after_price(worker, tenant.id, run_id, complete=complete)
    return {
        "stage": "price",
        "chunk": index,
        "committed": committed,
        "generated": figures.get("generated", 0),
    }


def _create(
    worker: Worker,
    tenant: Tenant,
    run_id: str,
    record: Mapping[str, Any],
    report: RunReport,
    drafts: Sequence[InvoiceDraft],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create the chunk's invoices (unnumbered); its figures and the chunk's ``invoices`` list.

    An invoice that existed already counts as generated when this run created it (an earlier
    attempt of the same chunk) or adopts it from an ended run (``ChunkStore.owned_invoices``:
    a failed run's unnumbered drafts), else as skipped ``already_invoiced``, as inline.
    """
    store = worker.store
    result = store.create_invoices(
        tenant, drafts, now=record["now"], run_id=run_id, finalize=False, numbering_run=run_id
    )
    storage_errors = len(result.rejected)
    for draft, error in result.rejected:
        report.error(tenant.id, error, subscription_id=draft.subscription_id)
    amounts = {i.id: i.total for i in result.created}
    owned = store.owned_invoices(tenant.id, run_id, result.existing) if result.existing else {}
    by_id = {d.invoice_id: d for d in drafts}
    for invoice_id in result.existing:
        if invoice_id in owned:
            amounts[invoice_id] = owned[invoice_id]
        else:
            report.skip(tenant.id, "already_invoiced", subscription_id=by_id[invoice_id].subscription_id)
    ours = set(amounts)
    totals: dict[str, int] = {}
    for invoice_id, amount in amounts.items():
        currency = by_id[invoice_id].currency
        totals[currency] = totals.get(currency, 0) + amount
    figures: dict[str, Any] = {
        **_error_figures(report, "pricing"),
        "generated": len(ours),
        "skipped": report.skipped,
        "skips": report.skips,
        "totals": totals,
        "warnings_count": report.warnings_count,
    }
    if storage_errors:
        figures["errors_by_stage"] = {
            "pricing": len(report.errors) - storage_errors,
            "storage": storage_errors,
        }
    keys = sorted((by_id[i].customer.id, i) for i in ours)
    return figures, {"invoices": [{"customer_id": c, "invoice_id": i} for c, i in keys]}


def _stage_complete(worker: Worker, tenant_id: str, run_id: str, stage: str) -> bool:
    record = worker.store.read_run(tenant_id, run_id) or {}
    return int(record.get(f"{stage}_done", 0)) >= int(record.get("chunks_total", 0))


def _after_price(worker: Worker, tenant_id: str, run_id: str, *, complete: bool) -> None:
    """Enqueue the numbering pass (fixed name) once every chunk is priced."""
    if complete:
        worker.store.update_run_if(
            tenant_id, run_id, {"stage": "price"}, {"stage": "number", "stage_at": utc_now()}
        )
        _enqueue(worker, "number", tenant_id, run_id, 0, cursor=0)


# -- number -------------------------------------------------------------------------------------
def pending_order(chunks: Sequence[Mapping[str, Any]]) -> list[str]:
    """The run's invoice ids in numbering order: customer id, then invoice id (never arrival order)."""
    keys = sorted(
        # ``phase`` (default 0): generate_invoices numbers its new invoices before its due drafts, as inline
        (int(i.get("phase", 0)), str(i["customer_id"]), str(i["invoice_id"]))
        for c in chunks
        for i in c.get("invoices") or []
    )
    return [invoice_id for _, _, invoice_id in keys]


def number(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """The serial numbering pass, from ``cursor``; a continuation task near the time budget."""
    store = worker.store
    chunks = store.read_chunks(tenant.id, run_id)
    if record.get("stage") == "number":
        lease = store.acquire_lease(
            tenant.id,
            f"number-{run_id}",
            uuid.uuid4().hex,
            ttl=timedelta(seconds=worker.claim_ttl),
            wait=timedelta(0),
        )
        if lease is None:
            raise Conflict("the numbering pass is running in another attempt", code="numbering_busy")
        try:
            return _number_from(worker, tenant, run_id, record, chunks, int(body.get("cursor", 0)))
        finally:
            store.release_lease(tenant.id, f"number-{run_id}", lease)
    for chunk in chunks:
        _enqueue(worker, "render", tenant.id, run_id, chunk["index"], chunk=chunk["index"])
    return {"stage": "number", "complete": True}


def _number_from(
    worker: Worker,
    tenant: Tenant,
    run_id: str,
    record: Mapping[str, Any],
    chunks: Sequence[Mapping[str, Any]],
    start: int,
) -> dict[str, Any]:
    """The numbering pass under its lease (see ``number``)."""
    store = worker.store
    ids = pending_order(chunks)
    position, numbered = store.number_pending(
        tenant,
        run_id,
        ids,
        start=start,
        now=record["now"],
        delivery_pending=delivery_enabled(tenant),
        budget_seconds=worker.number_budget,
    )
    if position < len(ids):
        store.write_run(tenant.id, run_id, {"number_cursor": position, "stage_at": utc_now()})
        _enqueue(worker, "number", tenant.id, run_id, position, cursor=position)
        return {"stage": "number", "numbered": numbered, "continues_at": position}
    store.update_run_if(
        tenant.id,
        run_id,
        {"stage": "number"},
        {"stage": "render", "stage_at": utc_now(), "numbered": len(ids)},
    )
    for chunk in chunks:
        _enqueue(worker, "render", tenant.id, run_id, chunk["index"], chunk=chunk["index"])
    return {"stage": "number", "complete": True}


# -- render, deliver, summarize -----------------------------------------------------------------
def _chunk_invoices(
    worker: Worker, tenant: Tenant, run_id: str, index: int
) -> tuple[list[str], list[Invoice]]:
    chunk = worker.store.read_chunk(tenant.id, run_id, index) or {}
    ids = [str(i["invoice_id"]) for i in chunk.get("invoices") or []]
    found = worker.store.get_invoices(tenant.id, ids) if ids else {}
    return ids, [i for i in found.values() if isinstance(i, Invoice)]


def render(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """Render and upload the chunk's PDFs still missing; then enqueue its delivery."""
    index = int(body["chunk"])
    _, invoices = _chunk_invoices(worker, tenant, run_id, index)
    todo = [i for i in invoices if i.status == "open" and not i.pdf_uri]
    report = RunReport(MONTHLY_BILLING, run_id, False)
    if todo and worker.publish_pdfs is not None:
        uris, failures, _ = worker.publish_pdfs(tenant, [i.as_document() for i in todo])
        worker.store.record_pdfs(tenant.id, uris, record["now"])
        for invoice_id, message in failures:
            report.error(tenant.id, BillingError(message, code="pdf_failed"), invoice_id=invoice_id)
    worker.store.finish_part(tenant.id, run_id, index, "render", _error_figures(report, "pdf"))
    _enqueue(worker, "deliver", tenant.id, run_id, index, chunk=index)
    return {"stage": "render", "chunk": index, "rendered": len(todo)}


def deliver(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """Deliver the chunk's invoices (Stripe, email; once each); the last chunk enqueues summarize."""
    index = int(body["chunk"])
    ids, _ = _chunk_invoices(worker, tenant, run_id, index)
    report = RunReport(MONTHLY_BILLING, run_id, False)
    by_stage: dict[str, int] = {}
    if ids and delivery_enabled(tenant):
        for invoice_id, message in deliver_finalized_invoices(
            worker.store, tenant, ids, record["now"], run_id
        ):
            report.error(tenant.id, BillingError(message, code="delivery_failed"), invoice_id=invoice_id)
            stage = "stripe" if "stripe" in message.lower() else "email"
            by_stage[stage] = by_stage.get(stage, 0) + 1
    figures = {**_error_figures(report, "email"), "errors_by_stage": by_stage} if by_stage else {}
    _, complete = worker.store.finish_part(tenant.id, run_id, index, "deliver", figures)
    if complete:
        worker.store.update_run_if(
            tenant.id, run_id, {"stage": "render"}, {"stage": "summarize", "stage_at": utc_now()}
        )
        _enqueue(worker, "summarize", tenant.id, run_id)
    return {"stage": "deliver", "chunk": index, "invoices": len(ids)}


def summarize(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """Close the run: ``completed`` with ``finished_at`` (once), then its summary email (once).

    Only the delivery that closed the run sends (``notify_run_end``): a duplicate arriving at
    the same time sends nothing (two claims of one outbox document at once only contend). If
    that send raised, the record gets ``notify_failed`` and the task's retry sends it (the
    outbox, keyed by run id, still sends it once).
    """
    done = worker.store.update_run_if(
        tenant.id,
        run_id,
        {"status": "running", "stage": "summarize"},
        {"status": "completed", "stage": "done", "finished_at": utc_now()},
    )
    closed = worker.store.read_run(tenant.id, run_id) or {}
    if closed.get("stage") != "done" or not (done or closed.get("notify_failed")):
        return {"stage": "summarize", "completed": done}
    try:
        sent = notify_run_end(worker.store, tenant, run_id, closed)
    except BillingError:
        worker.store.write_run(tenant.id, run_id, {"notify_failed": True})
        raise
    if closed.get("notify_failed"):
        worker.store.write_run(tenant.id, run_id, {"notify_failed": False})
    return {"stage": "summarize", "completed": done, "notified": sent}


def notify_run_end(store: BillingStore, tenant: Tenant, run_id: str, record: Mapping[str, Any]) -> list[str]:
    """The tenant's run summary of an ended fanned-out run (``notify.notify_recorded_run``), once.

    The record's figures in the shape ``record_summary`` reads: ``summary`` (the counter
    ``generated``), ``seconds`` (``finished_at - started_at``), ``errors_by_stage`` with every
    stage, and ``error_details`` with the chunks' errors. The outbox (keyed by run id) makes a
    duplicate send nothing.

    Raises:
        EmailError, Misconfigured: the send failed (recorded; the task's retry sends it).

    """
    started, finished = record.get("started_at"), record.get("finished_at")
    seconds = (
        (finished - started).total_seconds()
        if isinstance(started, datetime) and isinstance(finished, datetime)
        else 0.0
    )
    details = list(record.get("error_details") or [])
    for chunk in store.read_chunks(tenant.id, run_id):
        details.extend(
            e
            for stage in ("price", "render", "deliver", "dun")
            for e in chunk.get(f"{stage}_error_details") or []
        )
    figures = {
        "summary": {"generated": int(record.get("generated") or 0)},
        "seconds": seconds,
        "errors_by_stage": {**empty_counts(), **(record.get("errors_by_stage") or {})},
        "error_details": details[:FIRST_ERRORS],
    }
    from billing.store.reporting import ReportingStore  # the console's store: imported when needed

    return notify_recorded_run(ReportingStore(store.db), tenant, run_id, {**record, **figures})


Handler = Callable[[Worker, Tenant, str, Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]
_HANDLERS: dict[str, Handler] = {
    "plan": plan,
    "price": price,
    "number": number,
    "render": render,
    "deliver": deliver,
    "summarize": summarize,
}
FUNCTION_HANDLERS: dict[str, dict[str, Handler]] = {MONTHLY_BILLING.function: _HANDLERS}
"""The stages of each fanned-out function (run record ``function``); the other functions' modules
(``billing.runs.fanout.anniversary``, ``billing.runs.fanout.dunning``) register theirs."""
FUNCTION_RESTARTS: dict[str, Callable[[Worker, str, str, Mapping[str, Any], datetime], int | None]] = {}
"""The sweeper's restart of a function's own stages (``dunning``'s ``dun``, ``reactivate``): tasks
re-enqueued, or ``None`` to let the sweeper handle the stage as the month close's."""


# -- the run record as GET ?run_id= answers it --------------------------------------------------
STATUS_FIELDS = (
    "function",
    "status",
    "stage",
    "month",
    "generated",
    "skipped",
    "warnings_count",
    "events_read",
    "totals",
    "errors_by_stage",
    "chunks_total",
    "price_done",
    "render_done",
    "deliver_done",
    "dun_done",
    "numbered",
    "as_of",
    "finalized",
    "advanced",
    "draft_totals",
    "reminders_sent",
    "suspended",
    "marked_uncollectible",
    "reactivated",
    "notices_sent",
    "deliveries_retried",
)


OTHER_COUNTERS = (
    "finalized",
    "advanced",
    "reminders_sent",
    "suspended",
    "marked_uncollectible",
    "reactivated",
    "notices_sent",
    "deliveries_retried",
)
"""Counters of ``generate_invoices`` and ``dunning`` records, answered at the top as inline reports do."""


def run_status(store: BillingStore, tenant_id: str | None, run_id: str) -> dict[str, Any]:
    """The run record(s) of ``run_id``: one tenant's, or every active tenant's summed.

    Shape: ``{run_id, status (running|completed|failed), started_at, finished_at, generated,
    skipped, skips (list), errors (list), totals, errors_by_stage, tenants: [per-tenant
    records]}``, plus the ``OTHER_COUNTERS`` and ``draft_totals`` of generate_invoices and
    dunning runs.

    Raises:
        NotFound: no tenant has a record of that run.

    """
    ids = [tenant_id] if tenant_id is not None else store.active_tenant_ids()
    records = [(t, r) for t in ids if (r := store.read_run(t, run_id)) is not None]
    if not records:
        raise NotFound(f"no run {run_id!r}", code="unknown_run")
    tenants = [_tenant_status(t, r) for t, r in records]
    statuses = {t["status"] for t in tenants}
    status = "failed" if "failed" in statuses else "running" if "running" in statuses else "completed"
    finished = [t["finished_at"] for t in tenants]
    details = [e for t, r in records for e in r.get("error_details") or []]
    skips: list[dict[str, Any]] = []
    for t, _ in records:
        for chunk in store.read_chunks(t, run_id):
            skips.extend(chunk.get("price_skips") or [])
            skips.extend(chunk.get("dun_skips") or [])  # dunning's chunks (billing.runs.fanout.dunning)
            details.extend(
                e
                for stage in ("price", "render", "deliver", "dun")
                for e in chunk.get(f"{stage}_error_details") or []
            )
    body: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "started_at": min(t["started_at"] or "" for t in tenants),
        "finished_at": None if status == "running" or None in finished else max(finished),
        "generated": sum(int(t.get("generated") or 0) for t in tenants),
        "skipped": sum(int(t.get("skipped") or 0) for t in tenants),
        "skips": skips[:MAX_LISTED],
        "errors": details[:MAX_LISTED],
        "totals": _summed(t.get("totals") or {} for t in tenants),
        "errors_by_stage": _summed(t.get("errors_by_stage") or {} for t in tenants),
        "tenants": tenants,
    }
    # generate_invoices' and dunning's own counters (and draft totals), summed as the others
    for name in OTHER_COUNTERS:
        if any(name in t for t in tenants):
            body[name] = sum(int(t.get(name) or 0) for t in tenants)
    if any("draft_totals" in t for t in tenants):
        body["draft_totals"] = _summed(t.get("draft_totals") or {} for t in tenants)
    return body


def _summed(maps: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for one in maps:
        for key, value in one.items():
            out[key] = out.get(key, 0) + int(value)
    return out


def _tenant_status(tenant_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """One tenant's record as JSON.

    ``succeeded`` (what inline run records said before 2026-11) reads ``completed``.
    """
    status = record.get("status")
    out: dict[str, Any] = {"tenant_id": tenant_id, "status": "completed" if status == "succeeded" else status}
    for name in ("started_at", "finished_at"):
        value = record.get(name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    out.update({k: record[k] for k in STATUS_FIELDS if k in record and k != "status"})
    out.setdefault("errors_by_stage", {})
    out["errors"] = (
        int(record.get("errors") or 0)
        if not isinstance(record.get("errors"), list)
        else len(record["errors"])
    )
    return out
