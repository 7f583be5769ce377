"""What every review action shares: the request, field validators, the invoice view, the edit.

Rules every action follows (contract "Review and correction"):

- Every change is recorded in the invoice's ``history`` as ``{action, actor, at, run_id,
  request_id, ...}`` (the caller's email and the time).
- A request retried with the same ``X-Request-ID`` header is a no-op: the id is stored in the
  invoice's ``request_ids`` in the same transaction as the change (``InvoiceStore.edit_invoice``),
  and a request whose id is there already answers the invoice as it is (``changed: false``).
- Lines are repriced by the builder's rules (``billing.pricing.invoicing``: tax per line,
  ROUND_HALF_UP, the tenant's ``tax_inclusive``, the customer's ``tax_exempt``, the line's
  ``tax_exempt``) and the totals recomputed (``totals``); a draft's total never goes below zero
  (409 ``negative_total``).
- Only a ``draft`` can be edited (409 ``invalid_transition``), and an edit takes the draft out of
  the grace-period finalization (``finalize_at`` null): a person finalizes what a person edited.
- Every field is checked before anything is read beyond the tenant, and every check before the
  one write: bad input changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.delivery.outbox import Services
from billing.errors import BadRequest, BillingError, Conflict, DataError, NotFound, echo
from billing.http.shell import text
from billing.pricing.invoicing import totals
from billing.pricing.money import decimal_text
from billing.records import Customer, Invoice, InvoiceLine, Tenant
from billing.runs.pipeline import publish
from billing.runs.shell import PdfSink, RunContext, RunKind, RunReport
from billing.store.firestore_store import BillingStore
from billing.store.invoices import DraftEdit, history_entry, seen_request

MAX_LINES = 100
"""At most this many lines in one ``create_invoice`` request, and ids in one ``finalize``."""
MAX_TEXT = 500
MAX_KEY = 255
_QUANTITY = re.compile(r"\d{1,12}(?:\.\d{1,12})?")
_PRICE = re.compile(r"-?\d{1,15}(?:\.(\d+))?")
_CURRENCY = re.compile(r"[A-Z]{3}")
REVIEW_KIND = RunKind("billing_admin", ())
"""The report a review action's publishing step fills (its ``errors`` go in the response)."""


# -- field validators (``billing.runs.admin_actions.BILLING_ADMIN_FIELDS``) ------------------------
def quantity_field(value: Any) -> Decimal:
    """Validator: a positive decimal string (``"1"``, ``"2.5"``), at most 12 digits and 12 decimals.

    Raises:
        BadRequest: not a string, not plain decimal text (no exponent, sign or spaces), or zero.

    """
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise BadRequest(
            f"must be a positive decimal string with at most 12 decimals, got {echo(value)}",
            code="invalid_field",
        )
    quantity = Decimal(value)
    if quantity == 0:
        raise BadRequest("must be more than zero", code="invalid_field")
    return quantity


def unit_amount_field(value: Any) -> Decimal:
    """Validator: ``unit_amount_decimal``, minor units as a decimal string, at most 12 decimals.

    May be negative (a discount). At most 15 integer digits, so no line can exceed what
    Firestore stores. Raises ``BadRequest`` (``too_many_decimals`` past 12 decimals, the
    contract's limit, else ``invalid_field``).
    """
    match = _PRICE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise BadRequest(
            f"must be a decimal string of minor units (up to 15 digits), got {echo(value)}",
            code="invalid_field",
        )
    if match.group(1) is not None and len(match.group(1)) > 12:
        raise BadRequest(f"has more than 12 decimals: {echo(value)}", code="too_many_decimals")
    return Decimal(value)


def description_field(value: Any) -> str:
    """Validator: a line's description or a memo, 1-500 characters Firestore can store."""
    checked = text(value)
    if not checked.strip() or len(checked) > MAX_TEXT:
        raise BadRequest(f"must be 1-{MAX_TEXT} characters", code="invalid_field")
    return checked


def currency_field(value: Any) -> str:
    """Validator: an ISO 4217 code (three capital letters); compared with the invoice's later."""
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise BadRequest(f"must be an ISO 4217 currency code, got {echo(value)}", code="invalid_field")
    return value


def key_field(value: Any) -> str:
    """Validator: an idempotency key, 1-255 characters Firestore can store."""
    checked = text(value)
    if not checked.strip() or len(checked) > MAX_KEY:
        raise BadRequest(f"must be 1-{MAX_KEY} characters", code="invalid_field")
    return checked


def maps_field(value: Any) -> list[Mapping[str, Any]]:
    """Validator: a list of 1-100 maps (each checked by the action that reads it)."""
    if not isinstance(value, list) or not 0 < len(value) <= MAX_LINES:
        raise BadRequest(f"must be a list of 1-{MAX_LINES} items", code="invalid_field")
    if not all(isinstance(item, Mapping) for item in value):
        raise BadRequest("every item must be an object", code="invalid_field")
    return list(value)


