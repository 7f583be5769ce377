"""The sweeper of fanned-out runs: re-enqueue stalled work, fail runs past their budget.

Cloud Scheduler calls ``billing_worker`` with ``{"stage": "sweep"}`` every 15 minutes
(``infra/terraform/tasks.tf``). For every running fanned-out run of every active tenant (or of
``tenant_id``):

- older than ``RUN_BUDGET`` (6 hours from ``started_at``): ``failed`` with ``finished_at`` and
  ``failure: "budget_exceeded"``;
- in ``price``: each chunk not priced whose last claim (or the stage's start) is older than
  ``STALL_AFTER`` gets the next ``generation`` and a new task of that generation (the old task,
  if it ever runs, is refused by the claim: ``ChunkStore.claim_chunk``); a chunk past
  ``MAX_GENERATIONS`` fails the run;
- in any later stage unchanged for ``STALL_AFTER``: that stage's tasks again, under names
  suffixed with the sweep's quarter-hour (Cloud Tasks keeps a used name for a while), so the
  stage's idempotent work finishes what is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from billing.errors import BillingError
from billing.logs import get_logger
from billing.runs.fanout.stages import FUNCTION_RESTARTS, Worker, _after_price, _enqueue, notify_run_end

log = get_logger("billing.fanout.sweeper")

STALL_AFTER = timedelta(minutes=20)
"""Longer than the dispatch deadline (15 min): a chunk claimed longer ago has no live attempt."""
RUN_BUDGET = timedelta(hours=6)
MAX_GENERATIONS = 5


def sweep(worker: Worker, tenant_id: str | None = None) -> dict[str, Any]:
    """One sweep (see the module docstring); returns ``{"runs", "reenqueued", "failed"}``."""
    store, now = worker.store, worker.clock()
    tenants = [tenant_id] if tenant_id else store.active_tenant_ids()
    out: dict[str, Any] = {"stage": "sweep", "runs": 0, "reenqueued": 0, "failed": 0}
    for tid in tenants:
        for run_id, record in store.running_fanout_runs(tid):
            out["runs"] += 1
            if _past(record.get("started_at"), now, RUN_BUDGET):
                _fail(worker, tid, run_id, record, "budget_exceeded")
                out["failed"] += 1
                continue
            out["reenqueued"] += _restart_stage(worker, tid, run_id, record, now)
    return out


def _past(when: Any, now: datetime, age: timedelta) -> bool:
    return isinstance(when, datetime) and now - when > age


def _fail(worker: Worker, tenant_id: str, run_id: str, record: Mapping[str, Any], reason: str) -> None:
    """Mark the run ``failed`` and send its summary (``notify_run_end``; a failed send is logged)."""
    failed = worker.store.update_run_if(
        tenant_id,
        run_id,
        {"status": "running", "stage": record.get("stage")},
        {"status": "failed", "failure": reason, "finished_at": worker.clock()},
    )
    if not failed:
        return
    try:
        tenant = worker.store.get_tenant(tenant_id)
        notify_run_end(worker.store, tenant, run_id, worker.store.read_run(tenant_id, run_id) or {})
    except BillingError as exc:  # the run is failed either way; the outbox keeps the failed send
        log.warning(
            "run summary not sent", extra={"run_id": run_id, "tenant_id": tenant_id, "error": exc.code}
        )


def _restart_stage(
    worker: Worker, tenant_id: str, run_id: str, record: Mapping[str, Any], now: datetime
) -> int:
    """Re-enqueue what is stalled in the run's current stage; returns how many tasks."""
    restart = FUNCTION_RESTARTS.get(str(record.get("function")))
    restarted = restart(worker, tenant_id, run_id, record, now) if restart is not None else None
    if restarted is not None:  # a stage of that function's own (dunning's dun, reactivate)
        return restarted
    stage = str(record.get("stage"))
    if stage == "price":
        return _restart_chunks(worker, tenant_id, run_id, record, now)
    if not _past(record.get("stage_at"), now, STALL_AFTER):
        return 0
    bucket = f"s{int(now.timestamp()) // 900}"
    if stage in ("plan", "summarize"):
        _enqueue(worker, stage, tenant_id, run_id, bucket)
        return 1
    if stage == "number":
        cursor = int(record.get("number_cursor", 0))
        _enqueue(worker, "number", tenant_id, run_id, cursor, bucket, cursor=cursor)
        return 1
    count = 0
    for chunk in worker.store.read_chunks(tenant_id, run_id):
        name = (
            "render" if not chunk.get("render_done") else "deliver" if not chunk.get("deliver_done") else None
        )
        if name is not None:
            _enqueue(worker, name, tenant_id, run_id, chunk["index"], bucket, chunk=chunk["index"])
            count += 1
    return count


def _restart_chunks(
    worker: Worker, tenant_id: str, run_id: str, record: Mapping[str, Any], now: datetime
) -> int:
    """New generations for the stalled chunks of the price stage."""
    count, chunks = 0, worker.store.read_chunks(tenant_id, run_id)
    if all(chunk.get("price_done") for chunk in chunks):  # the last commit's enqueue was lost
        _after_price(worker, tenant_id, run_id, complete=True)
        return 1
    for chunk in chunks:
        last = chunk.get("claimed_at") or record.get("stage_at")
        if chunk.get("price_done") or not _past(last, now, STALL_AFTER):
            continue
        generation = int(chunk.get("generation", 0)) + 1
        if generation > MAX_GENERATIONS:
            _fail(
                worker, tenant_id, run_id, record, f"chunk {chunk['index']} stalled {MAX_GENERATIONS} times"
            )
            return count
        if worker.store.raise_generation(tenant_id, run_id, chunk["index"], generation):
            index = chunk["index"]
            _enqueue(
                worker,
                "price",
                tenant_id,
                run_id,
                index,
                f"g{generation}",
                chunk=index,
                generation=generation,
            )
            count += 1
    return count
