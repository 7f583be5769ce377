"""Event routing (issue 8 item 1): every usage event is billed on exactly one subscription.

The rule: the subscription named by the event's ``subscription_id``, else the customer's
subscription that charges the meter and was active at the event's timestamp, the most recently
started winning, whatever its billing time or status and whether or not it is due in this run.
End to end through ``monthly_billing`` and ``generate_invoices`` on the real emulators, plus the
router on its own for what a run cannot provoke.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from billing.pricing.usage import UsageRouter
from billing.records import Meter, UsageEvent
from tests import factories as f

T = "routeco"
MONTH = "2026-10"  # Europe/London: [2026-09-30T23:00Z, 2026-11-01T00:00Z)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def seed(db: firestore.Client, grace: int = 0) -> None:
    """A tenant (by default without grace period: anniversary invoices are final at once), one
    count meter, and two plans charging it at different prices, so each invoice tells whose
    events it holds."""
    f.tenant(db, T, invoice_prefix="RT", grace_period_hours=grace)
    f.meter(db, T, "api_calls", "count", field=None, unit="calls")
    f.plan(
        db,
        T,
        "two",
        [{"type": "usage", "meter": "api_calls", "model": "standard", "unit_amount_decimal": "2"}],
    )
    f.plan(
        db,
        T,
        "three",
        [{"type": "usage", "meter": "api_calls", "model": "standard", "unit_amount_decimal": "3"}],
    )


def anniversary(
    db: firestore.Client,
    sub_id: str,
    customer_id: str,
    plan_id: str,
    start: datetime,
    end: datetime,
    **fields: Any,
) -> None:
    f.subscription(
        db,
        T,
        sub_id,
        customer_id,
        plan_id,
        started_at=start,
        billing_time="anniversary",
        current_period_start=start,
        current_period_end=end,
        **fields,
    )


def month_close(call_function: Any) -> dict[str, Any]:
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T)
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def generate(call_function: Any, as_of: str) -> dict[str, Any]:
    status, body = call_function("generate_invoices", {"as_of": as_of}, tenant=T)
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def usage_quantity(invoice: dict[str, Any]) -> str:
    (line,) = [line for line in invoice["lines"] if line["kind"] == "usage"]
    return str(line["quantity"])


def test_calendar_and_anniversary_on_one_meter_bill_each_event_once(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db)
    f.customer(db, T, "bob")
    f.subscription(db, T, "sub-cal", "bob", "two")  # calendar, since 2020
    # Started on 15 October at 11:00 London time: the more recent one from then on.
    anniversary(db, "sub-ann", "bob", "three", utc(2026, 10, 15, 10), utc(2026, 11, 15, 11))
    f.event(db, T, "e1", "bob", "api_calls", utc(2026, 10, 5))  # only sub-cal is active
    f.event(db, T, "e2", "bob", "api_calls", utc(2026, 10, 20))  # sub-ann, the most recent
    f.event(db, T, "e3", "bob", "api_calls", utc(2026, 10, 30))  # sub-ann
    f.event(db, T, "e4", "bob", "api_calls", utc(2026, 11, 3))  # sub-ann
    db.document(f"tenants/{T}/usage_events/p1").set(
        {  # pinned: sub-cal's, though older
            "customer_id": "bob",
            "meter": "api_calls",
            "timestamp": utc(2026, 10, 21),
            "properties": {},
            "subscription_id": "sub-cal",
        }
    )

    closed = month_close(call_function)
    assert closed["errors"] == []
    calendar = f.invoices(db, T)["sub-cal-20261001"]
    assert usage_quantity(calendar) == "2" and calendar["subtotal"] == 4  # e1 and p1

    generated = generate(call_function, "2026-11-15T12:00:00Z")
    assert generated["errors"] == [] and generated["generated"] == 1
    ann = f.invoices(db, T)["sub-ann-20261015"]
    assert usage_quantity(ann) == "3" and ann["subtotal"] == 9  # e2, e3, e4
    # Five events, five billed units: none twice, none lost.
    assert sum(int(usage_quantity(i)) for i in f.invoices(db, T).values()) == 5


def test_an_anniversary_run_leaves_a_newer_calendar_subscription_its_events(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db, grace=1)  # a draft first, re-priced when finalized an hour later
    f.customer(db, T, "rev")
    anniversary(db, "sub-ann", "rev", "three", utc(2026, 10, 15, 10), utc(2026, 11, 15, 11))
    f.subscription(db, T, "sub-cal", "rev", "two", started_at=utc(2026, 10, 20))
    f.event(db, T, "r1", "rev", "api_calls", utc(2026, 10, 18))  # sub-ann: sub-cal not started
    f.event(db, T, "r2", "rev", "api_calls", utc(2026, 10, 25))  # sub-cal, the most recent
    f.event(db, T, "r3", "rev", "api_calls", utc(2026, 11, 3))  # sub-cal (its November)

    drafted = generate(call_function, "2026-11-15T11:30:00Z")
    assert drafted["errors"] == [] and drafted["draft_totals"] == {"GBP": 4}  # 3p + 20 % tax
    f.event(db, T, "r4", "rev", "api_calls", utc(2026, 11, 4))  # late, still sub-cal's
    finalized = generate(call_function, "2026-11-15T12:45:00Z")
    assert finalized["errors"] == [] and finalized["finalized"] == 1
    ann = f.invoices(db, T)["sub-ann-20261015"]
    assert ann["status"] == "open" and usage_quantity(ann) == "1" and ann["subtotal"] == 3

    month_close(call_function)
    assert usage_quantity(f.invoices(db, T)["sub-cal-20261001"]) == "1"  # r2


def test_two_anniversaries_on_different_anchors(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    f.customer(db, T, "ann")
    # sub-a1 anchored on the 10th (10:00 London), sub-a2 on the 20th (10:00 London), both monthly.
    anniversary(
        db,
        "sub-a1",
        "ann",
        "two",
        utc(2026, 10, 10, 9),
        utc(2026, 11, 10, 10),
        billing_cycle_anchor=utc(2026, 1, 10, 10),
    )
    anniversary(db, "sub-a2", "ann", "three", utc(2026, 10, 20, 9), utc(2026, 11, 20, 10))
    f.event(db, T, "a", "ann", "api_calls", utc(2026, 10, 12))  # sub-a1: sub-a2 not started
    f.event(db, T, "b", "ann", "api_calls", utc(2026, 10, 25))  # sub-a2, the most recent
    f.event(db, T, "c", "ann", "api_calls", utc(2026, 11, 5))  # sub-a2
    f.event(db, T, "d", "ann", "api_calls", utc(2026, 11, 12))  # sub-a2 (sub-a1's next period)

    first = generate(call_function, "2026-11-10T12:00:00Z")  # only sub-a1 is due
    assert first["errors"] == [] and first["generated"] == 1
    a1 = f.invoices(db, T)["sub-a1-20261010"]
    assert usage_quantity(a1) == "1" and a1["subtotal"] == 2

    second = generate(call_function, "2026-11-20T12:00:00Z")  # only sub-a2 is due
    assert second["errors"] == [] and second["generated"] == 1
    a2 = f.invoices(db, T)["sub-a2-20261020"]
    assert usage_quantity(a2) == "3" and a2["subtotal"] == 9
    assert sorted(f.invoices(db, T)) == ["sub-a1-20261010", "sub-a2-20261020"]


def test_a_suspended_subscription_keeps_its_events(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    f.customer(db, T, "sue")
    f.subscription(db, T, "sub-old", "sue", "two")  # active, since 2020
    f.subscription(db, T, "sub-new", "sue", "three", started_at=utc(2026, 10, 10), status="suspended")
    f.event(db, T, "s1", "sue", "api_calls", utc(2026, 10, 5))  # sub-old: sub-new not started
    f.event(db, T, "s2", "sue", "api_calls", utc(2026, 10, 15))  # sub-new's, suspended or not
    f.event(db, T, "s3", "sue", "api_calls", utc(2026, 10, 20))  # sub-new's
    month_close(call_function)
    old = f.invoices(db, T)["sub-old-20261001"]
    assert usage_quantity(old) == "1" and old["subtotal"] == 2
    new = f.invoices(db, T).get("sub-new-20261001")
    assert new is None or usage_quantity(new) == "2"  # however suspension bills it


def test_a_subscription_whose_plan_is_unreadable_holds_back_its_siblings_usage(
    db: firestore.Client, call_function: Any
) -> None:
    seed(db)
    # cleo's newer subscription has a missing plan: which meters it charges is unknown, so
    # events in its active time may be its own; her older subscription is not billed with them.
    f.customer(db, T, "cleo")
    f.subscription(db, T, "sub-cleo", "cleo", "two")
    f.subscription(db, T, "sub-cleo-new", "cleo", "ghost", started_at=utc(2026, 10, 10))
    f.event(db, T, "c1", "cleo", "api_calls", utc(2026, 10, 5))
    f.event(db, T, "c2", "cleo", "api_calls", utc(2026, 10, 15))
    # dan's broken subscription started after his events: no doubt, his usage is billed.
    f.customer(db, T, "dan")
    f.subscription(db, T, "sub-dan", "dan", "two")
    f.subscription(db, T, "sub-dan-new", "dan", "ghost", started_at=utc(2026, 10, 25))
    f.event(db, T, "d1", "dan", "api_calls", utc(2026, 10, 5))
    body = month_close(call_function)
    codes = sorted((e["subscription_id"], e["code"]) for e in body["errors"])
    assert codes == [
        ("sub-cleo", "ambiguous_usage"),
        ("sub-cleo-new", "unknown_plan"),
        ("sub-dan-new", "unknown_plan"),
    ]
    invoices = f.invoices(db, T)
    assert "sub-cleo-20261001" not in invoices
    assert usage_quantity(invoices["sub-dan-20261001"]) == "1"


def test_a_pinned_event_goes_to_its_subscription_or_nowhere(db: firestore.Client, call_function: Any) -> None:
    seed(db)
    f.customer(db, T, "pat")
    f.customer(db, T, "quinn")
    f.subscription(db, T, "sub-pat", "pat", "two")
    f.subscription(db, T, "sub-quinn", "quinn", "two")
    for event_id, customer_id, pinned in (
        ("x1", "pat", "sub-quinn"),
        ("x2", "pat", "nope"),
        ("x3", "pat", "sub-pat"),
    ):
        db.document(f"tenants/{T}/usage_events/{event_id}").set(
            {
                "customer_id": customer_id,
                "meter": "api_calls",
                "timestamp": utc(2026, 10, 2),
                "properties": {},
                "subscription_id": pinned,
            }
        )
    month_close(call_function)
    invoices = f.invoices(db, T)
    assert usage_quantity(invoices["sub-pat-20261001"]) == "1"  # x3 only
    assert "sub-quinn-20261001" not in invoices  # another customer's events never count


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot be read")


def test_an_accumulator_failure_fails_only_its_subscription() -> None:
    meter = Meter.parse("m", {"aggregation": "count", "group_by": ["g"]})
    router = UsageRouter()
    start, end = utc(2026, 10, 1), utc(2026, 11, 1)
    for sub_id, customer_id in (("s1", "c1"), ("s2", "c2")):
        router.claim(sub_id, customer_id, ["m"], utc(2020, 1, 1))
        router.watch(sub_id, sub_id, [meter], start, end)
    router.consume(
        [
            UsageEvent("e1", "c1", "m", utc(2026, 10, 2), {"g": _Unprintable()}),
            UsageEvent("e2", "c1", "m", utc(2026, 10, 3), {"g": "a"}),
            UsageEvent("e3", "c2", "m", utc(2026, 10, 3), {"g": "a"}),
        ]
    )
    assert isinstance(router.usage["s1"].failure, RuntimeError)
    assert router.usage["s2"].failure is None
    assert router.usage["s2"].quantities() == {"m": {("a",): 1}}
