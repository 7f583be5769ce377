"""One exception family for the whole library, each class mapped to an HTTP status.

Client errors (4xx) mean bad input and are raised *before* anything is written, so a caller
that receives one knows nothing changed. ``DataError`` marks a problem in one tenant's stored
billing data (a plan naming a missing meter, a currency mismatch...): a run reports it in its
``errors`` list for that subscription and carries on with the others. Shapes follow the contract:
``{"error": {"code": ..., "message": ...}}`` (produced by ``billing.http.shell.error_response``).

The family (status, default code)::

    BillingError                  500 internal
    +-- BadRequest                400 bad_request
    +-- Unauthenticated           401 unauthenticated
    +-- PermissionDenied          403 permission_denied
    +-- NotFound                  404 not_found
    +-- MethodNotAllowed          405 method_not_allowed
    +-- Conflict                  409 conflict
    +-- PayloadTooLarge           413 body_too_large
    +-- DataError                 422 invalid_billing_data
    +-- Misconfigured             500 misconfigured
    +-- UpstreamFailure           502 upstream_failed
    |   +-- EmailError            502 email_failed
    |   +-- StripeFailure         502 stripe_failed
    +-- CertificatesUnavailableError  503 auth_certificates_unavailable

Every class is defined here and nowhere else; a raise may pass another ``code`` (e.g.
``BadRequest(..., code="invalid_field")``), never another status.
"""

from __future__ import annotations

from typing import Any

MAX_ECHO = 120
"""At most this many characters of a client's input are quoted in an error message
(``CONTRACT.md``, "Bounds on request fields"): a huge field must not make a huge answer or log line."""


def echo(value: object, limit: int = MAX_ECHO) -> str:
    """Quote a client-supplied ``value`` for an error message, cut to ``limit`` characters.

    A string is cut *before* quoting (so at most ``limit`` characters of the input appear) and
    quoted with ``repr``, which escapes control characters and lone surrogates; anything else is
    ``repr``'d and cut. A cut value ends with ``...`` and says how long the input was.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class BillingError(Exception):
    """Base of every error this library raises on purpose.

    Attributes:
        status: the HTTP status a function answers with (500 for the base class).
        code: a stable, machine-readable snake_case code.
        message: a sentence for humans; never contains secrets.

    """

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, Any]:
        """Return the contract's error body ``{"error": {"code", "message"}}``."""
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(BillingError):
    """400: malformed body, unknown field, or a field with a bad value."""

    status = 400
    code = "bad_request"


class Unauthenticated(BillingError):
    """401: no token, or a token that is not valid (signature, issuer, expiry, audience)."""

    status = 401
    code = "unauthenticated"


class PermissionDenied(BillingError):
    """403: a valid token whose principal, or the requested tenant, is not allowed."""

    status = 403
    code = "permission_denied"


class NotFound(BillingError):
    """404: unknown tenant, subscription or invoice."""

    status = 404
    code = "not_found"


class MethodNotAllowed(BillingError):
    """405: an HTTP method the function does not serve."""

    status = 405
    code = "method_not_allowed"


class Conflict(BillingError):
    """409: the request is well formed but the invoice's state forbids it (e.g. void a paid one)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(BillingError):
    """413: a request body over the function's size cap (counted on the bytes read)."""

    status = 413
    code = "body_too_large"


class DataError(BillingError):
    """A problem in stored billing data for one subscription; reported in a run's ``errors``.

    Raised by the invoice builder and the store's parsers; never stops a run.
    """

    status = 422
    code = "invalid_billing_data"


class Misconfigured(BillingError):
    """500: a required setting is missing or invalid in the environment (a deployment mistake).

    Raised by ``billing.delivery.mailer.SmtpSettings.from_env`` (``SMTP_*``).
    """

    code = "misconfigured"


class UpstreamFailure(BillingError):
    """502: an outside service (SMTP, Cloud Storage) failed; nothing was recorded.

    Raised by ``billing.runs.admin_actions`` (``render_pdf``: ``pdf_failed``).
    """

    status = 502
    code = "upstream_failed"


class EmailError(UpstreamFailure):
    """502: an email could not be sent (SMTP refused it, or the server could not be reached).

    ``status`` is 502 for the admin action that sends synchronously; runs report it in their
    ``errors`` list and retry on the next run. Raised by ``billing.delivery.mailer`` and
    ``billing.delivery.outbox``.
    """

    code = "email_failed"


class StripeFailure(UpstreamFailure):
    """502: Stripe refused a request or could not be reached after the retries.

    Raised by ``billing.delivery.stripe_billing``; runs report it in their ``errors`` list.
    """

    code = "stripe_failed"


class CertificatesUnavailableError(BillingError):
    """503: the signing certificates could not be fetched and none are cached.

    This is an outage (of ``AUTH_CERTS_URL`` or the network), not a client error. Raised by
    ``billing.http.auth``; ``billing.http.shell`` answers it with a generic 503 and
    ``Retry-After``.
    """

    status = 503
    code = "auth_certificates_unavailable"
