"""Draft editing: ``add_line_item``, ``remove_line_item`` and ``delete_draft`` (issue 10).

Stripe's editable drafts: a person adds ``custom`` lines (a negative ``unit_amount_decimal`` is a
discount, Stripe's negative invoice item), removes them, or deletes the draft (status
``deleted``, Stripe's "delete a draft invoice"; the document stays, so no run bills that
(subscription, period) again: the month close's create-if-absent finds it).

Removal rule (decided here, README "Review and correction"): only ``custom`` lines can be
removed. A ``fixed`` or ``usage`` line is what the plan and the usage data say; removing it
would be undone by the next ``refresh_draft`` and would hide a data problem. To correct one, add
a custom line (a discount, with its reason in the description), or fix the data and refresh.
Removing a generated line is 409 ``generated_line``.

Every change goes through ``common.edit_draft`` (one transaction, request id recorded, totals
recomputed by the builder's rules, the total never below zero).
"""

from __future__ import annotations

from typing import Any

from billing.errors import Conflict, NotFound, echo
from billing.pricing.invoicing import LineTax, custom_line
from billing.pricing.tax import tax_rate_for
from billing.records import Invoice
from billing.runs.review.common import (
    ReviewCall,
    check_currency,
    custom_line_id,
    edit_draft,
    invoice_view,
    line_documents,
    load_customer,
    load_invoice,
    priced_fields,
    require_fields,
    response,
)
from billing.store.invoices import DraftEdit

ADD_FIELDS = ("invoice_id", "description", "quantity", "unit_amount_decimal")


def add_line_item(call: ReviewCall) -> dict[str, Any]:
    """Add one ``custom`` line to a draft; answer the invoice.

    Fields: ``invoice_id``, ``description``, ``quantity`` (decimal string > 0),
    ``unit_amount_decimal`` (may be negative), optional ``tax_exempt`` and ``currency``
    (must be the invoice's). The line is taxed at the customer's rate (0 when the customer
    or the line is tax exempt), in the invoice's ``tax_inclusive`` mode. Its ``line_id`` comes
    from the request id (``custom_line_id``), so one request adds one line however often it
    arrives. Steps: check the fields, read the invoice (404) and customer, price the line, then
    the transactional edit (409 on a non-draft or a total below zero).
    """
    require_fields(call, ADD_FIELDS, ("tax_exempt", "currency"))
    body = call.body
    invoice = load_invoice(call, body["invoice_id"])
    check_currency(call, invoice.currency)
    customer = load_customer(call, invoice.customer_id)
    tax = LineTax(tax_rate_for(call.tenant, customer), invoice.tax_inclusive)
    line = custom_line(
        body["description"],
        body["quantity"],
        body["unit_amount_decimal"],
        tax,
        custom_line_id(call.request_id or call.run_id),
        tax_exempt=bool(body.get("tax_exempt", False)),
    ).to_document()
    line.update(added_by=call.actor, added_at=call.now)

    def change(current: Invoice) -> DraftEdit:
        lines = line_documents(current)
        if any(existing["line_id"] == line["line_id"] for existing in lines):
            return DraftEdit()  # the same request, recorded before request ids were: nothing new
        fields = priced_fields(current, [*lines, line], current.tax_inclusive)
        entry = call.entry(line_id=line["line_id"], description=line["description"], amount=line["amount"])
        return DraftEdit(fields, (entry,))

    after, changed = edit_draft(call, invoice.id, change)
    return response(call, changed, invoice_id=after.id, line_id=line["line_id"], invoice=invoice_view(after))


def remove_line_item(call: ReviewCall) -> dict[str, Any]:
    """Remove one ``custom`` line from a draft (404 ``unknown_line``, 409 ``generated_line``).

    Fields: ``invoice_id``, ``line_id``, optional ``reason`` (kept in ``history``).
    """
    require_fields(call, ("invoice_id", "line_id"), ("reason",))
    line_id = call.body["line_id"]

    def change(current: Invoice) -> DraftEdit:
        lines = line_documents(current)
        found = [line for line in lines if line["line_id"] == line_id]
        if not found:
            raise NotFound(f"invoice {echo(current.id)} has no line {echo(line_id)}", code="unknown_line")
        if found[0]["kind"] != "custom":
            raise Conflict(
                f"line {echo(line_id)} is a {found[0]['kind']} line from the plan: only custom lines can "
                "be removed (add a discount line, or fix the data and refresh_draft)",
                code="generated_line",
            )
        kept = [line for line in lines if line["line_id"] != line_id]
        fields = priced_fields(current, kept, current.tax_inclusive)
        entry = call.entry(
            line_id=line_id,
            description=found[0].get("description"),
            amount=found[0].get("amount"),
            reason=call.body.get("reason"),
        )
        return DraftEdit(fields, (entry,))

    after, changed = edit_draft(call, call.body["invoice_id"], change)
    return response(call, changed, invoice_id=after.id, invoice=invoice_view(after))


def delete_draft(call: ReviewCall) -> dict[str, Any]:
    """Set a draft to ``deleted``: never issued, and its period never billed again by a run.

    Fields: ``invoice_id``, optional ``reason`` (``deleted_reason``, default ``deleted_by_admin``).
    """
    require_fields(call, ("invoice_id",), ("reason",))
    reason = call.body.get("reason") or "deleted_by_admin"

    def change(current: Invoice) -> DraftEdit:
        fields = {"status": "deleted", "deleted_at": call.now, "deleted_reason": reason, "finalize_at": None}
        return DraftEdit(fields, (call.entry(reason=reason),))

    after, changed = edit_draft(call, call.body["invoice_id"], change)
    return response(call, changed, invoice_id=after.id, invoice=invoice_view(after))
