"""Reads for the operator's views (console, exports, ``runs`` CLI) and the run-summary outbox.

An extension of ``BillingStore`` (``ReportingStore``), so the console and the exports read
through the same counted primitives and parsers as the runs. Layout (README, "Firestore layout
beyond the contract"):

- ``tenants/{t}/notifications/run_summary.{run_id}.{key}``: a tenant's run summary email to one
  recipient (``key``: a digest of the address), an outbox document like the invoice emails'
  (``billing.store.outbox``): ``kind: "run_summary"``, ``status`` ``sending``/``sent``/
  ``failed``, ``attempts``, ``lease_until``, ``sent_at``, ``message_id``, ``last_error``;
- ``operator_notifications/run_summary.{run_id}``: the same for the operator's summary of an
  all-tenant run (``NOTIFY_EMAIL``), outside any tenant.

Each is claimed by a create-if-absent in a transaction (``claim_summary``), so one run has one
email per recipient however many times it, or its last task, is retried or delivered at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.errors import DataError
from billing.records import Invoice
from billing.store.base import Transaction
from billing.store.firestore_store import BillingStore

MAX_ROWS = 5000
"""At most this many documents per listing (a console page shows 50 of them)."""


class ReportingStore(BillingStore):
    """``BillingStore`` plus the listings of the console and the run-summary outbox."""

    # -- run summaries ------------------------------------------------------------------------
    def summary_ref(self, tenant_id: str | None, notification_id: str) -> firestore.DocumentReference:
        """The outbox document of one run summary (tenant's, or the operator's for ``None``)."""
        if tenant_id is None:
            return self.db.collection("operator_notifications").document(notification_id)
        return self._doc(tenant_id, "notifications", notification_id)

    def claim_summary(
        self, ref: firestore.DocumentReference, document: dict[str, Any], now: datetime, lease: timedelta
    ) -> str:
        """Claim a run summary for sending: ``"claimed"``, ``"sent"`` (done before) or ``"busy"``.

        In one transaction: absent -> created ``sending`` with a lease; ``sent`` -> ``sent``;
        ``sending`` under a live lease -> ``busy``; otherwise (``failed``, expired lease) taken
        again with ``attempts`` + 1.
        """

        def body(tx: Transaction) -> str:
            snapshot = tx.get(ref)
            data = snapshot.to_dict() or {}
            if not snapshot.exists:
                tx.create(ref, {**document, "status": "sending", "attempts": 1, "lease_until": now + lease})
                return "claimed"
            if data.get("status") == "sent":
                return "sent"
            held = data.get("lease_until")
            if data.get("status") == "sending" and isinstance(held, datetime) and held > now:
                return "busy"
            attempts = int(data.get("attempts") or 0) + 1
            tx.update(
                ref,
                {"status": "sending", "attempts": attempts, "lease_until": now + lease, "updated_at": now},
            )
            return "claimed"

        return self.run_transaction(body)

    def finish_summary(
        self, ref: firestore.DocumentReference, now: datetime, *, message_id: str | None, error: str | None
    ) -> None:
        """Record a claimed summary as ``sent`` (``message_id``) or ``failed`` (``error``)."""
        fields: dict[str, Any] = {"lease_until": None, "updated_at": now}
        if error is None:
            fields.update(status="sent", sent_at=now, message_id=message_id, last_error=None)
        else:
            fields.update(status="failed", last_error=error)
        self._update(ref, fields)

    # -- listings -----------------------------------------------------------------------------
    def list_runs(self, tenant_id: str, limit: int = MAX_ROWS) -> list[dict[str, Any]]:
        """The tenant's run records, newest first: each with ``run_id`` and ``tenant_id``."""
        query = (
            self._collection(tenant_id, "billing_runs")
            .order_by("started_at", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return [{**(s.to_dict() or {}), "run_id": s.id, "tenant_id": tenant_id} for s in self._stream(query)]

    def get_run(self, tenant_id: str, run_id: str) -> dict[str, Any] | None:
        """One run record (with ``run_id`` and ``tenant_id``), or ``None``."""
        snapshot = self._get(self._doc(tenant_id, "billing_runs", run_id))
        if not snapshot.exists:
            return None
        return {**(snapshot.to_dict() or {}), "run_id": run_id, "tenant_id": tenant_id}

    def list_invoices(
        self, tenant_id: str, *, status: str | None = None, customer_id: str | None = None
    ) -> list[Invoice | tuple[str, DataError]]:
        """The tenant's invoices (optionally of one ``status`` and/or customer), by id.

        An invoice that cannot be parsed comes back as ``(invoice_id, DataError)``.
        """
        query: Any = self._collection(tenant_id, "invoices")
        if status:
            query = query.where(filter=FieldFilter("status", "==", status))
        if customer_id:
            query = query.where(filter=FieldFilter("customer_id", "==", customer_id))
        return [_parsed(s) for s in self._stream(query.limit(MAX_ROWS))]

    def list_credit_notes(self, tenant_id: str, invoice_id: str | None = None) -> list[dict[str, Any]]:
        """The tenant's credit notes (``tenants/{t}/credit_notes``), each with ``credit_note_id``."""
        query: Any = self._collection(tenant_id, "credit_notes")
        if invoice_id:
            query = query.where(filter=FieldFilter("invoice_id", "==", invoice_id))
        return [{**(s.to_dict() or {}), "credit_note_id": s.id} for s in self._stream(query.limit(MAX_ROWS))]

    def invoices_finalized_between(
        self, tenant_id: str, start: datetime, end: datetime
    ) -> list[Invoice | tuple[str, DataError]]:
        """Every invoice finalized in ``[start, end)`` (``finalized_at``; one range, no limit)."""
        query = (
            self._collection(tenant_id, "invoices")
            .where(filter=FieldFilter("finalized_at", ">=", start))
            .where(filter=FieldFilter("finalized_at", "<", end))
        )
        return [_parsed(s) for s in self._stream(query)]

    def receivable_invoices(self, tenant_id: str) -> list[Invoice | tuple[str, DataError]]:
        """Every ``open`` invoice (the receivables of the AR aging; no limit)."""
        query = self._collection(tenant_id, "invoices").where(filter=FieldFilter("status", "==", "open"))
        return [_parsed(s) for s in self._stream(query)]

    def credit_notes_created_between(
        self, tenant_id: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Every credit note created in ``[start, end)``, each with ``credit_note_id``."""
        query = (
            self._collection(tenant_id, "credit_notes")
            .where(filter=FieldFilter("created_at", ">=", start))
            .where(filter=FieldFilter("created_at", "<", end))
        )
        return [{**(s.to_dict() or {}), "credit_note_id": s.id} for s in self._stream(query)]

    def administered_tenants(self, email: str) -> list[str]:
        """The tenants whose ``admins`` list holds ``email`` (lowercased, as stored), sorted."""
        query = self.db.collection("tenants").where(filter=FieldFilter("admins", "array_contains", email))
        return sorted(s.id for s in self._stream(query.select([])))

    def tenant_ids(self) -> list[str]:
        """Every tenant's id (active or not), sorted: the platform principal's tenant list."""
        return sorted(s.id for s in self._stream(self.db.collection("tenants").select([])))


def _parsed(snapshot: Any) -> Invoice | tuple[str, DataError]:
    """An invoice snapshot parsed, or ``(invoice_id, DataError)`` when it cannot be."""
    try:
        return Invoice.from_document(snapshot.id, snapshot.to_dict() or {})
    except DataError as exc:
        return (snapshot.id, exc)


__all__ = ["MAX_ROWS", "ReportingStore"]
