"""Handlers of the getting-paid functions: ``dunning``, ``billing_admin``, ``stripe_webhook``.

``functions/<name>/main.py`` stay thin; ``dunning`` and ``billing_admin`` go through
``billing.http.shell.handle`` (OIDC, body validation, errors). ``stripe_webhook`` has its own shell,
``stripe_webhook_response``, because its caller authenticates with the ``Stripe-Signature``
header rather than a token, and its body is a Stripe event (any fields) whose exact bytes are
what the signature covers (Stripe docs, "Check the webhook signatures": verify against the raw
body, before parsing).

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
import uuid
from typing import Any

import flask
import stripe

from billing.runs.admin_actions import BILLING_ADMIN_FIELDS, run_admin_action

__all__ = ["BILLING_ADMIN_FIELDS", "DUNNING_FIELDS", "billing_admin", "dunning",
           "stripe_webhook_response"]
from billing.delivery.outbox import Services, email_enabled, send_reactivation_notice
from billing.errors import BadRequest, BillingError, MethodNotAllowed, PayloadTooLarge
from billing.http.shell import Call, boolean, check_as_of, json_response, rfc3339
from billing.logs import get_logger, log_context
from billing.pricing.periods import utc_now
from billing.runs.dunning import DunningContext, run_dunning
from billing.runs.payments import EventOutcome, apply_stripe_event, reactivate_if_clear
from billing.store.clients import firestore_client
from billing.store.firestore_store import BillingStore

log = get_logger("billing.payments")
WEBHOOK_TOLERANCE_SECONDS = 300
MAX_WEBHOOK_BYTES = 1_000_000

DUNNING_FIELDS = {"as_of": rfc3339, "dry_run": boolean}


def dunning(call: Call) -> dict[str, Any]:
    """The dunning run (``billing.runs.dunning.run_dunning``) at ``as_of`` (default now).

    Raises:
        BadRequest: ``as_of`` more than 5 minutes in the future (``as_of_in_future``): it would
            suspend customers who are not yet due. Checked before anything is read or written.

    """
    now = utc_now()
    check_as_of(call.body.get("as_of"), now)
    ctx = DunningContext(run_id=call.run_id, as_of=call.body.get("as_of") or now, now=now,
                         dry_run=bool(call.body.get("dry_run", False)),
                         store=BillingStore(firestore_client()), services=Services(),
                         principal=call.principal.email if call.principal else None)
    return run_dunning(ctx, call.tenant_id).to_json()


def billing_admin(call: Call) -> dict[str, Any]:
    """One admin action (``billing.runs.admin_actions.run_admin_action``)."""
    return run_admin_action(BillingStore(firestore_client()), call, utc_now())


# -- stripe_webhook ------------------------------------------------------------------------------
def webhook_secret() -> str:
    """``STRIPE_WEBHOOK_SECRET`` (``whsec_...``).

    Raises:
        BillingError: (500, ``misconfigured``) not set.

    """
    secret = (os.environ.get("STRIPE_WEBHOOK_SECRET") or "").strip()
    if not secret:
        raise BillingError("STRIPE_WEBHOOK_SECRET is not set", code="misconfigured")
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
        stripe.Webhook.construct_event(text, signature, secret,
                                       tolerance=WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError:
        raise BadRequest("Stripe-Signature does not verify (wrong secret, altered body or "
                         "timestamp older than 5 minutes)", code="invalid_signature") from None
    except ValueError:
        raise BadRequest("body is not a JSON Stripe event", code="invalid_json") from None
    event = json.loads(text)
    if not isinstance(event, dict):
        raise BadRequest("body is not a JSON object", code="invalid_json")
    return event


def read_capped(request: flask.Request, cap: int) -> bytes:
    """The request body, reading at most ``cap + 1`` bytes from the stream.

    ``Content-Length`` alone is no bound: a chunked request has none, and gunicorn (the server
    Cloud Run runs functions-framework with) hands its decoded stream to the application
    as it is. A declared length over ``cap`` is refused before reading.

    Raises:
        PayloadTooLarge: the body is longer than ``cap`` bytes (413 ``body_too_large``).

    """
    if (request.content_length or 0) > cap:
        raise PayloadTooLarge(f"body over {cap} bytes (Content-Length {request.content_length})")
    stream = request.stream
    payload = b""
    while len(payload) <= cap:
        chunk = stream.read(cap + 1 - len(payload))
        if not chunk:
            return payload
        payload += chunk
    raise PayloadTooLarge(f"body over {cap} bytes")


def process_event(store: BillingStore, event: dict[str, Any], run_id: str,
                  services: Services | None = None) -> dict[str, Any]:
    """Apply a verified event, reactivate the customer if it cleared their debt; response body."""
    now = utc_now()
    outcome: EventOutcome = apply_stripe_event(store, event, now, run_id)
    body: dict[str, Any] = {"received": True, "run_id": run_id, "event_id": event.get("id"),
                            "type": event.get("type"), **outcome.to_json(),
                            "reactivated": False, "errors": []}
    if outcome.result == "applied" and outcome.reactivate and outcome.tenant_id \
            and outcome.customer_id:
        services = services or Services()
        try:
            tenant = store.get_tenant(outcome.tenant_id)
            done = reactivate_if_clear(store, tenant, outcome.customer_id, now, now, run_id,
                                       actor="stripe", notify=email_enabled(tenant))
            if done is not None:
                body["reactivated"] = True
                if done.notification_id:
                    send_reactivation_notice(store, tenant, done.customer, done.notification_id,
                                             services, now, run_id)
        except BillingError as exc:
            # The payment is recorded; the notice waits in the outbox for the dunning sweep.
            body["errors"].append({"tenant_id": outcome.tenant_id,
                                   "customer_id": outcome.customer_id, "error": exc.message,
                                   "code": exc.code})
    log.info("stripe event processed", extra={
        "event_id": event.get("id"), "event_type": event.get("type"),
        "result": outcome.result, "reason": outcome.reason, "invoice_id": outcome.invoice_id})
    return body


def stripe_webhook_response(request: flask.Request,
                            store_factory: Any = None) -> flask.Response:
    """Serve one webhook request: method, signature, then the event (see module docstring)."""
    run_id = uuid.uuid4().hex
    with log_context(run_id=run_id):
        try:
            if request.method == "GET":
                return json_response({"status": "ok", "function": "stripe_webhook",
                                      "run_id": run_id})
            if request.method != "POST":
                raise MethodNotAllowed(f"{request.method} is not allowed; Stripe POSTs events")
            secret = webhook_secret()
            payload = read_capped(request, MAX_WEBHOOK_BYTES)
            event = verify_event(payload, request.headers.get("Stripe-Signature"), secret)
            store = (store_factory or (lambda: BillingStore(firestore_client())))()
            return json_response(process_event(store, event, run_id))
        except BillingError as exc:
            if exc.status >= 500:
                log.error("webhook failed", extra={"code": exc.code, "error": exc.message})
            else:
                log.warning("webhook refused", extra={"status": exc.status, "code": exc.code,
                                                      "error": exc.message})
            body = exc.to_json()
            body["run_id"] = run_id
            headers = {"Allow": "GET, POST"} if exc.status == 405 else None
            return json_response(body, exc.status, headers)
        except Exception:
            log.exception("unexpected webhook failure")
            return json_response({"error": {"code": "internal",
                                            "message": f"internal error (run_id {run_id})"},
                                  "run_id": run_id}, 500)
