"""A fanned-out ``dunning`` through ``TASKS_MODE=http`` has the inline run's outcome, under faults.

Two identical tenants with overdue invoices at several stages of the default policy (reminders
on days 1, 7, 14, suspension on day 21), a customer with two invoices past suspension, an
invoice paid down to nothing and a suspended customer with nothing overdue (reactivated).
``inline`` runs with ``TASKS_MODE=inline``; ``fan`` with ``TASKS_MODE=http`` and
``FANOUT_MIN_ITEMS=1`` through the proxy harness (duplicates at once, lost answers, shuffled
order). Outcome: the same reminders and notices (one per invoice and step: the outbox), the
same suspensions, steps recorded on the invoices and counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from google.cloud import firestore

from devtools.dev_issuer import DevKey
from tests import factories as f
from tests.conftest import REPO
from tests.e2e.tasks.harness import TasksBench, call, wait_for_run
from tests.smtp_server import SmtpServer, running_smtp

AS_OF = datetime(2026, 11, 24, 9, tzinfo=UTC)
OVERDUE_DAYS = [2, 8, 15, 22, 22, 3, 9, 30, 1, 16, 23]
"""Days past due of invoice ``i{n}`` of customer ``d{n}`` (``d003`` also owes ``i003b``)."""


def seed(db: firestore.Client, tenant: str) -> None:
    f.tenant(db, tenant, email={"enabled": True, "from": "Billing <billing@acme.test>"})
    for n, days in enumerate(OVERDUE_DAYS):
        cid = f"d{n:03d}"
        f.customer(db, tenant, cid, "GB")
        _invoice(db, tenant, f"i{n:03d}", cid, AS_OF - timedelta(days=days), amount_due=0 if n == 5 else None)
        if n == 3:
            _invoice(db, tenant, f"i{n:03d}b", cid, AS_OF - timedelta(days=25))
    f.customer(
        db,
        tenant,
        "z-clear",
        "GB",
        status="suspended",
        suspended_at=AS_OF - timedelta(days=3),
        suspension_reason="old invoice",
        suspended_by="dunning",
        suspension_id="s-old",
    )


def _invoice(
    db: firestore.Client,
    tenant: str,
    invoice_id: str,
    customer_id: str,
    due_at: datetime,
    amount_due: int | None = None,
) -> None:
    db.document(f"tenants/{tenant}/invoices/{invoice_id}").set(
        {
            "tenant_id": tenant,
            "customer_id": customer_id,
            "subscription_id": f"sub-{customer_id}",
            "plan_id": "pro",
            "billing_time": "calendar",
            "period_start": datetime(2026, 9, 30, 23, tzinfo=UTC),
            "period_end": datetime(2026, 11, 1, tzinfo=UTC),
            "currency": "GBP",
            "lines": [
                {
                    "description": "Pro",
                    "quantity": "1",
                    "unit_amount_decimal": "10000",
                    "amount": 10000,
                    "tax_rate": "20",
                    "tax": 2000,
                    "kind": "fixed",
                }
            ],
            "subtotal": 10000,
            "tax": 2000,
            "total": 12000,
            "tax_inclusive": False,
            "amount_paid": 12000 if amount_due == 0 else 0,
            "amount_due": 12000 if amount_due is None else amount_due,
            "customer": {
                "id": customer_id,
                "name": f"Customer {customer_id}",
                "email": f"{customer_id}@example.com",
                "address": {"country": "GB"},
                "tax_id": None,
            },
            "status": "open",
            "number": f"ACME-2026-{invoice_id}",
            "issued_at": due_at - timedelta(days=14),
            "finalized_at": due_at - timedelta(days=14),
            "due_at": due_at,
            "finalize_at": None,
            "pdf_uri": None,
            "created_at": due_at - timedelta(days=14),
        }
    )


@pytest.fixture
def bench(
    project_id: str,
    auth_env: None,
    clock: Any,
    issuer: tuple[object, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[tuple[TasksBench, SmtpServer]]:
    key = issuer[0]
    assert isinstance(key, DevKey)
    made = TasksBench(key, monkeypatch, None, chunk_size=3)
    made.start_worker()
    monkeypatch.setenv("FANOUT_MIN_ITEMS", "1")
    with running_smtp(tmp_path) as smtp:
        for name, value in smtp.env().items():
            monkeypatch.setenv(name, value)
        yield made, smtp
    made.stop()


def app() -> Any:
    return functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="dunning", source=str(REPO / "functions" / "dunning" / "main.py")
    )


def outcome(db: firestore.Client, tenant: str) -> dict[str, Any]:
    """What a dunning run leaves: outbox entries, invoice steps, customers' statuses."""
    notes = {
        d.id: (d.to_dict() or {}).get("status")
        for d in db.collection(f"tenants/{tenant}/notifications").get()
        if (d.to_dict() or {}).get("kind") != "run_summary"
    }
    steps = {
        d.id: (sorted(((d.to_dict() or {}).get("dunning") or {}).keys()), (d.to_dict() or {}).get("status"))
        for d in db.collection(f"tenants/{tenant}/invoices").get()
    }
    customers = {
        d.id: (d.to_dict() or {}).get("status") for d in db.collection(f"tenants/{tenant}/customers").get()
    }
    return {"notifications": notes, "steps": steps, "customers": customers}


