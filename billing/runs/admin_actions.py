"""``billing_admin``: one admin action on one invoice of the tenant in ``X-Tenant-ID``.

Request (POST JSON): ``action`` and ``invoice_id`` (required), and for ``mark_paid`` ``amount``
(integer, minor units of the invoice's currency, > 0) and ``paid_at`` (RFC 3339 with offset, not
in the future); optional ``reference`` (the payment's reference: a ``mark_paid`` repeated with a
reference already recorded is a no-op) and ``reason`` (free text kept in the history).

Actions:

- ``mark_paid``: records a payment. The full amount due -> ``paid``; less -> a partial payment,
  the invoice stays ``open`` with ``amount_due`` reduced; more -> 409. For an invoice mirrored in
  Stripe the Stripe invoice is marked ``paid_out_of_band`` first, which Stripe allows only for the
  whole amount (a partial payment of a Stripe invoice -> 409: record it in Stripe).
- ``void``: ``open``/``uncollectible`` -> ``void`` (Stripe twin voided first).
- ``mark_uncollectible``: ``open`` -> ``uncollectible`` (Stripe twin first).
- ``resend_email``: sends the invoice email (PDF attached) again, now (not for drafts or void
  invoices).
- ``render_pdf``: renders the PDF again and stores it at the contract's path (``pdf_uri``);
  refused (409) on a draft, whose PDF is rendered when it is finalized.

Review and correction (issue 10): ``add_line_item``, ``remove_line_item``, ``refresh_draft``,
``finalize``, ``delete_draft``, ``create_invoice`` and ``regenerate`` are the use cases of
``billing.runs.review`` (one module each), routed by ``run_admin_action`` and by ``dispatch``, the
entry point for callers that are not an HTTP request (the console): ``dispatch(store,
tenant_id, actor, body, services, *, now, run_id, request_id, publish_pdfs) -> dict``. A review
action retried with the same ``X-Request-ID`` header is a no-op.

After ``paid`` or ``void`` the customer is reactivated when dunning had suspended them and
nothing is overdue any more (``billing.runs.payments.reactivate_if_clear``).

Each action is recorded on the invoice, in ``history``, as ``{action, actor: <caller's email>,
at, run_id, ...}``. Errors, all before anything is written: 400 (missing ``X-Tenant-ID``, unknown
action, missing or invalid field, a field the action does not take), 403 (tenant disabled), 404
(unknown tenant or invoice), 409 (the invoice's status does not allow the action, amount above
what is due, email disabled or no address). 502 when Stripe, SMTP or Cloud Storage refuse (also
nothing recorded).

Order: every field is validated first (``parse_request`` and the field validators: types, the
instant bounds 1970..9999 in UTC, no lone surrogates or control characters, so everything the
action will write is storable), then the tenant and the invoice are read and the transition is
checked, and only then is an outside service called (Stripe, SMTP, Cloud Storage), right before
the one Firestore write. A bad field can therefore never leave Stripe changed and our invoice not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing.delivery.outbox import (
    Services,
    email_enabled,
    invoice_email,
    recipient,
    send_reactivation_notice,
)
from billing.delivery.stripe_billing import enabled_for, sync_status
from billing.errors import (
    BadRequest,
    BillingError,
    Conflict,
    DataError,
    NotFound,
    PermissionDenied,
    UpstreamFailure,
    echo,
)
from billing.http.auth.tokens import Principal
from billing.http.shell import Call, boolean, identifier, rfc3339, text, validate_fields
from billing.logs import get_logger
from billing.records import Customer, Invoice, Tenant, parse_email
from billing.runs.payments import (
    ManualPayment,
    StatusChange,
    can_move,
    change_status,
    reactivate_if_clear,
    transition_conflict,
)
from billing.runs.review.actions import REVIEW_ACTIONS, run_review_action
from billing.runs.review.common import (
    ReviewCall,
    currency_field,
    description_field,
    ids_field,
    key_field,
    maps_field,
    quantity_field,
    unit_amount_field,
)
from billing.runs.shell import PdfSink
from billing.store.firestore_store import BillingStore, InvoiceChange, history_entry

log = get_logger("billing.admin")
INVOICE_ACTIONS = ("mark_paid", "void", "mark_uncollectible", "resend_email", "render_pdf")
ACTIONS = (*INVOICE_ACTIONS, *REVIEW_ACTIONS, "create_credit_note")
MAX_AMOUNT = 10**15
MAX_TEXT = 500
CLOCK_SKEW = timedelta(minutes=5)


def minor_units(value: Any) -> int:
    """Validator: a positive integer amount in minor units (at most 10**15)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_AMOUNT:
        raise BadRequest(
            f"must be a positive integer amount in minor units, got {echo(value)}", code="invalid_field"
        )
    return value


