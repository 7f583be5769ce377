"""``create_credit_note``: correct an issued invoice with a credit note (``billing_admin`` action).

Request (``CONTRACT.md``, "Review and correction"): ``invoice_id``, ``reason`` (one of
``billing.records.CREDIT_NOTE_REASONS``), ``idempotency_key`` (required), and either ``lines``
(``[{line_id, amount}]``) or ``amount`` (minor units, taken from the invoice's lines in order);
optional ``memo`` (1-500 characters) and ``currency`` (when given, it must be the invoice's).
Amounts are credited in the invoice line's terms (net of tax on a tax-exclusive invoice, tax
included on a tax-inclusive one) and tax follows pro rata per line
(``billing.pricing.crediting``).

Steps, in order:

1. ``parse``: every field checked (400) before anything is read.
2. ``issue``: one store transaction (``BillingStore.issue_credit_note``) re-reads the invoice
   and its credit notes, checks the invoice (404 ``unknown_invoice``; 409 ``invalid_transition``
   unless ``open`` or ``paid``; 400 ``currency_mismatch``), the lines (404 ``unknown_line``) and
   the amounts (409 ``amount_exceeds_creditable``: above a line's or the invoice's total not yet
   credited), and creates the credit note with the next number of its own series and its effect
   on the invoice. On an ``open`` invoice the credit lowers ``amount_due``; credited to zero it
   becomes ``void`` (Stripe's behaviour), or ``paid`` when part of it had been paid. What
   exceeds the amount due (all of it on a ``paid`` invoice) is owed to the customer: it is
   ``credited_to_balance`` (Stripe's customer balance; the customer's ``balance`` goes down by
   it). No refund is ever made. The credit note id is derived from ``(invoice_id,
   idempotency_key)``: the same request retried, or sent several times at once, issues one credit
   note with one number; the same key with another request is 409 ``idempotency_key_reused``.
3. After the commit, each step once and recorded on the credit note: ``pdf`` (rendered and
   stored at ``gs://$INVOICES_BUCKET/{tenant}/credit_notes/{number}.pdf``), ``email`` (the
   customer, PDF attached, through the outbox: once per credit note), ``stripe`` (a Stripe
   credit note when the invoice has a Stripe twin, idempotency key from the credit note id),
   then the customer's reactivation when the invoice no longer leaves anything overdue. A failed
   step does not undo the credit note: it is reported in ``errors`` (with its ``stage``) and
   done by the same request sent again (same ``idempotency_key``).

Response: ``{run_id, dry_run: false, tenant_id, invoice_id, action, changed (a credit note was
issued now), credit_note: {...}, invoice (``billing.runs.review.common.invoice_view``), status,
amount_due, amount_paid, amount_credited, reactivated, skipped: 0, errors}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from billing.delivery.documents import render_credit_note, upload_credit_note
from billing.delivery.outbox import (
    Services,
    email_enabled,
    send_credit_note_email,
    send_reactivation_notice,
)
from billing.delivery.stripe_billing import create_credit_note as create_stripe_credit_note
from billing.delivery.stripe_billing import enabled_for
from billing.errors import BadRequest, BillingError, Conflict, EmailError, NotFound, PermissionDenied, echo
from billing.http.shell import Call, text
from billing.logs import get_logger
from billing.pricing.crediting import CreditableLine, CreditSplit, credit_split
from billing.records import (
    CREDIT_NOTE_REASONS,
    CreditNote,
    CreditNoteLine,
    Customer,
    Invoice,
    Tenant,
    parse_email,
)
from billing.runs.payments import reactivate_if_clear
from billing.runs.review.common import invoice_view
from billing.store.credit_notes import Decide, LineCredits
from billing.store.firestore_store import BillingStore, CreditEffect, credit_note_id_for, history_entry

log = get_logger("billing.credit_notes")
ACTION = "create_credit_note"
CREDITABLE_STATUSES = ("open", "paid")
MAX_AMOUNT = 10**15
MAX_LINES = 100
MAX_MEMO = 500
MAX_KEY = 255
OWN_FIELDS = ("action", "invoice_id", "reason", "idempotency_key", "lines", "amount", "memo", "currency")


# -- request -------------------------------------------------------------------------------------
def _amount(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_AMOUNT:
        raise BadRequest(
            f"{where}: must be a positive integer amount in minor units, got {echo(value)}",
            code="invalid_field",
        )
    return value


def _bounded_text(value: Any, where: str, limit: int) -> str:
    """A string of 1-``limit`` characters without control characters or lone surrogates."""
    try:
        checked = text(value)
    except BadRequest as exc:
        raise BadRequest(f"{where}: {exc.message}", code=exc.code) from None
    if not checked.strip() or len(checked) > limit:
        raise BadRequest(f"{where}: must be 1-{limit} characters", code="invalid_field")
    return checked


def _lines(value: Any) -> tuple[tuple[str, int], ...]:
    """``lines``: 1-500 maps ``{line_id, amount}`` (nothing else) as ``(line_id, amount)``."""
    if not isinstance(value, list) or not 0 < len(value) <= MAX_LINES:
        raise BadRequest(
            f"lines: must be a list of 1-{MAX_LINES} {{line_id, amount}} maps", code="invalid_field"
        )
    out: list[tuple[str, int]] = []
    for index, item in enumerate(value):
        where = f"lines[{index}]"
        if not isinstance(item, dict) or set(item) != {"line_id", "amount"}:
            raise BadRequest(f"{where}: must be a map of exactly line_id and amount", code="invalid_field")
        out.append(
            (_bounded_text(item["line_id"], f"{where}.line_id", MAX_KEY), _amount(item["amount"], where))
        )
    return tuple(out)


@dataclass(frozen=True)
class CreditNoteRequest:
    """A validated ``create_credit_note`` request (amounts in minor units)."""

    tenant_id: str
    invoice_id: str
    reason: str
    idempotency_key: str
    actor: str
    lines: tuple[tuple[str, int], ...] | None = None
    amount: int | None = None
    memo: str | None = None
    currency: str | None = None

    @property
    def fingerprint(self) -> str:
        """A SHA-256 of what is credited: a reused key must carry the same request."""
        body = json.dumps(
            [self.invoice_id, self.reason, self.lines, self.amount, self.memo, self.currency],
            ensure_ascii=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()


def parse_request(call: Call) -> CreditNoteRequest:
    """Check the fields of a ``create_credit_note`` call (all before anything is read).

    Raises:
        BadRequest: no ``X-Tenant-ID`` (``missing_tenant``); a missing ``invoice_id``,
            ``reason`` or ``idempotency_key`` (``missing_field``); an unknown reason, neither or
            both of ``lines`` and ``amount``, a bad amount, line, memo or currency
            (``invalid_field``); a field of another action (``unknown_field``).

    """
    body = call.body
    if call.tenant_id is None:
        raise BadRequest("X-Tenant-ID is required for billing_admin", code="missing_tenant")
    extra = sorted(set(body) - set(OWN_FIELDS))
    if extra:
        raise BadRequest(f"{', '.join(extra)}: not a field of {ACTION}", code="unknown_field")
    missing = [name for name in ("invoice_id", "reason", "idempotency_key") if body.get(name) is None]
    if missing:
        raise BadRequest(f"{ACTION} requires {', '.join(missing)}", code="missing_field")
    reason = body["reason"]
    if reason not in CREDIT_NOTE_REASONS:
        raise BadRequest(
            f"reason: unknown reason {echo(reason)}; expected one of {', '.join(CREDIT_NOTE_REASONS)}",
            code="invalid_field",
        )
    if ("lines" in body) == ("amount" in body):
        raise BadRequest("give either lines or amount", code="invalid_field")
    currency = body.get("currency")
    if currency is not None and not (isinstance(currency, str) and currency.isascii() and len(currency) == 3):
        raise BadRequest(f"currency: must be an ISO 4217 code, got {echo(currency)}", code="invalid_field")
    return CreditNoteRequest(
        tenant_id=call.tenant_id,
        invoice_id=body["invoice_id"],
        reason=reason,
        idempotency_key=_bounded_text(body["idempotency_key"], "idempotency_key", MAX_KEY),
        actor=call.principal.email,
        lines=_lines(body["lines"]) if "lines" in body else None,
        amount=_amount(body["amount"], "amount") if "amount" in body else None,
        memo=_bounded_text(body["memo"], "memo", MAX_MEMO) if "memo" in body else None,
        currency=currency.upper() if isinstance(currency, str) else None,
    )


# -- the decision (inside the store's transaction) -----------------------------------------------
def creditable_lines(invoice: Invoice, credits: Mapping[str, tuple[int, int]]) -> list[CreditableLine]:
    """The invoice's lines with what its credit notes credited of each (``line_credits``)."""
    return [
        CreditableLine(
            line.line_id, line.description, line.amount, line.tax, *credits.get(line.line_id, (0, 0))
        )
        for line in invoice.lines
    ]