def ids_field(value: Any) -> list[str]:
    """Validator: ``invoice_ids``, 1-100 distinct document ids."""
    from billing.http.shell import identifier

    if not isinstance(value, list) or not 0 < len(value) <= MAX_LINES:
        raise BadRequest(f"must be a list of 1-{MAX_LINES} invoice ids", code="invalid_field")
    ids = [identifier(item) for item in value]
    if len(set(ids)) != len(ids):
        raise BadRequest("lists an invoice more than once", code="invalid_field")
    return ids


# -- the request ------------------------------------------------------------------------------
@dataclass
class ReviewCall:
    """One validated review request and what it acts with.

    ``actor``: the caller's email (recorded in ``history``); ``request_id``: the
    ``X-Request-ID`` header (``None`` when absent: then only each action's own rule makes a
    retry harmless); ``publish_pdfs``: the PDF sink (``None``: render to ``INVOICES_BUCKET``).
    """

    store: BillingStore
    tenant: Tenant
    actor: str
    body: Mapping[str, Any]
    now: datetime
    run_id: str
    request_id: str | None = None
    services: Services = field(default_factory=Services)
    publish_pdfs: PdfSink | None = None

    @property
    def action(self) -> str:
        """The action's name (``body["action"]``)."""
        return str(self.body["action"])

    def entry(self, action: str | None = None, **details: Any) -> dict[str, Any]:
        """A ``history`` entry for this request: action, actor, time, run and request id."""
        return history_entry(
            action or self.action,
            self.actor,
            self.now,
            run_id=self.run_id,
            request_id=self.request_id,
            **details,
        )

    def context(self) -> RunContext:
        """A run context for the pipeline's steps (pricing, publishing) on this request."""
        return RunContext(
            run_id=self.run_id,
            now=self.now,
            dry_run=False,
            store=self.store,
            publish_pdfs=self.publish_pdfs or _bucket_sink,
            principal=self.actor,
        )


def _bucket_sink(
    tenant: Tenant, invoices: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], float]:
    """Render and upload to ``INVOICES_BUCKET`` (as ``billing.http.handlers.publish_to_bucket``)."""
    from billing.delivery.documents import render_and_upload
    from billing.store.clients import invoices_bucket, storage_client

    outcome = render_and_upload(tenant, invoices, storage_client(), invoices_bucket())
    return outcome.uris, outcome.failures, outcome.render_seconds


def require_fields(call: ReviewCall, required: Sequence[str], optional: Sequence[str] = ()) -> None:
    """Check the body holds ``required`` and nothing beyond ``optional``.

    Raises:
        BadRequest: ``missing_field`` or ``unknown_field`` (naming the action).

    """
    missing = [name for name in required if call.body.get(name) is None]
    if missing:
        raise BadRequest(f"{call.action} requires {', '.join(missing)}", code="missing_field")
    extra = sorted(set(call.body) - {"action", *required, *optional})
    if extra:
        raise BadRequest(f"{', '.join(extra)}: not a field of {call.action}", code="unknown_field")


def check_currency(call: ReviewCall, currency: str) -> None:
    """Raise ``BadRequest`` (``currency_mismatch``) when the body names another currency."""
    named = call.body.get("currency")
    if named is not None and named != currency:
        raise BadRequest(
            f"currency {named} does not match the invoice's {currency}", code="currency_mismatch"
        )


def unknown_invoice(call: ReviewCall, invoice_id: str) -> NotFound:
    """The 404 for an invoice the tenant does not have (another tenant's included)."""
    return NotFound(
        f"unknown invoice {echo(invoice_id)} in tenant {echo(call.tenant.id)}", code="unknown_invoice"
    )


def not_draft(invoice: Invoice, action: str) -> Conflict:
    """The 409 for an action on an invoice whose status does not allow it."""
    return Conflict(
        f"invoice {echo(invoice.id)} is {invoice.status}; {action} is not allowed", code="invalid_transition"
    )


def load_invoice(call: ReviewCall, invoice_id: str) -> Invoice:
    """Read one invoice of the tenant; ``NotFound`` (404) when absent."""
    invoice = call.store.get_invoice(call.tenant.id, invoice_id)
    if invoice is None:
        raise unknown_invoice(call, invoice_id)
    return invoice


def load_customer(call: ReviewCall, customer_id: str) -> Customer:
    """Read one customer; 404 ``unknown_customer`` when absent, 422 when unreadable."""
    found = call.store.get_customers(call.tenant.id, [customer_id]).get(customer_id)
    if isinstance(found, Customer):
        return found
    if found is None or found.code == "unknown_customer":
        raise NotFound(f"unknown customer {echo(customer_id)}", code="unknown_customer")
    raise found


def line_documents(invoice: Invoice) -> list[dict[str, Any]]:
    """The stored lines as maps, each with its ``line_id`` and ``kind`` (derived for old lines)."""
    raw = invoice.raw.get("lines") or []
    return [
        {**dict(stored), "line_id": line.line_id, "kind": line.kind}
        for stored, line in zip(raw, invoice.lines, strict=True)
    ]


