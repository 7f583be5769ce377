"""HTTP Cloud Function ``stripe_webhook``: Stripe invoice events -> our invoices' payment status.

No OIDC token: the ``Stripe-Signature`` header, verified with ``STRIPE_WEBHOOK_SECRET``, is the
authentication (``billing.http.webhook.stripe_webhook_response``). Handles
``invoice.paid``, ``invoice.payment_succeeded``, ``invoice.payment_failed``, ``invoice.voided``
and ``invoice.marked_uncollectible`` on invoices the tenant pushed to its own Stripe account;
other verified events are acknowledged (200) and ignored.
"""

import flask
import functions_framework

from billing.http import webhook


@functions_framework.http
def stripe_webhook(request: flask.Request) -> flask.Response:
    """Entry point: verify the signature, then apply the event."""
    return webhook.stripe_webhook_response(request)
