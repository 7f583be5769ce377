"""Usage accumulators: the hourly fold's documents (issue 13; contract "Usage accumulators").

Layout (everything under ``tenants/{t}``; an extension of the contract's layout):

- ``usage_folds/watermark``: ``folded_until`` (timestamp): every event whose *fold time*
  (``billing.pricing.usage.fold_time``: ``max(timestamp, ingested_at)``, or its timestamp) is
  before it is in the accumulators. Absent until the tenant's first fold: billing then reads
  raw events only.
- ``usage_folds/{start}`` (``start`` = ``YYYYMMDDTHHMMSSffffffZ`` of the window's start): one
  *fold window* ``[start, end)``, created once, whatever the number of runs that race for it
  (the first fixes ``end``; a retry or a concurrent run folds the same window): ``start``,
  ``end``, ``status`` (``running``/``done``), ``run_id``, counters.
- ``usage_accumulators/{subscription_id}@{period key}@{meter}``: one per (subscription,
  meter, billing period): ``subscription_id``, ``customer_id``, ``meter``, ``aggregation``,
  ``period_start``/``period_end``, ``state`` (``Accumulator.export``: per group the
  aggregation's state, events counted, warnings), ``folded_until`` (the end of the last fold
  window applied: the marker that makes a fold idempotent), ``overflow`` (the state outgrew
  its limit and was dropped: billing reads this subscription's events raw),
  ``late_unbilled`` (events ingested after the period's invoice was priced and final: not on
  any invoice, see ``billing.runs.fold_usage``), ``updated_at``.
- ``usage_folds/hours-{YYYYMM}``: ``hours``: per UTC hour of that month (``YYYYMMDDHH``,
  ``billing.store.usage.hour_key``) of the events' *timestamps*, how many event documents the
  finished fold windows read (malformed and unbilled ones included), added once, in the
  transaction that moves the watermark (``finish_fold``). Billing's completeness check compares
  it with a COUNT of the events (``billing.runs.usage_source``).
- ``usage_routing/{customer_id}``: ``routing`` (the fingerprint of the customer's
  subscriptions and meters when its events were last folded), ``since`` (start of the first
  fold window with that fingerprint). Billing uses a customer's accumulators for a period only
  when the fingerprint is unchanged since before the period started.

Limits: an accumulator document holds at most ``UNIQUE_VALUES_LIMIT`` distinct values
(``unique_count``) and must fit Firestore's 1 MiB; beyond either, it keeps ``overflow`` and no
state, and that subscription's period is billed from raw events (correct, just not cheaper).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.store.base import StoreBase, Transaction
from billing.store.sizes import MAX_DOCUMENT_BYTES, fits
from billing.store.usage import hour_key

FOLDS = "usage_folds"
ACCUMULATORS = "usage_accumulators"
ROUTING = "usage_routing"
WATERMARK_ID = "watermark"
HOURS_PREFIX = "hours-"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The start of a tenant's first fold window (every event ingested before the first fold)."""
UNIQUE_VALUES_LIMIT = 10_000
"""Distinct ``unique_count`` values one accumulator keeps before it overflows to raw billing."""
APPLY_BATCH = 100
"""Accumulators updated per transaction (each also reads its period's invoice)."""
FINAL_STATUSES = frozenset({"open", "paid", "void", "uncollectible", "deleted"})
"""Invoice statuses after which a period's amounts never change (everything but ``draft``)."""


def fold_id(start: datetime) -> str:
    """The id of the fold window starting at ``start`` (aware): ``YYYYMMDDTHHMMSSffffffZ``."""
    return start.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def accumulator_id(subscription_id: str, period_key: str, meter: str) -> str:
    """``{subscription_id}@{period key (YYYYMMDD)}@{meter code}``."""
    return f"{subscription_id}@{period_key}@{meter}"