def priced_fields(invoice: Invoice, lines: Sequence[Mapping[str, Any]], inclusive: bool) -> dict[str, Any]:
    """The fields an edit writes: ``lines`` and totals recomputed by the builder's rules.

    ``amount_due`` is the total less what is paid and credited. ``finalize_at`` is cleared:
    a person took the draft over. Raises ``Conflict`` (``negative_total``) when the total
    would go below zero, ``DataError`` (``amount_too_large``) past what Firestore stores.
    """
    parsed = [
        InvoiceLine.from_document(line, f"invoices/{invoice.id} line {n}", n) for n, line in enumerate(lines)
    ]
    subtotal, tax, total = totals(parsed, inclusive)
    if total < 0:
        raise Conflict(
            f"the invoice's total would be {total}: a draft's total may not go below zero",
            code="negative_total",
        )
    return {
        "lines": [dict(line) for line in lines],
        "subtotal": subtotal,
        "tax": tax,
        "total": total,
        "tax_inclusive": inclusive,
        "amount_due": total - invoice.amount_paid - invoice.amount_credited,
        "finalize_at": None,
    }


def edit_draft(
    call: ReviewCall, invoice_id: str, change: Callable[[Invoice], DraftEdit]
) -> tuple[Invoice, bool]:
    """Apply ``change`` to a draft in one transaction; return the invoice and whether it changed.

    Order inside the transaction: the invoice must exist (404), a request id seen already is a
    no-op, the invoice must be a ``draft`` (409), then ``change`` (which may raise 4xx) makes
    the edit, written with the request id.
    """

    def decide(invoice: Invoice | None) -> tuple[bool, DraftEdit | None]:
        if invoice is None:
            raise unknown_invoice(call, invoice_id)
        if seen_request(invoice, call.request_id):
            return False, None
        if invoice.status != "draft":
            raise not_draft(invoice, call.action)
        edit = change(invoice)
        return bool(edit.fields or edit.history), DraftEdit(edit.fields, edit.history, call.request_id)

    changed, after = call.store.edit_invoice(call.tenant.id, invoice_id, decide)
    return after or load_invoice(call, invoice_id), changed


def custom_line_id(seed: str) -> str:
    """A custom line's id from the request that adds it: ``custom-`` and 16 hex digits."""
    return "custom-" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:16]


def publish_invoices(call: ReviewCall, invoices: Sequence[Invoice]) -> list[dict[str, Any]]:
    """Render, store and deliver finalized invoices exactly like a run does; return the errors.

    ``billing.runs.pipeline.publish``: PDF at the contract's path, then the email and the
    Stripe invoice as the tenant enables them, once per invoice whatever the retries (the
    outbox). A failure is returned (and retried by the next ``dunning``/``generate_invoices``
    run), never raised: the invoice is final already.
    """
    report = RunReport(REVIEW_KIND, call.run_id, False)
    try:
        publish(call.context(), report, call.tenant, invoices)
    except BillingError as exc:
        report.error(call.tenant.id, exc)
    return report.errors


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def line_view(line: InvoiceLine) -> dict[str, Any]:
    """One line as the response shows it (decimals as text, amounts in minor units)."""
    return {
        "line_id": line.line_id,
        "kind": line.kind,
        "description": line.description,
        "quantity": decimal_text(line.quantity),
        "unit_amount_decimal": decimal_text(line.unit_amount_decimal),
        "amount": line.amount,
        "tax": line.tax,
        "tax_exempt": line.tax_exempt,
    }


def invoice_view(invoice: Invoice) -> dict[str, Any]:
    """The invoice in a response: identity, status, lines and totals (minor units), dates."""
    return {
        "invoice_id": invoice.id,
        "type": invoice.type,
        "status": invoice.status,
        "number": invoice.number,
        "customer_id": invoice.customer_id,
        "subscription_id": invoice.subscription_id,
        "currency": invoice.currency,
        "period_start": _time(invoice.period_start),
        "period_end": _time(invoice.period_end),
        "lines": [line_view(line) for line in invoice.lines],
        "subtotal": invoice.subtotal,
        "tax": invoice.tax,
        "total": invoice.total,
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_credited": invoice.amount_credited,
        "due_at": _time(invoice.due_at),
        "pdf_uri": invoice.pdf_uri,
        "memo": invoice.memo,
        "replaces": invoice.replaces,
        "replaced_by": invoice.replaced_by,
        "history_entries": len(invoice.history),
    }


def response(call: ReviewCall, changed: bool, **fields: Any) -> dict[str, Any]:
    """The response body: the admin action's envelope plus ``fields`` (``invoice``...)."""
    return {
        "run_id": call.run_id,
        "dry_run": False,
        "tenant_id": call.tenant.id,
        "action": call.action,
        "request_id": call.request_id,
        "changed": changed,
        "skipped": 0,
        "errors": [],
        **fields,
    }


def data_error(report: RunReport, what: str) -> BillingError:
    """The error to answer when pricing one (subscription, period) gave no invoice.

    The report's error (a ``DataError``, 422) or skip (``customer_archived``: 409).
    """
    if report.errors:
        first = report.errors[0]
        return DataError(f"{what}: {first.get('error')}", code=str(first.get("code") or "invalid_data"))
    reason = report.skips[0].get("reason") if report.skips else "not_billable"
    return Conflict(f"{what}: {reason}", code=str(reason))
