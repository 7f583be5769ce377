"""Token checks: the bearer header, the JWT, its signature and claims, then authorization.

See the package docstring (``billing.http.auth``) for the modes and the claim rules.
:func:`verify_token` answers who is calling (:class:`Principal`); :func:`authorize` decides
whether that caller may act, on one tenant or on all.

Errors: :class:`~billing.errors.Unauthenticated` (401), :class:`~billing.errors.PermissionDenied`
(403), :class:`~billing.errors.CertificatesUnavailableError` (503). No message contains the token.
"""

from __future__ import annotations

import binascii
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import google.auth.transport

from billing.errors import PermissionDenied, Unauthenticated
from billing.http.auth._shared import b64url_decode, header_value, quote
from billing.http.auth.certs import DEFAULT_CERT_CACHE, CertCache
from billing.http.auth.settings import MODES, AuthSettings
from billing.http.auth.tenants import TenantDirectory

__all__ = [
    "SIGNATURE_REMOVED",
    "Principal",
    "authenticate",
    "authenticate_headers",
    "authorization_header",
    "authorize",
    "verify_headers",
    "verify_token",
]

SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
"""What Cloud Run puts in place of the signature of a token it verified (platform mode)."""

_MAX_TOKEN_LENGTH = 16_384  # Google ID tokens are about 1 KB; refuse absurd input early.
_MAX_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z, the last instant we can represent


@dataclass(frozen=True)
class Principal:
    """The authenticated caller.

    Attributes:
        email: the token's ``email``, lowercased (what the allow-list matched).
        subject: the token's ``sub`` (for a service account, its numeric unique id).
        issuer: the token's ``iss``.
        tenant_id: ``None`` for a platform principal (``AUTH_ALLOWED_PRINCIPALS``), who may act
            on any tenant or on all of them; else the one tenant whose ``admins`` list holds
            ``email``, the only tenant this call may act on.

    """

    email: str
    subject: str
    issuer: str
    tenant_id: str | None = None

    @property
    def platform(self) -> bool:
        """Whether this is a platform principal (not limited to one tenant)."""
        return self.tenant_id is None


def authorization_header(headers: Mapping[str, str], settings: AuthSettings) -> str | None:
    """Pick the header value that carries the caller's token.

    In ``platform`` mode ``X-Serverless-Authorization`` wins when present: Cloud Run IAM
    authorizes that header and passes ``Authorization`` through unverified (Cloud Run,
    "Authenticating service-to-service"), so trusting ``Authorization`` there would let any
    invoker impersonate an allowed principal. In ``verify`` mode only ``Authorization`` counts.
    Header names are matched case-insensitively.
    """
    if settings.mode == "platform":
        serverless = header_value(headers, "X-Serverless-Authorization")
        if serverless is not None:
            return serverless
    return header_value(headers, "Authorization")


def authenticate_headers(
    headers: Mapping[str, str],
    settings: AuthSettings,
    *,
    request: google.auth.transport.Request | None = None,
    cache: CertCache | None = None,
    tenant_id: str | None = None,
    directory: TenantDirectory | None = None,
) -> Principal:
    """:func:`authenticate` the token found by :func:`authorization_header` in ``headers``."""
    return authenticate(
        authorization_header(headers, settings),
        settings,
        request=request,
        cache=cache,
        tenant_id=tenant_id,
        directory=directory,
    )


def verify_headers(
    headers: Mapping[str, str],
    settings: AuthSettings,
    *,
    request: google.auth.transport.Request | None = None,
    cache: CertCache | None = None,
) -> Principal:
    """:func:`verify_token` on the token found by :func:`authorization_header` in ``headers``."""
    return verify_token(
        authorization_header(headers, settings),
        settings,
        request=request,
        cache=cache,
    )


