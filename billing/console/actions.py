"""The console's forms (POST): every ``billing_admin`` action, bulk Finalize, Dry run and Run now.

Each invoice action goes through the one dispatcher of ``billing_admin``
(``billing.runs.admin_actions.dispatch``: the same field validators, ``BILLING_ADMIN_FIELDS``,
then the same action code), with the viewer as the actor and the tenant checked first: the console
never implements an action a second time. A refused form (missing or invalid field, a state
that forbids the action) re-renders its page with the message and the status (400, 404, 409),
and nothing is written; a success redirects (303) to the page with a notice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask

from billing.console.app import deps, store, viewer
from billing.console.forms import (
    add_line_body,
    bulk_finalize_body,
    credit_note_body,
    mark_paid_body,
    remove_line_body,
    simple_body,
)
from billing.console.pages import drafts_page, invoice_page, render, tenant_of
from billing.console.security import scoped
from billing.console.settings import SCHEDULED_FUNCTIONS
from billing.errors import BadRequest, BillingError, NotFound, PermissionDenied
from billing.http.auth.tokens import Principal
from billing.logs import get_logger
from billing.records import Tenant
from billing.runs import admin_actions

blueprint = flask.Blueprint("actions", __name__)
log = get_logger("billing.console")
CLIENT_ERRORS = (400, 404, 409, 422)


def dispatch(tenant: Tenant, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """Run one ``billing_admin`` action for the console: ``billing.runs.admin_actions.dispatch``.

    The same validators and code as the function (``BILLING_ADMIN_FIELDS``, then the action);
    the viewer's email is the actor recorded in ``history``.

    Raises:
        BadRequest, NotFound, Conflict, PermissionDenied, DataError: before anything is written.
        UpstreamFailure: Stripe, SMTP or Storage refused (502).

    """
    answer = admin_actions.dispatch(store(), tenant.id, principal.email, body, now=deps().clock())
    log.info("console action", extra={"action": body.get("action"), "tenant_id": tenant.id})
    return answer


INVOICE_FORMS: dict[str, Callable[[dict[str, str], str, Tenant, str], dict[str, Any]]] = {
    "mark_paid": lambda form, invoice_id, tenant, currency: mark_paid_body(
        form, invoice_id, currency, tenant.timezone
    ),
    "add_line": lambda form, invoice_id, tenant, currency: add_line_body(form, invoice_id, currency),
    "credit_note": lambda form, invoice_id, tenant, currency: credit_note_body(form, invoice_id, currency),
    "remove_line": lambda form, invoice_id, tenant, currency: remove_line_body(form, invoice_id),
    "void": lambda form, invoice_id, tenant, currency: simple_body("void", invoice_id, form),
    "finalize": lambda form, invoice_id, tenant, currency: simple_body("finalize", invoice_id, form),
    "delete_draft": lambda form, invoice_id, tenant, currency: simple_body("delete_draft", invoice_id, form),
    "refresh": lambda form, invoice_id, tenant, currency: simple_body("refresh_draft", invoice_id, form),
}
NOTICES = {
    "mark_paid": "Payment recorded.",
    "add_line": "Line added.",
    "remove_line": "Line removed.",
    "credit_note": "Credit note issued.",
    "void": "Invoice voided.",
    "finalize": "Draft finalized.",
    "delete_draft": "Draft deleted.",
    "refresh": "Draft refreshed from current data.",
}


@blueprint.post("/invoices/<tenant_id>/<invoice_id>/<form_name>")
def invoice_action(tenant_id: str, invoice_id: str, form_name: str) -> Any:
    """One action on one invoice from its page (or a draft's row in the queue)."""
    tenant = tenant_of(tenant_id)
    principal = scoped(viewer(), tenant.id, deps().settings.allowed_principals, store())
    build = INVOICE_FORMS.get(form_name)
    if build is None:
        raise NotFound(f"unknown form {form_name!r}", code="unknown_form")
    invoice = store().get_invoice(tenant.id, invoice_id)
    if invoice is None:
        raise NotFound(f"unknown invoice {invoice_id!r}", code="unknown_invoice")
    try:
        dispatch(tenant, principal, build(dict(flask.request.form), invoice_id, tenant, invoice.currency))
    except BillingError as exc:
        if exc.status not in CLIENT_ERRORS:
            raise
        return invoice_page(
            tenant, invoice_id, error=exc.message, status=400 if exc.status == 422 else exc.status
        )
    flask.flash(NOTICES[form_name])
    if form_name == "delete_draft":
        return flask.redirect(flask.url_for("pages.drafts", tenant=tenant.id), 303)
    return flask.redirect(
        flask.url_for("pages.invoice_detail", tenant_id=tenant.id, invoice_id=invoice_id), 303
    )


@blueprint.post("/drafts/<tenant_id>/finalize")
def finalize_drafts(tenant_id: str) -> Any:
    """Bulk Finalize: the ticked drafts, numbered in the order they are listed."""
    tenant = tenant_of(tenant_id)
    principal = scoped(viewer(), tenant.id, deps().settings.allowed_principals, store())
    try:
        body = bulk_finalize_body(flask.request.form.getlist("invoice_ids"))
        dispatch(tenant, principal, body)
    except BillingError as exc:
        if exc.status not in CLIENT_ERRORS:
            raise
        return drafts_page(tenant, error=exc.message, status=400 if exc.status == 422 else exc.status)
    flask.flash(f"{len(body['invoice_ids'])} draft(s) finalized.")
    return flask.redirect(flask.url_for("pages.drafts", tenant=tenant.id), 303)


def _function(name: str) -> str:
    if name not in SCHEDULED_FUNCTIONS:
        raise NotFound(f"unknown scheduled function {name!r}", code="unknown_function")
    return name


@blueprint.post("/schedule/<function>/dry-run")
def dry_run(function: str) -> Any:
    """Dry run of a scheduled function (the viewer's tenant when not a platform principal)."""
    tenant = tenant_of(flask.request.form.get("tenant") or None)
    name = _function(function)
    scope = None if viewer().platform and flask.request.form.get("scope") == "all" else tenant.id
    result = deps().runner.dry_run(name, scope)
    return render(
        "schedule.html",
        tenant=tenant,
        functions=SCHEDULED_FUNCTIONS,
        result=result,
        function=name,
        scope=scope,
    )


@blueprint.post("/schedule/<function>/run")
def run_now(function: str) -> Any:
    """Run now, after a dry run: platform principals only (the job covers every tenant)."""
    tenant = tenant_of(flask.request.form.get("tenant") or None)
    name = _function(function)
    if not viewer().platform:
        raise PermissionDenied("Run now starts the run of every tenant: platform principals only")
    if flask.request.form.get("dry_run_seen") != name:
        raise BadRequest("run a Dry run first", code="dry_run_first")
    flask.flash(deps().runner.run_now(name))
    return flask.redirect(flask.url_for("pages.runs", tenant=tenant.id), 303)


__all__ = ["blueprint", "dispatch"]
