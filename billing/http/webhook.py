"""``stripe_webhook``: Stripe invoice events, authenticated by ``Stripe-Signature``.

Not ``billing.http.shell.handle``: the caller authenticates with the ``Stripe-Signature`` header
rather than an OIDC token, and its body is a Stripe event (any fields) whose exact bytes are what
the signature covers (Stripe docs, "Check the webhook signatures": verify against the raw body,
before parsing). Errors still go through the shell's one envelope (``billing.http.shell.respond``).

Webhook answers: 200 ``{"received": true, "result": "applied" | "duplicate" | "ignored", ...}``
for every verified event, including event types we do not handle and invoices that are not ours
(Stripe recommends a 2xx for those so it stops retrying); an ignored event also carries
``"ignored": "<reason>"`` (the contract's shape; reasons in ``billing.runs.payments``). 400
``invalid_signature`` (missing, malformed, wrong or older than 5 minutes) and 400 ``invalid_json``
with nothing written; 413 ``body_too_large`` for a body over ``MAX_WEBHOOK_BYTES``, counted on
the bytes read (a chunked body has no ``Content-Length`` to trust); 405 for methods other than
POST and GET (health); 500 when ``STRIPE_WEBHOOK_SECRET`` is not set (Stripe then retries, for
up to three days).
"""

from __future__ import annotations

import json
import os
from typing import Any

import flask
import stripe

from billing.delivery.outbox import Services, email_enabled, send_reactivation_notice
from billing.errors import BadRequest, BillingError, MethodNotAllowed, Misconfigured, echo
from billing.http import shell
from billing.logs import get_logger
from billing.runs.payments import EventOutcome, apply_stripe_event, reactivate_if_clear
from billing.store.clients import firestore_client
from billing.store.firestore_store import BillingStore

__all__ = [
    "MAX_WEBHOOK_BYTES",
    "WEBHOOK_TOLERANCE_SECONDS",
    "process_event",
    "stripe_webhook_response",
    "verify_event",
    "webhook_secret",
]

log = get_logger("billing.payments")
WEBHOOK_TOLERANCE_SECONDS = 300
"""How old a ``Stripe-Signature`` timestamp may be (Stripe's default tolerance)."""
MAX_WEBHOOK_BYTES = 1_000_000
"""The body cap, counted on the bytes read (413 above it)."""


def webhook_secret() -> str:
    """``STRIPE_WEBHOOK_SECRET`` (``whsec_...``).

    Raises:
        Misconfigured: (500, ``misconfigured``) not set.

    """
    secret = (os.environ.get("STRIPE_WEBHOOK_SECRET") or "").strip()
    if not secret:
        raise Misconfigured("STRIPE_WEBHOOK_SECRET is not set")
    return secret


def verify_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """Verify ``Stripe-Signature`` over the raw ``payload``; return the event as plain JSON.

    Uses ``stripe.Webhook.construct_event`` (HMAC-SHA256 of ``"{t}.{payload}"`` with the
    endpoint's secret, any ``v1`` signature matching, timestamp within 5 minutes).

    Raises:
        BadRequest: no header, a bad signature or timestamp (``invalid_signature``), or a body
            that is not a JSON object (``invalid_json``).

    """
    if not signature:
        raise BadRequest("missing Stripe-Signature header", code="invalid_signature")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8", code="invalid_json") from None
    try:
        stripe.Webhook.construct_event(text, signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError:
        raise BadRequest(
            "Stripe-Signature does not verify (wrong secret, altered body or timestamp older than 5 minutes)",
            code="invalid_signature",
        ) from None
    except ValueError:
        raise BadRequest("body is not a JSON Stripe event", code="invalid_json") from None
    event = json.loads(text)
    if not isinstance(event, dict):
        raise BadRequest("body is not a JSON object", code="invalid_json")
    return event


def process_event(
    store: BillingStore, event: dict[str, Any], run_id: str, services: Services | None = None
) -> dict[str, Any]:
    """Apply a verified event, reactivate the customer if it cleared their debt; response body."""
    now = shell.clock.now()
    outcome: EventOutcome = apply_stripe_event(store, event, now, run_id)
    body: dict[str, Any] = {
        "received": True,
        "run_id": run_id,
        "event_id": event.get("id"),
        "type": event.get("type"),
        **outcome.to_json(),
        "reactivated": False,
        "errors": [],
    }
    if outcome.result == "applied" and outcome.reactivate and outcome.tenant_id and outcome.customer_id:
        services = services or Services()
        try:
            tenant = store.get_tenant(outcome.tenant_id)
            done = reactivate_if_clear(
                store,
                tenant,
                outcome.customer_id,
                now,
                now,
                run_id,
                actor="stripe",
                notify=email_enabled(tenant),
            )
            if done is not None:
                body["reactivated"] = True
                if done.notification_id:
                    send_reactivation_notice(
                        store, tenant, done.customer, done.notification_id, services, now, run_id
                    )
        except BillingError as exc:
            # The payment is recorded; the notice waits in the outbox for the dunning sweep.
            body["errors"].append(
                {
                    "tenant_id": outcome.tenant_id,
                    "customer_id": outcome.customer_id,
                    "error": exc.message,
                    "code": exc.code,
                }
            )
    log.info(
        "stripe event processed",
        extra={
            "event_id": event.get("id"),
            "event_type": event.get("type"),
            "result": outcome.result,
            "reason": outcome.reason,
            "invoice_id": outcome.invoice_id,
        },
    )
    return body


def stripe_webhook_response(request: flask.Request) -> flask.Response:
    """Serve one webhook request: method, signature, then the event (see the module docstring).

    Errors are answered by ``billing.http.shell.respond`` (the contract's envelope).
    """
    return shell.respond("stripe_webhook", lambda run_id: _serve(request, run_id))


def _serve(request: flask.Request, run_id: str) -> flask.Response:
    """The checks in order, then the event; raises ``BillingError``."""
    if request.method == "GET":
        return shell.health_response("stripe_webhook", run_id)
    if request.method != "POST":
        raise MethodNotAllowed(f"{echo(request.method)} is not allowed; Stripe POSTs events")
    secret = webhook_secret()
    payload = shell.read_capped(request, MAX_WEBHOOK_BYTES)
    event = verify_event(payload, request.headers.get("Stripe-Signature"), secret)
    return shell.json_response(process_event(BillingStore(firestore_client()), event, run_id))
