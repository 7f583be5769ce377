"""A fanned-out ``dunning``: the overdue invoices cut into chunks, each a ``billing_worker`` task.

When ``TASKS_MODE`` is ``http`` or ``cloud_tasks`` and a tenant has at least ``FANOUT_MIN_ITEMS``
overdue invoices (``open``, ``due_at < as_of``), the request records a fanned-out run
(``function: "dunning"``, ``as_of``, ``now``) and answers 202; the stages
(``billing.runs.fanout.stages.FUNCTION_HANDLERS["dunning"]``):

1. ``plan`` (under a lease): the inline run's first steps (``billing.delivery.outbox.sweep``
   and the pending credit notes), then the overdue invoices grouped by customer (a customer's
   invoices stay in one chunk, in the inline order ``due_at``, so the same invoice suspends
   the customer), customers in id order, about ``CHUNK_SIZE`` invoices per chunk.
2. ``dun`` (per chunk, claimed with the month close's attempt fencing): the inline policy
   (``billing.runs.dunning._TenantRun.invoice``) for each of the chunk's invoices still
   ``open`` and overdue. Each step is once per invoice whatever the duplicates (the outbox
   claims ``{invoice_id}.{step}``; the suspension is one transaction); the chunk's counters
   commit once, under the attempt's token.
3. ``reactivate`` (once, under a lease): the inline reactivations, then ``summarize`` (the
   month close's).

One run per (tenant, ``dunning``, UTC hour of ``as_of``) at a time (``RunStore.start_run``).
Dry runs and tenants below the threshold run inline.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.delivery.outbox import Services, sweep
from billing.errors import BillingError, Conflict
from billing.records import Customer, Invoice, Tenant
from billing.runs.dunning import DUNNING, DunningContext, _finish_credit_notes, _TenantRun
from billing.runs.fanout.anniversary import fans_out
from billing.runs.fanout.stages import (
    FUNCTION_HANDLERS,
    FUNCTION_RESTARTS,
    Worker,
    _enqueue,
    _error_figures,
    enqueue_chunks,
    initial_record,
    start_or_join,
    summarize,
)
from billing.runs.shell import RunReport, resolve_tenants

COUNTERS = DUNNING.counters


def key(as_of: datetime) -> str:
    """The active-run key of a fanned-out dunning: ``dunning.YYYY-MM-DDTHH`` (UTC hour of ``as_of``)."""
    return f"{DUNNING.function}.{as_of.astimezone(UTC):%Y-%m-%dT%H}"


def start_dunning(
    ctx: DunningContext, worker: Worker, tenant_id: str | None, minimum: int, mode: str
) -> dict[str, Any]:
    """Fan out the tenants with at least ``minimum`` overdue invoices (``fans_out``); the 202 body.

    Shape as ``anniversary.start_generate_invoices``: ``{"run_id", "status": "running",
    "tenants": [{tenant_id, as_of, run_id, joined?}], "errors": []}``; no entry: nothing fanned
    out (the caller runs inline).

    Raises:
        NotFound, PermissionDenied: unknown or disabled named tenant, before anything is written.

    """
    body: dict[str, Any] = {"run_id": ctx.run_id, "status": "running", "tenants": [], "errors": []}
    for tenant in resolve_tenants(ctx.store, tenant_id):
        if isinstance(tenant, tuple) or not fans_out(
            mode, len(ctx.store.overdue_invoices(tenant.id, ctx.as_of)), minimum
        ):
            continue
        entry = {"tenant_id": tenant.id, "as_of": ctx.as_of.isoformat()}
        start_or_join(worker, body, entry, key(ctx.as_of), _initial_record(ctx), named=tenant_id is not None)
    return body


def _initial_record(ctx: DunningContext) -> dict[str, Any]:
    """The run record of a fanned-out dunning as the request writes it."""
    return initial_record(
        DUNNING.function, ctx.now, ctx.principal, as_of=ctx.as_of, **dict.fromkeys(COUNTERS, 0)
    )


def _context(run_id: str, record: Mapping[str, Any], worker: Worker) -> DunningContext:
    """The task's dunning context: the run's ``as_of`` and ``now``, never the task's clock."""
    return DunningContext(
        run_id=run_id,
        now=record["now"],
        dry_run=False,
        store=worker.store,
        principal=record.get("principal"),
        as_of=record["as_of"],
        services=Services(),
    )


def _figures(report: RunReport) -> dict[str, Any]:
    """A report's counters, skips and errors (stage ``email``) as run-record figures."""
    return {
        **_error_figures(report, "email"),
        **{name: report.counters.get(name, 0) for name in COUNTERS},
        "skipped": report.skipped,
        "skips": report.skips,
    }


