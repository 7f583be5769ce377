"""A fanned-out ``generate_invoices`` through ``TASKS_MODE=http`` equals the inline run, under faults.

Two identical tenants of anniversary subscriptions: ``inline`` billed with ``TASKS_MODE=inline``,
``fan`` with ``TASKS_MODE=http`` and ``FANOUT_MIN_ITEMS=1`` (so it fans out), through the proxy
harness (duplicates at once, lost answers, shuffled order). Two hourly runs: the first creates
drafts (grace period 1 h) and advances the subscriptions, the second, a day and 2 hours later, finalizes
the due drafts (numbered 1..n in (customer id, invoice id) order) and creates the daily plan's
next drafts. With ``grace_period_hours = 0`` one run creates the invoices open and numbered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import functions_framework
import pytest
from google.cloud import firestore

from devtools.dev_issuer import DevKey
from tests import factories as f
from tests.conftest import REPO
from tests.e2e.tasks.harness import TasksBench, call, iter_numbers, snapshot, wait_for_run

AS_OF = datetime(2026, 10, 20, 12, tzinfo=UTC)
CUSTOMERS = 13


def seed(db: firestore.Client, tenant: str, grace: float) -> None:
    """``CUSTOMERS`` customers on monthly or daily anniversary plans, with usage and bad cases.

    ``a003`` names a missing plan (an error), ``a005`` is archived (a skip, its draft blocked),
    ``a008`` has two subscriptions, the daily ones owe several periods.
    """
    f.tenant(db, tenant, invoice_prefix="GI", payment_terms_days=30, grace_period_hours=grace)
    f.meter(db, tenant, "gb", "sum", field="gb")
    fee = {"type": "fixed", "description": "Fee", "unit_amount_decimal": "2500"}
    usage = {"type": "usage", "meter": "gb", "model": "standard", "unit_amount_decimal": "7.5"}
    f.plan(db, tenant, "monthly", [fee, usage])
    f.plan(db, tenant, "daily", [fee, usage], interval="day")
    for n in range(CUSTOMERS):
        cid = f"a{n:03d}"
        f.customer(db, tenant, cid, "DE" if n % 3 == 0 else "GB", status="archived" if n == 5 else "active")
        daily = n % 4 == 1
        start = AS_OF - (timedelta(days=2, hours=n) if daily else timedelta(days=31 + n))
        end = start + (timedelta(days=1) if daily else timedelta(days=30))
        fields: dict[str, Any] = {
            "billing_time": "anniversary",
            "started_at": start,
            "current_period_start": start,
            "current_period_end": end,
        }
        plan = "missing" if n == 3 else "daily" if daily else "monthly"
        f.subscription(db, tenant, f"s-{cid}", cid, plan, **fields)
        if n == 8:
            f.subscription(db, tenant, f"s-{cid}-b", cid, "monthly", **fields)
        for e in range(n % 3 + 1):
            f.event(db, tenant, f"{cid}-e{e}", cid, "gb", start + timedelta(hours=3 + e), gb=str(n + e))


@pytest.fixture
def bench(
    project_id: str, auth_env: None, clock: Any, issuer: tuple[object, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[TasksBench]:
    key = issuer[0]
    assert isinstance(key, DevKey)
    made = TasksBench(key, monkeypatch, None, chunk_size=3)
    made.start_worker()
    monkeypatch.setenv("FANOUT_MIN_ITEMS", "1")
    yield made
    made.stop()


def app() -> Any:
    return functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="generate_invoices", source=str(REPO / "functions" / "generate_invoices" / "main.py")
    )


def both(
    bench: TasksBench, token: Callable[..., str], monkeypatch: pytest.MonkeyPatch, as_of: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``inline`` inline and ``fan`` fanned out at ``as_of``: (inline body, fan-out record)."""
    application, audience = app(), bench.proxy.url
    body = {"as_of": as_of.isoformat().replace("+00:00", "Z")}
    monkeypatch.setenv("TASKS_MODE", "inline")
    status, inline = call(application, token(audience=audience), "inline", body=body)
    assert status == 200, inline
    monkeypatch.setenv("TASKS_MODE", "http")
    status, accepted = call(application, token(audience=audience), "fan", body=body)
    assert status == 202, accepted
    assert accepted["status"] == "running" and accepted["tenants"][0]["run_id"] == accepted["run_id"]
    record = wait_for_run(application, lambda: token(audience=audience), "fan", accepted["run_id"])
    assert record["status"] == "completed", record
    assert record["tenants"][0]["function"] == "generate_invoices"
    return inline, record


