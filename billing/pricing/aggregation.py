"""Meters: fold usage events into a quantity per group, with Lago's and Stripe Meters' semantics.

Shapes and units
----------------
An ``Accumulator`` is made for one meter and one *window*: the billing period clipped to the
subscription's active time ``[started_at, canceled_at)``. ``add(event)`` ignores events outside
``[start, end)`` (start included, end excluded: an event at the period's first instant counts, one
at its end belongs to the next period). ``results()`` returns ``{group_key: Decimal}`` where
``group_key`` is the tuple of the meter's ``group_by`` property values as text (``()`` without
``group_by``, which always has that key, 0 when nothing counted; a missing property is ``""``).
Quantities are plain ``Decimal`` units of the meter (not money). Timestamps are aware instants;
the tenant's timezone plays no part here (the window's bounds already come from it).

Aggregations (``meter.aggregation``; source: ``CONTRACT.md`` and issue 3, after Lago's
``billable_metrics`` aggregations and Stripe Meters' ``count``/``sum``/``last``):

- ``count``: number of events (no field read, so never a warning).
- ``sum``: exact Decimal sum of ``properties[field]`` (negative values allowed; the charge clamps
  a negative total to 0).
- ``max``: the largest value; 0 when nothing counted.
- ``unique_count``: number of distinct values of the field, compared as text (``1`` and ``"1"``
  are the same value, ``1.0`` is another); any JSON value counts, so no "non-numeric" warning.
- ``latest``: the value of the newest event (largest ``timestamp``); ties on the timestamp are
  broken by document creation order (Firestore's ``create_time``: the later-created document
  wins), then by document id (documents written in one batch share a ``create_time``). A negative
  value counts as 0. 0 when nothing counted. A non-numeric newest event is ignored (warning), so
  the newest *numeric* event wins.
- ``weighted_sum``: each value is a delta to a running level that is 0 at the window's start
  (events before the period never count, so nothing carries over). The result is the
  time-weighted average level over the *billing period*, in seconds:
  ``sum(level_i x seconds_i) / period_seconds``, where ``seconds_i`` runs from event ``i`` to the
  next event or to the window's end. Microseconds are kept (no float). A subscription active for
  half the period with a level of 10 gets 5 (10 for half the period): the average over the
  period, as Lago divides by the full period's duration. ``period_start``/``period_end`` give that
  divisor; when absent the window is the period. The result is rounded to 12 decimal places
  (ROUND_HALF_UP), the precision of unit prices, so the quantity printed on the invoice is the
  one multiplied.

Values are read as ``Decimal`` (int; float through its shortest ``repr``; decimal string; see
``billing.pricing.money.to_quantity``). A missing or non-numeric value (text, bool, NaN, infinity, map) is
ignored by the aggregation (Lago's rule) and recorded in ``warnings`` (the first 20 messages;
``warning_count`` counts all). So is a value out of the range the aggregations hold exactly
(issue 8 items 3 and 6): ``|value| >= 10**30`` (``"1e1000000"`` used to raise
``decimal.Overflow`` and stop the run) or more than 30 decimal places (``1e-31``). Sums, levels and
averages are computed in ``billing.pricing.money.EXACT`` (100 significant digits), so every quantity is
exact: never rounded to the 28 digits of Python's default context. No function here raises for
bad event data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, ClassVar, Generic, TypeVar

from billing.pricing.money import EXACT, TWELVE_PLACES, short_repr, to_quantity
from billing.records import Meter, UsageEvent

GroupKey = tuple[str, ...]
_add = EXACT.add  # exact: values are bounded (billing.pricing.money.to_quantity)
StateT = TypeVar("StateT")
_MAX_WARNINGS = 20


class Accumulator(ABC, Generic[StateT]):
    """Folds one meter's events in a window into one quantity per group.

    Args:
        meter: the meter (aggregation, field, group_by).
        start: first instant counted (aware).
        end: first instant not counted (aware).
        period_start: start of the whole billing period (default ``start``); only
            ``weighted_sum`` uses the period, as the divisor of its average.
        period_end: end of the whole billing period (default ``end``).

    """

    aggregation: ClassVar[str]
    needs_value: ClassVar[bool] = True
    numeric: ClassVar[bool] = True

    def __init__(
        self,
        meter: Meter,
        start: datetime,
        end: datetime,
        *,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
    ) -> None:
        self.meter = meter
        self.start = start
        self.end = end
        self.period_start = period_start if period_start is not None else start
        self.period_end = period_end if period_end is not None else end
        self.groups: dict[GroupKey, StateT] = {}
        self.events_counted = 0
        self.warnings: list[str] = []
        self.warning_count = 0

    def _warn(self, event: UsageEvent, problem: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(f"event {event.id}: {problem}")

    def add(self, event: UsageEvent) -> None:
        """Fold ``event`` in, if it is inside the window and (when needed) has a numeric value."""
        if not self.start <= event.timestamp < self.end:
            return
        value: Any = None
        if self.needs_value:
            assert self.meter.field is not None
            raw = event.properties.get(self.meter.field)
            if raw is None:
                self._warn(event, f"property {self.meter.field!r} is missing")
                return
            if self.numeric:
                try:
                    value = to_quantity(raw)
                except ValueError as exc:
                    problem = (
                        str(exc)
                        if str(exc).startswith("out of range")
                        else (f"not numeric: {short_repr(raw)}")
                    )
                    self._warn(event, f"property {self.meter.field!r} is {problem}")
                    return
            else:
                value = raw
        key = tuple(_group_value(event.properties.get(g)) for g in self.meter.group_by)
        state = self.groups.get(key)
        if state is None:
            state = self._initial()
        self.groups[key] = self._fold(state, event, value)
        self.events_counted += 1

    def results(self) -> dict[GroupKey, Decimal]:
        """Quantities per group; without ``group_by`` always has the key ``()`` (0 if no event)."""
        out = {key: self._result(state) for key, state in self.groups.items()}
        if not self.meter.group_by and () not in out:
            out[()] = Decimal(0)
        return out

    def export(self) -> dict[str, Any]:
        """The accumulator's state as Firestore-ready data (the fold's accumulator documents).

        Shape: ``{"groups": [{"key": [str, ...], "state": <per aggregation>}], "events": int,
        "warning_count": int, "warnings": [str] (at most 20)}``; per aggregation, ``state`` is
        ``count``: int; ``sum``: decimal string; ``max``: decimal string or None;
        ``unique_count``: sorted list of the values as text; ``latest``: ``{"timestamp",
        "created_at", "id", "value"}`` or None; ``weighted_sum``: ``{"total", "moment"}``
        (decimal strings, see ``WeightedSumAccumulator``). Decimals are exact strings, never floats.
        """
        return {
            "groups": [
                {"key": list(key), "state": self._dump(state)} for key, state in sorted(self.groups.items())
            ],
            "events": self.events_counted,
            "warning_count": self.warning_count,
            "warnings": list(self.warnings),
        }

    def absorb(self, exported: Mapping[str, Any]) -> None:
        """Merge a state made by ``export`` (same meter, window and period) into this one.

        Merging is associative and commutative for every aggregation, so the accumulators of
        disjoint sets of events, folded in any order and merged in any order, give the
        quantities of one accumulator fed every event (pinned by
        ``tests/unit/pricing/test_accumulator_state.py``).

        Raises:
            ValueError, KeyError, TypeError: ``exported`` is not a state of this aggregation.

        """
        for group in exported.get("groups") or ():
            key = tuple(str(part) for part in group["key"])
            loaded = self._load(group["state"])
            current = self.groups.get(key)
            self.groups[key] = loaded if current is None else self._merge(current, loaded)
        self.events_counted += int(exported.get("events") or 0)
        self.warning_count += int(exported.get("warning_count") or 0)
        room = _MAX_WARNINGS - len(self.warnings)
        self.warnings.extend(list(exported.get("warnings") or ())[: max(room, 0)])

    def stored_values(self) -> int:
        """How many values the state keeps (the distinct values of ``unique_count``; else groups)."""
        return len(self.groups)

    @abstractmethod
    def _initial(self) -> StateT: ...

    @abstractmethod
    def _fold(self, state: StateT, event: UsageEvent, value: Any) -> StateT: ...

    @abstractmethod
    def _result(self, state: StateT) -> Decimal: ...

    @abstractmethod
    def _dump(self, state: StateT) -> Any: ...

    @abstractmethod
    def _load(self, data: Any) -> StateT: ...

    @abstractmethod
    def _merge(self, first: StateT, second: StateT) -> StateT: ...


def _group_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class CountAccumulator(Accumulator[int]):
    """``count``: the number of events in the window."""

    aggregation = "count"
    needs_value = False

    def _initial(self) -> int:
        return 0

    def _fold(self, state: int, event: UsageEvent, value: Any) -> int:
        return state + 1

    def _result(self, state: int) -> Decimal:
        return Decimal(state)

    def _dump(self, state: int) -> Any:
        return state

    def _load(self, data: Any) -> int:
        return int(data)

    def _merge(self, first: int, second: int) -> int:
        return first + second


class SumAccumulator(Accumulator[Decimal]):
    """``sum``: the exact Decimal sum of the field."""

    aggregation = "sum"

    def _initial(self) -> Decimal:
        return Decimal(0)

    def _fold(self, state: Decimal, event: UsageEvent, value: Any) -> Decimal:
        return _add(state, value)

    def _result(self, state: Decimal) -> Decimal:
        return state

    def _dump(self, state: Decimal) -> Any:
        return str(state)

    def _load(self, data: Any) -> Decimal:
        return Decimal(str(data))

    def _merge(self, first: Decimal, second: Decimal) -> Decimal:
        return _add(first, second)


class MaxAccumulator(Accumulator[Decimal | None]):
    """``max``: the largest value of the field (0 when nothing counted)."""

    aggregation = "max"

    def _initial(self) -> Decimal | None:
        return None

    def _fold(self, state: Decimal | None, event: UsageEvent, value: Any) -> Decimal | None:
        return value if state is None or value > state else state

    def _result(self, state: Decimal | None) -> Decimal:
        return state if state is not None else Decimal(0)

    def _dump(self, state: Decimal | None) -> Any:
        return None if state is None else str(state)

    def _load(self, data: Any) -> Decimal | None:
        return None if data is None else Decimal(str(data))

    def _merge(self, first: Decimal | None, second: Decimal | None) -> Decimal | None:
        if first is None or (second is not None and second > first):
            return second
        return first


class UniqueCountAccumulator(Accumulator[set[str]]):
    """``unique_count``: the number of distinct values of the field, compared as text."""

    aggregation = "unique_count"
    numeric = False

    def _initial(self) -> set[str]:
        return set()

    def _fold(self, state: set[str], event: UsageEvent, value: Any) -> set[str]:
        state.add(_group_value(value))
        return state

    def _result(self, state: set[str]) -> Decimal:
        return Decimal(len(state))

    def _dump(self, state: set[str]) -> Any:
        return sorted(state)

    def _load(self, data: Any) -> set[str]:
        return {str(value) for value in data}

    def _merge(self, first: set[str], second: set[str]) -> set[str]:
        return first | second

    def stored_values(self) -> int:
        """The distinct values kept, over every group (the fold's limit applies to this)."""
        return sum(len(values) for values in self.groups.values())


_LatestState = tuple[datetime, datetime, str, Decimal] | None


class LatestAccumulator(Accumulator[_LatestState]):
    """``latest``: the newest event's value; ties by creation time then id; negatives count as 0."""

    aggregation = "latest"

    def _initial(self) -> _LatestState:
        return None

    def _fold(self, state: _LatestState, event: UsageEvent, value: Any) -> _LatestState:
        created = event.created_at or event.timestamp
        candidate = (event.timestamp, created, event.id, value)
        if state is None or candidate[:3] > state[:3]:
            return candidate
        return state

    def _result(self, state: _LatestState) -> Decimal:
        if state is None:
            return Decimal(0)
        return max(state[3], Decimal(0))

    def _dump(self, state: _LatestState) -> Any:
        if state is None:
            return None
        timestamp, created, event_id, value = state
        return {"timestamp": timestamp, "created_at": created, "id": event_id, "value": str(value)}

    def _load(self, data: Any) -> _LatestState:
        if data is None:
            return None
        return (data["timestamp"], data["created_at"], str(data["id"]), Decimal(str(data["value"])))

    def _merge(self, first: _LatestState, second: _LatestState) -> _LatestState:
        if first is None or (second is not None and second[:3] > first[:3]):
            return second
        return first


class WeightedSumAccumulator(Accumulator[tuple[Decimal, Decimal]]):
    """``weighted_sum``: time-weighted average of a running level built from deltas.

    The level starts at 0 at the window's start; each event adds its value at its timestamp.
    Result: ``sum(level_i x seconds_i) / period_seconds`` where ``seconds_i`` runs to the next
    event or the window's end (Lago's ``weighted_sum``; seconds as the unit of time), rounded to
    12 decimal places.

    State (order-free, so it folds hour by hour and merges): ``total = sum(v_j)`` and
    ``moment = sum(v_j x (t_j - period_start))`` in exact seconds. Derivation: with events sorted
    ``t_1 <= ... <= t_n`` and ``t_(n+1)`` the window's end ``E``, the level after event ``i`` is
    ``L_i = v_1 + ... + v_i``, and
    ``area = sum_i L_i (t_(i+1) - t_i) = sum_i sum_(j<=i) v_j (t_(i+1) - t_i)
    = sum_j v_j sum_(i>=j) (t_(i+1) - t_i) = sum_j v_j (E - t_j)``
    ``= total x (E - period_start) - moment``: each delta weighs from its timestamp to the end,
    whatever the order the events arrive in. Everything is exact (``EXACT``: 100 digits, values
    bounded by ``to_quantity``), so the result equals the sorted level-by-level computation
    exactly (``tests/unit/pricing/test_accumulator_state.py`` replays Lago's cases both ways). The
    window's end enters only when the result is read, so a fold needs no knowledge of it.
    """

    aggregation = "weighted_sum"

    def _initial(self) -> tuple[Decimal, Decimal]:
        return (Decimal(0), Decimal(0))

    def _fold(self, state: tuple[Decimal, Decimal], event: UsageEvent, value: Any) -> tuple[Decimal, Decimal]:
        offset = _seconds(event.timestamp - self.period_start)
        return (_add(state[0], value), _add(state[1], EXACT.multiply(value, offset)))

    def _result(self, state: tuple[Decimal, Decimal]) -> Decimal:
        period_seconds = _seconds(self.period_end - self.period_start)
        if period_seconds <= 0:
            return Decimal(0)
        total, moment = state
        with localcontext(EXACT):
            area = total * _seconds(self.end - self.period_start) - moment
            return (area / period_seconds).quantize(TWELVE_PLACES, rounding=ROUND_HALF_UP)

    def _dump(self, state: tuple[Decimal, Decimal]) -> Any:
        return {"total": str(state[0]), "moment": str(state[1])}

    def _load(self, data: Any) -> tuple[Decimal, Decimal]:
        return (Decimal(str(data["total"])), Decimal(str(data["moment"])))

    def _merge(
        self, first: tuple[Decimal, Decimal], second: tuple[Decimal, Decimal]
    ) -> tuple[Decimal, Decimal]:
        return (_add(first[0], second[0]), _add(first[1], second[1]))


def _seconds(delta: timedelta) -> Decimal:
    """Exact seconds of ``delta`` as a Decimal (microseconds kept, no float)."""
    whole = delta.days * 86400 + delta.seconds
    return Decimal(whole) + Decimal(delta.microseconds).scaleb(-6)


ACCUMULATORS: dict[str, type[Accumulator[Any]]] = {
    cls.aggregation: cls
    for cls in (
        CountAccumulator,
        SumAccumulator,
        MaxAccumulator,
        UniqueCountAccumulator,
        LatestAccumulator,
        WeightedSumAccumulator,
    )
}


def make_accumulator(
    meter: Meter,
    start: datetime,
    end: datetime,
    *,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
) -> Accumulator[Any]:
    """Return the accumulator for ``meter.aggregation`` over the window ``[start, end)``.

    ``period_start``/``period_end`` are the whole billing period when the window is clipped to a
    subscription that started or ended inside it (``weighted_sum`` averages over the period).

    Raises:
        KeyError: never for a parsed ``Meter`` (``Meter.parse`` rejects unknown aggregations).

    """
    return ACCUMULATORS[meter.aggregation](
        meter, start, end, period_start=period_start, period_end=period_end
    )
