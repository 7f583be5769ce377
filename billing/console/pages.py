"""The console's pages (GET): runs, invoices, drafts, overdue invoices, credit notes, exports, schedule.

Every page is scoped: ``?tenant=`` (or the tenant in the path) must be one the viewer may see
(``billing.console.security.scoped``: 403 otherwise); without it, the viewer's first tenant.
Lists show ``PAGE_SIZE`` rows per page (``?page=``). Amounts are formatted for their currency
with Babel in the tenant's locale, right-aligned; statuses are badges.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any, TypeVar

import flask

from billing.console.app import PAGE_SIZE, deps, store, viewer
from billing.console.forms import CREDIT_REASONS
from billing.console.security import scoped
from billing.console.settings import SCHEDULED_FUNCTIONS
from billing.console.usage import usage_panels
from billing.errors import BadRequest, DataError, NotFound
from billing.exports import ar_aging, invoice_register, parse_date_range, write_aging, write_register
from billing.exports.ar_aging import days_past_due
from billing.pricing.periods import zone
from billing.records import Invoice, Tenant
from billing.runs.stages import STAGES

blueprint = flask.Blueprint("pages", __name__)
T = TypeVar("T")
INVOICE_STATUSES = ("draft", "open", "paid", "void", "uncollectible", "deleted")


def tenant_of(tenant_id: str | None = None) -> Tenant:
    """The tenant the request is about, checked against the viewer (403/404)."""
    wanted = (
        tenant_id or flask.request.args.get("tenant") or (viewer().tenants[0] if viewer().tenants else None)
    )
    if not wanted:
        raise NotFound("no tenant to show", code="unknown_tenant")
    scoped(viewer(), wanted, deps().settings.allowed_principals, store())
    if wanted not in viewer().tenants:
        raise NotFound(f"unknown tenant {wanted!r}", code="unknown_tenant")
    return store().get_tenant(wanted)


def paginate(items: Sequence[T]) -> tuple[Sequence[T], dict[str, Any]]:
    """The current page of ``items`` (``?page=``, 1-based) and ``{page, pages, total, previous, next}``."""
    pages = max(1, math.ceil(len(items) / PAGE_SIZE))
    try:
        page = min(max(1, int(flask.request.args.get("page", "1"))), pages)
    except ValueError:
        page = 1
    pager: dict[str, Any] = {"page": page, "pages": pages, "total": len(items)}
    for name, target in (("previous", page - 1), ("next", page + 1)):
        if 1 <= target <= pages:
            args = {**(flask.request.view_args or {}), **flask.request.args.to_dict(), "page": target}
            pager[name] = flask.url_for(str(flask.request.endpoint), **args)
    return items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE], pager


def render(template: str, status: int = 200, **values: Any) -> tuple[str, int]:
    """Render a page with the viewer and the tenant picker."""
    return flask.render_template(template, viewer=viewer(), **values), status


@blueprint.get("/")
def home() -> Any:
    """The console opens on the runs."""
    return flask.redirect(flask.url_for("pages.runs"))


@blueprint.get("/runs")
def runs() -> tuple[str, int]:
    """Run records, newest first; ``?run_id=`` finds one run across the viewer's tenants."""
    run_id = flask.request.args.get("run_id")
    if run_id:
        found = [r for t in viewer().tenants if (r := store().get_run(t, run_id)) is not None]
        return render("runs.html", tenant=None, rows=found, pager=None, stages=STAGES)
    tenant = tenant_of()
    rows, pager = paginate(store().list_runs(tenant.id))
    return render("runs.html", tenant=tenant, rows=rows, pager=pager, stages=STAGES)


@blueprint.get("/runs/<tenant_id>/<run_id>")
def run_detail(tenant_id: str, run_id: str) -> tuple[str, int]:
    """One run: counters, totals, errors by stage and the errors."""
    tenant = tenant_of(tenant_id)
    record = store().get_run(tenant.id, run_id)
    if record is None:
        raise NotFound(f"unknown run {run_id!r}", code="unknown_run")
    counters = {
        k: v
        for k, v in (record.get("summary") or {}).items()
        if isinstance(v, int) and not isinstance(v, bool)
    }
    return render("run.html", tenant=tenant, run=record, counters=counters, stages=STAGES)