def short_text(value: Any) -> str:
    """Validator: a non-empty string of at most 500 characters that Firestore can store.

    ``billing.http.shell.text`` refuses lone surrogates and control characters: such a ``reason`` used
    to fail the Firestore write *after* Stripe had voided the invoice or the email was sent.
    """
    checked = text(value)
    if not checked.strip() or len(checked) > MAX_TEXT:
        raise BadRequest(f"must be 1-{MAX_TEXT} characters", code="invalid_field")
    return checked


BILLING_ADMIN_FIELDS = {
    "action": text,
    "invoice_id": identifier,
    "amount": minor_units,
    "paid_at": rfc3339,
    "reference": short_text,
    "reason": short_text,
    # review and correction (issue 10; each action checks which of these it takes)
    "description": description_field,
    "quantity": quantity_field,
    "unit_amount_decimal": unit_amount_field,
    "tax_exempt": boolean,
    "line_id": identifier,
    "invoice_ids": ids_field,
    "customer_id": identifier,
    "lines": maps_field,
    "idempotency_key": key_field,
    "finalize": boolean,
    "memo": description_field,
    "currency": currency_field,
}
REVIEW_FIELDS = frozenset(BILLING_ADMIN_FIELDS) - {
    "action",
    "invoice_id",
    "amount",
    "paid_at",
    "reference",
    "reason",
}


@dataclass(frozen=True)
class AdminRequest:
    """A validated admin request."""

    tenant_id: str
    action: str
    invoice_id: str
    actor: str
    amount: int | None = None
    paid_at: datetime | None = None
    reference: str | None = None
    reason: str | None = None


def _refuse_extra(action: str, body: Mapping[str, Any]) -> None:
    """Raise ``BadRequest`` (``unknown_field``) for a field ``action`` does not take."""
    extra = [] if action == "mark_paid" else [n for n in ("amount", "paid_at", "reference") if n in body]
    extra.extend(sorted(REVIEW_FIELDS & set(body)))
    if extra:
        raise BadRequest(f"{', '.join(extra)}: not a field of {action}", code="unknown_field")


def parse_request(call: Call, now: datetime) -> AdminRequest:
    """Check the fields' presence and combination.

    Raises:
        BadRequest: no tenant, unknown action, missing ``invoice_id``, ``mark_paid`` without
            ``amount``/``paid_at`` or with ``paid_at`` in the future, those fields on another
            action.

    """
    body = call.body
    if call.tenant_id is None:
        raise BadRequest("X-Tenant-ID is required for billing_admin", code="missing_tenant")
    action = body.get("action")
    if action is None:
        raise BadRequest(f"action is required: one of {', '.join(ACTIONS)}", code="missing_field")
    if action not in ACTIONS:
        raise BadRequest(
            f"action: unknown action {echo(action)}; expected one of {', '.join(ACTIONS)}",
            code="invalid_field",
        )
    invoice_id = body.get("invoice_id")
    if invoice_id is None:
        raise BadRequest("invoice_id is required", code="missing_field")
    amount, paid_at = body.get("amount"), body.get("paid_at")
    if action == "mark_paid":
        missing = [name for name, value in (("amount", amount), ("paid_at", paid_at)) if value is None]
        if missing:
            raise BadRequest(f"mark_paid requires {' and '.join(missing)}", code="missing_field")
        if isinstance(paid_at, datetime) and paid_at > now + CLOCK_SKEW:
            raise BadRequest(f"paid_at {paid_at.isoformat()} is in the future", code="invalid_field")
    _refuse_extra(action, body)
    actor = call.principal.email
    return AdminRequest(
        tenant_id=call.tenant_id,
        action=action,
        invoice_id=invoice_id,
        actor=actor,
        amount=amount,
        paid_at=paid_at,
        reference=body.get("reference"),
        reason=body.get("reason"),
    )