def check_invoice(invoice: Invoice | None, request: CreditNoteRequest) -> Invoice:
    """The invoice if it may be credited by ``request``.

    Raises:
        NotFound: (``unknown_invoice``) no such invoice in the tenant.
        Conflict: (``invalid_transition``) not ``open`` or ``paid``.
        BadRequest: (``currency_mismatch``) the request's currency is not the invoice's.

    """
    if invoice is None:
        raise NotFound(
            f"unknown invoice {echo(request.invoice_id)} in tenant {echo(request.tenant_id)}",
            code="unknown_invoice",
        )
    if invoice.status not in CREDITABLE_STATUSES:
        raise Conflict(
            f"invoice {echo(invoice.id)} is {invoice.status}; {ACTION} needs an open or paid invoice",
            code="invalid_transition",
        )
    if request.currency is not None and request.currency != invoice.currency.upper():
        raise BadRequest(
            f"currency {echo(request.currency)} is not the invoice's ({invoice.currency})",
            code="currency_mismatch",
        )
    return invoice


def credit_effect(
    invoice: Invoice, split: CreditSplit, credited_before: int
) -> tuple[int, int, CreditEffect]:
    """``(pre_payment_amount, credited_to_balance, effect on the invoice)`` of ``split``.

    Open: the credit lowers ``amount_due`` first (Stripe's ``pre_payment_amount``); nothing left
    due makes the invoice ``void`` (credited to zero) or ``paid`` (partly paid before). Paid:
    the whole credit is owed to the customer. The history entry is completed by the caller.
    """
    pre = min(split.total, invoice.amount_due) if invoice.status == "open" else 0
    due = invoice.amount_due - pre
    status = None
    if invoice.status == "open" and due == 0:
        status = "paid" if invoice.amount_paid > 0 else "void"
    effect = CreditEffect(credited_before + split.total, due, status, {})
    return pre, split.total - pre, effect