COUNTERS = ("reminders_sent", "suspended", "marked_uncollectible", "reactivated", "notices_sent")


@pytest.mark.parametrize("fault", [None, "duplicate", "lose_answer", "shuffle"])
def test_fanned_out_dunning_matches_inline(
    db: firestore.Client,
    bench: tuple[TasksBench, SmtpServer],
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    clock: Any,
    fault: str | None,
) -> None:
    tasks, smtp = bench
    tasks.proxy.fault = fault
    clock.set(AS_OF)
    seed(db, "inline")
    seed(db, "fan")
    application, audience = app(), tasks.proxy.url
    body = {"as_of": AS_OF.isoformat()}
    monkeypatch.setenv("TASKS_MODE", "inline")
    status, inline = call(application, token(audience=audience), "inline", body=body)
    assert status == 200, inline
    assert inline["reminders_sent"] >= 6 and inline["suspended"] >= 3 and inline["reactivated"] == 1, inline
    monkeypatch.setenv("TASKS_MODE", "http")
    status, accepted = call(application, token(audience=audience), "fan", body=body)
    assert status == 202 and accepted["status"] == "running", accepted
    record = wait_for_run(application, lambda: token(audience=audience), "fan", accepted["run_id"])
    assert record["status"] == "completed", record
    fan = record["tenants"][0]
    assert fan["function"] == "dunning"
    for name in COUNTERS:
        assert fan.get(name, 0) == record[name] == inline[name], (name, fan, inline)
    assert record["skipped"] == inline["skipped"]
    assert outcome(db, "fan") == outcome(db, "inline")
    sent = [m.message["To"] for m in smtp.messages if m.kind in ("reminder", "suspension", "reactivation")]
    assert len(sent) == 2 * (inline["reminders_sent"] + inline["notices_sent"])  # each once per tenant


def test_the_sweeper_restarts_dunning_chunks_and_reactivation(db: firestore.Client) -> None:
    """Stalled ``dun`` chunks get a new generation (the old attempt fenced out); then ``reactivate``."""
    from billing.runs.fanout.stages import Worker
    from billing.runs.fanout.sweeper import STALL_AFTER, sweep
    from billing.store.firestore_store import BillingStore
    from billing.tasks import InlineQueue, Task

    store, sent = BillingStore(db), []
    base = datetime.now(UTC)  # the stages stamp stage_at with the real time
    f.tenant(db, "acme")
    store.write_run(
        "acme",
        "run1",
        {
            "function": "dunning",
            "mode": "fanout",
            "status": "running",
            "stage": "dun",
            "stage_at": base - timedelta(hours=1),
            "started_at": base - timedelta(hours=1),
            "chunks_total": 2,
        },
    )
    store.create_chunks("acme", "run1", [["i1", "i2"], ["i3"]])

    class Recording(InlineQueue):
        def enqueue(self, task: Task) -> None:
            sent.append(task)

    queue = Recording(lambda body: None)
    old = store.claim_chunk("acme", "run1", 0, 0, base - timedelta(hours=1), claim_ttl=960)
    later = base + timedelta(minutes=1)
    assert sweep(Worker(store, queue, None, clock=lambda: later), "acme")["reenqueued"] == 2
    assert sorted(t.name for t in sent) == ["run1-dun-acme-0-g1", "run1-dun-acme-1-g1"]
    assert {t.body["stage"] for t in sent} == {"dun"}
    assert store.finish_part("acme", "run1", 0, "dun", {}, token=old or "") == (False, False)

    for index in (0, 1):  # both chunks done, but the enqueue of reactivate was lost
        token = store.claim_chunk("acme", "run1", index, 1, later, claim_ttl=960)
        assert store.finish_part("acme", "run1", index, "dun", {"reminders_sent": 1}, token=token)[0]
    sent.clear()
    assert sweep(Worker(store, queue, None, clock=lambda: later), "acme")["reenqueued"] == 1
    assert [t.name for t in sent] == ["run1-reactivate-acme"]
    run = store.read_run("acme", "run1") or {}
    assert (run["stage"], run["reminders_sent"], run["dun_done"]) == ("reactivate", 2, 2)

    sent.clear()  # reactivate stalled too: its task again, under the sweep's quarter-hour
    much_later = base + STALL_AFTER + timedelta(minutes=2)
    assert sweep(Worker(store, queue, None, clock=lambda: much_later), "acme")["reenqueued"] == 1
    assert [t.body["stage"] for t in sent] == ["reactivate"] and sent[0].name.startswith(
        "run1-reactivate-acme-s"
    )
