"""The hourly fold (``aggregate_usage``) and billing from accumulators, on the Firestore emulator.

A tenant folded through the HTTP function at several hours of October 2026 is closed and
compared with a twin tenant closed from raw events: same lines, to the penny, for every
aggregation and charge model, in timezones whose month boundaries are not UTC hours. Then late
events before and after the invoice is final, concurrent folds, and ``verify``-free reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from google.cloud import firestore

from billing.pricing.periods import month_period
from billing.runs.fold_usage import AGGREGATE_USAGE, fold_tenant, fold_until
from billing.runs.shell import RunContext, RunReport
from billing.runs.usage_source import MAX_DIFFERING_HOURS
from billing.store.firestore_store import BillingStore
from tests import factories as f
from tests.e2e.usage.scenario import (
    MONTH,
    comparable,
    event_documents,
    seed_catalog,
    utc,
    write_events,
)

FOLDED, RAW = "folded", "raw"


def seed_twins(db: firestore.Client, tz: str) -> list[tuple[str, dict[str, Any]]]:
    period = month_period(2026, 10, tz)
    docs = event_documents(period.start, period.end)
    for tenant_id in (FOLDED, RAW):
        seed_catalog(db, tenant_id, tz)
        write_events(db, tenant_id, docs)
    return docs


def fold(call_function: Any, clock: Any, at: datetime, tenant: str = FOLDED) -> dict[str, Any]:
    clock.set(at)
    status, body = call_function("aggregate_usage", {}, tenant=tenant)
    assert status == 200, body
    assert body["errors"] == [], body
    result: dict[str, Any] = body
    return result


def close(call_function: Any, clock: Any, at: datetime, tenant: str) -> dict[str, Any]:
    clock.set(at)
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=tenant)
    assert status == 200, body
    assert body["errors"] == [], body
    result: dict[str, Any] = body
    return result


FOLD_HOURS = [
    utc(2026, 10, day, hour) for day, hour in ((4, 7), (9, 13), (15, 2), (21, 18), (27, 0), (31, 11))
]


@pytest.mark.parametrize("tz", ["Europe/London", "Asia/Kolkata", "Asia/Kathmandu"])
def test_folded_close_equals_the_raw_close_to_the_penny(
    db: firestore.Client, call_function: Any, clock: Any, tz: str
) -> None:
    docs = seed_twins(db, tz)
    folded_events = 0
    for at in [*FOLD_HOURS, utc(2026, 11, 1, 3)]:
        folded_events += fold(call_function, clock, at)["events_folded"]
    assert folded_events > 150  # most events are folded, the rest come raw after the watermark
    tail = [d for _, d in docs if d["ingested_at"] >= utc(2026, 11, 1, 3)]
    assert tail, "some events must arrive after the last fold"

    folded = close(call_function, clock, utc(2026, 11, 2, 6), FOLDED)
    raw = close(call_function, clock, utc(2026, 11, 2, 6), RAW)
    assert folded["generated"] == raw["generated"] == 5
    assert folded["totals"] == raw["totals"]
    assert comparable(f.invoices(db, FOLDED)) == comparable(f.invoices(db, RAW))
    assert folded["warnings_count"] == raw["warnings_count"] > 0
    # The folded close reads accumulators, not the month's events.
    assert folded["tenants"][0]["events_read"] < len(tail) + 10 < raw["tenants"][0]["events_read"]
    assert folded["stats"]["firestore_reads"] < raw["stats"]["firestore_reads"]


def test_a_late_event_is_billed_in_its_period_until_the_invoice_is_final(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    seed_twins(db, "Europe/London")
    for at in FOLD_HOURS:
        fold(call_function, clock, at)
    fold(call_function, clock, utc(2026, 10, 31, 12, 15))  # folded up to 12:00
    # Oct 3 was folded long ago; this event arrives on Oct 31 at 12:10: late, still billed. No
    # other event of the scenario has a fold time between 12:00 and 13:00 that day.
    late = {
        "customer_id": "c1",
        "meter": "gb",
        "timestamp": utc(2026, 10, 3, 8),
        "ingested_at": utc(2026, 10, 31, 12, 10),
        "properties": {"gb": 40},
    }
    for tenant_id in (FOLDED, RAW):
        write_events(db, tenant_id, [("late-1", late)])
    body = fold(call_function, clock, utc(2026, 10, 31, 13, 15))
    assert body["tenants"][0]["window"] == ["2026-10-31T12:00:00+00:00", "2026-10-31T13:00:00+00:00"]
    assert body["events_folded"] == 1 and body["warnings_count"] == 0
    fold(call_function, clock, utc(2026, 11, 1, 5))
    close(call_function, clock, utc(2026, 11, 1, 6), FOLDED)
    close(call_function, clock, utc(2026, 11, 1, 6), RAW)
    assert comparable(f.invoices(db, FOLDED)) == comparable(f.invoices(db, RAW))

    # After the close the October invoice is final: an October event ingested now is not billed,
    # it is recorded and reported as a warning of the fold run.
    before = f.invoices(db, FOLDED)
    very_late = {**late, "ingested_at": utc(2026, 11, 1, 7, 30), "properties": {"gb": 5}}
    write_events(db, FOLDED, [("late-2", very_late)])
    body = fold(call_function, clock, utc(2026, 11, 1, 8, 15))
    assert body["warnings_count"] == 1
    assert "late usage events" in body["warnings"][0] and "s1-20261001" in body["warnings"][0]
    assert f.invoices(db, FOLDED) == before
    accumulator = db.document(f"tenants/{FOLDED}/usage_accumulators/s1@20261001@gb").get().to_dict() or {}
    assert accumulator["late_unbilled"] == 1
    # A repeated fold of the same hour changes nothing and warns nothing.
    again = fold(call_function, clock, utc(2026, 11, 1, 8, 55))
    assert again["events_folded"] == 0 and again["warnings_count"] == 0
    assert db.document(f"tenants/{FOLDED}/usage_accumulators/s1@20261001@gb").get().to_dict() == accumulator


def _without_create_times(value: Any) -> Any:
    """The twins' event documents have different create times (``latest`` keeps them)."""
    if isinstance(value, dict):
        return {k: _without_create_times(v) for k, v in value.items() if k != "created_at"}
    if isinstance(value, list):
        return [_without_create_times(v) for v in value]
    return value


