"""``finalize``: a person takes drafts to ``open`` (issue 10), one or many, in the given order.

The same finalization as the runs': the next gapless number of the tenant's sequence
(``billing.store.issuing``, the number and its sequence document in one transaction),
``issued_at``, ``due_at = now + payment_terms_days``, then the PDF at the contract's path and
delivery (email, Stripe) through ``billing.runs.pipeline.publish``. The amounts are the draft's
as reviewed: nothing is re-priced (``refresh_draft`` does that on request).

``invoice_ids`` (a list, at most 100) are numbered in the list's order, in one transaction. Every
invoice is checked first (404 unknown, 409 not a draft): one bad id finalizes nothing. Concurrent
or repeated calls number each draft once: the transaction re-reads each status, and a draft
finalized meanwhile is answered as it is (``changed: false`` for it). A call retried with the
same ``X-Request-ID`` is a no-op; it still publishes an invoice of the list that is ``open``
without its PDF (an earlier answer lost after the numbering).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from billing.delivery.outbox import delivery_enabled
from billing.errors import BadRequest, DataError
from billing.records import Invoice
from billing.runs.review.common import (
    ReviewCall,
    invoice_view,
    not_draft,
    publish_invoices,
    require_fields,
    response,
    unknown_invoice,
)
from billing.store.invoices import seen_request


def finalize_ids(call: ReviewCall) -> list[str]:
    """The ids to finalize: ``invoice_id``, or ``invoice_ids`` (exactly one of the two).

    Raises:
        BadRequest: both or neither given (``missing_field``/``invalid_field``).

    """
    require_fields(call, (), ("invoice_id", "invoice_ids"))
    one, many = call.body.get("invoice_id"), call.body.get("invoice_ids")
    if (one is None) == (many is None):
        raise BadRequest("finalize takes invoice_id or invoice_ids (one of the two)", code="missing_field")
    return [one] if one is not None else list(many or [])


def check_drafts(call: ReviewCall, ids: Sequence[str]) -> list[Invoice]:
    """Read the invoices; all must exist (404) and be drafts or already done by this request (409)."""
    found = call.store.get_invoices(call.tenant.id, ids)
    invoices: list[Invoice] = []
    for invoice_id in ids:
        invoice = found.get(invoice_id)
        if invoice is None:
            raise unknown_invoice(call, invoice_id)
        if isinstance(invoice, DataError):
            raise invoice
        if invoice.status != "draft" and not seen_request(invoice, call.request_id):
            raise not_draft(invoice, "finalize")
        invoices.append(invoice)
    return invoices


def finalize(call: ReviewCall) -> dict[str, Any]:
    """Finalize one draft or a list of drafts; answer them (``invoice`` or ``invoices``).

    Response: ``finalized`` (ids numbered by this call, in order), ``invoices`` (every listed
    invoice after the call) and, for a single id, ``invoice``; publishing failures in ``errors``.
    """
    ids = finalize_ids(call)
    check_drafts(call, ids)
    done, others = call.store.finalize_invoices(
        call.tenant,
        ids,
        now=call.now,
        run_id=call.run_id,
        history=call.entry("finalize"),
        request_id=call.request_id,
        delivery_pending=delivery_enabled(call.tenant),
    )
    unpublished = [i for i in others if i.status == "open" and i.pdf_uri is None]
    errors = publish_invoices(call, [*done, *unpublished])
    after = {i.id: i for i in call.store.get_invoices(call.tenant.id, ids).values() if isinstance(i, Invoice)}
    views = [invoice_view(after[i]) for i in ids if i in after]
    body = response(call, bool(done), finalized=[i.id for i in done], invoices=views, errors=errors)
    if call.body.get("invoice_id") is not None and views:
        body.update(invoice_id=ids[0], invoice=views[0])
    return body
