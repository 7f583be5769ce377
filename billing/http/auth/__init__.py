"""Authenticate every function call with a Google-signed OIDC ID token.

Callers (Cloud Scheduler's ``oidc_token``, the admin tooling) send
``Authorization: Bearer <ID token>``; see the "Authentication (every request)" section of
``CONTRACT.md``. Two modes, chosen by ``AUTH_MODE``:

``verify`` (default)
    The function is reachable without Cloud Run IAM and checks everything itself: the RS256
    signature against the certificates published at ``AUTH_CERTS_URL`` (Google's
    ``https://www.googleapis.com/oauth2/v1/certs`` by default, the local dev issuer in
    development), then the claims below. This is the manual validation Google describes in
    "Authenticating service-to-service" (Cloud Run / Cloud Functions docs, section "Validate
    the token") and in "Validating an ID token" (Google Identity, OpenID Connect docs).

``platform``
    The function is private behind Cloud Run IAM (``roles/run.invoker``). Cloud Run has already
    verified the Google signature, and -- as documented in Cloud Run's "Authenticating
    service-to-service" page -- *removes the signature* before the request reaches the
    container, replacing it with the literal ``SIGNATURE_REMOVED_BY_GOOGLE``. The function
    cannot re-check the signature, so it requires that literal (a token that still carries a
    signature did not go through Cloud Run IAM) and checks the same claims. When a caller sends
    both ``X-Serverless-Authorization`` and ``Authorization``, Cloud Run authorizes the former
    and passes the latter through untouched, so :func:`authorization_header` picks
    ``X-Serverless-Authorization`` in this mode.

Claim rules, identical in both modes (sources: RFC 7519 section 4.1, OpenID Connect Core 1.0
section 3.1.3.7, Google's "Validating an ID token"):

* ``iss`` is one of ``AUTH_ISSUERS`` (Google signs with ``https://accounts.google.com`` or
  ``accounts.google.com``);
* ``exp`` is in the future and ``iat`` is not in the future, both with ``clock_skew_seconds``
  of tolerance (``nbf``, if present, is honoured the same way); all three are finite numbers
  (not booleans, ``NaN``, ``Infinity`` or ``1e400``) between 0 and the end of year 9999;
* ``aud`` equals ``AUTH_AUDIENCE`` (a list ``aud`` must contain it);
* ``email`` is present and ``email_verified`` is true (Cloud Scheduler and service accounts
  always send both; Google documents ``email`` as the identity to authorize on);
* ``sub`` is present.

Authorization (:func:`authorize`; ``CONTRACT.md``, "Tenants: who may act on one") comes after
the token is verified: the lowercased ``email`` is a platform principal when it is in
``AUTH_ALLOWED_PRINCIPALS`` (any tenant, or all), else a tenant admin when it is in
``tenants/{t}.admins`` of the tenant the request names (that tenant only); otherwise 403
(``tenant_required``, ``tenant_not_allowed`` or ``permission_denied``), not 401.
``email_verified`` is required to be true for both kinds: Google's ID tokens carry it for
service accounts and Google accounts alike, and an unverified email proves no mailbox.

Errors: :class:`~billing.errors.Unauthenticated` (401) for any missing or invalid token,
:class:`~billing.errors.PermissionDenied` (403) for a valid token whose principal is not allowed,
:class:`~billing.errors.CertificatesUnavailableError` (503) when the signing certificates cannot
be fetched at all. No message ever contains the token.

The package, by concern:

* :mod:`billing.http.auth.settings`: :class:`AuthSettings` and ``AuthSettings.from_env``;
* :mod:`billing.http.auth.certs`: :class:`CertCache` (key download, JWK to PEM, the
  ``Cache-Control`` lifetime, refetch limits and stale keys during an outage);
* :mod:`billing.http.auth.tokens`: the bearer header, JWT parsing, signature and claims
  (:func:`verify_token`), the :class:`Principal`, and :func:`authorize`;
* :mod:`billing.http.auth.tenants`: the tenant-admin lookup :func:`authorize` consults
  (:class:`TenantDirectory`; the real one reads the store).
"""

from __future__ import annotations

from billing.http.auth.certs import DEFAULT_CERT_CACHE, CertCache
from billing.http.auth.settings import DEFAULT_CERTS_URL, DEFAULT_ISSUERS, AuthMode, AuthSettings
from billing.http.auth.tenants import TenantDirectory
from billing.http.auth.tokens import (
    SIGNATURE_REMOVED,
    Principal,
    authenticate,
    authenticate_headers,
    authorization_header,
    authorize,
    verify_headers,
    verify_token,
)

__all__ = [
    "DEFAULT_CERTS_URL",
    "DEFAULT_CERT_CACHE",
    "DEFAULT_ISSUERS",
    "SIGNATURE_REMOVED",
    "AuthMode",
    "AuthSettings",
    "CertCache",
    "Principal",
    "TenantDirectory",
    "authenticate",
    "authenticate_headers",
    "authorization_header",
    "authorize",
    "verify_headers",
    "verify_token",
]
