"""``regenerate``: bill a voided subscription invoice's period again, from current data (issue 10).

Lago's "regenerate" of a voided invoice: the same (subscription, period) is priced again by the
run's pipeline (``refresh_draft.price_period``) and stored as a new invoice that records
``replaces`` (the void invoice) and ``generation``; the void invoice gets ``replaced_by``. The new
id is deterministic: ``{original id}-r{generation}`` (the first invoice of the period is the
original), so concurrent calls price the same invoice and ``create_invoice_once`` creates it once;
in the same transaction the void invoice must still be ``void`` and not replaced by another id.
So at most one invoice per (subscription, period) is ever live (not ``void``/``deleted``): the
month close's create-if-absent never recreates the original id, and only the chain's last
invoice, once voided, can be regenerated.

The new invoice is a ``draft`` waiting for a person when the tenant has ``month_close_review``,
else finalized at once (number, PDF, delivery, like the month close); ``finalize`` (bool)
overrides. A void invoice regenerated already answers its replacement (``changed: false``).
"""

from __future__ import annotations

from typing import Any

from billing.delivery.outbox import delivery_enabled
from billing.errors import Conflict, echo
from billing.records import Invoice
from billing.runs.review.common import (
    ReviewCall,
    invoice_view,
    load_invoice,
    not_draft,
    publish_invoices,
    require_fields,
    response,
)
from billing.runs.review.refresh_draft import price_period
from billing.store.sizes import invoice_size


def replacement_id(invoice: Invoice) -> tuple[str, int]:
    """The id and generation of the invoice that replaces ``invoice``: ``{original}-r{n}``."""
    generation = int(invoice.raw.get("generation") or 0) + 1
    original = str(invoice.raw.get("original_invoice_id") or invoice.id)
    return f"{original}-r{generation}", generation


def check_void(call: ReviewCall, invoice: Invoice) -> None:
    """Only a ``void`` subscription invoice can be regenerated (409 otherwise)."""
    if invoice.subscription_id is None:
        raise Conflict(
            f"invoice {echo(invoice.id)} is a one-off invoice: create another one instead",
            code="one_off_invoice",
        )
    if invoice.status != "void":
        raise not_draft(invoice, "regenerate")


def regenerate(call: ReviewCall) -> dict[str, Any]:
    """Create the replacement of a void invoice (or find it); answer it (``created``).

    Fields: ``invoice_id``, optional ``finalize``. Steps: read and check the void invoice, price
    its period, create the replacement with ``replaces`` in one transaction, publish it when
    finalized.
    """
    require_fields(call, ("invoice_id",), ("finalize", "reason"))
    old = load_invoice(call, call.body["invoice_id"])
    if old.replaced_by is not None:
        current = load_invoice(call, old.replaced_by)
        return response(call, False, invoice_id=current.id, created=False, invoice=invoice_view(current))
    check_void(call, old)
    new_id, generation = replacement_id(old)
    fresh = price_period(call, old)
    document = fresh.to_document()
    document.update(
        replaces=old.id,
        original_invoice_id=str(old.raw.get("original_invoice_id") or old.id),
        generation=generation,
        history=[call.entry(replaces=old.id, reason=call.body.get("reason"))],
    )
    invoice_size(call.tenant.id, new_id, document)
    finalize = bool(call.body.get("finalize", not call.tenant.month_close_review))
    invoice, created = call.store.create_invoice_once(
        call.tenant,
        new_id,
        document,
        now=call.now,
        run_id=call.run_id,
        finalize=finalize,
        delivery_pending=delivery_enabled(call.tenant),
        replaces=old.id,
    )
    errors: list[dict[str, Any]] = []
    if invoice.status == "open" and invoice.pdf_uri is None:
        errors = publish_invoices(call, [invoice])
    after = call.store.get_invoice(call.tenant.id, invoice.id) or invoice
    return response(
        call, created, invoice_id=after.id, created=created, invoice=invoice_view(after), errors=errors
    )
