"""Invoice creation, numbering, finalization and discarded drafts: the writes that must never duplicate.

``create_invoices`` creates invoices whose ids are deterministic inside a transaction, reading
each id first and creating only the absent ones (``create`` also carries an exists=false
precondition), and, for finalized invoices, assigns gapless numbers from the tenant's yearly
sequence document (``tenants/{t}/invoice_sequences/{YYYY}``, ``last``: the last sequence number
issued that year) in the same commit. It works in batches (default 200 invoices per
transaction) so the sequence document is written once per batch, not once per invoice
(Firestore sustains about one write per second on a single document). Every invoice is measured
first (``billing.store.sizes``); one too large to store is rejected alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from billing.errors import Conflict, DataError, echo
from billing.logs import get_logger
from billing.pricing.invoicing import InvoiceDraft
from billing.pricing.numbering import format_invoice_number, sequence_year
from billing.records import Invoice, Tenant
from billing.store.base import StoreBase, Transaction
from billing.store.invoices import history_entry
from billing.store.sizes import (
    TRANSACTION_BYTES,
    byte_batches,
    firestore_document_size,
    fits,
    invoice_size,
)

INVOICE_BATCH_SIZE = 200
log = get_logger("billing.store")
Sized = list[tuple[tuple[InvoiceDraft, dict[str, Any]], int]]


@dataclass
class CreatedInvoices:
    """What ``create_invoices`` did.

    The invoices it created, the ids that already existed, and the drafts it could not store
    (with their ``DataError``, e.g. ``invoice_too_large``).
    """

    created: list[Invoice] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    rejected: list[tuple[InvoiceDraft, DataError]] = field(default_factory=list)


@dataclass(frozen=True)
class _Numbering:
    """Where one call numbers its invoices: the tenant, the year and its sequence document."""

    tenant: Tenant
    year: int
    sequence: firestore.DocumentReference
    now: datetime

    def fields(self, sequence: int) -> dict[str, Any]:
        """Fields an invoice gets when finalized: number, ``open``, issue and due dates."""
        tenant, now = self.tenant, self.now
        return {
            "status": "open",
            "number": format_invoice_number(tenant.invoice_prefix, self.year, sequence),
            "sequence": sequence,
            "sequence_year": self.year,
            "issued_at": now,
            "finalized_at": now,
            "due_at": now + timedelta(days=tenant.payment_terms_days),
            "finalize_at": None,
        }

    def last(self, tx: Transaction) -> int:
        """The last sequence issued in the year (0 if none), read in ``tx``.

        So the batch that continues it commits only if nobody else did.
        """
        snapshot = tx.get(self.sequence)
        return int((snapshot.to_dict() or {}).get("last", 0)) if snapshot.exists else 0

    def record(self, tx: Transaction, last: int) -> None:
        """Record ``last`` as the year's last issued sequence, in ``tx``."""
        tx.set(self.sequence, {"last": last, "year": self.year, "updated_at": self.now}, merge=True)