def decide(
    tenant: Tenant, request: CreditNoteRequest, credit_note_id: str, now: datetime, run_id: str
) -> Decide:
    """The ``decide`` of ``BillingStore.issue_credit_note`` for ``request`` (see the module doc)."""

    def run(invoice: Invoice | None, credits: LineCredits) -> tuple[CreditNote, CreditEffect]:
        checked = check_invoice(invoice, request)
        credited_before = checked.amount_credited
        split = credit_split(
            creditable_lines(checked, credits),
            requested=request.lines,
            amount=request.amount,
            inclusive=checked.tax_inclusive,
            creditable_total=checked.total - credited_before,
        )
        pre, balance, effect = credit_effect(checked, split, credited_before)
        entry = history_entry(
            ACTION,
            request.actor,
            now,
            run_id=run_id,
            credit_note_id=credit_note_id,
            amount=split.total,
            reason=request.reason,
            status_after=effect.status,
        )
        note = _new_note(tenant, checked, request, credit_note_id, split, now, run_id, (pre, balance))
        note = replace(note, invoice_status_after=effect.status or checked.status)
        return note, CreditEffect(effect.amount_credited, effect.amount_due, effect.status, entry)

    return run


def _new_note(
    tenant: Tenant,
    invoice: Invoice,
    request: CreditNoteRequest,
    credit_note_id: str,
    split: CreditSplit,
    now: datetime,
    run_id: str,
    amounts: tuple[int, int],
) -> CreditNote:
    """The credit note to create (its number is given by the store)."""
    return CreditNote(
        id=credit_note_id,
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        reason=request.reason,
        status="issued",
        number="",
        lines=tuple(CreditNoteLine(x.description, x.invoice_line_id, x.amount, x.tax) for x in split.lines),
        subtotal=split.subtotal,
        tax=split.tax,
        total=split.total,
        created_at=now,
        idempotency_key=request.idempotency_key,
        memo=request.memo,
        history=(history_entry("issued", request.actor, now, run_id=run_id),),
        tenant_id=tenant.id,
        invoice_number=invoice.number,
        invoice_issued_at=invoice.issued_at,
        customer=invoice.customer,
        tax_inclusive=invoice.tax_inclusive,
        pre_payment_amount=amounts[0],
        credited_to_balance=amounts[1],
        invoice_status_after=None,
        request_fingerprint=request.fingerprint,
        created_by=request.actor,
        run_id=run_id,
    )


