"""Every aggregation case of ``test_aggregation`` again, through exported and merged accumulator states.

The hourly fold (``billing.runs.fold_usage``) never feeds one accumulator every event: it folds
each hour's events into a fresh accumulator, stores its ``export()`` in Firestore, and billing
``absorb``s the stored states. Here each raw case (Lago's worked numbers included: weighted sum
12.5, 1.5, 1.9, 2.6...) runs with ``make_accumulator`` replaced by ``SplitAccumulator``: the
events go, shuffled, into three accumulators, whose states travel through Firestore's own value
encoding and are merged in reverse order. Every assertion of the raw case must still hold.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from google.cloud.firestore_v1 import _helpers

from billing.pricing.aggregation import Accumulator, GroupKey, WeightedSumAccumulator, make_accumulator
from billing.records import Meter, UsageEvent
from tests.unit.pricing import test_aggregation as raw


def through_firestore(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` encoded as Firestore values and decoded back (what a stored document returns)."""
    encoded = _helpers.encode_dict(state)
    decoded = _helpers.decode_dict(encoded, None)
    assert isinstance(decoded, dict)
    return decoded


class SplitAccumulator:
    """Quacks like an ``Accumulator``; folds in three shuffled parts, merges their stored states."""

    def __init__(self, meter: Meter, start: datetime, end: datetime, **period: datetime) -> None:
        self._make: Callable[[], Accumulator[Any]] = lambda: make_accumulator(meter, start, end, **period)
        self._events: list[UsageEvent] = []

    def add(self, event: UsageEvent) -> None:
        self._events.append(event)

    def _merged(self) -> Accumulator[Any]:
        events = list(self._events)
        random.Random(len(events)).shuffle(events)
        parts = [events[i::3] for i in range(3)]
        states = []
        for part in parts:
            acc = self._make()
            for event in part:
                acc.add(event)
            states.append(through_firestore(acc.export()))
        merged = self._make()
        for state in reversed(states):
            merged.absorb(state)
        return merged

    def results(self) -> dict[GroupKey, Decimal]:
        return self._merged().results()

    @property
    def warnings(self) -> list[str]:
        return self._merged().warnings

    @property
    def warning_count(self) -> int:
        return self._merged().warning_count

    @property
    def events_counted(self) -> int:
        return self._merged().events_counted


CASES = [
    function
    for name, function in sorted(vars(raw).items())
    if name.startswith("test_") and callable(function) and not inspect.signature(function).parameters
]


def test_the_raw_cases_are_found() -> None:
    assert len(CASES) >= 25
    assert raw.test_weighted_sum_half_period_at_10_then_15 in CASES


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_raw_case_holds_through_folded_states(
    case: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raw, "make_accumulator", SplitAccumulator)
    case()


def test_weighted_sum_state_is_order_free_and_equals_the_level_by_level_area() -> None:
    # Lago's example shape: +10 at 0 s, +5 at 30 s, -15 at 90 s in a 120 s period.
    # Level by level: 10 x 30 + 15 x 60 + 0 x 30 = 1200 -> 10 per second on average.
    # State: total = 0, moment = 10 x 0 + 5 x 30 - 15 x 90 = -1200; area = 0 x 120 - (-1200) = 1200.
    start = raw.utc(2026, 10, 1)
    end = raw.utc(2026, 10, 1, 0, 2)
    events = [
        raw.ev(start, value=10),
        raw.ev(raw.utc(2026, 10, 1, 0, 0, 30), value=5),
        raw.ev(raw.utc(2026, 10, 1, 0, 1, 30), value=-15),
    ]
    forward = make_accumulator(raw.meter("weighted_sum"), start, end)
    backward = make_accumulator(raw.meter("weighted_sum"), start, end)
    for event in events:
        forward.add(event)
    for event in reversed(events):
        backward.add(event)
    assert isinstance(forward, WeightedSumAccumulator)
    assert forward.export() == backward.export()
    state = forward.export()["groups"][0]["state"]
    assert (Decimal(state["total"]), Decimal(state["moment"])) == (Decimal(0), Decimal(-1200))
    assert forward.results() == {(): Decimal(10)}


def test_unique_count_state_counts_its_values() -> None:
    acc = make_accumulator(raw.meter("unique_count"), raw.START, raw.END)
    for value in ("a", "b", "a", 1, "1"):
        acc.add(raw.ev(raw.utc(2026, 10, 2), value=value))
    assert acc.stored_values() == 3
    assert acc.export()["groups"] == [{"key": [], "state": ["1", "a", "b"]}]


def test_absorb_refuses_a_state_of_another_aggregation() -> None:
    acc = make_accumulator(raw.meter("weighted_sum"), raw.START, raw.END)
    with pytest.raises((KeyError, TypeError, ValueError)):
        acc.absorb({"groups": [{"key": [], "state": "12"}], "events": 1})