def assert_same(db: firestore.Client, inline: dict[str, Any], record: dict[str, Any]) -> None:
    """Same counters, totals and errors as inline; the same invoice documents and numbers."""
    fan = record["tenants"][0]
    assert record["generated"] == inline["generated"]
    assert record["skipped"] == inline["skipped"]
    assert record["totals"] == inline["totals"]
    for name in ("finalized", "advanced"):
        assert fan.get(name, 0) == record[name] == inline[name], name
    assert fan.get("draft_totals", {}) == record.get("draft_totals", {}) == inline["draft_totals"]
    assert sorted(str(e.get("subscription_id")) for e in record["errors"]) == sorted(
        str(e.get("subscription_id")) for e in inline["errors"]
    )
    assert snapshot(db, "fan") == snapshot(db, "inline")
    subs = {
        d.id: (d.to_dict() or {}).get("current_period_end")
        for d in db.collection("tenants/fan/subscriptions").get()
    }
    want = {
        d.id: (d.to_dict() or {}).get("current_period_end")
        for d in db.collection("tenants/inline/subscriptions").get()
    }
    assert subs == want


@pytest.mark.parametrize("fault", [None, "duplicate", "lose_answer", "shuffle"])
def test_fanned_out_generate_invoices_matches_inline(
    db: firestore.Client,
    bench: TasksBench,
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    fault: str | None,
) -> None:
    bench.proxy.fault = fault
    seed(db, "inline", grace=1)
    seed(db, "fan", grace=1)
    inline, record = both(bench, token, monkeypatch, AS_OF)
    assert inline["generated"] > 10 and inline["finalized"] == 0 and inline["errors"]
    assert_same(db, inline, record)

    inline, record = both(bench, token, monkeypatch, AS_OF + timedelta(days=1, hours=2))
    assert inline["finalized"] > 10 and inline["generated"] > 0, inline
    assert_same(db, inline, record)
    numbers = sorted(iter_numbers(snapshot(db, "fan")))
    assert numbers == list(range(1, inline["finalized"] + 1))
    docs = f.invoices(db, "fan")
    opened = sorted((d["customer_id"], i) for i, d in docs.items() if d["status"] == "open")
    assert [int(str(docs[i]["number"]).rsplit("-", 1)[1]) for _, i in opened] == numbers