# -- after the commit ----------------------------------------------------------------------------
@dataclass
class _Followup:
    """The steps after the commit for one credit note; each failure becomes an ``errors`` entry."""

    store: BillingStore
    tenant: Tenant
    services: Services
    now: datetime
    run_id: str
    actor: str
    errors: list[dict[str, Any]]
    in_progress: bool = False  # another request is sending the email now: not an error, not done

    def fail(self, stage: str, note: CreditNote, exc: Exception) -> None:
        """Record a failed step (``stage``: ``pdf``, ``upload``, ``email``, ``stripe``...)."""
        if isinstance(exc, BillingError):
            message, code = exc.message, exc.code
        else:
            log.exception("credit note step failed", extra={"credit_note_id": note.id, "stage": stage})
            message, code = f"internal error: {type(exc).__name__}", "internal"
        self.errors.append(
            {
                "tenant_id": self.tenant.id,
                "credit_note_id": note.id,
                "invoice_id": note.invoice_id,
                "stage": stage,
                "error": message,
                "code": code,
            }
        )

    def pdf(self, note: CreditNote) -> bytes | None:
        """Render the PDF; store it unless it is stored already. ``None`` when rendering failed."""
        from billing.store.clients import invoices_bucket, storage_client

        try:
            data = render_credit_note(self.tenant, note)
        except Exception as exc:
            self.fail("pdf", note, exc)
            return None
        if note.pdf_uri is None:
            try:
                uri = upload_credit_note(self.tenant, note, data, storage_client(), invoices_bucket())
            except Exception as exc:
                self.fail("upload", note, exc)
                return data
            self.store.update_credit_note(
                self.tenant.id, note.id, {"pdf_uri": uri, "pdf_rendered_at": self.now}
            )
        return data

    def email(self, note: CreditNote, pdf: bytes | None) -> None:
        """Email the customer once (outbox), when the tenant emails and the PDF exists."""
        if not email_enabled(self.tenant) or note.email_sent_at is not None or pdf is None:
            return
        try:
            found = self.store.get_customers(self.tenant.id, [note.customer_id]).get(note.customer_id)
            customer = found if isinstance(found, Customer) else None
            to = (customer.email if customer else None) or (note.customer.email if note.customer else None)
            if not to:
                raise BillingError(f"customer {note.customer_id!r} has no email address", code="no_email")
            parse_email(to, f"credit_notes/{note.id}")
            send_credit_note_email(
                self.store, self.tenant, note, to, pdf, self.services, self.now, self.run_id, customer
            )
        except EmailError as exc:
            if exc.code == "email_in_progress":  # a concurrent same request holds the outbox claim
                self.in_progress = True
            else:
                self.fail("email", note, exc)
        except Exception as exc:
            self.fail("email", note, exc)

    def stripe(self, note: CreditNote, invoice: Invoice) -> None:
        """Create the Stripe twin when the invoice has one and Stripe is on for the tenant."""
        if not (invoice.stripe_invoice_id and enabled_for(self.tenant)) or note.stripe_credit_note_id:
            return
        try:
            create_stripe_credit_note(
                self.store, self.tenant, note, invoice.stripe_invoice_id, self.services.stripe(), self.now
            )
        except Exception as exc:
            self.fail("stripe", note, exc)

    def deliver(self, note: CreditNote, invoice: Invoice) -> None:
        """PDF, email and Stripe as needed; ``delivery_pending`` cleared once all are done."""
        before = len(self.errors)
        if note.pdf_uri is None or (email_enabled(self.tenant) and note.email_sent_at is None):
            self.email(note, self.pdf(note))
        self.stripe(note, invoice)
        if len(self.errors) == before and not self.in_progress and note.delivery_pending:
            self.store.update_credit_note(
                self.tenant.id, note.id, {"delivery_pending": False, "delivered_at": self.now}
            )

    def reactivate(self, note: CreditNote, invoice: Invoice) -> bool:
        """Reactivate the customer (as after a payment) once the invoice leaves nothing due."""
        if invoice.amount_due > 0 and invoice.status == "open":
            return False
        try:
            done = reactivate_if_clear(
                self.store,
                self.tenant,
                invoice.customer_id,
                self.now,
                self.now,
                self.run_id,
                actor=self.actor,
                notify=email_enabled(self.tenant),
            )
            if done is None:
                return False
            if done.notification_id:
                send_reactivation_notice(
                    self.store,
                    self.tenant,
                    done.customer,
                    done.notification_id,
                    self.services,
                    self.now,
                    self.run_id,
                )
        except Exception as exc:
            self.fail("reactivation", note, exc)
            return False
        return True