def _states(db: firestore.Client, tenant_id: str) -> dict[str, Any]:
    keep = ("state", "folded_until", "period_start", "period_end", "overflow", "late_unbilled")
    return {
        s.id: _without_create_times({k: (s.to_dict() or {}).get(k) for k in keep})
        for s in db.collection(f"tenants/{tenant_id}/usage_accumulators").stream()
    }


def test_concurrent_folds_change_nothing_twice(db: firestore.Client) -> None:
    seed_twins(db, "Europe/London")
    at = utc(2026, 10, 20, 9)

    def run(tenant_id: str) -> dict[str, Any]:
        store = BillingStore(db)
        ctx = RunContext(run_id=f"run-{id(store)}", now=at, dry_run=False, store=store)
        report = RunReport(AGGREGATE_USAGE, ctx.run_id, False)
        return fold_tenant(ctx, report, store.get_tenant(tenant_id))

    results = f.concurrently(4, lambda: run(FOLDED))
    once = run(RAW)  # the twin, folded once: the reference
    assert len(results) == 4
    assert _states(db, FOLDED) == _states(db, RAW) and len(_states(db, RAW)) > 10
    assert all(result["window"] == once["window"] for result in results)
    watermark = db.document(f"tenants/{FOLDED}/usage_folds/watermark").get().to_dict() or {}
    assert watermark["folded_until"] == fold_until(at)
    # Between them the 4 runs wrote each accumulator once; the others found it applied.
    assert sum(r["already_applied"] for r in results) == 3 * len(_states(db, RAW))


