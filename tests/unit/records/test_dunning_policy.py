"""``DunningPolicy`` directly (issue 9, item 7): parsing the tenant's ``dunning`` map, and ``plan``.

``plan(overdue, done)`` is the whole dunning rule for one invoice: which steps to take now, given
how long it has been overdue and the steps already recorded on it. Defaults: reminders on days
1, 7 and 14, suspension after 21 days, uncollectible after 60 (Stripe Billing's usual cadence).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billing.errors import DataError
from billing.records import DunningPolicy

DEFAULTS = DunningPolicy()


def plan(policy: DunningPolicy, days: float, *done: str, **records: Any) -> list[str]:
    """The steps ``policy`` takes ``days`` after the due date, ``done`` steps already recorded."""
    return policy.plan(timedelta(days=days), {**{step: {} for step in done}, **records})


def test_absent_map_and_absent_keys_take_the_defaults() -> None:
    expected = ((1, 7, 14), 21, 60, True)
    raws: tuple[object, ...] = (None, {})
    for raw in raws:
        policy = DunningPolicy.parse(raw, "tenant acme")
        got = (
            policy.reminder_days,
            policy.suspend_after_days,
            policy.uncollectible_after_days,
            policy.enabled,
        )
        assert got == expected
    assert DunningPolicy.parse(None, "tenant acme") == DEFAULTS


def test_reminder_days_are_sorted_and_deduplicated_and_null_disables_a_step() -> None:
    policy = DunningPolicy.parse(
        {"reminder_days": [14, 0, 3, 14, 3650], "suspend_after_days": None, "uncollectible_after_days": None},
        "tenant acme",
    )
    assert policy.reminder_days == (0, 3, 14, 3650)
    assert policy.suspend_after_days is None and policy.uncollectible_after_days is None
    assert DunningPolicy.parse({"reminder_days": []}, "t").reminder_days == ()


@pytest.mark.parametrize(
    ("enabled", "on"), [(True, True), (False, False), ("true", False), (1, False), (None, False)]
)
def test_enabled_is_exactly_true(enabled: object, on: bool) -> None:
    assert DunningPolicy.parse({"enabled": enabled}, "t").enabled is on


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("weekly", "'dunning' must be a map"),
        ([1, 7], "'dunning' must be a map"),
        ({"reminder_days": "1,7"}, "reminder_days must be a list"),
        ({"reminder_days": [1.5]}, "reminder_days must be whole days 0-3650"),
        ({"reminder_days": [True]}, "reminder_days must be whole days 0-3650"),
        ({"reminder_days": [-1]}, "reminder_days must be whole days 0-3650"),
        ({"suspend_after_days": 3651}, "suspend_after_days must be whole days 0-3650"),
        ({"suspend_after_days": "21"}, "suspend_after_days must be whole days 0-3650"),
        ({"uncollectible_after_days": False}, "uncollectible_after_days must be whole days 0-3650"),
    ],
)
def test_a_malformed_map_is_an_invalid_field(raw: object, message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        DunningPolicy.parse(raw, "tenant acme")
    assert caught.value.code == "invalid_field"
    assert str(caught.value).startswith("tenant acme: ")


@pytest.mark.parametrize(
    ("days", "done", "steps"),
    [
        (-3, (), []),  # not yet due
        (0, (), []),
        (0.99, (), []),
        (1, (), ["reminder_1"]),
        (6.9, ("reminder_1",), []),
        (7, ("reminder_1",), ["reminder_7"]),
        (13, (), ["reminder_7"]),  # a missed reminder is not made up: the latest due only
        (13, ("reminder_7",), []),  # and an earlier one is never sent after a later one
        (14, ("reminder_1", "reminder_7"), ["reminder_14"]),
        (20.9, ("reminder_14",), []),
        (21, ("reminder_14",), ["suspension"]),
        (21, (), ["suspension"]),  # reminder 14 is not later than the suspension: not sent
        (40, ("suspension",), []),
        (59.9, ("suspension", "reminder_14"), []),
        (60, ("suspension",), ["uncollectible"]),
        (60, (), ["suspension", "uncollectible"]),
        (365, ("suspension", "uncollectible"), ["uncollectible"]),  # the run skips uncollectible invoices
    ],
)
def test_default_plan(days: float, done: tuple[str, ...], steps: list[str]) -> None:
    assert plan(DEFAULTS, days, *done) == steps


def test_a_queued_suspension_notice_is_sent_until_recorded() -> None:
    queued = {"suspension": {"notice": "outbox-1"}}
    assert plan(DEFAULTS, 25, **queued) == ["suspension_notice"]
    assert plan(DEFAULTS, 25, "suspension_notice", **queued) == []
    assert plan(DEFAULTS, 61, **queued) == ["suspension_notice", "uncollectible"]
    assert plan(DEFAULTS, 25, suspension={"notice": None}) == []
    assert plan(DEFAULTS, 25, suspension="not a map") == []


def test_a_reminder_later_than_the_suspension_is_still_sent() -> None:
    policy = DunningPolicy(reminder_days=(3, 30), suspend_after_days=10, uncollectible_after_days=None)
    assert plan(policy, 3) == ["reminder_3"]
    assert plan(policy, 12, "reminder_3") == ["suspension"]
    assert plan(policy, 31, "suspension") == ["reminder_30"]
    assert plan(policy, 9999, "suspension", "reminder_30") == []  # never written off


def test_without_suspension_reminders_continue_and_without_steps_nothing_happens() -> None:
    no_suspension = DunningPolicy(reminder_days=(7, 28), suspend_after_days=None, uncollectible_after_days=90)
    assert plan(no_suspension, 28, "reminder_7") == ["reminder_28"]
    assert plan(no_suspension, 90) == ["uncollectible"]
    nothing = DunningPolicy(reminder_days=(), suspend_after_days=None, uncollectible_after_days=None)
    assert plan(nothing, 10_000) == []


def test_a_disabled_policy_plans_nothing() -> None:
    off = DunningPolicy.parse({"enabled": False}, "t")
    assert [plan(off, days) for days in (1, 21, 60, 1000)] == [[], [], [], []]


def test_day_zero_steps_are_due_on_the_due_date() -> None:
    policy = DunningPolicy(reminder_days=(0,), suspend_after_days=0, uncollectible_after_days=None)
    assert plan(policy, 0) == ["suspension"]
    assert plan(policy, -0.001) == []
