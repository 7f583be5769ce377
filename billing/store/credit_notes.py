"""Credit notes: ``tenants/{t}/credit_notes/{id}``, issued once, numbered in their own series.

``issue_credit_note`` does everything that must never happen twice in one transaction:

- it reads the credit note's deterministic id (``credit_note_id_for``: invoice id and the
  caller's ``idempotency_key``); one that exists is returned as it is (a retried request);
- it reads the invoice, with what its credit notes credited so far (``amount_credited`` and, per
  line, ``line_credits``: ``{line_id: {amount, tax}}``, an extension written here), so the
  caller decides on what is credited *now* (concurrent credit notes on one invoice serialize on
  the invoice document: the one that no longer fits is refused). Earlier credit notes are not
  read, so nothing but a retry of the same request ever waits on a credit note's document;
- it takes the next number of the tenant's credit note series for the year
  (``tenants/{t}/credit_note_sequences/{YYYY}``, ``last``; distinct from the invoice series'
  ``invoice_sequences``), gapless because the number is written in the same commit;
- it creates the credit note, and writes its effect on the invoice (``amount_credited``,
  ``line_credits``, ``amount_due``, ``credit_note_ids``, ``history``, and ``status`` ``void``/``paid`` with
  ``voided_at``/``paid_at`` when nothing is left due) and, for a credit owed to the customer,
  on the customer document: ``balance`` (minor units, negative = owed to the customer, Stripe's
  customer balance sign) and a ``balance_transactions`` entry ``{type: "credit_note",
  credit_note_id, invoice_id, amount, currency, at}`` (Stripe's customer balance transaction).

After the commit the credit note's PDF, email and Stripe twin are recorded by
``update_credit_note``; ``pending_credit_notes`` finds those whose delivery is not finished
(``delivery_pending``, query listed in ``billing.store.indexes``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.errors import DataError
from billing.pricing.crediting import format_credit_note_number
from billing.pricing.numbering import sequence_year
from billing.records import CreditNote, Invoice, Tenant, parse_line_credits
from billing.store.base import StoreBase, Transaction


def credit_note_id_for(invoice_id: str, idempotency_key: str) -> str:
    """The credit note id for ``(invoice_id, idempotency_key)``: ``cn_`` + 32 hex of a SHA-256.

    The same request retried (or sent four times at once) names the same document; a hash, so
    that any key and invoice id make a valid, bounded Firestore id.
    """
    digest = hashlib.sha256(f"{invoice_id}\x00{idempotency_key}".encode("utf-8", "surrogatepass"))
    return f"cn_{digest.hexdigest()[:32]}"


@dataclass(frozen=True)
class CreditEffect:
    """What a credit note does to its invoice (minor units): decided by the caller, written here.

    ``amount_credited`` and ``amount_due`` are the invoice's new values; ``status`` is the new
    status when it changes (``void`` when credited to zero, ``paid`` when a partly paid invoice
    has nothing left due), else ``None``; ``history`` is the invoice's history entry.
    """

    amount_credited: int
    amount_due: int
    status: str | None
    history: Mapping[str, Any]


LineCredits = dict[str, tuple[int, int]]
"""``line_id -> (amount, tax)`` credited so far on an invoice's lines (minor units)."""
Decide = Callable[[Invoice | None, LineCredits], tuple[CreditNote, CreditEffect]]
"""``decide(invoice or None, its line credits) -> (credit note without number, effect)``; it
raises (``NotFound``, ``Conflict``...) to write nothing. It may run several times."""