def deliver_pending_credit_notes(
    store: BillingStore, tenant: Tenant, services: Services, now: datetime, run_id: str
) -> tuple[int, list[dict[str, Any]]]:
    """Finish the credit notes whose PDF, email or Stripe twin is still pending (dunning's sweep).

    A request that died after issuing its credit note, or whose step failed and was never
    retried, leaves ``delivery_pending`` set; this does what is missing, each step once (the
    same steps as ``create_credit_note``). Returns ``(finished now, errors)``; errors have
    ``credit_note_id`` and ``stage``. Never raises for one credit note.
    """
    errors: list[dict[str, Any]] = []
    followup = _Followup(store, tenant, services, now, run_id, "dunning", errors)
    finished = 0
    for note in store.pending_credit_notes(tenant.id):
        if isinstance(note, tuple):
            errors.append(
                {
                    "tenant_id": tenant.id,
                    "credit_note_id": note[0],
                    "stage": "storage",
                    "error": note[1].message,
                    "code": note[1].code,
                }
            )
            continue
        before = len(errors)
        try:
            invoice = store.get_invoice(tenant.id, note.invoice_id)
        except BillingError as exc:
            followup.fail("storage", note, exc)
            continue
        if invoice is not None:
            followup.deliver(note, invoice)
            finished += len(errors) == before
    return finished, errors


def _shown(note: CreditNote) -> dict[str, Any]:
    """The credit note in the response: number, amounts, lines, where its money went."""
    return {
        "credit_note_id": note.id,
        "number": note.number,
        "status": note.status,
        "reason": note.reason,
        "currency": note.currency,
        "lines": [line.to_document() for line in note.lines],
        "subtotal": note.subtotal,
        "tax": note.tax,
        "total": note.total,
        "pre_payment_amount": note.pre_payment_amount,
        "credited_to_balance": note.credited_to_balance,
        "pdf_uri": note.pdf_uri,
        "stripe_credit_note_id": note.stripe_credit_note_id,
        "email_sent_at": note.email_sent_at,
        "created_at": note.created_at,
    }


def _tenant(store: BillingStore, tenant_id: str) -> Tenant:
    tenant = store.get_tenant(tenant_id)
    if tenant.status != "active":
        raise PermissionDenied(f"tenant {echo(tenant.id)} is disabled", code="tenant_disabled")
    return tenant


def create_credit_note(
    store: BillingStore, call: Call, now: datetime, services: Services | None = None
) -> dict[str, Any]:
    """Issue (or find again) the credit note of ``call``, then do its steps; the response body.

    Raises:
        BadRequest, PermissionDenied, NotFound, Conflict: before anything is written (see the
            module docstring); a failed step after the commit is reported in ``errors``.

    """
    services = services or Services()
    request = parse_request(call)
    tenant = _tenant(store, request.tenant_id)
    credit_note_id = credit_note_id_for(request.invoice_id, request.idempotency_key)
    note, created = store.issue_credit_note(
        tenant,
        request.invoice_id,
        credit_note_id,
        decide(tenant, request, credit_note_id, now, call.run_id),
        now,
    )
    if not created and note.request_fingerprint != request.fingerprint:
        raise Conflict(
            f"idempotency_key {echo(request.idempotency_key)} was used for another credit note request",
            code="idempotency_key_reused",
        )
    errors: list[dict[str, Any]] = []
    followup = _Followup(store, tenant, services, now, call.run_id, request.actor, errors)
    invoice = store.get_invoice(tenant.id, note.invoice_id)
    assert invoice is not None  # the transaction above read it
    followup.deliver(note, invoice)
    reactivated = followup.reactivate(note, invoice) if created else False
    final = store.get_credit_note(tenant.id, note.id) or note
    log.info(
        "credit note issued" if created else "credit note found again",
        extra={
            "credit_note_id": note.id,
            "invoice_id": note.invoice_id,
            "number": note.number,
            "errors": len(errors),
        },
    )
    return {
        "run_id": call.run_id,
        "dry_run": False,
        "tenant_id": tenant.id,
        "invoice_id": note.invoice_id,
        "action": ACTION,
        "changed": created,
        "credit_note": _shown(final),
        "invoice": invoice_view(invoice),
        "status": invoice.status,
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_credited": invoice.amount_credited,
        "reactivated": reactivated,
        "skipped": 0,
        "errors": errors,
    }