def _period_of(invoice: Invoice, tenant: Tenant) -> str:
    return invoice.period_start.astimezone(zone(tenant.timezone)).strftime("%Y-%m")


def _readable(found: Sequence[Invoice | tuple[str, DataError]]) -> tuple[list[Invoice], list[str]]:
    invoices = [i for i in found if isinstance(i, Invoice)]
    broken = [f"{i[0]}: {i[1].message}" for i in found if isinstance(i, tuple)]
    return invoices, broken


@blueprint.get("/invoices")
def invoices() -> tuple[str, int]:
    """Invoices filtered by ``status``, ``customer`` and ``period`` (``YYYY-MM``).

    Filtered by one customer, the page also shows that customer's current usage
    (``billing.console.usage``: a panel per active subscription, or a note).
    """
    tenant = tenant_of()
    args = flask.request.args
    status = args.get("status") or None
    if status and status not in INVOICE_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(INVOICE_STATUSES)}", code="invalid_field")
    found, broken = _readable(
        store().list_invoices(tenant.id, status=status, customer_id=args.get("customer") or None)
    )
    period = args.get("period") or ""
    if period:
        found = [i for i in found if _period_of(i, tenant) == period]
    found.sort(key=lambda i: (i.period_start, i.number or "", i.id), reverse=True)
    rows, pager = paginate(found)
    filters = {"status": status or "", "customer": args.get("customer") or "", "period": period}
    panels, note = (
        usage_panels(store(), tenant, filters["customer"], deps().clock())
        if filters["customer"]
        else ([], None)
    )
    return render(
        "invoices.html",
        tenant=tenant,
        rows=rows,
        pager=pager,
        filters=filters,
        statuses=INVOICE_STATUSES,
        broken=broken,
        usage_panels=panels,
        usage_note=note,
    )


def invoice_page(
    tenant: Tenant, invoice_id: str, error: str | None = None, status: int = 200
) -> tuple[str, int]:
    """The invoice's page (also re-rendered with a form's ``error``)."""
    invoice = store().get_invoice(tenant.id, invoice_id)
    if invoice is None:
        raise NotFound(f"unknown invoice {invoice_id!r}", code="unknown_invoice")
    notes = store().list_credit_notes(tenant.id, invoice.id)
    lines = list(invoice.raw.get("lines") or [])
    return render(
        "invoice.html",
        status,
        tenant=tenant,
        invoice=invoice,
        lines=lines,
        notes=notes,
        error=error,
        reasons=CREDIT_REASONS,
        form=flask.request.form if error else {},
        idempotency_key=f"console-{invoice.id}-{len(notes)}-{len(invoice.history)}",
    )


@blueprint.get("/invoices/<tenant_id>/<invoice_id>")
def invoice_detail(tenant_id: str, invoice_id: str) -> tuple[str, int]:
    """Lines, totals, history, credit notes, PDF and the actions its status allows."""
    return invoice_page(tenant_of(tenant_id), invoice_id)


