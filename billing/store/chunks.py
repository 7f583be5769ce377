"""Fanned-out runs' records: the run's progress counters, its chunks, and the chunk-scoped reads.

Layout (an extension of the contract's, README "Firestore layout beyond the contract"):

- ``tenants/{t}/billing_runs/{run_id}``: the run record (``billing.store.runs``), plus for a
  fanned-out run ``mode: "fanout"``, ``stage``, ``now`` (the run's clock), ``chunks_total``,
  one ``{stage}_done`` counter per chunked stage (``price``, ``render``, ``deliver``), the
  figures summed over chunks (``generated``, ``skipped``, ``errors``, ``warnings_count``,
  ``events_read``, ``totals`` {currency: minor units}, ``errors_by_stage`` {stage: count}) and
  the plan's ``error_details``;
- ``tenants/{t}/billing_runs/{run_id}/chunks/{index:05d}``: ``subscription_ids`` (at most
  ``CHUNK_SIZE``), ``generation`` (raised by the sweeper), ``attempt`` (the token of the attempt
  holding the chunk: attempt fencing), ``attempts``, ``claimed_at``, ``price_done`` (and the
  results: ``invoices``, a list of ``{customer_id, invoice_id}`` the run created, sorted),
  ``render_done``, ``deliver_done``, and the chunk's lists per stage (``price_error_details``,
  ``price_skips``, ``render_error_details``...: at most ``MAX_LISTED`` each).

Every completion is one transaction that reads the chunk and blindly increments the run
record's counters: the chunk's flag and the run's counters move together, once, and the caller
then reads whether it was the last chunk of the stage (it enqueues the next stage under a fixed
task name). The run record is written once per chunk completion (a few times per second at most
at ``CHUNK_SIZE`` 500).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.api_core.exceptions import FailedPrecondition
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.errors import Conflict, DataError
from billing.pricing.invoicing import InvoiceDraft
from billing.records import Subscription
from billing.store.base import StoreBase, Transaction
from billing.store.catalog import _parsed_subscriptions
from billing.store.sizes import fits

MAX_LISTED = 1000
SUMMED = (
    "generated",
    "skipped",
    "errors",
    "warnings_count",
    "events_read",
    # generate_invoices (billing.runs.fanout.anniversary) and dunning (billing.runs.fanout.dunning)
    "finalized",
    "advanced",
    "reminders_sent",
    "suspended",
    "marked_uncollectible",
    "reactivated",
    "notices_sent",
    "deliveries_retried",
)
"""Figures of a chunk added to the run record's."""
MAPS = ("totals", "errors_by_stage", "draft_totals")
"""Maps of a chunk added key by key to the run record's."""
LISTS = ("error_details", "skips")
"""Lists of a chunk appended to the run record's (capped at ``MAX_LISTED``)."""


def increments(figures: Mapping[str, Any]) -> dict[str, Any]:
    """The run record's ``Increment`` updates for one chunk's ``figures`` (``SUMMED``, ``MAPS``).

    Map keys (currency codes, stage names) become field paths ``totals.GBP``.
    """
    out: dict[str, Any] = {}
    for name in SUMMED:
        if figures.get(name):
            out[name] = firestore.Increment(int(figures[name]))
    for name in MAPS:
        for key, value in (figures.get(name) or {}).items():
            if value:
                out[f"{name}.{key}"] = firestore.Increment(int(value))
    return out