class CreditNoteStore(StoreBase):
    """Credit note reads and the one transaction that issues them (see the module docstring)."""

    def get_credit_note(self, tenant_id: str, credit_note_id: str) -> CreditNote | None:
        """One credit note, or ``None``.

        Raises:
            DataError: the document cannot be parsed.

        """
        snapshot = self._get(self._doc(tenant_id, "credit_notes", credit_note_id))
        if not snapshot.exists:
            return None
        return CreditNote.from_document(credit_note_id, snapshot.to_dict() or {})

    def pending_credit_notes(self, tenant_id: str) -> list[CreditNote | tuple[str, DataError]]:
        """Credit notes whose PDF, email or Stripe twin is not done (``delivery_pending``).

        An unreadable one is ``(id, DataError)``; usually there are none (one read).
        """
        query = self._collection(tenant_id, "credit_notes").where(
            filter=FieldFilter("delivery_pending", "==", True)
        )
        out: list[CreditNote | tuple[str, DataError]] = []
        for snapshot in self._stream(query):
            try:
                out.append(CreditNote.from_document(snapshot.id, snapshot.to_dict() or {}))
            except DataError as exc:
                out.append((snapshot.id, exc))
        return out

    def update_credit_note(self, tenant_id: str, credit_note_id: str, fields: Mapping[str, Any]) -> None:
        """Set plain ``fields`` on a credit note (field paths allowed: ``stripe.steps.create``)."""
        self._update(self._doc(tenant_id, "credit_notes", credit_note_id), fields)

    def record_credit_note_history(
        self, tenant_id: str, credit_note_id: str, fields: Mapping[str, Any], entry: Mapping[str, Any]
    ) -> None:
        """Set ``fields`` and append ``entry`` to the credit note's ``history``."""
        update = dict(fields)
        update["history"] = firestore.ArrayUnion([dict(entry)])
        self._update(self._doc(tenant_id, "credit_notes", credit_note_id), update)

    def issue_credit_note(
        self, tenant: Tenant, invoice_id: str, credit_note_id: str, decide: Decide, now: datetime
    ) -> tuple[CreditNote, bool]:
        """Create the credit note ``credit_note_id`` unless it exists; ``(credit note, created)``.

        In one transaction (module docstring): the existing credit note is returned with
        ``False``; otherwise ``decide`` builds it from the fresh invoice and its credit notes, it
        takes the next number of the tenant's series for the year of ``now`` (tenant
        timezone), and it is created with its effect on the invoice and the customer.

        Raises:
            whatever ``decide`` raises (nothing is written);
            DataError: a stored invoice or credit note cannot be parsed.

        """
        year = sequence_year(now, tenant.timezone)
        note_ref = self._doc(tenant.id, "credit_notes", credit_note_id)
        invoice_ref = self._doc(tenant.id, "invoices", invoice_id)
        sequence_ref = self._doc(tenant.id, "credit_note_sequences", str(year))

        def body(tx: Transaction) -> tuple[CreditNote, bool]:
            found = tx.get(note_ref)
            if found.exists:
                return CreditNote.from_document(credit_note_id, found.to_dict() or {}), False
            snapshot = tx.get(invoice_ref)
            data = snapshot.to_dict() or {}
            invoice = Invoice.from_document(invoice_id, data) if snapshot.exists else None
            credits = parse_line_credits(data, f"invoices/{invoice_id}")
            counter = tx.get(sequence_ref)
            last = int((counter.to_dict() or {}).get("last", 0)) if counter.exists else 0
            draft, effect = decide(invoice, credits)
            note = replace(
                draft,
                number=format_credit_note_number(tenant.invoice_prefix, year, last + 1),
                sequence=last + 1,
                sequence_year=year,
            )
            tx.create(note_ref, note.to_document())
            tx.set(sequence_ref, {"last": last + 1, "year": year, "updated_at": now}, merge=True)
            tx.update(invoice_ref, _invoice_update(note, effect, credits, now))
            if note.credited_to_balance:
                tx.set(
                    self._doc(tenant.id, "customers", note.customer_id),
                    _balance_update(note, now),
                    merge=True,
                )
            return CreditNote.from_document(credit_note_id, note.to_document()), True

        return self.run_transaction(body)


def _invoice_update(
    note: CreditNote, effect: CreditEffect, credits: LineCredits, now: datetime
) -> dict[str, Any]:
    """The invoice's field update for ``note`` (see ``CreditEffect``), ``line_credits`` included."""
    after = dict(credits)
    for line in note.lines:
        amount, tax = after.get(line.invoice_line_id, (0, 0))
        after[line.invoice_line_id] = (amount + line.amount, tax + line.tax)
    update: dict[str, Any] = {
        "amount_credited": effect.amount_credited,
        "line_credits": {key: {"amount": a, "tax": t} for key, (a, t) in after.items()},
        "amount_due": effect.amount_due,
        "credit_note_ids": firestore.ArrayUnion([note.id]),
        "history": firestore.ArrayUnion([{**effect.history, "credit_note_number": note.number}]),
    }
    if effect.status == "void":
        update.update(status="void", voided_at=now)
    elif effect.status == "paid":
        update.update(status="paid", paid_at=now)
    return update


def _balance_update(note: CreditNote, now: datetime) -> dict[str, Any]:
    """The customer's balance entry for a credit owed to them (negative = owed, Stripe's sign)."""
    return {
        "balance": firestore.Increment(-note.credited_to_balance),
        "balance_transactions": firestore.ArrayUnion(
            [
                {
                    "type": "credit_note",
                    "credit_note_id": note.id,
                    "invoice_id": note.invoice_id,
                    "amount": -note.credited_to_balance,
                    "currency": note.currency,
                    "at": now,
                }
            ]
        ),
    }
