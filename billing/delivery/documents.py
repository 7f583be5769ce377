"""Invoice and credit note PDFs: build the renderer's input from a stored document, render, upload.

Invoice PDFs land at ``gs://{INVOICES_BUCKET}/{tenant_id}/{YYYY-MM}/{number or invoice id}.pdf``
(the contract), ``YYYY-MM`` being the billing period's first month in the tenant's timezone;
credit notes at ``gs://{INVOICES_BUCKET}/{tenant_id}/credit_notes/{number}.pdf`` (the contract). Rendering
is deterministic for a given invoice, so a repeated upload (a retried run) writes the same bytes.
Uploads run on a small thread pool (network bound); rendering stays on the calling thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import google.cloud.storage as storage

from billing.pricing.periods import zone
from billing.records import CreditNote, Tenant

UPLOAD_THREADS = 8  # at most the HTTP pool size (10), or connections churn


def pdf_object_name(tenant_id: str, invoice: Mapping[str, Any], timezone: str) -> str:
    """Object name of an invoice's PDF: ``{tenant}/{YYYY-MM}/{number or id}.pdf``."""
    period_start: datetime = invoice["period_start"]
    month = f"{period_start.astimezone(zone(timezone)):%Y-%m}"
    return f"{tenant_id}/{month}/{invoice.get('number') or invoice['invoice_id']}.pdf"


def pdf_input(tenant: Tenant, invoice: Mapping[str, Any]) -> dict[str, Any]:
    """The ``render_invoice_pdf`` input for a stored invoice document (with ``invoice_id``).

    Every PDF (month close, anniversary run, ``render_pdf`` admin action, outbox attachment) is
    rendered from this input, and its seller block from ``Tenant.seller()`` only, so that the
    same invoice always prints the same seller lines.
    """
    return {
        "invoice_id": invoice["invoice_id"],
        "number": invoice.get("number"),
        "status": invoice.get("status", "draft"),
        "currency": invoice["currency"],
        "locale": tenant.locale,
        "timezone": tenant.timezone,
        "period_start": invoice["period_start"],
        "period_end": invoice["period_end"],
        "issued_at": invoice.get("issued_at"),
        "due_at": invoice.get("due_at"),
        "seller": tenant.seller(),
        "customer": invoice.get("customer") or {"id": invoice["customer_id"], "name": invoice["customer_id"]},
        "lines": invoice["lines"],
        "subtotal": invoice["subtotal"],
        "tax": invoice["tax"],
        "total": invoice["total"],
        "tax_inclusive": bool(invoice.get("tax_inclusive", False)),
        "amount_paid": invoice.get("amount_paid", 0),
        "amount_due": invoice.get("amount_due", invoice["total"]),
        "memo": tenant.invoice_memo
        or f"Payment due within {tenant.payment_terms_days} days of the issue date.",
    }


@dataclass
class PdfOutcome:
    """Result of rendering a set of invoices: ``uris`` per invoice id, failures, time spent."""

    uris: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    render_seconds: float = 0.0


def render_and_upload(
    tenant: Tenant,
    invoices: Sequence[Mapping[str, Any]],
    client: storage.Client,
    bucket_name: str,
    render: Callable[[Mapping[str, Any]], bytes] | None = None,
) -> PdfOutcome:
    """Render each invoice and upload it; return the ``gs://`` URIs and any failures.

    A failure (render or upload) is returned for that invoice, never raised: the invoice keeps
    ``pdf_uri = None`` and the next run or the ``render_pdf`` admin action renders it again.
    """
    if render is None:
        from billing.delivery.pdf import render_invoice_pdf  # fpdf2 loads only when rendering

        render = render_invoice_pdf
    outcome = PdfOutcome()
    bucket = client.bucket(bucket_name)

    def upload(name: str, data: bytes) -> str:
        blob = bucket.blob(name)
        blob.upload_from_string(data, content_type="application/pdf")
        return f"gs://{bucket_name}/{name}"

    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        pending = []
        for invoice in invoices:
            invoice_id = str(invoice["invoice_id"])
            try:
                started = time.perf_counter()
                data = render(pdf_input(tenant, invoice))
                outcome.render_seconds += time.perf_counter() - started
            except Exception as exc:
                outcome.failures.append((invoice_id, f"PDF rendering failed: {exc}"))
                continue
            name = pdf_object_name(tenant.id, invoice, tenant.timezone)
            pending.append((invoice_id, pool.submit(upload, name, data)))
        for invoice_id, future in pending:
            try:
                outcome.uris.append((invoice_id, future.result()))
            except Exception as exc:
                outcome.failures.append((invoice_id, f"PDF upload failed: {exc}"))
    return outcome


# -- credit notes ----------------------------------------------------------------------------------
def credit_note_object_name(tenant_id: str, number: str) -> str:
    """Object name of a credit note's PDF: ``{tenant}/credit_notes/{number}.pdf``."""
    return f"{tenant_id}/credit_notes/{number}.pdf"


def credit_note_pdf_input(tenant: Tenant, note: CreditNote) -> dict[str, Any]:
    """The ``render_credit_note_pdf`` input for a stored credit note.

    The seller block comes from ``Tenant.seller()`` (as on every invoice PDF); the customer is
    the invoice's snapshot, copied onto the credit note when it was issued.
    """
    customer = note.as_document().get("customer") or {"id": note.customer_id, "name": note.customer_id}
    return {
        "credit_note_id": note.id,
        "number": note.number,
        "status": note.status,
        "currency": note.currency,
        "locale": tenant.locale,
        "timezone": tenant.timezone,
        "created_at": note.created_at,
        "invoice_id": note.invoice_id,
        "invoice_number": note.invoice_number,
        "invoice_issued_at": note.invoice_issued_at,
        "reason": note.reason,
        "memo": note.memo,
        "seller": tenant.seller(),
        "customer": customer,
        "lines": [line.to_document() for line in note.lines],
        "subtotal": note.subtotal,
        "tax": note.tax,
        "total": note.total,
        "tax_inclusive": note.tax_inclusive,
        "pre_payment_amount": note.pre_payment_amount,
        "credited_to_balance": note.credited_to_balance,
    }


def render_credit_note(tenant: Tenant, note: CreditNote) -> bytes:
    """The credit note's PDF bytes (deterministic for a given credit note).

    Raises:
        DataError: (``invalid_invoice``) the stored credit note cannot be rendered.

    """
    from billing.delivery.pdf import render_credit_note_pdf  # fpdf2 loads only when rendering

    return render_credit_note_pdf(credit_note_pdf_input(tenant, note))


def upload_credit_note(
    tenant: Tenant, note: CreditNote, data: bytes, client: storage.Client, bucket_name: str
) -> str:
    """Store ``data`` at the credit note's contract path; return its ``gs://`` URI.

    A repeated upload (a retried request) writes the same bytes to the same object.
    """
    name = credit_note_object_name(tenant.id, note.number)
    client.bucket(bucket_name).blob(name).upload_from_string(data, content_type="application/pdf")
    return f"gs://{bucket_name}/{name}"
