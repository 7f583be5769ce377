"""Every aggregation of the contract, with worked numbers (pure: no emulator needed).

The window is October 2026 in Europe/London: [2026-09-30T23:00Z, 2026-11-01T00:00Z), which is
31 days and one hour (BST ends on the 25th): 2,682,000 seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from billing.pricing.aggregation import ACCUMULATORS, Accumulator, make_accumulator
from billing.pricing.money import decimal_text
from billing.records import AGGREGATIONS, Meter, UsageEvent

START = datetime(2026, 9, 30, 23, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD_SECONDS = 31 * 86400 + 3600  # 2,682,000


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def meter(aggregation: str, field: str | None = "value", group_by: list[str] | None = None) -> Meter:
    data: dict[str, Any] = {"aggregation": aggregation, "group_by": group_by or []}
    if field is not None:
        data["field"] = field
    return Meter.parse("m", data)


_seq = iter(range(10**9))


def ev(
    timestamp: datetime, created: datetime | None = None, event_id: str | None = None, **properties: Any
) -> UsageEvent:
    n = next(_seq)
    return UsageEvent(
        event_id or f"e{n:06d}",
        "cust",
        "m",
        timestamp,
        properties,
        created or timestamp + timedelta(seconds=1),
    )


def run(
    aggregation: str,
    events: list[UsageEvent],
    *,
    field: str | None = "value",
    group_by: list[str] | None = None,
    start: datetime = START,
    end: datetime = END,
    **period: datetime,
) -> Accumulator[Any]:
    acc = make_accumulator(meter(aggregation, field, group_by), start, end, **period)
    for event in events:
        acc.add(event)
    return acc


def result(aggregation: str, events: list[UsageEvent], **kwargs: Any) -> Decimal:
    return run(aggregation, events, **kwargs).results()[()]


def test_every_contract_aggregation_has_an_accumulator() -> None:
    assert (
        set(ACCUMULATORS)
        == set(AGGREGATIONS)
        == {"count", "sum", "max", "unique_count", "latest", "weighted_sum"}
    )


# -- the window: [start, end) ---------------------------------------------------------------------


def test_events_outside_the_period_never_count() -> None:
    events = [
        ev(START - timedelta(microseconds=1), value=100),  # just before: no
        ev(START, value=1),  # first instant: yes
        ev(utc(2026, 10, 15), value=2),  # inside: yes
        ev(END - timedelta(microseconds=1), value=4),  # last microsecond: yes
        ev(END, value=1000),  # period end (exclusive): no
    ]
    assert result("count", events, field=None) == 3
    assert result("sum", events) == 7  # 1 + 2 + 4
    assert result("max", events) == 4
    assert run("sum", events).events_counted == 3


def test_no_event_gives_zero_for_every_aggregation() -> None:
    for aggregation in AGGREGATIONS:
        field = None if aggregation == "count" else "value"
        assert result(aggregation, [], field=field) == 0, aggregation


# -- count, sum, max --------------------------------------------------------------------------------


def test_count_counts_events_whatever_their_properties() -> None:
    # 3 events, one without properties and one with a non-numeric value: count reads no field.
    events = [ev(utc(2026, 10, 1)), ev(utc(2026, 10, 2), value="abc"), ev(utc(2026, 10, 3), value=5)]
    acc = run("count", events, field=None)
    assert acc.results() == {(): Decimal(3)}
    assert acc.warning_count == 0


def test_sum_reads_int_float_and_decimal_strings_exactly() -> None:
    # 1 + 0.1 (float, read through repr, not 0.1000000000000000055...) + "2.25" + 0.2 = 3.55
    events = [
        ev(utc(2026, 10, 1), value=1),
        ev(utc(2026, 10, 2), value=0.1),
        ev(utc(2026, 10, 3), value="2.25"),
        ev(utc(2026, 10, 4), value=0.2),
    ]
    assert result("sum", events) == Decimal("3.55")


def test_sum_keeps_negative_values() -> None:
    # 10 + (-3) = 7 (refunds are deltas; the charge clamps a negative total to 0 units)
    assert result("sum", [ev(utc(2026, 10, 1), value=10), ev(utc(2026, 10, 2), value=-3)]) == 7


def test_max_is_the_largest_value() -> None:
    # max(3, 17.5, "9") = 17.5
    events = [
        ev(utc(2026, 10, 1), value=3),
        ev(utc(2026, 10, 2), value=17.5),
        ev(utc(2026, 10, 3), value="9"),
    ]
    assert result("max", events) == Decimal("17.5")


def test_non_numeric_and_missing_values_are_ignored_and_warned() -> None:
    # 5 + 7 = 12; "lots", True, NaN, a map and a missing value are ignored: 5 warnings.
    events = [
        ev(utc(2026, 10, 1), value=5),
        ev(utc(2026, 10, 2), value="lots"),
        ev(utc(2026, 10, 3), value=True),
        ev(utc(2026, 10, 4), value="NaN"),
        ev(utc(2026, 10, 5), value={"a": 1}),
        ev(utc(2026, 10, 6), other=1),
        ev(utc(2026, 10, 7), value="7"),
    ]
    for aggregation in ("sum", "max", "latest", "weighted_sum"):
        acc = run(aggregation, events)
        assert acc.warning_count == 5, aggregation
        assert acc.events_counted == 2, aggregation
        assert any("not numeric: 'lots'" in w for w in acc.warnings)
        assert any("missing" in w for w in acc.warnings)
    assert result("sum", events) == 12
    assert result("max", events) == 7


def test_warning_messages_are_capped_but_counted() -> None:
    acc = run("sum", [ev(utc(2026, 10, 1), value="x") for _ in range(50)])
    assert acc.warning_count == 50 and len(acc.warnings) == 20


# Values the aggregation cannot hold (issue 8 items 3 and 6): |value| >= 10**30, or more than 30
# decimal places once trailing zeros are dropped. "1e1000000" used to raise decimal.Overflow.
OUT_OF_RANGE = [
    "1e1000000",
    "-1e1000000",
    10**30,
    "1E+30",
    "-1000000000000000000000000000000",
    "1e-31",
    "0.1234567890123456789012345678901",
    1e-40,
]


@pytest.mark.parametrize("aggregation", ["sum", "max", "latest", "weighted_sum"])
def test_values_the_aggregation_cannot_hold_are_ignored_and_warned(aggregation: str) -> None:
    events = [ev(utc(2026, 10, 2), value=v) for v in OUT_OF_RANGE]
    events.append(ev(utc(2026, 10, 1), value="2"))
    acc = run(aggregation, events)
    assert acc.warning_count == len(OUT_OF_RANGE) and acc.events_counted == 1
    assert any("out of range: '1e1000000'" in w for w in acc.warnings)
    if aggregation != "weighted_sum":
        assert acc.results() == {(): Decimal(2)}


def test_quantities_keep_every_digit_beyond_28_significant_digits() -> None:
    # The largest and the finest values accepted, summed exactly (60 and more significant digits).
    big = "999999999999999999999999999999.999999999999999999999999999999"
    tiny = "0.000000000000000000000000000001"
    total = result(
        "sum",
        [
            ev(utc(2026, 10, 1), value=big),
            ev(utc(2026, 10, 2), value=big),
            ev(utc(2026, 10, 3), value=tiny),
            ev(utc(2026, 10, 4), value="1.50"),
        ],
    )
    # 2 x (10**30 - 10**-30) + 10**-30 + 1.5
    assert total == Decimal("2000000000000000000000000000001.499999999999999999999999999999")
    assert decimal_text(total) == "2000000000000000000000000000001.499999999999999999999999999999"
    assert decimal_text(Decimal("1" * 40)) == "1" * 40
    assert result("max", [ev(utc(2026, 10, 1), value=big)]) == Decimal(big)
    assert result(
        "latest", [ev(utc(2026, 10, 1), value="-" + big), ev(utc(2026, 10, 2), value=tiny)]
    ) == Decimal(tiny)


def test_weighted_sum_of_extreme_values_stays_exact_to_twelve_places() -> None:
    # A level of 10**30 - 1 held for half of the period: (10**30 - 1) / 2 exactly.
    level = 10**30 - 1
    half = START + timedelta(seconds=PERIOD_SECONDS // 2)
    assert str(result("weighted_sum", [ev(half, value=level)])) == (
        "499999999999999999999999999999.500000000000"
    )


# -- unique_count --------------------------------------------------------------------------------------


def test_unique_count_counts_distinct_values_as_text() -> None:
    # users: alice, bob, alice, 42, "42" (same text as 42), "" -> {alice, bob, 42, ""} = 4
    events = [
        ev(utc(2026, 10, 1), value="alice"),
        ev(utc(2026, 10, 2), value="bob"),
        ev(utc(2026, 10, 3), value="alice"),
        ev(utc(2026, 10, 4), value=42),
        ev(utc(2026, 10, 5), value="42"),
        ev(utc(2026, 10, 6), value=""),
        ev(START - timedelta(seconds=1), value="carol"),
    ]  # outside: not counted
    acc = run("unique_count", events)
    assert acc.results() == {(): Decimal(4)}
    assert acc.warning_count == 0


def test_unique_count_per_group() -> None:
    # project A: users u1, u2 (u1 twice) = 2; project B: u1 = 1
    events = [
        ev(utc(2026, 10, 1), value="u1", project="A"),
        ev(utc(2026, 10, 2), value="u1", project="A"),
        ev(utc(2026, 10, 3), value="u2", project="A"),
        ev(utc(2026, 10, 4), value="u1", project="B"),
    ]
    assert run("unique_count", events, group_by=["project"]).results() == {
        ("A",): Decimal(2),
        ("B",): Decimal(1),
    }


# -- latest ---------------------------------------------------------------------------------------------


def test_latest_is_the_value_of_the_newest_event_not_the_last_added() -> None:
    # seats: 5 on the 1st, 9 on the 20th, 7 on the 10th (arrives last) -> newest is the 20th: 9
    events = [
        ev(utc(2026, 10, 1), value=5),
        ev(utc(2026, 10, 20), value=9),
        ev(utc(2026, 10, 10), value=7, created=utc(2026, 10, 30)),
    ]
    assert result("latest", events) == 9


def test_latest_ties_are_broken_by_document_creation_order() -> None:
    # Three events at the same timestamp; the one whose document was created last wins: 4,
    # whatever the order they are added in or their ids.
    t = utc(2026, 10, 31, 12)
    events = [
        ev(t, created=utc(2026, 11, 2), event_id="a", value=4),
        ev(t, created=utc(2026, 11, 1), event_id="z", value=8),
        ev(t, created=utc(2026, 10, 31, 13), event_id="m", value=6),
    ]
    for order in (events, events[::-1], [events[1], events[0], events[2]]):
        assert result("latest", order) == 4
    # Same timestamp and same create time (one batch): the larger document id wins ("z": 8).
    batch = utc(2026, 11, 1)
    same = [ev(t, created=batch, event_id="a", value=4), ev(t, created=batch, event_id="z", value=8)]
    assert result("latest", same) == result("latest", same[::-1]) == 8


def test_latest_clamps_negative_values_to_zero() -> None:
    # newest value -3 -> 0 (an older 10 does not come back)
    events = [ev(utc(2026, 10, 1), value=10), ev(utc(2026, 10, 2), value=-3)]
    assert result("latest", events) == 0


def test_latest_ignores_a_newest_non_numeric_value() -> None:
    # 6 then "n/a" (ignored, warned) -> 6
    acc = run("latest", [ev(utc(2026, 10, 1), value=6), ev(utc(2026, 10, 2), value="n/a")])
    assert acc.results()[()] == 6 and acc.warning_count == 1


def test_latest_ignores_events_after_the_period() -> None:
    events = [ev(utc(2026, 10, 31, 23, 59, 59), value=3), ev(END, value=99)]
    assert result("latest", events) == 3


# -- weighted_sum ----------------------------------------------------------------------------------------


def test_weighted_sum_half_period_at_10_then_15() -> None:
    # +10 at the first instant, +5 at exactly half of the 2,682,000 s period:
    # (10 x 1,341,000 + 15 x 1,341,000) / 2,682,000 = 12.5
    half = START + timedelta(seconds=PERIOD_SECONDS // 2)
    events = [ev(START, value=10), ev(half, value=5)]
    assert result("weighted_sum", events) == Decimal("12.5")


def test_weighted_sum_level_starts_at_zero_and_events_outside_are_ignored() -> None:
    # An event before the period would have raised the level, but never counts; the level is 0
    # until +6 at 3/4 of the period: 6 x 670,500 / 2,682,000 = 1.5. The event at END is ignored.
    three_quarters = START + timedelta(seconds=PERIOD_SECONDS * 3 // 4)
    events = [ev(START - timedelta(days=3), value=100), ev(three_quarters, value=6), ev(END, value=1000)]
    assert result("weighted_sum", events) == Decimal("1.5")


def test_weighted_sum_event_at_the_last_microsecond_adds_almost_nothing() -> None:
    # +10 at START for the whole period = 10; +2,682,000 one microsecond before the end adds
    # 2,682,000 x 0.000001 / 2,682,000 = 0.000001 -> 10.000001
    events = [ev(START, value=10), ev(END - timedelta(microseconds=1), value=PERIOD_SECONDS)]
    assert result("weighted_sum", events) == Decimal("10.000001")


def test_weighted_sum_keeps_sub_second_timestamps() -> None:
    # A 10-second window; +4 at 2.5 s, -4 at 7.25 s: 4 x 4.75 / 10 = 1.9 (microseconds, no float)
    start = utc(2026, 10, 1)
    events = [
        ev(start + timedelta(seconds=2, microseconds=500_000), value=4),
        ev(start + timedelta(seconds=7, microseconds=250_000), value=-4),
    ]
    assert result("weighted_sum", events, start=start, end=start + timedelta(seconds=10)) == Decimal("1.9")


def test_weighted_sum_same_timestamp_events_and_negative_deltas() -> None:
    # 100 s window: +3 and +2 at 0 s (level 5), -5 at 50 s (level 0), +1 at 90 s:
    # (5 x 50 + 0 x 40 + 1 x 10) / 100 = 2.6
    start = utc(2026, 10, 1)
    events = [
        ev(start, value=3),
        ev(start, value=2),
        ev(start + timedelta(seconds=50), value=-5),
        ev(start + timedelta(seconds=90), value=1),
    ]
    assert result("weighted_sum", events, start=start, end=start + timedelta(seconds=100)) == Decimal("2.6")


def test_weighted_sum_is_rounded_to_twelve_decimals() -> None:
    # 3 s window, +1 at 2 s: 1 x 1 / 3 = 0.3333... -> 0.333333333333 (12 decimals, HALF_UP)
    start = utc(2026, 10, 1)
    end = start + timedelta(seconds=3)
    assert result(
        "weighted_sum", [ev(start + timedelta(seconds=2), value=1)], start=start, end=end
    ) == Decimal("0.333333333333")
    # +2 for 1 s of 3 = 0.666666666666666... -> 0.666666666667
    assert result(
        "weighted_sum", [ev(start + timedelta(seconds=2), value=2)], start=start, end=end
    ) == Decimal("0.666666666667")


def test_weighted_sum_averages_over_the_whole_period_when_the_window_is_clipped() -> None:
    # A subscription canceled at half of the period holds level 10 during its half only:
    # 10 x 1,341,000 / 2,682,000 = 5 (the average over the billing period, as Lago does);
    # without the period the clipped window is the divisor: 10.
    half = START + timedelta(seconds=PERIOD_SECONDS // 2)
    events = [ev(START, value=10)]
    assert result("weighted_sum", events, end=half, period_start=START, period_end=END) == 5
    assert result("weighted_sum", events, end=half) == 10


def test_weighted_sum_per_group() -> None:
    # 100 s window; group A: +10 at 0 s -> 10; group B: +10 at 50 s -> 5
    start = utc(2026, 10, 1)
    events = [ev(start, value=10, disk="A"), ev(start + timedelta(seconds=50), value=10, disk="B")]
    acc = run("weighted_sum", events, group_by=["disk"], start=start, end=start + timedelta(seconds=100))
    assert acc.results() == {("A",): Decimal(10), ("B",): Decimal(5)}


# -- group_by ----------------------------------------------------------------------------------------------


def test_group_by_keys_are_text_and_missing_is_empty() -> None:
    # sum by region and tier: (eu, 1): 2 + 3 = 5; (us, ""): 4 (tier missing); 1.5 float key
    events = [
        ev(utc(2026, 10, 1), value=2, region="eu", tier=1),
        ev(utc(2026, 10, 2), value=3, region="eu", tier="1"),
        ev(utc(2026, 10, 3), value=4, region="us"),
        ev(utc(2026, 10, 4), value=1, region="us", tier=1.5),
    ]
    assert run("sum", events, group_by=["region", "tier"]).results() == {
        ("eu", "1"): Decimal(5),
        ("us", ""): Decimal(4),
        ("us", "1.5"): Decimal(1),
    }


def test_group_by_without_events_has_no_group() -> None:
    assert run("sum", [], group_by=["region"]).results() == {}


@pytest.mark.parametrize("aggregation", ["sum", "max", "latest", "weighted_sum", "unique_count"])
def test_field_aggregations_need_a_field(aggregation: str) -> None:
    from billing.errors import DataError

    with pytest.raises(DataError, match="needs a 'field'"):
        Meter.parse("m", {"aggregation": aggregation})