def authorize(
    principal: Principal, settings: AuthSettings, tenant_id: str | None, directory: TenantDirectory | None
) -> Principal:
    """Decide whether a verified caller may act, on ``tenant_id`` or (``None``) on every tenant.

    Rules (``CONTRACT.md``, "Tenants: who may act on one"), in order:

    1. an email in ``AUTH_ALLOWED_PRINCIPALS`` is a platform principal: allowed, any tenant or none;
    2. with a tenant named, an email in that tenant's ``admins`` is allowed, for that tenant only
       (one read: the tenant document; an unknown tenant has no admins);
    3. otherwise an email that is some tenant's admin gets 403 ``tenant_required`` (no tenant
       named) or ``tenant_not_allowed`` (another tenant named), whether or not that tenant exists;
    4. anyone else gets 403 ``permission_denied``.

    Without a ``directory`` only rule 1 applies. Nothing but tenant documents is read.

    Returns:
        ``principal`` with ``tenant_id`` set for a tenant admin (``None`` for a platform one).

    Raises:
        PermissionDenied: rules 3 and 4.

    """
    email = principal.email
    if email in settings.allowed_principals:
        return principal
    if directory is not None:
        if tenant_id is not None and email in directory.admins(tenant_id):
            return replace(principal, tenant_id=tenant_id)
        if directory.administers_any(email):
            if tenant_id is None:
                raise PermissionDenied(
                    f"{quote(email)} administers a tenant: name it in X-Tenant-ID", code="tenant_required"
                )
            raise PermissionDenied(
                f"{quote(email)} may not act on tenant {quote(tenant_id)}", code="tenant_not_allowed"
            )
    raise PermissionDenied(
        f"{quote(email)} is not allowed to call this function (AUTH_ALLOWED_PRINCIPALS or a tenant's admins)"
    )


def authenticate(
    authorization: str | None,
    settings: AuthSettings,
    *,
    request: google.auth.transport.Request | None = None,
    cache: CertCache | None = None,
    tenant_id: str | None = None,
    directory: TenantDirectory | None = None,
) -> Principal:
    """:func:`verify_token`, then :func:`authorize` for ``tenant_id`` with ``directory``.

    Without a ``directory`` only ``AUTH_ALLOWED_PRINCIPALS`` may call (403 otherwise).
    """
    principal = verify_token(authorization, settings, request=request, cache=cache)
    return authorize(principal, settings, tenant_id, directory)


def verify_token(
    authorization: str | None,
    settings: AuthSettings,
    *,
    request: google.auth.transport.Request | None = None,
    cache: CertCache | None = None,
) -> Principal:
    """Check the raw ``Authorization`` header value and return the caller (not yet authorized).

    Args:
        authorization: the header value, ``"Bearer <jwt>"``, or ``None`` when absent.
        settings: see :class:`AuthSettings`.
        request: the google-auth HTTP transport used to fetch certificates (``verify`` mode);
            a shared ``google.auth.transport.requests.Request`` by default.
        cache: the key cache (``verify`` mode); the process-wide one by default.

    Returns:
        The :class:`Principal` of a valid token, whoever it is (see :func:`authorize`).

    Raises:
        Unauthenticated: misconfigured settings, missing header, not ``Bearer``, malformed JWT,
            (verify mode) unsupported algorithm, unknown key id, bad signature, or a signature
            removed by Cloud Run, (platform mode) a signature still present; then wrong
            issuer, expired or not yet valid, wrong audience, no ``sub``, no ``email`` or
            ``email_verified`` not true.
        CertificatesUnavailableError: (verify mode) no certificates cached and the fetch failed.

    """
    _check_settings(settings)
    token = _bearer_token(authorization)
    header, payload, signing_input, signature = _split_jwt(token)
    if settings.mode == "verify":
        _verify_signature(header, signing_input, signature, settings, request, cache)
    elif signature != SIGNATURE_REMOVED:
        raise Unauthenticated(
            "AUTH_MODE=platform expects a token verified by Cloud Run IAM, whose signature "
            f"Cloud Run replaces with {SIGNATURE_REMOVED}; this token still carries a "
            "signature, so the request did not pass Cloud Run IAM (make the function private, "
            "or use AUTH_MODE=verify)"
        )
    return _check_claims(payload, settings, time.time())


def _check_settings(settings: AuthSettings) -> None:
    problems = list(settings.config_errors)
    if not settings.audience.strip() and not any("AUTH_AUDIENCE" in p for p in problems):
        problems.append("AUTH_AUDIENCE is not set")
    if settings.mode not in MODES:
        problems.append("AUTH_MODE must be 'verify' or 'platform'")
    if problems:
        raise Unauthenticated(
            "authentication is not configured on this function, so every request is refused: "
            + "; ".join(problems)
        )


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise Unauthenticated("missing Authorization header: send 'Authorization: Bearer <OIDC ID token>'")
    parts = authorization.strip().split(None, 1)
    # RFC 7235 section 2.1: the auth-scheme is case-insensitive.
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise Unauthenticated("the Authorization header must be 'Bearer <OIDC ID token>' (RFC 6750)")
    token = parts[1].strip()
    if not token or len(token) > _MAX_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise Unauthenticated("the bearer token is not a well-formed JWT")
    return token