class ChunkStore(StoreBase):
    """Chunk records, run progress and the reads of one chunk (see the module docstring)."""

    def _run_ref(self, tenant_id: str, run_id: str) -> firestore.DocumentReference:
        return self._doc(tenant_id, "billing_runs", run_id)

    def _chunk_ref(self, tenant_id: str, run_id: str, index: int) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._run_ref(tenant_id, run_id).collection("chunks").document(f"{index:05d}")
        )
        return ref

    def read_run(self, tenant_id: str, run_id: str) -> dict[str, Any] | None:
        """The run record, or ``None``."""
        snapshot = self._get(self._run_ref(tenant_id, run_id))
        return snapshot.to_dict() if snapshot.exists else None

    def create_chunks(self, tenant_id: str, run_id: str, chunks: Sequence[Sequence[str]]) -> None:
        """Create the absent chunk records ``0..n-1`` (a re-planned run keeps existing ones)."""
        for start in range(0, len(chunks), 400):
            refs = [
                self._chunk_ref(tenant_id, run_id, i) for i in range(start, min(len(chunks), start + 400))
            ]

            def body(
                tx: Transaction, refs: list[firestore.DocumentReference] = refs, start: int = start
            ) -> None:
                snapshots = tx.get_all(refs)
                for offset, ref in enumerate(refs):
                    if not snapshots[ref.id].exists:
                        tx.create(
                            ref,
                            {
                                "index": start + offset,
                                "subscription_ids": list(chunks[start + offset]),
                                "generation": 0,
                                "attempt": None,
                                "attempts": 0,
                                "price_done": False,
                                "render_done": False,
                                "deliver_done": False,
                            },
                        )

            self.run_transaction(body)

    def read_chunks(self, tenant_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every chunk record of the run, by index."""
        query = self._run_ref(tenant_id, run_id).collection("chunks").order_by("index")
        return [s.to_dict() or {} for s in self._stream(query)]

    def read_chunk(self, tenant_id: str, run_id: str, index: int) -> dict[str, Any] | None:
        """One chunk record, or ``None``."""
        snapshot = self._get(self._chunk_ref(tenant_id, run_id, index))
        return snapshot.to_dict() if snapshot.exists else None

    def claim_chunk(
        self, tenant_id: str, run_id: str, index: int, generation: int, now: datetime, *, claim_ttl: float
    ) -> str | None:
        """Claim chunk ``index`` for a new attempt; return its fencing token, or ``None``.

        ``None`` when the chunk is priced already, unknown, or ``generation`` is older than the
        chunk's (a task the sweeper has replaced). An attempt of the same generation claimed
        less than ``claim_ttl`` seconds ago is alive: ``Conflict`` (409, so the queue retries
        later and then finds the chunk done). Otherwise this attempt takes the chunk over (the
        earlier one is dead or too slow): only the latest token commits (``finish_part``).
        Optimistic (a write conditioned on the update time read), so duplicates never wait on
        each other's locks.

        Raises:
            Conflict: a live attempt holds the chunk.

        """
        ref = self._chunk_ref(tenant_id, run_id, index)
        token = uuid.uuid4().hex
        while True:
            snapshot = self._get(ref)
            data = snapshot.to_dict() or {}
            if not snapshot.exists or data.get("price_done") or generation < int(data.get("generation", 0)):
                return None
            claimed = data.get("claimed_at")
            if (
                data.get("attempt")
                and generation == int(data.get("generation", 0))
                and isinstance(claimed, datetime)
                and (now - claimed).total_seconds() < claim_ttl
            ):
                raise Conflict(f"chunk {index} is being priced by another attempt", code="chunk_busy")
            fields = {
                "attempt": token,
                "attempts": int(data.get("attempts", 0)) + 1,
                "claimed_at": now,
                "generation": generation,
            }
            try:
                self._update(ref, fields, last_update=snapshot.update_time)
                return token
            except FailedPrecondition:
                continue

    def release_claim(self, tenant_id: str, run_id: str, index: int, token: str) -> None:
        """Drop a failed attempt's claim (if still its own), so the queue's retry need not wait."""
        ref = self._chunk_ref(tenant_id, run_id, index)
        snapshot = self._get(ref)
        if snapshot.exists and (snapshot.to_dict() or {}).get("attempt") == token:
            try:
                self._update(ref, {"attempt": None}, last_update=snapshot.update_time)
            except FailedPrecondition:
                pass  # another attempt took it over meanwhile

    def finish_part(
        self,
        tenant_id: str,
        run_id: str,
        index: int,
        stage: str,
        figures: Mapping[str, Any],
        *,
        token: str | None = None,
        chunk_fields: Mapping[str, Any] | None = None,
    ) -> tuple[bool, bool]:
        """Mark chunk ``index`` done for ``stage`` and add ``figures`` to the run, once.

        With ``token`` (the price stage), commits only if the chunk's ``attempt`` is still that
        token (attempt fencing). ``chunk_fields`` and the lists of ``figures`` (``LISTS``) are
        written on the chunk. One atomic write batch: the chunk's update is conditioned on its
        update time as read (optimistic: a concurrent duplicate makes it fail and re-check), the
        run record gets ``Increment``s (blind: chunks never wait on its lock). Returns
        ``(committed, stage_complete)``, ``stage_complete`` read after the commit: every chunk
        done for ``stage`` (also for a duplicate that committed nothing, so it can re-enqueue
        the next stage, whose task name is fixed).
        """
        chunk_ref, run_ref = self._chunk_ref(tenant_id, run_id, index), self._run_ref(tenant_id, run_id)
        flag = f"{stage}_done"
        lists = {f"{stage}_{name}": list(figures[name])[:MAX_LISTED] for name in LISTS if figures.get(name)}
        committed = False
        while True:
            snapshot = self._get(chunk_ref)
            chunk = snapshot.to_dict() or {}
            if chunk.get(flag) or (token is not None and chunk.get("attempt") != token):
                break
            batch = self.db.batch()
            batch.update(
                chunk_ref,
                {**(chunk_fields or {}), **lists, flag: True},
                option=self.db.write_option(last_update_time=snapshot.update_time),
            )
            batch.update(run_ref, {**increments(figures), flag: firestore.Increment(1)})
            try:
                batch.commit()
            except FailedPrecondition:
                continue
            self._count(writes=2)
            committed = True
            break
        run = self.read_run(tenant_id, run_id) or {}
        return committed, int(run.get(flag, 0)) >= int(run.get("chunks_total", 0))

    def update_run_if(
        self, tenant_id: str, run_id: str, expected: Mapping[str, Any], fields: Mapping[str, Any]
    ) -> bool:
        """Update the run record with ``fields`` if its fields equal ``expected``; return whether it did.

        Optimistic (an update conditioned on the update time read, retried on a race), not a
        transaction: concurrent duplicates of a stage's last task all read the run record, and
        read locks that all want to become write locks deadlock in the emulator.
        """
        ref = self._run_ref(tenant_id, run_id)
        while True:
            snapshot = self._get(ref)
            data = snapshot.to_dict() or {}
            if not snapshot.exists or any(data.get(k) != v for k, v in expected.items()):
                return False
            try:
                self._update(ref, fields, last_update=snapshot.update_time)
                return True
            except FailedPrecondition:
                continue

    def raise_generation(self, tenant_id: str, run_id: str, index: int, generation: int) -> bool:
        """Set a chunk's ``generation`` (the sweeper's re-enqueue) unless it is priced or higher.

        The stalled attempt's token is dropped with it, so that attempt can no longer commit.
        """
        ref = self._chunk_ref(tenant_id, run_id, index)

        def body(tx: Transaction) -> bool:
            data = tx.get(ref).to_dict() or {}
            if data.get("price_done") or int(data.get("generation", 0)) >= generation:
                return False
            tx.update(ref, {"generation": generation, "attempt": None})  # fences the stalled attempt out
            return True

        return self.run_transaction(body)

    def running_fanout_runs(self, tenant_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The tenant's fanned-out runs still ``running``: ``(run_id, record)``."""
        query = self._collection(tenant_id, "billing_runs").where(
            filter=FieldFilter("status", "==", "running")
        )
        return [
            (s.id, s.to_dict() or {})
            for s in self._stream(query)
            if (s.to_dict() or {}).get("mode") == "fanout"
        ]

    def prepare_drafts(self, tenant_id: str, drafts: Sequence[InvoiceDraft], run_id: str) -> list[str]:
        """Give due drafts their re-priced amounts and hand them to ``run_id``'s numbering pass.

        A fanned-out ``generate_invoices`` (``billing.runs.fanout.anniversary``) re-prices each
        due draft as the inline run does (``IssuingStore.finalize_drafts``) but leaves the
        numbering to the run's serial pass (``billing.store.numbering_pass``): each invoice still
        ``draft`` with a ``finalize_at`` (not taken over by a person) gets the draft's lines and
        totals, ``finalized_by_run``, ``pdf_uri: None`` and ``numbering_run: run_id``, in one
        transaction per 200. It stays ``draft`` (and due) until the pass numbers it, so a run
        that dies leaves it for the next run. An update that would not fit a document is left
        out. Returns the ids prepared (again on a retry: idempotent).
        """
        done: list[str] = []
        for start in range(0, len(drafts), 200):
            batch = list(drafts[start : start + 200])
            refs = [self._doc(tenant_id, "invoices", d.invoice_id) for d in batch]

            def body(
                tx: Transaction,
                batch: list[InvoiceDraft] = batch,
                refs: list[firestore.DocumentReference] = refs,
            ) -> list[str]:
                snapshots, ids = tx.get_all(refs), []
                for draft, ref in zip(batch, refs, strict=True):
                    stored = snapshots[draft.invoice_id].to_dict() or {}
                    if stored.get("status") != "draft" or stored.get("finalize_at") is None:
                        continue
                    update = {
                        **draft.to_document(),
                        "finalized_by_run": run_id,
                        "pdf_uri": None,
                        "numbering_run": run_id,
                    }
                    if not fits(("tenants", tenant_id, "invoices", draft.invoice_id), {**stored, **update}):
                        continue  # as finalize_drafts: too large to store, it stays a draft
                    tx.update(ref, update)
                    ids.append(draft.invoice_id)
                return ids

            done.extend(self.run_transaction(body))
        return done

    def owned_invoices(self, tenant_id: str, run_id: str, invoice_ids: Sequence[str]) -> dict[str, int]:
        """The existing invoices among ``invoice_ids`` that this fanned-out run is to finish: id -> total.

        ``total``: the stored invoice's (minor units of its currency; an adopted invoice keeps
        the amounts its run priced).

        Those it created (``run_id``), and those an *ended* run left unfinished, which it adopts
        (so a failed run's invoices are numbered, rendered and delivered by the next run of the
        same month instead of waiting forever as drafts):

        - a draft still waiting for another run's numbering pass (``numbering_run`` names a run
          whose record is not ``running``): its ``numbering_run`` becomes this run, in a
          transaction that re-reads it (``adopted_from`` keeps the old run); a pass of the old
          run that is still in flight then skips it, so it is numbered once;
        - an ``open`` invoice numbered by such a run but left without ``pdf_uri`` or with
          ``delivery_pending``: nothing to write, this run renders and delivers it.

        Invoices of the inline close (no ``numbering_run``) and of a run still running are not
        this run's (``already_invoiced``).
        """
        parent = self._collection(tenant_id, "invoices")
        docs = {
            s.id: s.to_dict() or {}
            for s in self._get_all([parent.document(i) for i in invoice_ids])
            if s.exists
        }
        owned = {i for i, d in docs.items() if d.get("run_id") == run_id or d.get("numbering_run") == run_id}
        others = {
            str(d["numbering_run"]) for i, d in docs.items() if i not in owned and d.get("numbering_run")
        }
        ended = {r for r in sorted(others) if (self.read_run(tenant_id, r) or {}).get("status") != "running"}
        waiting: list[str] = []
        for invoice_id, doc in docs.items():
            if invoice_id in owned or doc.get("numbering_run") not in ended:
                continue
            if doc.get("status") == "draft" and doc.get("finalize_at") is None:
                waiting.append(invoice_id)
            elif doc.get("status") == "open" and (not doc.get("pdf_uri") or doc.get("delivery_pending")):
                owned.add(invoice_id)
        for start in range(0, len(waiting), 400):
            owned |= self._adopt(tenant_id, run_id, waiting[start : start + 400], ended)
        return {i: int(docs[i].get("total") or 0) for i in sorted(owned)}

    def _adopt(self, tenant_id: str, run_id: str, invoice_ids: list[str], ended: set[str]) -> set[str]:
        """One transaction of ``owned_invoices``: re-point waiting drafts of ended runs to ``run_id``."""
        refs = [self._doc(tenant_id, "invoices", i) for i in invoice_ids]

        def body(tx: Transaction) -> set[str]:
            snapshots = tx.get_all(refs)
            adopted: set[str] = set()
            for ref in refs:
                data = snapshots[ref.id].to_dict() or {}
                previous = data.get("numbering_run")
                if previous == run_id:
                    adopted.add(ref.id)
                elif data.get("status") == "draft" and previous in ended:
                    tx.update(ref, {"numbering_run": run_id, "adopted_from": previous})
                    adopted.add(ref.id)
                elif data.get("status") == "open" and previous in ended and not data.get("pdf_uri"):
                    adopted.add(ref.id)  # the old pass numbered it meanwhile: render it here
            return adopted

        return self.run_transaction(body)

    def chunk_subscriptions(
        self, tenant_id: str, customer_ids: Iterable[str]
    ) -> list[Subscription | tuple[str, DataError]]:
        """Every subscription of the named customers, any billing time, sorted by id.

        The chunk's customers are a contiguous run of customer ids (see
        ``stream_customer_range_events``): one range query ``min <= customer_id <= max``, the
        subscriptions of other customers in the range dropped.
        """
        wanted = set(customer_ids)
        if not wanted:
            return []
        query = (
            self._collection(tenant_id, "subscriptions")
            .where(filter=FieldFilter("customer_id", ">=", min(wanted)))
            .where(filter=FieldFilter("customer_id", "<=", max(wanted)))
        )
        return _parsed_subscriptions(self._stream(query), wanted)
