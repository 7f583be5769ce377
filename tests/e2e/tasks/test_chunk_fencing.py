"""Attempt fencing of chunk claims, and the sweeper's new generations (real Firestore emulator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore

from billing.errors import Conflict
from billing.runs.fanout.stages import Worker
from billing.runs.fanout.sweeper import STALL_AFTER, sweep
from billing.store.firestore_store import BillingStore
from billing.tasks import InlineQueue, Task
from tests import factories as f

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def setup_run(store: BillingStore, db: firestore.Client) -> None:
    f.tenant(db, "acme")
    store.write_run(
        "acme",
        "run1",
        {
            "mode": "fanout",
            "status": "running",
            "stage": "price",
            "stage_at": NOW,
            "started_at": NOW,
            "chunks_total": 2,
        },
    )
    store.create_chunks("acme", "run1", [["s1", "s2"], ["s3"]])


def test_a_retry_overlapping_a_live_attempt_cannot_commit_twice(db: firestore.Client) -> None:
    store = BillingStore(db)
    setup_run(store, db)
    first = store.claim_chunk("acme", "run1", 0, 0, NOW, claim_ttl=960)
    assert first is not None
    with pytest.raises(Conflict):  # a duplicate while the first attempt is alive
        store.claim_chunk("acme", "run1", 0, 0, NOW + timedelta(seconds=5), claim_ttl=960)
    # the first attempt hangs past the claim's TTL: the retry takes over
    second = store.claim_chunk("acme", "run1", 0, 0, NOW + timedelta(seconds=1000), claim_ttl=960)
    assert second is not None and second != first
    assert store.finish_part("acme", "run1", 0, "price", {"generated": 2}, token=first) == (False, False)
    assert store.finish_part("acme", "run1", 0, "price", {"generated": 2}, token=second) == (True, False)
    assert store.finish_part("acme", "run1", 0, "price", {"generated": 2}, token=second) == (False, False)
    run = store.read_run("acme", "run1") or {}
    assert (run["generated"], run["price_done"]) == (2, 1)
    # a failed attempt releases its claim: the retry need not wait for the TTL
    third = store.claim_chunk("acme", "run1", 1, 0, NOW, claim_ttl=960)
    assert third is not None
    store.release_claim("acme", "run1", 1, third)
    assert store.claim_chunk("acme", "run1", 1, 0, NOW, claim_ttl=960) is not None


def test_the_sweeper_gives_stalled_chunks_a_new_generation(db: firestore.Client) -> None:
    store = BillingStore(db)
    setup_run(store, db)
    sent: list[Task] = []

    class Recording(InlineQueue):
        def enqueue(self, task: Task) -> None:
            sent.append(task)

    queue = Recording(lambda body: None)
    old = store.claim_chunk("acme", "run1", 0, 0, NOW, claim_ttl=960)
    worker = Worker(store, queue, None, clock=lambda: NOW + STALL_AFTER + timedelta(minutes=1))
    assert sweep(worker, "acme")["reenqueued"] == 2
    assert sorted(t.name for t in sent) == ["run1-price-acme-0-g1", "run1-price-acme-1-g1"]
    assert store.claim_chunk("acme", "run1", 0, 0, NOW, claim_ttl=960) is None  # the old task is refused
    assert store.finish_part("acme", "run1", 0, "price", {}, token=old or "") == (False, False)
    assert store.claim_chunk("acme", "run1", 0, 1, NOW, claim_ttl=960) is not None
    late = Worker(store, queue, None, clock=lambda: NOW + timedelta(hours=7))
    assert sweep(late, "acme")["failed"] == 1
    assert (store.read_run("acme", "run1") or {})["status"] == "failed"