def _invoice(store: BillingStore, tenant_id: str, invoice_id: str) -> Invoice:
    invoice = store.get_invoice(tenant_id, invoice_id)
    if invoice is None:
        raise NotFound(
            f"unknown invoice {echo(invoice_id)} in tenant {echo(tenant_id)}", code="unknown_invoice"
        )
    return invoice


def _conflict(invoice: Invoice, action: str) -> Conflict:
    return Conflict(
        f"invoice {echo(invoice.id)} is {invoice.status}; {action} is not allowed", code="invalid_transition"
    )


def _shown(invoice: Invoice) -> dict[str, Any]:
    """The invoice's fields in the response: status and amounts, ``paid_at`` once paid, PDF."""
    shown: dict[str, Any] = {
        "status": invoice.status,
        "amount_paid": invoice.amount_paid,
        "amount_due": invoice.amount_due,
        "pdf_uri": invoice.pdf_uri,
    }
    if invoice.paid_at is not None:
        shown["paid_at"] = invoice.paid_at
    return shown


def run_admin_action(
    store: BillingStore, call: Call, now: datetime, services: Services | None = None
) -> dict[str, Any]:
    """Validate, then perform one admin action; return the response body.

    Raises:
        BadRequest, PermissionDenied, NotFound, Conflict: before anything is written.
        StripeFailure, EmailError, UpstreamFailure: an outside service failed (502).

    """
    services = services or Services()
    if call.body.get("action") in REVIEW_ACTIONS:
        return _review(store, call, now, services, None)
    if call.body.get("action") == "create_credit_note":
        from billing.runs.credit_notes import create_credit_note  # its own request shape

        return create_credit_note(store, call, now, services)
    request = parse_request(call, now)
    tenant = store.get_tenant(request.tenant_id)
    if tenant.status != "active":
        raise PermissionDenied(f"tenant {echo(tenant.id)} is disabled", code="tenant_disabled")
    invoice = _invoice(store, tenant.id, request.invoice_id)
    response: dict[str, Any] = {
        "run_id": call.run_id,
        "dry_run": False,
        "tenant_id": tenant.id,
        "invoice_id": request.invoice_id,
        "action": request.action,
        "changed": True,
        "reactivated": False,
        "skipped": 0,
        "errors": [],
    }
    details = {"reason": request.reason}
    if request.action in ("mark_paid", "void", "mark_uncollectible"):
        outcome = _status_action(store, tenant, invoice, request, now, call.run_id, services, details)
        response.update(_shown(outcome.invoice), changed=outcome.changed)
        if outcome.invoice.status in ("paid", "void") and outcome.changed:
            _reactivate(
                store, tenant, invoice.customer_id, now, call.run_id, request.actor, services, response
            )
    elif request.action == "resend_email":
        _resend(store, tenant, invoice, request, now, call.run_id, services, details)
        response.update(_shown(invoice))
    else:
        uri = _render(store, tenant, invoice, request, now, call.run_id, details)
        response.update(_shown(invoice), pdf_uri=uri)
    log.info(
        "admin action done",
        extra={
            "action": request.action,
            "invoice_id": request.invoice_id,
            "actor": request.actor,
            "changed": response["changed"],
        },
    )
    return response


