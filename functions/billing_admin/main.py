"""HTTP Cloud Function ``billing_admin``: one admin action on one invoice (``billing.runs.admin_actions``).

POST ``{"action", "invoice_id", "amount", "paid_at", "reference", "reason"}`` with an OIDC bearer
token and ``X-Tenant-ID`` (required). Actions: ``mark_paid``, ``void``, ``mark_uncollectible``,
``resend_email``, ``render_pdf``. GET answers a health document.
"""

import flask
import functions_framework

from billing.http import payment_handlers
from billing.http.shell import handle


@functions_framework.http
def billing_admin(request: flask.Request) -> flask.Response:
    """Entry point: validate and authenticate, then perform the action."""
    return handle(
        request,
        function="billing_admin",
        fields=payment_handlers.BILLING_ADMIN_FIELDS,
        run=payment_handlers.billing_admin,
    )
