"""``refresh_draft``: re-price a draft's plan lines from current data, keeping custom lines (issue 10).

Orb's "refresh" of a draft and Lago's re-computation during the grace period: the ``fixed`` and
``usage`` lines are priced again by the same pipeline as the runs
(``billing.runs.pipeline.price_candidates``: the subscription, plan, meters, customer and the
usage events of the period as they are now, late events included), and the ``custom`` lines a
person added are kept, after the plan lines, unchanged. Totals are recomputed by the builder's
rules; a total below zero (a discount larger than the re-priced plan lines) is 409 and nothing
changes. Only subscription invoices can be refreshed (a one-off invoice has no plan: 409
``one_off_invoice``).

Steps: check the fields, read the draft (404, 409), price its (subscription, period), then in
one transaction merge the fresh plan lines with the custom lines the draft has at that moment
(a line added meanwhile is kept) and write.
"""

from __future__ import annotations

from typing import Any

from billing.errors import Conflict, echo
from billing.pricing.invoicing import InvoiceDraft
from billing.pricing.periods import BillingPeriod
from billing.records import Invoice
from billing.runs.pipeline import Catalog, price_candidates
from billing.runs.review.common import (
    REVIEW_KIND,
    ReviewCall,
    data_error,
    edit_draft,
    invoice_view,
    line_documents,
    load_invoice,
    not_draft,
    priced_fields,
    require_fields,
    response,
)
from billing.runs.shell import RunReport
from billing.store.invoices import DraftEdit, seen_request


def price_period(call: ReviewCall, invoice: Invoice) -> InvoiceDraft:
    """Price the invoice's (subscription, period) from current data; the builder's draft.

    An empty result (no fixed fee, no usage) is returned too: its lines (possibly none)
    replace the plan lines.

    Raises:
        Conflict: a one-off invoice (``one_off_invoice``), or the customer is archived.
        NotFound: the subscription no longer exists. DataError: the plan or data is invalid.

    """
    if invoice.subscription_id is None:
        raise Conflict(
            f"invoice {echo(invoice.id)} is a one-off invoice: no plan to price", code="one_off_invoice"
        )
    sub = call.store.get_subscription(call.tenant.id, invoice.subscription_id)
    catalog = Catalog.load(call.store, call.tenant.id)
    report = RunReport(REVIEW_KIND, call.run_id, False)
    empty: list[InvoiceDraft] = []
    period = BillingPeriod(invoice.period_start, invoice.period_end, call.tenant.timezone)
    priced, _ = price_candidates(call.context(), report, call.tenant, catalog, [(sub, period)], empty)
    found = [*priced, *empty]
    if not found:
        raise data_error(report, f"pricing subscription {invoice.subscription_id}")
    return found[0]


def refresh_draft(call: ReviewCall) -> dict[str, Any]:
    """Re-price a draft's ``fixed``/``usage`` lines, keep its ``custom`` lines; answer the invoice.

    Fields: ``invoice_id``. The invoice's ``tax_inclusive`` follows the tenant's setting now,
    as the builder's does.
    """
    require_fields(call, ("invoice_id",))
    invoice = load_invoice(call, call.body["invoice_id"])
    if seen_request(invoice, call.request_id):
        return response(call, False, invoice_id=invoice.id, invoice=invoice_view(invoice))
    if invoice.status != "draft":
        raise not_draft(invoice, "refresh_draft")
    fresh = price_period(call, invoice)
    plan_lines = [line.to_document() for line in fresh.lines]

    def change(current: Invoice) -> DraftEdit:
        custom = [line for line in line_documents(current) if line["kind"] == "custom"]
        fields = priced_fields(current, [*plan_lines, *custom], fresh.tax_inclusive)
        entry = call.entry(total_before=current.total, total_after=fields["total"], custom_lines=len(custom))
        return DraftEdit(fields, (entry,))

    after, changed = edit_draft(call, invoice.id, change)
    return response(call, changed, invoice_id=after.id, invoice=invoice_view(after))
