"""Invoice reads and changes: the only code that turns invoice documents into ``Invoice`` and back.

Reads parse each document with ``billing.records.Invoice.from_document``; a list read returns
an unreadable document as ``(invoice_id, DataError)`` in its place, so that one bad invoice
fails alone. Writes are field updates, never whole documents, so fields this code does not
know survive every write. A change is described by an ``InvoiceChange`` (typed values, no
Firestore sentinels); ``update_fields`` turns it into the update (array unions for ``history``,
``payments`` and ``stripe_event_ids``, increments for counters, ``dunning.<step>`` paths) and
``_applied`` into the document after the change. Creation, numbering and finalization are in
``billing.store.issuing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.errors import DataError
from billing.records import Invoice, Payment
from billing.store.base import Snapshot, StoreBase, Transaction

R = TypeVar("R")
StoredInvoice = Invoice | tuple[str, DataError]
"""An invoice read by a list query, or the id and ``DataError`` of one that cannot be parsed."""
PDF_BATCH = 400


def history_entry(action: str, actor: str, at: datetime, **details: Any) -> dict[str, Any]:
    """One ``history`` entry: ``{action, actor, at, ...details}`` (``None`` details dropped)."""
    entry = {"action": action, "actor": actor, "at": at}
    entry.update({k: v for k, v in details.items() if v is not None})
    return entry


@dataclass(frozen=True)
class InvoiceChange:
    """What one write changes on an invoice; every field left ``None`` (or empty) is untouched.

    Plain fields are written as given (``delivery_errors`` as a list). ``payment`` is appended
    to ``payments``; ``payment_failure`` (``{at, event_id, attempt_count,
    next_payment_attempt}``) becomes ``last_payment_failure`` and adds one to
    ``payment_failures``; ``delivery_attempt`` adds one to ``delivery_attempts``;
    ``stripe_event_id`` is appended to ``stripe_event_ids``; ``dunning`` maps a step to its
    record, written as ``dunning.<step>``; ``history`` entries (``history_entry``) are appended.
    """

    status: str | None = None
    paid_at: datetime | None = None
    voided_at: datetime | None = None
    marked_uncollectible_at: datetime | None = None
    amount_paid: int | None = None
    amount_due: int | None = None
    pdf_uri: str | None = None
    pdf_rendered_at: datetime | None = None
    email_sent_at: datetime | None = None
    email_to: str | None = None
    email_notification_id: str | None = None
    email_resent_at: datetime | None = None
    delivery_pending: bool | None = None
    delivered_at: datetime | None = None
    delivery_failed_at: datetime | None = None
    delivery_errors: tuple[str, ...] | None = None
    delivery_attempt: bool = False
    payment: Payment | None = None
    payment_failure: Mapping[str, Any] | None = None
    stripe_event_id: str | None = None
    dunning: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()


_PLAIN = (
    "status",
    "paid_at",
    "voided_at",
    "marked_uncollectible_at",
    "amount_paid",
    "amount_due",
    "pdf_uri",
    "pdf_rendered_at",
    "email_sent_at",
    "email_to",
    "email_notification_id",
    "email_resent_at",
    "delivery_pending",
    "delivered_at",
    "delivery_failed_at",
)


def _payment_document(payment: Payment) -> dict[str, Any]:
    return {
        "amount": payment.amount,
        "paid_at": payment.paid_at,
        "source": payment.source,
        "reference": payment.reference,
        "by": payment.by,
        "at": payment.at,
    }


def _plain_fields(change: InvoiceChange) -> dict[str, Any]:
    """The fields ``change`` sets to a value (the same in the update and the document after)."""
    fields = {name: getattr(change, name) for name in _PLAIN if getattr(change, name) is not None}
    if change.delivery_errors is not None:
        fields["delivery_errors"] = list(change.delivery_errors)
    if change.payment_failure is not None:
        fields["last_payment_failure"] = dict(change.payment_failure)
    return fields


def update_fields(change: InvoiceChange) -> dict[str, Any]:
    """The Firestore update (field paths and sentinels) that makes ``change``."""
    update = _plain_fields(change)
    update.update({f"dunning.{step}": dict(record) for step, record in change.dunning.items()})
    if change.payment is not None:
        update["payments"] = firestore.ArrayUnion([_payment_document(change.payment)])
    if change.payment_failure is not None:
        update["payment_failures"] = firestore.Increment(1)
    if change.delivery_attempt:
        update["delivery_attempts"] = firestore.Increment(1)
    if change.stripe_event_id is not None:
        update["stripe_event_ids"] = firestore.ArrayUnion([change.stripe_event_id])
    if change.history:
        update["history"] = firestore.ArrayUnion([dict(entry) for entry in change.history])
    return update


def _union(stored: Any, added: Iterable[Any]) -> list[Any]:
    """``stored`` (a list) with the ``added`` values it lacks appended: ``ArrayUnion``'s rule."""
    out = list(stored) if isinstance(stored, list) else []
    out.extend(value for value in added if value not in out)
    return out