def _status_action(
    store: BillingStore,
    tenant: Tenant,
    invoice: Invoice,
    request: AdminRequest,
    now: datetime,
    run_id: str,
    services: Services,
    details: dict[str, Any],
) -> StatusChange:
    target = {"mark_paid": "paid", "void": "void", "mark_uncollectible": "uncollectible"}[request.action]
    payment = None
    if request.action == "mark_paid":
        assert request.amount is not None and request.paid_at is not None
        if invoice.paid_by(request.reference):
            return StatusChange(invoice, changed=False)
        payment = ManualPayment(request.amount, request.paid_at, request.reference)
    if not can_move(invoice.status, target):
        raise transition_conflict(invoice.id, invoice.status, target)
    due = invoice.amount_due
    if request.amount is not None and request.amount > due:
        raise Conflict(f"amount {request.amount} exceeds the amount due {due}", code="amount_exceeds_due")
    if invoice.stripe_invoice_id and enabled_for(tenant):
        if request.amount is not None and request.amount != due:
            raise Conflict(
                "a partial payment of an invoice mirrored in Stripe must be recorded in Stripe",
                code="partial_payment_in_stripe",
            )
        action = "pay" if target == "paid" else request.action
        details["stripe_status"] = sync_status(tenant, invoice.as_document(), action, services.stripe())
    return change_status(
        store,
        tenant.id,
        request.invoice_id,
        target,
        request.actor,
        now,
        run_id,
        payment=payment,
        details=details,
    )


def _reactivate(
    store: BillingStore,
    tenant: Tenant,
    customer_id: str,
    now: datetime,
    run_id: str,
    actor: str,
    services: Services,
    response: dict[str, Any],
) -> None:
    try:
        done = reactivate_if_clear(
            store, tenant, customer_id, now, now, run_id, actor=actor, notify=email_enabled(tenant)
        )
        if done is None:
            return
        response["reactivated"] = True
        if done.notification_id:
            send_reactivation_notice(
                store, tenant, done.customer, done.notification_id, services, now, run_id
            )
    except BillingError as exc:
        # The action itself is done; the notice is retried by the dunning run's sweep.
        response["errors"].append(
            {"tenant_id": tenant.id, "customer_id": customer_id, "error": exc.message, "code": exc.code}
        )
    except Exception as exc:  # the action is committed: say so (200), never a 500 that invites a retry
        log.exception("reactivation failed after the action", extra={"customer_id": customer_id})
        response["errors"].append(
            {
                "tenant_id": tenant.id,
                "customer_id": customer_id,
                "error": f"internal error: {type(exc).__name__}; the dunning run reactivates later",
                "code": "internal",
            }
        )


def _resend(
    store: BillingStore,
    tenant: Tenant,
    invoice: Invoice,
    request: AdminRequest,
    now: datetime,
    run_id: str,
    services: Services,
    details: dict[str, Any],
) -> None:
    if invoice.status in ("draft", "void", "deleted"):
        raise _conflict(invoice, "resend_email")
    if not email_enabled(tenant):
        raise Conflict(f"email is disabled for tenant {echo(tenant.id)}", code="email_disabled")
    found = store.get_customers(tenant.id, [invoice.customer_id]).get(invoice.customer_id)
    if isinstance(found, DataError) and found.code == "invalid_email":
        raise found  # 422: the customer's address is not one address; nothing is sent
    customer = found if isinstance(found, Customer) else None
    to = recipient(invoice, customer)
    if not to:
        raise Conflict(f"customer {invoice.customer_id!r} has no email address", code="no_email")
    parse_email(to, f"invoices/{request.invoice_id} (customer snapshot)")
    key = f"{request.invoice_id}.resend.{run_id}"
    message = invoice_email(tenant, invoice, to, services, key, customer)
    message_id = services.mailer().send(message)
    store.update_invoice(
        tenant.id,
        invoice.id,
        InvoiceChange(
            email_resent_at=now,
            history=(
                history_entry(
                    "resend_email", request.actor, now, run_id=run_id, to=to, message_id=message_id, **details
                ),
            ),
        ),
    )