def test_without_grace_period_the_fanned_out_run_numbers_at_once(
    db: firestore.Client, bench: TasksBench, token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.proxy.fault = "duplicate"
    seed(db, "inline", grace=0)
    seed(db, "fan", grace=0)
    inline, record = both(bench, token, monkeypatch, AS_OF)
    assert inline["finalized"] == inline["generated"] > 10
    assert_same(db, inline, record)
    assert sorted(iter_numbers(snapshot(db, "fan"))) == list(range(1, inline["generated"] + 1))


def test_below_the_threshold_and_dry_runs_stay_inline(
    db: firestore.Client, bench: TasksBench, token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, "fan", grace=1)
    application, bearer = app(), token(audience=bench.proxy.url)
    body = {"as_of": "2026-10-20T12:00:00Z"}
    status, dry = call(application, bearer, "fan", body={**body, "dry_run": True})
    assert status == 200 and dry["dry_run"] is True and dry["generated"] > 10, dry
    monkeypatch.setenv("FANOUT_MIN_ITEMS", "1000")
    status, inline = call(application, bearer, "fan", body=body)
    assert status == 200 and inline["generated"] == dry["generated"], inline
    status, record = call(application, bearer, "fan", method="GET", query=f"?run_id={inline['run_id']}")
    assert status == 200 and record["status"] == "completed", record


def test_across_all_tenants_only_the_large_ones_fan_out(
    db: firestore.Client, bench: TasksBench, token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No tenant named: ``fan`` (>= FANOUT_MIN_ITEMS) fans out, ``tiny`` runs in the request."""
    seed(db, "fan", grace=0)
    f.tenant(db, "tiny", invoice_prefix="TI", grace_period_hours=0)
    f.plan(db, "tiny", "monthly", [{"type": "fixed", "description": "Fee", "unit_amount_decimal": "900"}])
    f.customer(db, "tiny", "t1", "GB")
    start = AS_OF - timedelta(days=31)
    f.subscription(
        db,
        "tiny",
        "s-t1",
        "t1",
        "monthly",
        billing_time="anniversary",
        started_at=start,
        current_period_start=start,
        current_period_end=start + timedelta(days=30),
    )
    monkeypatch.setenv("FANOUT_MIN_ITEMS", "5")
    application, audience = app(), bench.proxy.url
    response = application.test_client().post(
        "/",
        json={"as_of": "2026-10-20T12:00:00Z"},
        headers={"Authorization": f"Bearer {token(audience=audience)}"},
    )
    accepted = response.get_json()
    assert response.status_code == 202, accepted
    assert [t["tenant_id"] for t in accepted["tenants"]] == ["fan"]
    assert accepted["inline"]["generated"] == 1 and [
        t["tenant_id"] for t in accepted["inline"]["tenants"]
    ] == ["tiny"]
    record = wait_for_run(application, lambda: token(audience=audience), "fan", accepted["run_id"])
    assert record["status"] == "completed" and record["generated"] > 10, record
    assert sorted(iter_numbers(snapshot(db, "fan"))) == list(range(1, record["generated"] + 1))
    assert [d["number"] for d in f.invoices(db, "tiny").values()] == ["TI-2026-000001"]


def test_invoices_of_a_run_that_died_before_numbering_are_finalized_by_the_next_run(
    db: firestore.Client, clock: Any, call_function: Any
) -> None:
    """Grace 0: the fanned-out run's invoices wait as due drafts, so a dead run strands nothing."""
    from billing.runs.fanout.anniversary import start_generate_invoices
    from billing.runs.fanout.stages import Worker, execute
    from billing.runs.shell import RunContext
    from billing.store.firestore_store import BillingStore
    from billing.tasks import InlineQueue

    seed(db, "fan", grace=0)
    store = BillingStore(db)
    holder: list[Worker] = []

    def run_all_but_numbering(body: Any) -> None:
        if body["stage"] != "number":  # the worker dies for good before the numbering pass
            execute(holder[0], body)

    holder.append(Worker(store, InlineQueue(run_all_but_numbering), None, chunk_size=3))
    ctx = RunContext("dead", AS_OF, False, store)
    assert start_generate_invoices(ctx, holder[0], "fan", 1, "http")["tenants"][0]["run_id"] == "dead"
    record = store.read_run("fan", "dead") or {}
    assert record["stage"] == "number" and record["generated"] > 10, record
    drafts = f.invoices(db, "fan")
    assert {d["status"] for d in drafts.values()} == {"draft"}
    assert {d["finalize_at"] for d in drafts.values()} == {AS_OF}

    status, body = call_function("generate_invoices", {"as_of": "2026-10-20T13:00:00Z"}, tenant="fan")
    assert status == 200 and body["finalized"] == record["generated"] and body["generated"] == 0, body
    docs = f.invoices(db, "fan")
    ordered = sorted(docs, key=lambda i: (docs[i]["customer_id"], i))
    assert [int(str(docs[i]["number"]).rsplit("-", 1)[1]) for i in ordered] == list(range(1, len(docs) + 1))
    assert sum(d["total"] for d in docs.values()) == sum(record["totals"].values())


def test_a_folded_tenant_fanned_out_equals_the_raw_inline_run(
    db: firestore.Client,
    bench: TasksBench,
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    clock: Any,
) -> None:
    """``fan`` folded by ``aggregate_usage`` (chunks read accumulators + tail) equals ``inline`` (raw)."""
    seed(db, "inline", grace=1)
    seed(db, "fan", grace=1)
    clock.set(AS_OF - timedelta(hours=2))
    fold = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="aggregate_usage", source=str(REPO / "functions" / "aggregate_usage" / "main.py")
    )
    status, folded = call(fold, token(audience=bench.proxy.url), "fan", body={})
    assert status == 200 and folded["errors"] == [] and folded["events_folded"] > 20, folded
    clock.set(AS_OF + timedelta(days=2))
    inline, record = both(bench, token, monkeypatch, AS_OF)
    assert_same(db, inline, record)
    assert record["tenants"][0]["status"] == "completed"
    fan_run = db.document(f"tenants/fan/billing_runs/{record['run_id']}").get().to_dict() or {}
    assert fan_run["usage_watermark"] is not None, "the plan read the fold state"
    inline, record = both(bench, token, monkeypatch, AS_OF + timedelta(days=1, hours=2))
    assert inline["finalized"] > 10
    assert_same(db, inline, record)