def _applied(document: Mapping[str, Any], change: InvoiceChange) -> dict[str, Any]:
    """The document ``document`` becomes once ``change`` is written."""
    after = {**document, **_plain_fields(change)}
    if change.dunning:
        after["dunning"] = {
            **(document.get("dunning") or {}),
            **{step: dict(record) for step, record in change.dunning.items()},
        }
    if change.payment is not None:
        after["payments"] = _union(document.get("payments"), [_payment_document(change.payment)])
    if change.payment_failure is not None:
        after["payment_failures"] = int(document.get("payment_failures") or 0) + 1
    if change.delivery_attempt:
        after["delivery_attempts"] = int(document.get("delivery_attempts") or 0) + 1
    if change.stripe_event_id is not None:
        after["stripe_event_ids"] = _union(document.get("stripe_event_ids"), [change.stripe_event_id])
    if change.history:
        after["history"] = _union(document.get("history"), [dict(h) for h in change.history])
    return after


@dataclass(frozen=True)
class DraftEdit:
    """One person's change of an invoice, made by ``InvoiceStore.edit_invoice`` (issue 10).

    ``fields``: plain fields set as given (``lines`` as a list of maps, totals, ``status``...);
    ``history``: entries appended to ``history`` (``history_entry``); ``request_id``: the
    caller's ``X-Request-ID``, appended to ``request_ids`` in the same write, so that the same
    request seen again is recognised (``Invoice.raw["request_ids"]``) and does nothing.
    """

    fields: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()
    request_id: str | None = None


def seen_request(invoice: Invoice, request_id: str | None) -> bool:
    """True when ``request_id`` was recorded on ``invoice`` by an earlier edit (a retry)."""
    stored = invoice.raw.get("request_ids")
    return request_id is not None and isinstance(stored, list) and request_id in stored


def parse_invoice(snapshot: Snapshot) -> StoredInvoice:
    """An existing invoice snapshot as an ``Invoice``, or ``(id, DataError)`` if unreadable."""
    try:
        return Invoice.from_document(snapshot.id, snapshot.to_dict() or {})
    except DataError as exc:
        return snapshot.id, exc