# -- plan ----------------------------------------------------------------------------------------
def plan(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """Plan the chunks once (under a lease); enqueue the ``dun`` tasks of the chunks not done."""
    store = worker.store
    if record.get("stage") == "plan":
        with _Lease(worker, tenant.id, f"plan-{run_id}"):
            record = store.read_run(tenant.id, run_id) or {}
            if record.get("stage") == "plan":
                _plan_chunks(worker, tenant, run_id, record)
                record = store.read_run(tenant.id, run_id) or {}
    if record.get("stage") == "reactivate":
        _enqueue(worker, "reactivate", tenant.id, run_id)
        return {"stage": "plan", "chunks": 0}
    return {"stage": "plan", "chunks": enqueue_chunks(worker, tenant.id, run_id, "dun")}


def _enqueue_chunk(worker: Worker, tenant_id: str, run_id: str, index: int, generation: int) -> None:
    _enqueue(worker, "dun", tenant_id, run_id, index, f"g{generation}", chunk=index, generation=generation)


class _Lease:
    """A run lease as a context manager; ``Conflict`` (409: the queue retries) while another holds it."""

    def __init__(self, worker: Worker, tenant_id: str, name: str) -> None:
        self.worker, self.tenant_id, self.name = worker, tenant_id, name
        self.held: Any = None

    def __enter__(self) -> None:
        self.held = self.worker.store.acquire_lease(
            self.tenant_id,
            self.name,
            uuid.uuid4().hex,
            ttl=timedelta(seconds=self.worker.claim_ttl),
            wait=timedelta(0),
        )
        if self.held is None:
            raise Conflict(f"{self.name} is running in another attempt", code="stage_busy")

    def __exit__(self, *exc: object) -> None:
        self.worker.store.release_lease(self.tenant_id, self.name, self.held)


def _plan_chunks(worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any]) -> None:
    """Retry pending deliveries, then chunk the overdue invoices by customer (module docstring)."""
    store = worker.store
    ctx = _context(run_id, record, worker)
    report = RunReport(DUNNING, run_id, False, header={"as_of": ctx.as_of})
    retried, failures = sweep(store, tenant, ctx.services, run_id, ctx.now)
    report.count("deliveries_retried", retried)
    for object_id, message in failures:
        report.error(tenant.id, BillingError(message, code="delivery_failed"), invoice_id=object_id)
    _finish_credit_notes(ctx, report, tenant)
    by_customer: dict[str, list[str]] = {}
    for invoice in store.overdue_invoices(tenant.id, ctx.as_of):  # in due_at order, as inline
        if isinstance(invoice, tuple):
            report.error(tenant.id, invoice[1], invoice_id=invoice[0])
        else:
            by_customer.setdefault(invoice.customer_id, []).append(invoice.id)
    chunks = _customer_chunks([by_customer[c] for c in sorted(by_customer)], worker.chunk_size)
    store.create_chunks(tenant.id, run_id, chunks)
    figures = _figures(report)
    fields = {
        "stage": "dun" if chunks else "reactivate",
        "stage_at": datetime.now(UTC),
        "chunks_total": len(chunks),
        "error_details": figures.get("error_details", []),
        "errors": len(report.errors),
        "errors_by_stage": figures.get("errors_by_stage", {}),
        "deliveries_retried": report.counters.get("deliveries_retried", 0),
    }
    store.update_run_if(tenant.id, run_id, {"stage": "plan"}, fields)


def _customer_chunks(groups: Sequence[list[str]], size: int) -> list[list[str]]:
    """Whole customers' invoice lists packed into chunks of about ``size`` invoices, in order."""
    chunks: list[list[str]] = []
    for group in groups:
        if chunks and len(chunks[-1]) + len(group) <= size:
            chunks[-1].extend(group)
        else:
            chunks.append(list(group))
    return chunks


