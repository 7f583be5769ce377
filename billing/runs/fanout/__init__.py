"""Fanned-out runs: a month close split into idempotent stage tasks (contract, "Fan-out"; issue 11).

With ``TASKS_MODE`` ``http`` or ``cloud_tasks`` (``billing.tasks``) a month close no longer runs
in its request. The request validates everything (as the inline close does), records the run
(``tenants/{t}/billing_runs/{run_id}``, ``mode: "fanout"``, ``status: "running"``) and enqueues
one ``plan`` task per tenant; it answers 202 ``{"run_id", "status": "running"}``. Then
``billing_worker`` executes the stages (``billing.runs.fanout.stages``), each an HTTP task:

1. ``plan``: the tenant's calendar candidates (``month_close.calendar_candidates``), sorted by
   (customer id, subscription id) and cut into chunks of about ``CHUNK_SIZE`` subscriptions,
   never splitting a customer (``stages.cut_chunks``, ``billing.store.chunks``); the usage fold's
   watermark and completeness check, once for the run (``usage_source.plan_scope``); one
   ``price`` task per chunk.
2. ``price`` (per chunk): claims the chunk with a fencing token, prices its subscriptions with
   the pipeline (``pipeline.price_candidates`` with a ``usage_source.ChunkScope``: accumulators
   plus the tail, or raw events, of its customers only, by customer-id range queries) and
   creates their invoices unnumbered (deterministic ids, create-if-absent), adopting those an
   ended run of the month left unnumbered (``ChunkStore.owned_invoices``). The chunk's
   completion commits only under the attempt's token; the last chunk enqueues ``number`` under
   a fixed task name.
3. ``number``: one serial pass per tenant (``billing.store.numbering_pass``) in the order
   (customer id, invoice id), the inline close's; near its time budget it enqueues a
   continuation task starting where it stopped. Then ``render`` per chunk.
4. ``render`` (per chunk): PDFs rendered and uploaded, then that chunk's ``deliver`` task on the
   ``delivery`` queue (rate-limited below the Stripe account's limit).
5. ``deliver`` (per chunk): Stripe and email (``billing.delivery.outbox``: once per invoice). The
   last chunk enqueues ``summarize``.
6. ``summarize``: the run record becomes ``completed`` with ``finished_at``; the tenant's run
   summary email goes out once (``billing.runs.notify.notify_recorded_run``).

One run per (tenant, function, month) at a time: ``tenants/{t}/active_runs/{function}.{month}``
(``RunStore.start_run``) names the running run; a second call meanwhile answers 202 with that
run's id and starts nothing.

``sweep`` (``billing.runs.fanout.sweeper``, called by Cloud Scheduler every 15 minutes)
re-enqueues stalled work and fails runs past their budget. Every task may arrive twice, at once,
late or out of order: each stage reads the state and does only what is left.

``generate_invoices`` and ``dunning`` use the same machinery above ``FANOUT_MIN_ITEMS`` items
(``billing.runs.fanout.anniversary``, ``billing.runs.fanout.dunning``).

A tenant with ``month_close_review`` is closed inline (its invoices wait as drafts for a person;
there is nothing to number or deliver), so are dry runs.
"""

from __future__ import annotations

# generate_invoices and dunning register their stages (stages.FUNCTION_HANDLERS) when imported.
from billing.runs.fanout import anniversary as anniversary
from billing.runs.fanout import dunning as dunning
from billing.runs.fanout.anniversary import (
    can_fan_out,
    fanout_min_items,
    fans_out,
    start_generate_invoices,
)
from billing.runs.fanout.stages import (
    MONTH_CLOSE_STAGES,
    STAGES,
    Worker,
    execute,
    run_status,
    start_month_close,
)

__all__ = [
    "MONTH_CLOSE_STAGES",
    "STAGES",
    "Worker",
    "anniversary",
    "can_fan_out",
    "dunning",
    "execute",
    "fanout_min_items",
    "fans_out",
    "run_status",
    "start_generate_invoices",
    "start_month_close",
]