def _split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, str]:
    """Return header, payload, signing input and the raw (still encoded) signature segment."""
    segments = token.split(".")
    malformed = Unauthenticated("the bearer token is not a well-formed JWT")
    if len(segments) != 3 or not all(segments[:2]):
        raise malformed
    try:
        header = json.loads(b64url_decode(segments[0]))
        payload = json.loads(b64url_decode(segments[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):  # nested too deep
        raise malformed from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise malformed
    signing_input = f"{segments[0]}.{segments[1]}".encode("ascii")
    return header, payload, signing_input, segments[2]


def _verify_signature(
    header: Mapping[str, Any],
    signing_input: bytes,
    signature: str,
    settings: AuthSettings,
    request: google.auth.transport.Request | None,
    cache: CertCache | None,
) -> None:
    if signature == SIGNATURE_REMOVED:
        raise Unauthenticated(
            f"the token's signature was removed by Cloud Run ({SIGNATURE_REMOVED}), so it "
            "cannot be verified here; a function behind Cloud Run IAM must use "
            "AUTH_MODE=platform"
        )
    if header.get("alg") != "RS256":
        # Google signs ID tokens with RS256 only; refusing anything else rules out "none"
        # and algorithm-confusion tokens.
        raise Unauthenticated("the token is not signed with RS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Unauthenticated("the token header has no key id (kid)")
    try:
        signature_bytes = b64url_decode(signature)
    except (ValueError, binascii.Error):
        raise Unauthenticated("the bearer token is not a well-formed JWT") from None
    verifier = (cache or DEFAULT_CERT_CACHE).verifier(settings.certs_url, kid, request)
    if verifier is None:
        raise Unauthenticated(
            f"the token is signed by a key that {settings.certs_url} does not publish (kid {quote(kid)})"
        )
    try:
        valid = bool(verifier.verify(signing_input, signature_bytes))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise Unauthenticated("the token's signature does not verify")


def _check_claims(payload: Mapping[str, Any], settings: AuthSettings, now: float) -> Principal:
    issuer = payload.get("iss")
    if not isinstance(issuer, str) or issuer not in settings.issuers:
        raise Unauthenticated(
            f"the token's issuer {quote(issuer)} is not accepted "
            f"(expected one of {', '.join(sorted(settings.issuers))})"
        )
    skew = settings.clock_skew_seconds
    exp = _numeric_claim(payload, "exp", required=True)
    iat = _numeric_claim(payload, "iat", required=True)
    nbf = _numeric_claim(payload, "nbf", required=False)
    if exp is not None and now > exp + skew:
        raise Unauthenticated(f"the token expired at {_iso(exp)} (now {_iso(now)})")
    if iat is not None and iat - skew > now:
        raise Unauthenticated(
            f"the token is issued in the future ({_iso(iat)}, now {_iso(now)}); check the clocks"
        )
    if nbf is not None and nbf - skew > now:
        raise Unauthenticated(f"the token is not valid before {_iso(nbf)} (now {_iso(now)})")
    audience = payload.get("aud")
    # RFC 7519 section 4.1.3: aud is a string or a list of strings that must contain ours.
    if not (audience == settings.audience or (isinstance(audience, list) and settings.audience in audience)):
        raise Unauthenticated(
            f"the token's audience {quote(audience)} is not this function's audience "
            f"{quote(settings.audience)}"
        )
    subject = payload.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("the token has no subject (sub)")
    email = payload.get("email")
    if not isinstance(email, str) or not email.strip():
        raise Unauthenticated(
            "the token has no email claim (mint it for a service account, with the email "
            "included, e.g. gcloud's --include-email)"
        )
    verified = payload.get("email_verified")
    if not (verified is True or (isinstance(verified, str) and verified.lower() == "true")):
        raise Unauthenticated("the token's email is not verified (email_verified is not true)")
    return Principal(email=email.strip().lower(), subject=subject, issuer=issuer)


def _numeric_claim(payload: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    """A NumericDate claim (RFC 7519 section 2): seconds since the epoch, finite, in 0..9999.

    JSON lets a payload say ``1e400`` (``inf`` once parsed), ``NaN`` or ``Infinity`` (Python's
    parser accepts both), with which ``exp`` would never pass; ``true`` is an ``int`` in Python.
    """
    value = payload.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated(f"the token's {name} claim is missing or not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise Unauthenticated(f"the token's {name} claim is not a finite number")
    if not 0 <= value <= _MAX_NUMERIC_DATE:
        raise Unauthenticated(f"the token's {name} claim is out of range (0..{_MAX_NUMERIC_DATE})")
    return float(value)


def _iso(epoch: float) -> str:
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return str(epoch)