@blueprint.get("/invoices/<tenant_id>/<invoice_id>/pdf")
def invoice_pdf(tenant_id: str, invoice_id: str) -> flask.Response:
    """The invoice's PDF, streamed through the console (never a public URL)."""
    tenant = tenant_of(tenant_id)
    invoice = store().get_invoice(tenant.id, invoice_id)
    if invoice is None or not invoice.pdf_uri:
        raise NotFound("this invoice has no PDF yet", code="no_pdf")
    data = deps().pdf_fetch(invoice.pdf_uri)
    response = flask.Response(data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{invoice.label}.pdf"'
    return response


def drafts_page(tenant: Tenant, error: str | None = None, status: int = 200) -> tuple[str, int]:
    """The draft review queue (also re-rendered with a form's ``error``)."""
    found, broken = _readable(store().list_invoices(tenant.id, status="draft"))
    found.sort(key=lambda i: (i.customer_id, i.id))
    rows, pager = paginate(found)
    return render("drafts.html", status, tenant=tenant, rows=rows, pager=pager, broken=broken, error=error)


@blueprint.get("/drafts")
def drafts() -> tuple[str, int]:
    """Drafts awaiting review, with Finalize (one or many), Add line, Delete draft, Refresh."""
    return drafts_page(tenant_of())


def dunning_stage(invoice: Invoice) -> str:
    """The last dunning step done on the invoice (``reminder_2``, ``suspension``...), or ``none``."""
    steps = [(v.get("at"), k) for k, v in invoice.dunning.items() if isinstance(v, dict) and v.get("at")]
    return max(steps)[1] if steps else "none"


@blueprint.get("/overdue")
def overdue() -> tuple[str, int]:
    """Open invoices past due, oldest first, with days overdue and their dunning stage."""
    tenant = tenant_of()
    now = deps().clock()
    found, broken = _readable(store().overdue_invoices(tenant.id, now))
    rows, pager = paginate(found)
    shown = [(i, days_past_due(i, tenant, now), dunning_stage(i)) for i in rows]  # as the AR aging counts
    return render("overdue.html", tenant=tenant, rows=shown, pager=pager, broken=broken)


@blueprint.get("/credit-notes")
def credit_notes() -> tuple[str, int]:
    """Credit notes, newest first."""
    tenant = tenant_of()
    found = sorted(
        store().list_credit_notes(tenant.id), key=lambda n: str(n.get("number") or ""), reverse=True
    )
    rows, pager = paginate(found)
    return render("credit_notes.html", tenant=tenant, rows=rows, pager=pager)


@blueprint.get("/exports")
def exports() -> tuple[str, int]:
    """The two CSV exports, each with its "Download CSV" button."""
    tenant = tenant_of()
    today = deps().clock().astimezone(zone(tenant.timezone)).date()
    return render(
        "exports.html", tenant=tenant, today=today.isoformat(), first=today.replace(day=1).isoformat()
    )


def _csv(name: str, write: Any, rows: Any) -> flask.Response:
    out = io.StringIO(newline="")
    write(rows, out)
    response = flask.Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@blueprint.get("/exports/<tenant_id>/invoice_register.csv")
def export_register(tenant_id: str) -> flask.Response:
    """The invoice register for ``from``..``to`` (``billing.exports.invoice_register``)."""
    tenant = tenant_of(tenant_id)
    first, last = parse_date_range(flask.request.args.get("from"), flask.request.args.get("to"))
    rows = invoice_register(store(), tenant, first, last)
    return _csv(f"{tenant.id}-invoice-register-{first}-{last}.csv", write_register, rows)


@blueprint.get("/exports/<tenant_id>/ar_aging.csv")
def export_aging(tenant_id: str) -> flask.Response:
    """AR aging at the end of ``as_of`` (a date; default now) (``billing.exports.ar_aging``)."""
    tenant = tenant_of(tenant_id)
    raw = flask.request.args.get("as_of") or ""
    as_of = deps().clock()
    if raw:
        day, _ = parse_date_range(raw, raw)
        as_of = datetime.combine(day + timedelta(days=1), time(), zone(tenant.timezone)) - timedelta(
            microseconds=1
        )
    rows = ar_aging(store(), tenant, as_of)
    return _csv(f"{tenant.id}-ar-aging-{as_of.date()}.csv", write_aging, rows)


@blueprint.get("/schedule")
def schedule() -> tuple[str, int]:
    """The scheduled functions, each with "Dry run" (then "Run now")."""
    tenant = tenant_of()
    return render("schedule.html", tenant=tenant, functions=SCHEDULED_FUNCTIONS, result=None, function=None)


__all__ = ["blueprint", "drafts_page", "dunning_stage", "invoice_page", "paginate", "tenant_of"]