@dataclass(frozen=True)
class FoldWindow:
    """One fold window ``[start, end)`` of fold times, named ``fold_id``."""

    fold_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class AccumulatorUpdate:
    """What one fold adds to one accumulator document.

    ``identity``: the document's fixed fields (subscription, customer, meter, aggregation,
    period bounds). ``merge(existing_state or None) -> (state, stored_values)`` merges this
    fold's state into the stored one (``billing.pricing.aggregation.Accumulator``).
    ``invoice_id``: the period's invoice, ``None`` when it cannot exist yet (not read).
    ``arrivals``: when this update's events arrived (``billing.pricing.usage.arrival_time``;
    the late-event policy).
    """

    doc_id: str
    invoice_id: str | None
    identity: Mapping[str, Any]
    merge: Callable[[Mapping[str, Any] | None], tuple[dict[str, Any], int]]
    arrivals: Sequence[datetime] = field(default=())


@dataclass
class AppliedFold:
    """What ``apply_accumulators`` did: documents written, already applied, late events unbilled."""

    applied: int = 0
    already: int = 0
    late_unbilled: int = 0
    late_invoices: list[str] = field(default_factory=list)


class AccumulatorStore(StoreBase):
    """Reads and writes of the fold's documents (see the module docstring)."""

    def fold_watermark(self, tenant_id: str) -> datetime | None:
        """The tenant's ``folded_until``, or ``None`` before its first fold (one read)."""
        snapshot = self._get(self._doc(tenant_id, FOLDS, WATERMARK_ID))
        value = (snapshot.to_dict() or {}).get("folded_until") if snapshot.exists else None
        return value if isinstance(value, datetime) else None

    def begin_fold(self, tenant_id: str, until: datetime, run_id: str) -> FoldWindow | None:
        """The fold window to work on: the pending one, or ``[watermark, until)`` created now.

        In one transaction: a window that starts at the watermark and exists already (a run
        that died, or one running now) is returned as it is, so every run folds the same
        events; else a new window is created, unless ``until`` is not after the watermark
        (``None``: nothing to fold).
        """

        def body(tx: Transaction) -> FoldWindow | None:
            mark = tx.get(self._doc(tenant_id, FOLDS, WATERMARK_ID))
            start = (mark.to_dict() or {}).get("folded_until") if mark.exists else None
            start = start if isinstance(start, datetime) else EPOCH
            ref = self._doc(tenant_id, FOLDS, fold_id(start))
            existing = tx.get(ref)
            if existing.exists:
                end = (existing.to_dict() or {})["end"]
                return FoldWindow(fold_id(start), start, end)
            if until <= start:
                return None
            tx.create(ref, {"start": start, "end": until, "status": "running", "run_id": run_id})
            return FoldWindow(fold_id(start), start, until)

        return self.run_transaction(body)

    def record_routing(self, tenant_id: str, window: FoldWindow, routing: Mapping[str, str]) -> None:
        """Record each customer's routing fingerprint; ``since`` moves when it changed.

        A first record gets ``since`` = ``EPOCH`` (nothing of the customer was folded before);
        a changed one the window's start. An unchanged one (a retried fold) is left alone.
        """
        refs = [self._doc(tenant_id, ROUTING, customer_id) for customer_id in sorted(routing)]
        for start in range(0, len(refs), APPLY_BATCH):
            chunk = refs[start : start + APPLY_BATCH]

            def body(tx: Transaction, chunk: list[Any] = chunk) -> None:
                current = tx.get_all(chunk)
                for ref in chunk:
                    data = (current[ref.id].to_dict() or {}) if current[ref.id].exists else {}
                    if data.get("routing") != routing[ref.id]:
                        # No record yet: none of its events was ever folded, so the fingerprint
                        # held for every earlier window (vacuously).
                        since = window.start if data else EPOCH
                        tx.set(ref, {"routing": routing[ref.id], "since": since, "fold_id": window.fold_id})

            self.run_transaction(body)

    def apply_accumulators(
        self, tenant_id: str, window: FoldWindow, updates: Sequence[AccumulatorUpdate], now: datetime
    ) -> AppliedFold:
        """Merge each update into its accumulator once, in transactions of ``APPLY_BATCH``.

        An accumulator whose ``folded_until`` is at or after the window's end has this window
        already (a retry, or a concurrent run that committed first): left as it is. The
        period's invoice is read in the same transaction: events ingested after a final
        invoice was priced (its ``finalized_at``, else ``created_at``) are counted in
        ``late_unbilled``.
        """
        outcome = AppliedFold()
        ordered = sorted(updates, key=lambda u: u.doc_id)
        for start in range(0, len(ordered), APPLY_BATCH):
            chunk = ordered[start : start + APPLY_BATCH]
            result = self.run_transaction(
                partial(self._apply_chunk, tenant_id=tenant_id, window=window, chunk=chunk, now=now)
            )
            outcome.applied += result.applied
            outcome.already += result.already
            outcome.late_unbilled += result.late_unbilled
            outcome.late_invoices.extend(result.late_invoices)
        return outcome

    def _apply_chunk(
        self,
        tx: Transaction,
        tenant_id: str,
        window: FoldWindow,
        chunk: Sequence[AccumulatorUpdate],
        now: datetime,
    ) -> AppliedFold:
        """One transaction of ``apply_accumulators`` (reads first, then writes)."""
        refs = [self._doc(tenant_id, ACCUMULATORS, u.doc_id) for u in chunk]
        invoice_ids = sorted({u.invoice_id for u in chunk if u.invoice_id is not None})
        refs_of_invoices = [self._doc(tenant_id, "invoices", invoice_id) for invoice_id in invoice_ids]
        invoices = tx.get_all(refs_of_invoices) if refs_of_invoices else {}
        stored = tx.get_all(refs)
        outcome = AppliedFold()
        for update, ref in zip(chunk, refs, strict=True):
            data = (stored[ref.id].to_dict() or {}) if stored[ref.id].exists else {}
            until = data.get("folded_until")
            if isinstance(until, datetime) and until >= window.end:
                outcome.already += 1
                continue
            late = (
                0
                if update.invoice_id is None
                else _late_unbilled(invoices[update.invoice_id], update.arrivals)
            )
            if late and update.invoice_id is not None:
                outcome.late_unbilled += late
                outcome.late_invoices.append(update.invoice_id)
            tx.set(ref, self._merged(ref, data, update, window, now, late))
            outcome.applied += 1
        return outcome

    @staticmethod
    def _merged(
        ref: Any,
        data: Mapping[str, Any],
        update: AccumulatorUpdate,
        window: FoldWindow,
        now: datetime,
        late: int,
    ) -> dict[str, Any]:
        """The accumulator document after ``update`` (overflowed: no state, see the module)."""
        overflow = bool(data.get("overflow"))
        state: dict[str, Any] | None = None
        if not overflow:
            state, values = update.merge(data.get("state") if data else None)
            overflow = values > UNIQUE_VALUES_LIMIT
        document: dict[str, Any] = {
            **update.identity,
            "state": None if overflow else state,
            "overflow": overflow,
            "folded_until": window.end,
            "fold_id": window.fold_id,
            "late_unbilled": int(data.get("late_unbilled") or 0) + late,
            "updated_at": now,
        }
        path = ref.path.split("/")
        if not overflow and not fits(path, document):
            document.update(state=None, overflow=True)
        return document

    def finish_fold(
        self,
        tenant_id: str,
        window: FoldWindow,
        summary: Mapping[str, Any],
        hours: Mapping[str, int] | None = None,
    ) -> bool:
        """Move the watermark to the window's end (once), mark the window ``done``, add ``hours``.

        ``hours``: events read by the window per UTC hour of their timestamp (``YYYYMMDDHH``),
        added to the ``hours-{YYYYMM}`` documents in the same transaction (so exactly once).
        Returns False when another run had done it already.
        """
        by_month: dict[str, dict[str, Any]] = {}
        for hour, n in sorted((hours or {}).items()):
            if n:
                by_month.setdefault(hour[:6], {})[hour] = firestore.Increment(n)

        def body(tx: Transaction) -> bool:
            mark_ref = self._doc(tenant_id, FOLDS, WATERMARK_ID)
            mark = tx.get(mark_ref)
            current = (mark.to_dict() or {}).get("folded_until") if mark.exists else None
            if isinstance(current, datetime) and current >= window.end:
                return False
            tx.set(mark_ref, {"folded_until": window.end, "fold_id": window.fold_id})
            tx.update(self._doc(tenant_id, FOLDS, window.fold_id), {"status": "done", **summary})
            for month, counts in by_month.items():
                tx.set(self._doc(tenant_id, FOLDS, f"{HOURS_PREFIX}{month}"), {"hours": counts}, merge=True)
            return True

        return self.run_transaction(body)

    def folded_hours(self, tenant_id: str, start: datetime, end: datetime) -> Counter[str]:
        """Events read by the finished folds per UTC hour key, for the hours in ``[start, end)``.

        One read per UTC month the range touches (``hours-{YYYYMM}``).
        """
        months: list[str] = []
        cursor = datetime(start.astimezone(UTC).year, start.astimezone(UTC).month, 1, tzinfo=UTC)
        while cursor < end:
            months.append(cursor.strftime("%Y%m"))
            cursor = datetime(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1, tzinfo=UTC)
        refs = [self._doc(tenant_id, FOLDS, f"{HOURS_PREFIX}{month}") for month in months]
        first, last = hour_key(start), hour_key(end)
        found: Counter[str] = Counter()
        for snapshot in self._get_all(refs):
            for hour, n in ((snapshot.to_dict() or {}).get("hours") or {}).items() if snapshot.exists else ():
                if first <= hour < last:
                    found[hour] += int(n)
        return found

    def read_accumulators(self, tenant_id: str, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The accumulator documents that exist among ``doc_ids`` (one read each)."""
        refs = [self._doc(tenant_id, ACCUMULATORS, doc_id) for doc_id in doc_ids]
        return {s.id: s.to_dict() or {} for s in self._get_all(refs) if s.exists}

    def read_routing(self, tenant_id: str, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The routing records that exist among ``customer_ids`` (one read each)."""
        refs = [self._doc(tenant_id, ROUTING, customer_id) for customer_id in customer_ids]
        return {s.id: s.to_dict() or {} for s in self._get_all(refs) if s.exists}

    def accumulators_of_subscription(self, tenant_id: str, subscription_id: str) -> Iterator[dict[str, Any]]:
        """Every accumulator document of one subscription (admin and tests)."""
        query = self._collection(tenant_id, ACCUMULATORS).where(
            filter=FieldFilter("subscription_id", "==", subscription_id)
        )
        for snapshot in self._stream(query):
            yield {"id": snapshot.id, **(snapshot.to_dict() or {})}


def _late_unbilled(invoice: Any, arrivals: Sequence[datetime]) -> int:
    """Events that arrived after a final invoice of their period was priced (none when not final)."""
    if not invoice.exists:
        return 0
    data = invoice.to_dict() or {}
    # A draft is priced again when it is finalized (generate_invoices); the month close creates
    # open invoices, finalized when created.
    priced = data.get("finalized_at") or data.get("created_at")
    if data.get("status") not in FINAL_STATUSES or not isinstance(priced, datetime):
        return 0
    return sum(1 for moment in arrivals if moment >= priced)


__all__ = [
    "ACCUMULATORS",
    "APPLY_BATCH",
    "EPOCH",
    "FOLDS",
    "MAX_DOCUMENT_BYTES",
    "ROUTING",
    "UNIQUE_VALUES_LIMIT",
    "AccumulatorStore",
    "AccumulatorUpdate",
    "AppliedFold",
    "FoldWindow",
    "accumulator_id",
    "fold_id",
]
