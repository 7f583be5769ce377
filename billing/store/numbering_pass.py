"""The serial numbering pass of a fanned-out run: gapless numbers in a deterministic order.

A fanned-out month close (``billing.runs.fanout``) creates its invoices unnumbered (``draft``,
``numbering_run`` = the run, ``finalize_at`` null: ``IssuingStore.create_invoices`` with
``numbering_run``). Then ONE pass per tenant numbers them in the order the caller gives, the
inline month close's finalization order: customer id, then invoice id
(``billing.runs.pipeline.build_drafts``), never the order tasks arrived in. Each transaction
takes ``batch`` invoices (default 300): it reads them and the year's sequence document
(``tenants/{t}/invoice_sequences/{YYYY}``), gives each invoice still waiting for this run the
next number with the same fields as an inline finalization (``issuing._Numbering.fields``:
``open``, ``number``, ``sequence``, ``issued_at`` and ``due_at`` from the run's clock), and
records the sequence once. The sequence document is written once per transaction, a few times
per second. An invoice numbered already (a duplicate pass, a continuation after a lost answer)
is skipped, so any number of overlapping passes keep the numbers gapless and in order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from billing.records import Tenant
from billing.store.base import Transaction
from billing.store.issuing import IssuingStore, _Numbering

NUMBER_BATCH = 300
"""Invoices per numbering transaction (Firestore allows 500 writes per commit)."""


class NumberingPassStore(IssuingStore):
    """``number_pending``: one run's numbering pass (see the module docstring)."""

    def number_pending(
        self,
        tenant: Tenant,
        run_id: str,
        invoice_ids: Sequence[str],
        *,
        start: int,
        now: datetime,
        delivery_pending: bool,
        budget_seconds: float,
        batch: int = NUMBER_BATCH,
    ) -> tuple[int, int]:
        """Number ``invoice_ids[start:]`` in order until done or past ``budget_seconds``.

        Returns ``(next_start, numbered)``: ``next_start == len(invoice_ids)`` when the pass is
        complete, else where a continuation starts. ``numbered`` counts the invoices this call
        numbered. ``delivery_pending`` as in ``create_invoices``.
        """
        numbering = self._numbering(tenant, now)
        began, position, numbered = time.monotonic(), start, 0
        while position < len(invoice_ids):
            if time.monotonic() - began > budget_seconds:
                break
            ids = list(invoice_ids[position : position + batch])

            def body(tx: Transaction, ids: list[str] = ids) -> int:
                return self._number_batch(tx, numbering, run_id, ids, delivery_pending)

            numbered += self.run_transaction(body)
            position += len(ids)
        return position, numbered

    def _number_batch(
        self, tx: Transaction, numbering: _Numbering, run_id: str, ids: list[str], delivery_pending: bool
    ) -> int:
        """One transaction of ``number_pending``; returns how many it numbered."""
        refs = [self._doc(numbering.tenant.id, "invoices", i) for i in ids]
        snapshots = tx.get_all(refs)
        last = numbering.last(tx)
        first = last
        for invoice_id, ref in zip(ids, refs, strict=True):
            data: dict[str, Any] = snapshots[invoice_id].to_dict() or {}
            if data.get("status") != "draft" or data.get("numbering_run") != run_id:
                continue
            last += 1
            update = numbering.fields(last)
            if delivery_pending:
                update["delivery_pending"] = True
            tx.update(ref, update)
        if last != first:
            numbering.record(tx, last)
        return last - first