def _render(
    store: BillingStore,
    tenant: Tenant,
    invoice: Invoice,
    request: AdminRequest,
    now: datetime,
    run_id: str,
    details: dict[str, Any],
) -> str:
    """Render and store the invoice's PDF again; return its ``gs://`` URI."""
    from billing.delivery.documents import render_and_upload
    from billing.store.clients import invoices_bucket, storage_client

    if invoice.status == "draft":
        raise Conflict(
            "a draft has no number yet: its PDF is rendered when it is finalized", code="invoice_is_draft"
        )
    if invoice.status == "deleted":  # a draft re-priced to nothing: never issued, so no document
        raise _conflict(invoice, "render_pdf")
    outcome = render_and_upload(tenant, [invoice.as_document()], storage_client(), invoices_bucket())
    if outcome.failures or not outcome.uris:
        message = outcome.failures[0][1] if outcome.failures else "no PDF produced"
        raise UpstreamFailure(message, code="pdf_failed")
    uri = outcome.uris[0][1]
    store.update_invoice(
        tenant.id,
        invoice.id,
        InvoiceChange(
            pdf_uri=uri,
            pdf_rendered_at=now,
            history=(history_entry("render_pdf", request.actor, now, run_id=run_id, pdf_uri=uri, **details),),
        ),
    )
    return uri


def _review(
    store: BillingStore, call: Call, now: datetime, services: Services, publish_pdfs: PdfSink | None
) -> dict[str, Any]:
    """Run a review action (``billing.runs.review``) for ``call``; its response body.

    Raises:
        BadRequest: no tenant. PermissionDenied: tenant disabled. NotFound: unknown tenant.

    """
    if call.tenant_id is None:
        raise BadRequest("X-Tenant-ID is required for billing_admin", code="missing_tenant")
    tenant = store.get_tenant(call.tenant_id)
    if tenant.status != "active":
        raise PermissionDenied(f"tenant {echo(tenant.id)} is disabled", code="tenant_disabled")
    review = ReviewCall(
        store=store,
        tenant=tenant,
        actor=call.principal.email,
        body=call.body,
        now=now,
        run_id=call.run_id,
        request_id=call.request_id,
        services=services,
        publish_pdfs=publish_pdfs,
    )
    result = run_review_action(review)
    log.info(
        "admin action done",
        extra={"action": review.action, "actor": review.actor, "changed": result.get("changed")},
    )
    return result


def dispatch(
    store: BillingStore,
    tenant_id: str,
    actor: str,
    body: Mapping[str, Any],
    services: Services | None = None,
    *,
    now: datetime,
    run_id: str | None = None,
    request_id: str | None = None,
    publish_pdfs: PdfSink | None = None,
) -> dict[str, Any]:
    """Run any ``billing_admin`` action for a caller that is not an HTTP request (the console).

    ``body`` is the request body as ``billing_admin`` takes it (``action`` and its fields, not
    yet validated: the same validators run here); ``actor`` the authenticated email recorded in
    ``history``; ``run_id`` defaults to a new hex id; ``request_id`` plays the ``X-Request-ID``
    header (a retried review action with the same id is a no-op); ``publish_pdfs`` the PDF sink
    (default: ``INVOICES_BUCKET``). The caller has authorized ``actor`` for ``tenant_id``.
    Returns the response body ``billing_admin`` would answer.

    Raises:
        BadRequest, PermissionDenied, NotFound, Conflict, DataError: before anything is written.
        UpstreamFailure: Stripe, SMTP or Cloud Storage failed (an invoice action).

    """
    import uuid

    checked = validate_fields(body, BILLING_ADMIN_FIELDS)
    checked.pop("tenant_id", None)
    principal = Principal(email=actor, subject=actor, issuer="billing.runs.admin_actions.dispatch")
    call = Call(
        body=checked,
        tenant_id=identifier(tenant_id),
        principal=principal,
        run_id=run_id or uuid.uuid4().hex,
        request_id=None if request_id is None else identifier(request_id),
    )
    services = services or Services()
    if checked.get("action") in REVIEW_ACTIONS:
        return _review(store, call, now, services, publish_pdfs)
    return run_admin_action(store, call, now, services)