# -- dun -----------------------------------------------------------------------------------------
def dun(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """Take the due dunning steps of one chunk's invoices; commit its figures under the claim."""
    store, index, generation = worker.store, int(body["chunk"]), int(body.get("generation", 0))
    chunk = store.read_chunk(tenant.id, run_id, index) or {}
    token = None
    if chunk and not chunk.get("dun_done"):
        token = store.claim_chunk(
            tenant.id, run_id, index, generation, datetime.now(UTC), claim_ttl=worker.claim_ttl
        )
    if token is None:  # done or superseded: re-enqueue the next stage if every chunk is done
        _after_dun(worker, tenant.id, run_id)
        return {"stage": "dun", "chunk": index, "ignored": "done or superseded"}
    try:
        figures = _dun_chunk(_context(run_id, record, worker), tenant, chunk.get("subscription_ids") or [])
        committed, _ = store.finish_part(tenant.id, run_id, index, "dun", figures, token=token)
    except BaseException:
        store.release_claim(tenant.id, run_id, index, token)
        raise
    _after_dun(worker, tenant.id, run_id)
    return {"stage": "dun", "chunk": index, "committed": committed}


def _dun_chunk(ctx: DunningContext, tenant: Tenant, ids: Sequence[str]) -> dict[str, Any]:
    """The inline policy for the chunk's invoices (``subscription_ids`` holds invoice ids)."""
    store = ctx.store
    report = RunReport(DUNNING, ctx.run_id, False, header={"as_of": ctx.as_of})
    run = _TenantRun(ctx, report, tenant, tenant.dunning)
    found = store.get_invoices(tenant.id, list(ids))
    invoices = [
        i
        for i in (found.get(invoice_id) for invoice_id in ids)
        if isinstance(i, Invoice) and i.status == "open" and i.due_at is not None and i.due_at < ctx.as_of
    ]
    customers = store.get_customers(tenant.id, {i.customer_id for i in invoices})
    for invoice in invoices:
        try:
            customer = customers.get(invoice.customer_id)
            run.invoice(invoice, customer if isinstance(customer, Customer) else None)
        except Exception as exc:  # one invoice's failure must not stop the chunk
            report.error(tenant.id, exc, invoice_id=invoice.id)
    return _figures(report)


def _after_dun(worker: Worker, tenant_id: str, run_id: str) -> None:
    """Once every chunk is done: the run moves to ``reactivate`` (its task has a fixed name)."""
    record = worker.store.read_run(tenant_id, run_id) or {}
    if int(record.get("dun_done", 0)) < int(record.get("chunks_total", 0)):
        return
    worker.store.update_run_if(
        tenant_id, run_id, {"stage": "dun"}, {"stage": "reactivate", "stage_at": datetime.now(UTC)}
    )
    _enqueue(worker, "reactivate", tenant_id, run_id)


# -- reactivate ----------------------------------------------------------------------------------
def reactivate(
    worker: Worker, tenant: Tenant, run_id: str, record: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """The inline reactivations, once (under a lease); then ``summarize``."""
    store = worker.store
    if record.get("stage") == "reactivate":
        with _Lease(worker, tenant.id, f"reactivate-{run_id}"):
            record = store.read_run(tenant.id, run_id) or {}
            if record.get("stage") == "reactivate":
                ctx = _context(run_id, record, worker)
                report = RunReport(DUNNING, run_id, False, header={"as_of": ctx.as_of})
                _TenantRun(ctx, report, tenant, tenant.dunning).reactivations()
                fields: dict[str, Any] = {"stage": "summarize", "stage_at": datetime.now(UTC)}
                for name in ("reactivated", "notices_sent"):
                    fields[name] = int(record.get(name) or 0) + report.counters.get(name, 0)
                if report.errors:
                    fields["errors"] = int(record.get("errors") or 0) + len(report.errors)
                    fields["error_details"] = [*(record.get("error_details") or []), *report.errors]
                store.update_run_if(tenant.id, run_id, {"stage": "reactivate"}, fields)
                record = store.read_run(tenant.id, run_id) or {}
    if record.get("stage") in ("summarize", "done"):
        _enqueue(worker, "summarize", tenant.id, run_id)
    return {"stage": "reactivate"}


def restart(
    worker: Worker, tenant_id: str, run_id: str, record: Mapping[str, Any], now: datetime
) -> int | None:
    """The sweeper's restart of a dunning run in ``dun`` or ``reactivate``; ``None`` for the other stages.

    ``dun``: each chunk not done whose claim (or the stage's start) is older than the sweeper's
    ``STALL_AFTER`` gets the next generation (its stalled attempt fenced out) and a new task;
    every chunk done: ``reactivate`` again. ``reactivate`` stalled: its task again.
    """
    from billing.runs.fanout.sweeper import STALL_AFTER

    stage = record.get("stage")
    stale = now - STALL_AFTER
    if stage == "reactivate":
        at = record.get("stage_at")
        if isinstance(at, datetime) and at < stale:
            _enqueue(worker, "reactivate", tenant_id, run_id, f"s{int(now.timestamp()) // 900}")
            return 1
        return 0
    if stage != "dun":
        return None
    count, chunks = 0, worker.store.read_chunks(tenant_id, run_id)
    if all(c.get("dun_done") for c in chunks):
        _after_dun(worker, tenant_id, run_id)
        return 1
    for chunk in chunks:
        last = chunk.get("claimed_at") or record.get("stage_at")
        if chunk.get("dun_done") or not (isinstance(last, datetime) and last < stale):
            continue
        generation = int(chunk.get("generation", 0)) + 1
        if worker.store.raise_generation(tenant_id, run_id, chunk["index"], generation):
            _enqueue_chunk(worker, tenant_id, run_id, chunk["index"], generation)
            count += 1
    return count


FUNCTION_HANDLERS[DUNNING.function] = {
    "plan": plan,
    "dun": dun,
    "reactivate": reactivate,
    "summarize": summarize,
}
FUNCTION_RESTARTS[DUNNING.function] = restart