def test_a_tenant_without_a_fold_is_billed_from_raw_events(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    docs = seed_twins(db, "Asia/Kolkata")
    body = close(call_function, clock, utc(2026, 11, 2), FOLDED)
    assert body["tenants"][0]["events_read"] == sum(
        1
        for _, d in docs
        if month_period(2026, 10, "Asia/Kolkata").start <= d["timestamp"] < utc(2026, 10, 31, 18, 30)
    )


def test_dry_run_fold_writes_nothing(db: firestore.Client, call_function: Any, clock: Any) -> None:
    seed_twins(db, "Europe/London")
    before = f.all_documents(db, FOLDED)
    clock.set(utc(2026, 10, 20, 9))
    status, body = call_function("aggregate_usage", {"dry_run": True}, tenant=FOLDED)
    assert status == 200 and body["events_folded"] > 0
    assert f.all_documents(db, FOLDED) == before


def test_fold_window_edges_are_hours(db: firestore.Client, call_function: Any, clock: Any) -> None:
    seed_twins(db, "Asia/Kathmandu")
    # The window ends at the UTC hour before now - FOLD_GRACE (10 minutes).
    body = fold(call_function, clock, utc(2026, 10, 12, 7, 59, 59))
    assert body["tenants"][0]["window"][1] == "2026-10-12T07:00:00+00:00"
    nothing = fold(call_function, clock, utc(2026, 10, 12, 8, 9))
    assert nothing["events_folded"] == 0 and "window" not in nothing["tenants"][0]


def test_verify_recomputes_from_raw_events_and_reports_a_difference(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    seed_twins(db, "Europe/London")
    for at in [*FOLD_HOURS, utc(2026, 11, 1, 3)]:
        fold(call_function, clock, at)
    # Damage one accumulator behind the fold's back: s1's gb sum gains 1000.
    ref = db.document(f"tenants/{FOLDED}/usage_accumulators/s1@20261001@gb")
    state = (ref.get().to_dict() or {})["state"]
    state["groups"][0]["state"] = str(Decimal(state["groups"][0]["state"]) + 1000)
    ref.update({"state": state})

    clock.set(utc(2026, 11, 2, 6))
    status, dry = call_function("monthly_billing", {"month": MONTH, "dry_run": True}, tenant=FOLDED)
    assert status == 200 and dry["errors"] == [] and dry["generated"] == 5  # unverified: billed wrong
    status, body = call_function("monthly_billing", {"month": MONTH, "verify": True}, tenant=FOLDED)
    assert status == 200, body
    assert [(e["subscription_id"], e["code"]) for e in body["errors"]] == [("s1", "usage_mismatch")]
    assert body["generated"] == 4
    raw = close(call_function, clock, utc(2026, 11, 2, 6), RAW)
    folded, reference = comparable(f.invoices(db, FOLDED)), comparable(f.invoices(db, RAW))
    assert "s1-20261001" not in folded and raw["generated"] == 5
    assert folded == {k: v for k, v in reference.items() if k != "s1-20261001"}


def test_generate_invoices_prices_anniversary_periods_from_accumulators(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    docs = seed_twins(db, "Asia/Kolkata")
    for tenant_id in (FOLDED, RAW):
        f.subscription(
            db,
            tenant_id,
            "ann",
            "c1",
            "all",
            started_at=utc(2026, 9, 10, 6, 30),
            billing_time="anniversary",
            current_period_start=utc(2026, 10, 10, 6, 30),
            current_period_end=utc(2026, 11, 10, 6, 30),
        )
        write_events(
            db,
            tenant_id,
            [(f"ann-{n}", {**d, "subscription_id": "ann"}) for n, (_, d) in enumerate(docs[:60])],
        )
    for at in [*FOLD_HOURS, utc(2026, 11, 5, 9)]:
        fold(call_function, clock, at)
    bodies = []
    for tenant_id in (FOLDED, RAW):
        clock.set(utc(2026, 11, 10, 8))
        status, body = call_function(
            "generate_invoices", {"subscription_id": "ann", "verify": True}, tenant=tenant_id
        )
        assert status == 200 and body["errors"] == [], body
        bodies.append(body)
    folded, raw = bodies
    assert folded["generated"] == raw["generated"] == 1
    assert folded["draft_totals"] == raw["draft_totals"]
    got, want = f.invoices(db, FOLDED), f.invoices(db, RAW)
    assert comparable(got) == comparable(want) and "ann-20261010" in got
    assert folded["tenants"][0]["events_read"] < raw["tenants"][0]["events_read"]


def test_a_late_event_without_ingested_at_is_billed_in_its_period_equal_to_raw(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    docs = seed_twins(db, "Asia/Kathmandu")
    for at in [*FOLD_HOURS, utc(2026, 11, 1, 3)]:
        fold(call_function, clock, at)
    # Oct 3 was folded long ago; this event carries no ingested_at: it arrives at its write time,
    # behind every fold window. The fold never reads it; billing's count finds it.
    late = {"customer_id": "c1", "meter": "gb", "timestamp": utc(2026, 10, 3, 8), "properties": {"gb": 40}}
    for tenant_id in (FOLDED, RAW):
        write_events(db, tenant_id, [("late-no-ingested-at", late)])
    folded = close(call_function, clock, utc(2026, 11, 2, 6), FOLDED)
    raw = close(call_function, clock, utc(2026, 11, 2, 6), RAW)
    assert folded["totals"] == raw["totals"] and folded["generated"] == raw["generated"] == 5
    got, want = comparable(f.invoices(db, FOLDED)), comparable(f.invoices(db, RAW))
    assert got == want
    # Only the customers with an event in the hour that differs are read raw (their own events).
    in_hour = {
        d["customer_id"] for _, d in docs if utc(2026, 10, 3, 8) <= d["timestamp"] < utc(2026, 10, 3, 9)
    }
    assert len(in_hour | {"c1"}) < 5
    assert folded["tenants"][0]["events_read"] < raw["tenants"][0]["events_read"]


def test_late_events_without_ingested_at_in_many_hours_read_the_tenant_raw(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    seed_twins(db, "Europe/London")
    for at in [*FOLD_HOURS, utc(2026, 11, 1, 3)]:
        fold(call_function, clock, at)
    # More differing hours than the check narrows (MAX_DIFFERING_HOURS): the tenant is read raw.
    late = [
        (
            f"late-{n}",
            {
                "customer_id": "c2",
                "meter": "gb",
                "timestamp": utc(2026, 10, 2, 0) + timedelta(hours=n),
                "properties": {"gb": n},
            },
        )
        for n in range(MAX_DIFFERING_HOURS + 1)
    ]
    for tenant_id in (FOLDED, RAW):
        write_events(db, tenant_id, late)
    folded = close(call_function, clock, utc(2026, 11, 2, 6), FOLDED)
    raw = close(call_function, clock, utc(2026, 11, 2, 6), RAW)
    assert comparable(f.invoices(db, FOLDED)) == comparable(f.invoices(db, RAW))
    assert folded["tenants"][0]["events_read"] == raw["tenants"][0]["events_read"]


def test_a_complete_fold_is_trusted_after_a_late_event_with_ingested_at(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    seed_twins(db, "Europe/London")
    for at in [*FOLD_HOURS, utc(2026, 11, 1, 3)]:
        fold(call_function, clock, at)
    # The same late event with ingested_at (after the watermark): read after it, counted as
    # still to fold, so the completeness check holds and the close reads accumulators.
    late = {
        "customer_id": "c1",
        "meter": "gb",
        "timestamp": utc(2026, 10, 3, 8),
        "ingested_at": utc(2026, 11, 1, 4),
        "properties": {"gb": 40},
    }
    for tenant_id in (FOLDED, RAW):
        write_events(db, tenant_id, [("late-ingested", late)])
    folded = close(call_function, clock, utc(2026, 11, 2, 6), FOLDED)
    raw = close(call_function, clock, utc(2026, 11, 2, 6), RAW)
    assert comparable(f.invoices(db, FOLDED)) == comparable(f.invoices(db, RAW))
    assert folded["tenants"][0]["events_read"] < raw["tenants"][0]["events_read"] // 2


def test_events_without_ingested_at_are_folded_by_timestamp(
    db: firestore.Client, call_function: Any, clock: Any
) -> None:
    # Real time here: the emulator stamps create times with the machine's clock.
    now = datetime.now(UTC).replace(microsecond=0)
    for tenant_id in (FOLDED, RAW):
        seed_catalog(db, tenant_id, "Europe/London")
    on_time = [
        (
            f"n{n}",
            {
                "customer_id": "c1",
                "meter": "gb",
                "timestamp": now - timedelta(hours=3, minutes=n),
                "properties": {"gb": n + 1},
            },
        )
        for n in range(5)
    ]
    for tenant_id in (FOLDED, RAW):
        write_events(db, tenant_id, on_time)
    clock.set(now)
    assert fold(call_function, clock, now)["events_folded"] == 5

    def usage(tenant_id: str) -> dict[str, Any]:
        # as_of: the events' period, whatever the real date (a month may have begun since).
        request = {"customer_id": "c1", "as_of": (now - timedelta(hours=3)).isoformat()}
        status, body = call_function("current_usage", request, tenant=tenant_id)
        assert status == 200, body
        charges: dict[str, dict[str, Any]] = {c["meter"]: c for c in body["charges"]}
        return charges["gb"]

    assert usage(FOLDED) == usage(RAW) and usage(FOLDED)["units"] == "15"
    # Sent 3 hours late without ingested_at (it arrives at its write time): its window is folded
    # already, so no accumulator holds it, yet it is billed in its own period: the completeness
    # check counts one event more than the folds read and current_usage reads raw.
    late = {
        "customer_id": "c1",
        "meter": "gb",
        "timestamp": now - timedelta(hours=3),
        "properties": {"gb": 100},
    }
    for tenant_id in (FOLDED, RAW):
        write_events(db, tenant_id, [("late-no-ingested-at", late)])
    assert usage(RAW)["units"] == usage(FOLDED)["units"] == "115"
    assert usage(FOLDED) == usage(RAW)
    # The same event with ingested_at is folded whenever it arrives.
    write_events(db, FOLDED, [("late-no-ingested-at", {**late, "ingested_at": now})])
    assert usage(FOLDED)["units"] == "115"  # read after the watermark
    fold(call_function, clock, now + timedelta(hours=1))
    assert usage(FOLDED)["units"] == "115"  # now from the accumulator, counted once