class IssuingStore(StoreBase):
    """Invoice creation, finalization and discarded drafts (see the module docstring)."""

    def _numbering(self, tenant: Tenant, now: datetime) -> _Numbering:
        year = sequence_year(now, tenant.timezone)
        return _Numbering(tenant, year, self._doc(tenant.id, "invoice_sequences", str(year)), now)

    def create_invoices(
        self,
        tenant: Tenant,
        drafts: Sequence[InvoiceDraft],
        *,
        now: datetime,
        run_id: str,
        finalize: bool,
        delivery_pending: bool = False,
        batch_size: int = INVOICE_BATCH_SIZE,
        review: bool = False,
        numbering_run: str | None = None,
    ) -> CreatedInvoices:
        """Create the absent invoices among ``drafts``; never touch one that exists.

        ``review`` (with ``finalize`` false: the month close of a ``month_close_review``
        tenant): the drafts get no ``finalize_at``, so no run finalizes them; they wait for a
        person (``billing.runs.review``).

        With ``finalize`` each created invoice is ``open`` with the next gapless number of the
        tenant's sequence for the year of ``now`` (tenant timezone), ``issued_at = now`` and
        ``due_at = now + payment_terms_days``; without it, ``draft`` with
        ``finalize_at = now + grace_period_hours`` and ``number = None``. Numbers follow the order
        of ``drafts`` (the caller sorts them), batch after batch: finalization order.

        ``delivery_pending`` (finalized invoices of a tenant that emails or uses Stripe) is
        written in the same commit, so that if the run dies before delivering, the daily sweep
        (``dunning``) still delivers them.

        Returns the created invoices, the ids that already existed, and the drafts not written
        because they cannot be stored (``invoice_size``); these take no number. A transaction
        holds at most ``batch_size`` invoices and ``TRANSACTION_BYTES``.

        ``numbering_run`` (fanned-out month closes, ``billing.runs.fanout``): created as ``draft``
        with ``finalize_at = None`` and ``numbering_run`` set, waiting for that run's serial
        numbering pass (``billing.store.numbering_pass``) instead of a grace period.
        """
        result = CreatedInvoices()
        numbering = self._numbering(tenant, now)
        sized: Sized = []
        for draft in drafts:
            document = draft.to_document()
            try:
                sized.append(((draft, document), invoice_size(tenant.id, draft.invoice_id, document)))
            except DataError as error:
                result.rejected.append((draft, error))
        for batch in byte_batches(sized, batch_size, TRANSACTION_BYTES):
            created, existing = self._create_batch(
                numbering, batch, run_id, finalize, delivery_pending, review, numbering_run
            )
            result.created.extend(Invoice.from_document(i, document) for i, document in created)
            result.existing.extend(existing)
        return result

    def _create_batch(
        self,
        numbering: _Numbering,
        batch: list[tuple[InvoiceDraft, dict[str, Any]]],
        run_id: str,
        finalize: bool,
        delivery_pending: bool,
        review: bool = False,
        numbering_run: str | None = None,
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
        """Create one batch of (draft, its document) in one transaction (see create_invoices)."""
        tenant, now = numbering.tenant, numbering.now
        grace = None if review else now + timedelta(hours=float(tenant.grace_period_hours))
        refs = [self._doc(tenant.id, "invoices", draft.invoice_id) for draft, _ in batch]

        def run(tx: Transaction) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
            snapshots = tx.get_all(refs)
            last = numbering.last(tx) if finalize else 0
            created: list[tuple[str, dict[str, Any]]] = []
            existing: list[str] = []
            for (draft, base), ref in zip(batch, refs, strict=True):
                if snapshots[draft.invoice_id].exists:
                    existing.append(draft.invoice_id)
                    continue
                document = dict(base)  # the transaction may run again: keep base unchanged
                document.update({"created_at": now, "run_id": run_id, "pdf_uri": None})
                if finalize:
                    last += 1
                    document.update(numbering.fields(last))
                    if delivery_pending:
                        document["delivery_pending"] = True
                else:
                    document.update(
                        {
                            "status": "draft",
                            "number": None,
                            "due_at": None,
                            "finalize_at": grace,
                        }
                    )
                    if numbering_run is not None:
                        document.update(finalize_at=None, numbering_run=numbering_run)
                tx.create(ref, document)
                created.append((draft.invoice_id, document))
            if finalize and created:
                numbering.record(tx, last)
            return created, existing

        return self.run_transaction(run)

    def finalize_drafts(
        self,
        tenant: Tenant,
        drafts: Sequence[InvoiceDraft],
        *,
        now: datetime,
        run_id: str,
        delivery_pending: bool = False,
        batch_size: int = INVOICE_BATCH_SIZE,
    ) -> list[Invoice]:
        """Finalize the given invoices, freezing the amounts of ``drafts`` (recomputed by the caller).

        In one transaction per batch: each invoice that is still ``draft`` gets the draft's lines
        and totals (late usage included), the next gapless number, ``open``, ``issued_at = now``
        and ``due_at``, and loses any PDF rendered while it was a draft (``pdf_uri``); an invoice
        another run finalized meanwhile is left alone. ``delivery_pending`` as in
        ``create_invoices``. An update that would make the stored invoice larger than Firestore
        stores is left out (logged; the caller checks ``invoice_size`` first), so it never
        fails the batch. Returns the invoices finalized by this call.
        """
        numbering = self._numbering(tenant, now)
        sized: Sized = []
        for draft in drafts:
            update = draft.to_document()
            update.update(finalized_by_run=run_id, pdf_uri=None)
            if delivery_pending:
                update["delivery_pending"] = True
            try:
                sized.append(((draft, update), firestore_document_size((), update)))
            except ValueError as exc:
                log.error(
                    "invoice cannot be stored", extra={"invoice_id": draft.invoice_id, "error": str(exc)}
                )
        finalized: list[Invoice] = []
        for batch in byte_batches(sized, batch_size, TRANSACTION_BYTES):

            def run(
                tx: Transaction,
                batch: list[tuple[InvoiceDraft, dict[str, Any]]] = batch,
            ) -> list[tuple[str, dict[str, Any]]]:
                return self._finalize_batch(tx, numbering, batch)

            finalized.extend(Invoice.from_document(i, document) for i, document in self.run_transaction(run))
        return finalized

    def _finalize_batch(
        self,
        tx: Transaction,
        numbering: _Numbering,
        batch: list[tuple[InvoiceDraft, dict[str, Any]]],
    ) -> list[tuple[str, dict[str, Any]]]:
        """One transaction of ``finalize_drafts``: number and open the drafts still ``draft``."""
        tenant_id = numbering.tenant.id
        refs = [self._doc(tenant_id, "invoices", draft.invoice_id) for draft, _ in batch]
        snapshots = tx.get_all(refs)
        last = numbering.last(tx)
        done: list[tuple[str, dict[str, Any]]] = []
        for (draft, base), ref in zip(batch, refs, strict=True):
            current = snapshots[draft.invoice_id]
            stored = current.to_dict() or {}
            if not current.exists or stored.get("status") != "draft":
                continue
            if stored.get("finalize_at") is None:  # a person took it over (issue 10): theirs to finalize
                continue
            update = {**base, **numbering.fields(last + 1)}
            merged = {**stored, **update}
            if not fits(("tenants", tenant_id, "invoices", draft.invoice_id), merged):
                log.error("invoice too large to finalize", extra={"invoice_id": draft.invoice_id})
                continue
            last += 1
            tx.update(ref, update)
            done.append((draft.invoice_id, merged))
        if done:
            numbering.record(tx, last)
        return done

    def discard_drafts(
        self, tenant_id: str, reasons: Mapping[str, str], *, now: datetime, run_id: str
    ) -> list[str]:
        """Set the named invoices that are still ``draft`` to ``deleted``; return their ids.

        ``reasons`` maps invoice id -> why (a skip reason such as ``no_usage``), written as
        ``deleted_reason`` with ``deleted_at``, ``deleted_by_run`` and a ``history`` entry, in one
        transaction per batch that re-reads each status (a draft finalized meanwhile is kept).
        The document stays, so no run creates that period's invoice again (create-if-absent).
        """
        ids = sorted(reasons)
        done: list[str] = []
        for start in range(0, len(ids), INVOICE_BATCH_SIZE):
            refs = [self._doc(tenant_id, "invoices", i) for i in ids[start : start + INVOICE_BATCH_SIZE]]

            def run(tx: Transaction, refs: list[firestore.DocumentReference] = refs) -> list[str]:
                gone: list[str] = []
                for snapshot in tx.get_all(refs).values():
                    if not snapshot.exists or (snapshot.to_dict() or {}).get("status") != "draft":
                        continue
                    reason = reasons[snapshot.id]
                    tx.update(
                        snapshot.reference,
                        {
                            "status": "deleted",
                            "deleted_at": now,
                            "deleted_reason": reason,
                            "deleted_by_run": run_id,
                            "finalize_at": None,
                            "history": firestore.ArrayUnion(
                                [
                                    history_entry(
                                        "deleted", "generate_invoices", now, run_id=run_id, reason=reason
                                    )
                                ]
                            ),
                        },
                    )
                    gone.append(snapshot.id)
                return gone

            done.extend(self.run_transaction(run))
        return done

    # -- issue 10: invoices a person finalizes or creates ----------------------------------------
    def finalize_invoices(
        self,
        tenant: Tenant,
        invoice_ids: Sequence[str],
        *,
        now: datetime,
        run_id: str,
        history: Mapping[str, Any],
        request_id: str | None = None,
        delivery_pending: bool = False,
    ) -> tuple[list[Invoice], list[Invoice]]:
        """Finalize the named drafts as they are stored (a person's ``finalize``), in one transaction.

        Each invoice still ``draft`` gets the next gapless number of the tenant's sequence, in
        the order of ``invoice_ids`` (the caller checked them: at most ``INVOICE_BATCH_SIZE``,
        no repeats), ``open``, ``issued_at``/``due_at`` like every finalization
        (``_Numbering.fields``), ``delivery_pending``, the ``history`` entry and ``request_id``
        (appended to ``request_ids``). Amounts and lines are not touched: what the person
        reviewed is what is issued. Returns ``(finalized now, the others as stored)``: an
        invoice finalized meanwhile by a concurrent call is among the others, unchanged, so
        that each draft is numbered once whatever the retries.

        Raises:
            Conflict: (``unknown_invoice`` is the caller's check) never raised here.

        """
        numbering = self._numbering(tenant, now)
        refs = [self._doc(tenant.id, "invoices", i) for i in invoice_ids]

        def run(tx: Transaction) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
            snapshots = tx.get_all(refs)
            last = numbering.last(tx)
            done: list[tuple[str, dict[str, Any]]] = []
            others: list[tuple[str, dict[str, Any]]] = []
            for invoice_id, ref in zip(invoice_ids, refs, strict=True):
                stored = snapshots[invoice_id].to_dict() or {}
                if stored.get("status") != "draft":
                    others.append((invoice_id, stored))
                    continue
                last += 1
                update: dict[str, Any] = {
                    **numbering.fields(last),
                    "pdf_uri": None,
                    "finalized_by_run": run_id,
                }
                if delivery_pending:
                    update["delivery_pending"] = True
                after = {**stored, **update}
                after["history"] = [*(stored.get("history") or []), dict(history)]
                update["history"] = firestore.ArrayUnion([dict(history)])
                if request_id is not None:
                    update["request_ids"] = firestore.ArrayUnion([request_id])
                    after["request_ids"] = [*(stored.get("request_ids") or []), request_id]
                tx.update(ref, update)
                done.append((invoice_id, after))
            if done:
                numbering.record(tx, last)
            return done, others

        done, others = self.run_transaction(run)
        return (
            [Invoice.from_document(i, d) for i, d in done],
            [Invoice.from_document(i, d) for i, d in others if d],
        )

    def create_invoice_once(
        self,
        tenant: Tenant,
        invoice_id: str,
        document: Mapping[str, Any],
        *,
        now: datetime,
        run_id: str,
        finalize: bool,
        delivery_pending: bool = False,
        replaces: str | None = None,
    ) -> tuple[Invoice, bool]:
        """Create one invoice a person asked for, unless its id exists; return it and whether created.

        ``invoice_id`` is deterministic (a one-off invoice's idempotency key, a regenerated
        invoice's predecessor), so concurrent and repeated calls create it once. The invoice is
        a ``draft`` without ``finalize_at`` (it waits for a person), or with ``finalize``
        ``open`` with the next gapless number (``_Numbering.fields``) in the same commit.
        ``replaces``: the ``void`` invoice this one bills again (``regenerate``): in the same
        transaction it must still be ``void`` and not replaced by another id, and it gets
        ``replaced_by``, so at most one live invoice exists per (subscription, period).

        Raises:
            Conflict: ``replaces`` is not ``void`` (``invalid_transition``) or was replaced
                by another invoice (``already_replaced``).

        """
        numbering = self._numbering(tenant, now)
        ref = self._doc(tenant.id, "invoices", invoice_id)
        old_ref = None if replaces is None else self._doc(tenant.id, "invoices", replaces)

        def run(tx: Transaction) -> tuple[str, dict[str, Any], bool]:
            snapshot = tx.get(ref)
            old = tx.get(old_ref) if old_ref is not None else None
            if snapshot.exists:
                return invoice_id, snapshot.to_dict() or {}, False
            if old is not None:
                _check_replaceable(replaces or "", old.to_dict() or {}, invoice_id)
            created = {**document, "created_at": now, "run_id": run_id, "pdf_uri": None}
            if finalize:
                last = numbering.last(tx) + 1
                created.update(numbering.fields(last))
                created["delivery_pending"] = delivery_pending
                numbering.record(tx, last)
            else:
                created.update({"status": "draft", "number": None, "due_at": None, "finalize_at": None})
            tx.create(ref, created)
            if old_ref is not None:
                tx.update(old_ref, {"replaced_by": invoice_id})
            return invoice_id, created, True

        found_id, stored, created = self.run_transaction(run)
        return Invoice.from_document(found_id, stored), created


def _check_replaceable(old_id: str, old: Mapping[str, Any], new_id: str) -> None:
    """Raise ``Conflict`` unless the invoice ``old`` may be replaced by ``new_id`` (see above)."""
    if old.get("status") != "void":
        raise Conflict(
            f"invoice {echo(old_id)} is {old.get('status')}; only a void invoice can be regenerated",
            code="invalid_transition",
        )
    if old.get("replaced_by") not in (None, new_id):
        raise Conflict(
            f"invoice {echo(old_id)} was regenerated as {echo(old.get('replaced_by'))} already",
            code="already_replaced",
        )
