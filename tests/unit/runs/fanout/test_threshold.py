"""The fan-out threshold of ``generate_invoices`` and ``dunning`` (``billing.runs.fanout.anniversary``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing.errors import Misconfigured
from billing.runs.fanout.anniversary import (
    DEFAULT_FANOUT_MIN_ITEMS,
    can_fan_out,
    fanout_min_items,
    fans_out,
    hour_key,
)
from billing.runs.fanout.dunning import _customer_chunks, key


@pytest.mark.parametrize(
    ("mode", "items", "dry_run", "single", "expected"),
    [
        ("http", 1000, False, False, True),
        ("cloud_tasks", 5000, False, False, True),
        ("http", 999, False, False, False),  # below the threshold: inline
        ("inline", 10**6, False, False, False),  # no task queue: inline whatever the size
        ("cloud_tasks", 10**6, True, False, False),  # dry runs stay inline
        ("cloud_tasks", 10**6, False, True, False),  # an admin's "invoice it now" stays inline
        ("http", 0, False, False, False),
    ],
)
def test_fans_out_only_with_a_queue_from_the_threshold(
    mode: str, items: int, dry_run: bool, single: bool, expected: bool
) -> None:
    assert fans_out(mode, items, 1000, dry_run=dry_run, single=single) is expected
    assert can_fan_out(mode, dry_run=dry_run, single=single) is (
        mode != "inline" and not dry_run and not single
    )


def test_the_threshold_comes_from_the_environment() -> None:
    assert fanout_min_items({}) == DEFAULT_FANOUT_MIN_ITEMS == 1000
    assert fanout_min_items({"FANOUT_MIN_ITEMS": ""}) == 1000
    assert fanout_min_items({"FANOUT_MIN_ITEMS": "25"}) == 25
    for bad in ("0", "-3", "ten", "1.5", "\udcff"):
        with pytest.raises(Misconfigured):
            fanout_min_items({"FANOUT_MIN_ITEMS": bad})


def test_one_active_run_per_utc_hour_of_as_of() -> None:
    as_of = datetime(2026, 3, 29, 1, 59, tzinfo=UTC)
    assert hour_key(as_of) == "generate_invoices.2026-03-29T01"
    assert hour_key(as_of.astimezone(timezone(timedelta(hours=2)))) == hour_key(as_of)
    assert hour_key(as_of + timedelta(minutes=1)) == "generate_invoices.2026-03-29T02"
    assert key(as_of) == "dunning.2026-03-29T01"


def test_dunning_chunks_keep_each_customer_whole() -> None:
    groups = [["a1"], ["b1", "b2"], ["c1", "c2", "c3", "c4"], ["d1"], ["e1"]]
    assert _customer_chunks(groups, 3) == [["a1", "b1", "b2"], ["c1", "c2", "c3", "c4"], ["d1", "e1"]]
    assert _customer_chunks([], 3) == []
