"""``create_invoice``: a one-off invoice for a customer, with no subscription (issue 10).

Stripe's one-off invoice (and Orb's manual issuance): prepaid work and extras. The lines are
``custom`` lines priced and taxed by the builder's rules (the customer's rate, 0 when the
customer or the line is tax exempt; the tenant's ``tax_inclusive``). The invoice's id is derived
from ``idempotency_key`` (``oneoff-`` and 24 hex digits of its SHA-256), and it is created with a
create-if-absent transaction: the same key returns the same invoice and creates nothing, however
many calls arrive at once. A key reused for another customer is 409 ``idempotency_key_reused``
(Stripe refuses a key reused with other parameters).

It is a ``draft`` (no number, waiting for a person) unless ``finalize`` is true: then it is
numbered in the same series as every invoice, in the creating transaction, and its PDF and
delivery follow (``billing.runs.pipeline.publish``), like any finalized invoice. A retry with
``finalize`` of a key whose invoice is still a draft finalizes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from billing.delivery.outbox import delivery_enabled
from billing.errors import BadRequest, Conflict, echo
from billing.http.shell import boolean
from billing.pricing.invoicing import InvoiceLine, LineTax, custom_line, one_off_document
from billing.pricing.tax import tax_rate_for
from billing.records import Customer
from billing.runs.review.common import (
    ReviewCall,
    check_currency,
    description_field,
    invoice_view,
    load_customer,
    publish_invoices,
    quantity_field,
    require_fields,
    response,
    unit_amount_field,
)
from billing.store.sizes import invoice_size

LINE_FIELDS = {
    "description": description_field,
    "quantity": quantity_field,
    "unit_amount_decimal": unit_amount_field,
    "tax_exempt": boolean,
}


def one_off_invoice_id(idempotency_key: str) -> str:
    """The invoice id a key makes: ``oneoff-`` and 24 hex digits of the key's SHA-256."""
    return "oneoff-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:24]


def parse_line(raw: Mapping[str, Any], n: int) -> dict[str, Any]:
    """Check one requested line; raise ``BadRequest`` naming ``lines[n]`` on a bad or unknown field.

    ``description``, ``quantity``, ``unit_amount_decimal`` are required, ``tax_exempt`` optional.
    """
    unknown = sorted(set(raw) - set(LINE_FIELDS))
    if unknown:
        raise BadRequest(f"lines[{n}]: unknown field(s) {echo(', '.join(unknown))}", code="unknown_field")
    out: dict[str, Any] = {}
    for name, validate in LINE_FIELDS.items():
        if raw.get(name) is None:
            if name != "tax_exempt":
                raise BadRequest(f"lines[{n}]: {name} is required", code="missing_field")
            continue
        try:
            out[name] = validate(raw[name])
        except BadRequest as exc:
            raise BadRequest(f"lines[{n}].{name}: {exc.message}", code=exc.code) from None
    return out


def price_lines(call: ReviewCall, customer: Customer, specs: list[dict[str, Any]]) -> list[InvoiceLine]:
    """Price the checked lines as ``custom`` lines ``custom-1``, ``custom-2``... in order."""
    tax = LineTax(tax_rate_for(call.tenant, customer), call.tenant.tax_inclusive)
    return [
        custom_line(
            spec["description"],
            spec["quantity"],
            spec["unit_amount_decimal"],
            tax,
            f"custom-{n + 1}",
            tax_exempt=bool(spec.get("tax_exempt", False)),
        )
        for n, spec in enumerate(specs)
    ]


def build_document(call: ReviewCall, invoice_id: str) -> dict[str, Any]:
    """Check the request and build the invoice document (before anything is written).

    Raises:
        BadRequest, NotFound (``unknown_customer``), Conflict (archived customer, a total below
        zero), DataError (too large to store).

    """
    body = call.body
    check_currency(call, call.tenant.currency)
    specs = [parse_line(raw, n) for n, raw in enumerate(body["lines"])]  # every line, before any read
    customer = load_customer(call, body["customer_id"])
    if customer.status == "archived":
        raise Conflict(f"customer {echo(customer.id)} is archived", code="customer_archived")
    lines = price_lines(call, customer, specs)
    document = one_off_document(
        call.tenant,
        customer,
        lines,
        at=call.now,
        memo=body.get("memo"),
        idempotency_key=body["idempotency_key"],
    )
    if document["total"] < 0:
        raise Conflict(f"the invoice's total would be {document['total']}: below zero", code="negative_total")
    document["history"] = [call.entry(idempotency_key=body["idempotency_key"])]
    document["request_ids"] = [call.request_id] if call.request_id else []
    invoice_size(call.tenant.id, invoice_id, document)
    return document


def create_invoice(call: ReviewCall) -> dict[str, Any]:
    """Create (or find) the one-off invoice of ``idempotency_key``; answer it (``created``)."""
    require_fields(call, ("customer_id", "lines", "idempotency_key"), ("finalize", "memo", "currency"))
    invoice_id = one_off_invoice_id(call.body["idempotency_key"])
    document = build_document(call, invoice_id)
    finalize = bool(call.body.get("finalize", False))
    invoice, created = call.store.create_invoice_once(
        call.tenant,
        invoice_id,
        document,
        now=call.now,
        run_id=call.run_id,
        finalize=finalize,
        delivery_pending=delivery_enabled(call.tenant),
    )
    if not created and invoice.customer_id != call.body["customer_id"]:
        raise Conflict(
            "idempotency_key was used for another customer's invoice", code="idempotency_key_reused"
        )
    if finalize and invoice.status == "draft":  # an earlier call made the draft; finalize it now
        done, _ = call.store.finalize_invoices(
            call.tenant,
            [invoice.id],
            now=call.now,
            run_id=call.run_id,
            history=call.entry("finalize"),
            request_id=call.request_id,
            delivery_pending=delivery_enabled(call.tenant),
        )
        invoice = done[0] if done else invoice
    errors: list[dict[str, Any]] = []
    if invoice.status == "open" and invoice.pdf_uri is None:
        errors = publish_invoices(call, [invoice])
    after = call.store.get_invoice(call.tenant.id, invoice.id) or invoice
    return response(
        call, created, invoice_id=after.id, created=created, invoice=invoice_view(after), errors=errors
    )