class InvoiceStore(StoreBase):
    """Reads of invoices and their changes after creation (see the module docstring)."""

    # -- reads -----------------------------------------------------------------------------
    def get_invoice(self, tenant_id: str, invoice_id: str) -> Invoice | None:
        """Read one invoice; ``None`` if there is none.

        Raises:
            DataError: the document cannot be parsed.

        """
        snapshot = self._get(self._doc(tenant_id, "invoices", invoice_id))
        if not snapshot.exists:
            return None
        return Invoice.from_document(invoice_id, snapshot.to_dict() or {})

    def get_invoices(self, tenant_id: str, invoice_ids: Sequence[str]) -> dict[str, Invoice | DataError]:
        """The named invoices that exist, by id (batched reads); unreadable ones as their error."""
        parent = self._collection(tenant_id, "invoices")
        out: dict[str, Invoice | DataError] = {}
        for snapshot in self._get_all([parent.document(i) for i in invoice_ids]):
            if snapshot.exists:
                parsed = parse_invoice(snapshot)
                out[snapshot.id] = parsed[1] if isinstance(parsed, tuple) else parsed
        return out

    def existing_invoice_ids(self, tenant_id: str, invoice_ids: Sequence[str]) -> set[str]:
        """Which of ``invoice_ids`` exist already (batched reads; used by dry runs)."""
        parent = self._collection(tenant_id, "invoices")
        return {s.id for s in self._get_all([parent.document(i) for i in invoice_ids]) if s.exists}

    def _query(
        self, tenant_id: str, *filters: tuple[str, str, Any], order_by: str | None = None
    ) -> list[StoredInvoice]:
        query: Any = self._collection(tenant_id, "invoices")
        for name, op, value in filters:
            query = query.where(filter=FieldFilter(name, op, value))
        if order_by is not None:
            query = query.order_by(order_by)
        return [parse_invoice(snapshot) for snapshot in self._stream(query)]

    def open_invoices_without_pdf(self, tenant_id: str) -> list[StoredInvoice]:
        """The open invoices whose PDF is missing (``pdf_uri`` null).

        A run that died after numbering them, or a failed render or upload, leaves them so;
        usually there are none and the query costs one read.
        """
        return self._query(tenant_id, ("status", "==", "open"), ("pdf_uri", "==", None))

    def due_drafts(self, tenant_id: str, as_of: datetime) -> list[StoredInvoice]:
        """Draft invoices whose ``finalize_at <= as_of`` (grace period over), oldest first."""
        return self._query(
            tenant_id, ("status", "==", "draft"), ("finalize_at", "<=", as_of), order_by="finalize_at"
        )

    def drafts_of_subscription(self, tenant_id: str, subscription_id: str) -> list[StoredInvoice]:
        """Every draft invoice of one subscription (the admin's "invoice it now")."""
        return self._query(tenant_id, ("status", "==", "draft"), ("subscription_id", "==", subscription_id))

    def overdue_invoices(self, tenant_id: str, as_of: datetime) -> list[StoredInvoice]:
        """``open`` invoices with ``due_at < as_of``, oldest due first (``dunning``)."""
        return self._query(tenant_id, ("status", "==", "open"), ("due_at", "<", as_of), order_by="due_at")

    def drafts_awaiting_review(self, tenant_id: str) -> list[StoredInvoice]:
        """Drafts that wait for a person (``finalize_at`` null); no run finalizes them (issue 10).

        Month-close drafts of a ``month_close_review`` tenant, one-off drafts, regenerated
        drafts, and anniversary drafts a person edited.
        """
        return self._query(tenant_id, ("status", "==", "draft"), ("finalize_at", "==", None))

    def pending_deliveries(self, tenant_id: str) -> list[StoredInvoice]:
        """Invoices whose delivery is not finished (``delivery_pending == true``)."""
        return self._query(tenant_id, ("delivery_pending", "==", True))

    # -- changes ---------------------------------------------------------------------------
    def update_invoice(self, tenant_id: str, invoice_id: str, change: InvoiceChange) -> None:
        """Write ``change`` on an existing invoice (no transaction: nothing is re-read).

        Raises:
            google.api_core.exceptions.NotFound: no such invoice.

        """
        self._update(self._doc(tenant_id, "invoices", invoice_id), update_fields(change))

    def update_invoice_fields(self, tenant_id: str, invoice_id: str, fields: Mapping[str, Any]) -> None:
        """Set plain ``fields`` (field paths allowed, e.g. ``stripe.steps.finalize``).

        For ``billing.delivery.stripe_billing``, which records each step of a push on the
        invoice's ``stripe`` map and ``stripe_invoice_id``.
        """
        self._update(self._doc(tenant_id, "invoices", invoice_id), fields)

    def change_invoice(
        self,
        tenant_id: str,
        invoice_id: str,
        decide: Callable[[Invoice | None], tuple[R, InvoiceChange | None]],
    ) -> tuple[R, Invoice | None]:
        """Read an invoice and write what ``decide`` makes of it, in one transaction.

        ``decide(invoice or None)`` returns ``(value, change or None)``; it may run several
        times (contention) and may raise to abort (nothing is written). Returns ``value`` and
        the invoice after the change (``None`` when nothing was written). Concurrent writers
        (the webhook, an admin, the dunning run) therefore never interleave.

        Raises:
            DataError: the stored invoice cannot be parsed.

        """
        ref = self._doc(tenant_id, "invoices", invoice_id)

        def body(tx: Transaction) -> tuple[R, Invoice | None]:
            snapshot = tx.get(ref)
            invoice = Invoice.from_document(invoice_id, snapshot.to_dict() or {}) if snapshot.exists else None
            value, change = decide(invoice)
            if change is None or invoice is None:
                return value, None
            tx.update(ref, update_fields(change))
            return value, Invoice.from_document(invoice_id, _applied(invoice.raw, change))

        return self.run_transaction(body)

    def edit_invoice(
        self,
        tenant_id: str,
        invoice_id: str,
        decide: Callable[[Invoice | None], tuple[R, DraftEdit | None]],
    ) -> tuple[R, Invoice | None]:
        """Read an invoice and write the ``DraftEdit`` ``decide`` makes of it, in one transaction.

        Like ``change_invoice`` (``decide`` may run several times and may raise to abort), for
        the review actions (``billing.runs.review``): the edit sets plain fields, appends
        ``history`` and records the request id. Returns ``value`` and the invoice after the
        write (``None`` when nothing was written).

        Raises:
            DataError: the stored invoice cannot be parsed.

        """
        ref = self._doc(tenant_id, "invoices", invoice_id)

        def body(tx: Transaction) -> tuple[R, Invoice | None]:
            snapshot = tx.get(ref)
            invoice = Invoice.from_document(invoice_id, snapshot.to_dict() or {}) if snapshot.exists else None
            value, edit = decide(invoice)
            if edit is None or invoice is None:
                return value, None
            update = dict(edit.fields)
            after = {**invoice.raw, **edit.fields}
            if edit.history:
                update["history"] = firestore.ArrayUnion([dict(h) for h in edit.history])
                after["history"] = _union(invoice.raw.get("history"), [dict(h) for h in edit.history])
            if edit.request_id is not None:
                update["request_ids"] = firestore.ArrayUnion([edit.request_id])
                after["request_ids"] = _union(invoice.raw.get("request_ids"), [edit.request_id])
            if not update:
                return value, None
            tx.update(ref, update)
            return value, Invoice.from_document(invoice_id, after)

        return self.run_transaction(body)

    def record_pdfs(self, tenant_id: str, uris: Sequence[tuple[str, str]], rendered_at: datetime) -> None:
        """Set ``pdf_uri`` on each ``(invoice_id, gs_uri)``, in write batches of 400."""
        for start in range(0, len(uris), PDF_BATCH):
            batch = self._batch()
            for invoice_id, uri in uris[start : start + PDF_BATCH]:
                batch.update(
                    self._doc(tenant_id, "invoices", invoice_id),
                    {"pdf_uri": uri, "pdf_rendered_at": rendered_at},
                )
            batch.commit()
